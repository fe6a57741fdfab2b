// Index shards and query fan-out (docs/REINDEX.md). DEPLOY_INDEX_SHARDS=N makes the reindex publish
// N index files; with DEPLOY_SEARCH_SHARDS=lambda each gets its own shard function (SHARD_ID=i, so a
// warm instance keeps that one shard in memory) and the search function invokes all N per query,
// in parallel, within SHARD_TIMEOUT_MS. With DEPLOY_SEARCH_SHARDS=local (the default) the search
// function loads every shard file itself and nothing here is created.
//
// `searchShardPort` is what the search function needs: SEARCH_SHARDS and the time limit, plus the
// IndexShards link (the function names, which functions/runtime/resources.ts turns into
// SHARD_FUNCTIONS) whose permission lets it invoke them.
import { settings } from "./config.ts";
import { functionPackaging } from "./native.ts";
import { bucket } from "./storage.ts";

export const SHARD_HANDLER = "functions/shard/handler.handler";

export interface SearchShardPort {
  environment: Record<string, SstInput<string>>;
  link: unknown[];
}

const { shards: s, prefixes } = settings;

function createShardFunctions(): sst.aws.Function[] {
  const native = functionPackaging("shard", settings.runtimeEnv);
  return Array.from(
    { length: s.count },
    (_, i) =>
      new sst.aws.Function(`IndexShard${i}`, {
        handler: SHARD_HANDLER,
        description: `Index shard ${i} of ${s.count}: dense top-k over index-${i}.faiss for the search function`,
        runtime: "nodejs20.x",
        architecture: "x86_64",
        memory: `${s.memoryMb} MB`,
        // A cold instance loads its shard file before the first answer; queries wait SHARD_TIMEOUT_MS at most.
        timeout: "60 seconds",
        link: [bucket],
        environment: {
          ...settings.runtimeEnv,
          STORE_KIND: "s3",
          INDEX_PREFIX: prefixes.index,
          SHARD_ID: String(i),
        },
        copyFiles: native.copyFiles,
        nodejs: native.nodejs,
        logging: { retention: settings.logRetention },
      }),
  );
}

export const shardFunctions = s.search === "lambda" ? createShardFunctions() : [];

const shardLink = shardFunctions.length
  ? new sst.Linkable("IndexShards", {
      properties: { names: shardFunctions.map((f) => f.name) },
      include: [
        sst.aws.permission({ actions: ["lambda:InvokeFunction"], resources: shardFunctions.map((f) => f.arn) }),
      ],
    })
  : null;

export const searchShardPort: SearchShardPort = shardLink
  ? {
      environment: { SEARCH_SHARDS: "lambda", SHARD_TIMEOUT_MS: String(s.timeoutMs) },
      link: [shardLink],
    }
  : { environment: {}, link: [] };

/** What every reindex function passes to the build: how many index files a snapshot gets. */
export const indexShardsEnvironment: Record<string, string> = s.count > 1 ? { INDEX_SHARDS: String(s.count) } : {};
