// Lambda direct-invoke handler: event = rerank request JSON → RerankResponse, or {error}.
// The model starts loading during the init phase and stays loaded while the instance is warm.
import { createLocalReranker, type LocalReranker } from "../../shared/adapters/local-reranker.ts";
import { logger } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { handleRerankInvoke } from "../../shared/http/rerank-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";

let reranker: LocalReranker | undefined;

function build(): LocalReranker {
  const cfg = loadFunctionConfig();
  return createLocalReranker(cfg, {
    store: cfg.rerankerModelS3 ? createStore(cfg) : undefined,
    log: (level, message) => logger[level](message),
  });
}

try {
  reranker = build();
  reranker.warm().catch(() => {}); // a failed load is retried (and reported) by the first invocation
} catch {
  // Configuration errors are returned to the caller by the handler below.
}

export const handler = (event: unknown) => handleRerankInvoke(() => (reranker ??= build()), event);
