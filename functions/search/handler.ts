// Search function behind API Gateway (HTTP API, payload v2): the Hono app through hono/aws-lambda.
import { handle } from "hono/aws-lambda";
import { logger } from "../../shared/adapters/observability.ts";
import { searchService } from "../runtime/search-deps.ts";

searchService().catch(() => {}); // build during the init phase; a failure is retried by the first request
let lambdaHandler: ReturnType<typeof handle> | undefined;

export const handler: ReturnType<typeof handle> = async (event, context) => {
  // Every log line of this invocation carries the Lambda request id, function name and cold-start flag.
  if (context) logger.addContext(context as Parameters<typeof logger.addContext>[0]);
  return (lambdaHandler ??= handle((await searchService()).app))(event, context);
};
