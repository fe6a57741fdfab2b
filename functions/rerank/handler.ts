// Lambda direct-invoke handler: event = rerank request JSON → RerankResponse, or {error}.
// The model starts loading during the init phase and stays loaded while the instance is warm.
import { createLocalReranker, type LocalReranker } from "../../shared/adapters/local-reranker.ts";
import { logger, redactConsole } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { handleRerankInvoke } from "../../shared/http/rerank-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";

// Library code that logs through console (onnxruntime, SDKs) must not print secrets either.
redactConsole();

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

// Direct invocation is authorised by IAM (lambda:InvokeFunction), so there are no API keys here; the
// Lambda context puts the request id on every log line.
export const handler = (event: unknown, context?: Parameters<typeof logger.addContext>[0]) => {
  if (context) logger.addContext(context);
  return handleRerankInvoke(() => (reranker ??= build()), event);
};
