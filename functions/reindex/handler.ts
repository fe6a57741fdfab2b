// Reindex functions. `handler`: S3 ObjectCreated/ObjectRemoved notifications under the corpus prefix
// → one full rebuild (shared/core/reindex.ts), or with REINDEX_MODE=sharded the coordinator that
// plans shards and starts the Step Functions execution (shared/core/sharded-reindex.ts).
// `shardHandler` and `mergeHandler` are that execution's tasks (infra/reindex.ts).
import type { Context, S3Event } from "aws-lambda";
import {
  createReindexHandler,
  parseMergeTask,
  parseShardTask,
  type ReindexSummary,
  reindexService,
} from "../runtime/reindex-deps.ts";

const run = createReindexHandler(reindexService);

export const handler = (event: S3Event, context: Context): Promise<ReindexSummary> => run(event, context);

const deadline = (context?: Context) => (context ? () => context.getRemainingTimeInMillis() : undefined);

export const shardHandler = async (event: unknown, context?: Context) =>
  (await reindexService()).shard(parseShardTask(event), { remainingTimeMs: deadline(context) });

export const mergeHandler = async (event: unknown, context?: Context) =>
  (await reindexService()).merge(parseMergeTask(event), { remainingTimeMs: deadline(context) });
