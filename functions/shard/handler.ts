// Lambda direct-invoke handler of one index shard (SHARD_ID): event = {version, shard, vector, k}
// → {ordinals, scores, version}, or {error}. The shard's index file stays loaded while warm.
import { logger, redactConsole } from "../../shared/adapters/observability.ts";
import type { IndexShardService } from "../../shared/core/index-shard-service.ts";
import { handleShardInvoke } from "../../shared/http/shard-app.ts";
import { loadFunctionConfig } from "../runtime/resources.ts";
import { createShardService } from "../runtime/shard-deps.ts";

redactConsole();

let service: IndexShardService | undefined;

// Invocation is authorised by IAM (lambda:InvokeFunction from the search function's role).
export const handler = (event: unknown, context?: Parameters<typeof logger.addContext>[0]) => {
  if (context) logger.addContext(context);
  return handleShardInvoke(
    () => (service ??= createShardService(loadFunctionConfig())),
    event,
    (message, error) => logger.error(message, { error }),
  );
};
