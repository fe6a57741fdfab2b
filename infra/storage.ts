// One bucket holds everything, split by prefix (infra/config.ts `settings.prefixes`):
//   corpus/            documents; uploads and deletes here trigger a reindex (infra/reindex.ts)
//   index/             FAISS snapshots + the LATEST pointer the search function follows
//   models/            model folders (the reranker reads models/reranker/ by default)
//   cache/embeddings/  embedding cache, keyed by content hash
//   auth/keys/         API key records (hashes only)
// Only index/ and cache/ are written by the service, so writing them never re-triggers a reindex.

// Nothing in a browser talks to the bucket directly, so no CORS rule.
export const bucket = new sst.aws.Bucket("Data", { cors: false });
