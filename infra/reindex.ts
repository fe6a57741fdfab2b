// The reindex function and the bucket notification that drives it: every object created or removed
// under the corpus prefix starts a rebuild of the FAISS snapshot, which is then published by
// flipping the index pointer.
//
// Reserved concurrency 1: one rebuild at a time. The pointer flip is a conditional S3 write, but
// two concurrent rebuilds would still both embed and build, and the loser's work is wasted (or,
// with an unlucky interleaving, an older corpus view wins). S3 delivers notifications as async
// invocations, so events that arrive while a rebuild runs wait in Lambda's async queue (retried for
// up to 6 hours) instead of being dropped. Each rebuild lists the whole corpus, so a queued event
// whose object an earlier rebuild already saw costs a redundant rebuild (embeddings come from the
// cache), never a wrong index.
import { settings } from "./config.ts";
import { functionPackaging } from "./native.ts";
import { openAiApiKey } from "./secrets.ts";
import { bucket } from "./storage.ts";

export const REINDEX_HANDLER = "functions/reindex/handler.handler";
export const REINDEX_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"] as const;

const { prefixes, reindex: r } = settings;
const native = functionPackaging("reindex", settings.runtimeEnv);

export const reindex = new sst.aws.Function("Reindex", {
  handler: REINDEX_HANDLER,
  description: "Rebuilds the FAISS snapshot when the corpus prefix changes",
  runtime: "nodejs20.x",
  architecture: "x86_64",
  memory: `${r.memoryMb} MB`,
  timeout: `${r.timeoutS} seconds`,
  storage: `${r.storageMb} MB`,
  link: [bucket, openAiApiKey],
  environment: {
    ...settings.runtimeEnv,
    STORE_KIND: "s3",
    CORPUS_PREFIX: prefixes.corpus,
    INDEX_PREFIX: prefixes.index,
    MODEL_PREFIX: prefixes.models,
    EMBED_CACHE_PREFIX: prefixes.cache,
  },
  ...(r.reservedConcurrency === "off" ? {} : { concurrency: { reserved: r.reservedConcurrency } }),
  // Async retries of a failed rebuild (0-2).
  retries: 2,
  copyFiles: native.copyFiles,
  nodejs: { esbuild: { external: native.external } },
  logging: { retention: settings.logRetention },
});

bucket.notify({
  notifications: [
    {
      name: "CorpusChanged",
      function: reindex.arn,
      events: [...REINDEX_EVENTS],
      filterPrefix: prefixes.corpus,
    },
  ],
});
