// Reindex function: S3 ObjectCreated/ObjectRemoved notifications under the corpus prefix → one full
// rebuild of the snapshot (shared/core/reindex.ts), stopping cleanly before the time limit.
import type { Context, S3Event } from "aws-lambda";
import { createReindexHandler, type ReindexSummary, reindexService } from "../runtime/reindex-deps.ts";

const run = createReindexHandler(reindexService);

export const handler = (event: S3Event, context: Context): Promise<ReindexSummary> => run(event, context);
