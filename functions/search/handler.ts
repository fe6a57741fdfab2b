// Search function behind API Gateway (HTTP API, payload v2): the Hono app through hono/aws-lambda.
import { handle } from "hono/aws-lambda";
import { searchService } from "../runtime/search-deps.ts";

searchService().catch(() => {}); // build during the init phase; a failure is retried by the first request
let lambdaHandler: ReturnType<typeof handle> | undefined;

export const handler: ReturnType<typeof handle> = async (event, context) =>
  (lambdaHandler ??= handle((await searchService()).app))(event, context);
