// Local files → a published snapshot, through the same build + publish path the reindex function
// uses: documents (shared parser) → passages (CHUNK_TOKENS / CHUNK_OVERLAP) → the configured
// embedder → FAISS (INDEX_TYPE) → buildSnapshot → publishSnapshot (pointer flipped last) → prune.
import { computeCorpusStats, createEmbedder, describeEmbedderChoice } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { documentsFromFiles, listLocalFiles } from "../../shared/adapters/file-documents.ts";
import { buildSnapshot } from "../../shared/core/build.ts";
import { chunkDocuments } from "../../shared/core/chunking.ts";
import type { Config } from "../../shared/core/config.ts";
import type { SkippedInput } from "../../shared/core/documents.ts";
import { describeIdentity } from "../../shared/core/embedding.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { EmbedderUsage, ObjectStore, StoreDescription } from "../../shared/core/ports.ts";
import { publishSnapshot, pruneSnapshots } from "../../shared/core/publish.ts";
import type { EmbedderIdentity, SourceDocument } from "../../shared/core/types.ts";
import type { Progress } from "./output.ts";

export interface IndexFilesOptions {
  cfg: Config;
  store: ObjectStore;
  progress?: Progress;
  log?: (line: string) => void;
  /** Snapshot versions kept after publishing (default 3). */
  keep?: number;
}

export interface IndexFilesResult {
  version: string;
  previous_version: string | null;
  files: number;
  documents: number;
  passages: number;
  skipped: SkippedInput[];
  embedder: EmbedderIdentity;
  embedder_reason: string;
  embedding_usage: EmbedderUsage;
  index_type: string;
  /** Index files of the snapshot (INDEX_SHARDS). */
  index_shards: number;
  store: StoreDescription;
  index_prefix: string;
  pruned: string[];
  timings: { read_ms: number; build_ms: number; publish_ms: number; total_ms: number };
}

const ms = (from: number) => Math.round(performance.now() - from);

export async function indexLocalFiles(paths: string[], opts: IndexFilesOptions): Promise<IndexFilesResult> {
  const { cfg, store } = opts;
  const log = opts.log ?? (() => {});
  if (paths.length === 0) throw new ValidationError("give at least one file or folder to index");
  const t0 = performance.now();

  const files = await listLocalFiles(paths);
  const skipped: SkippedInput[] = [];
  const docs: SourceDocument[] = [];
  const readBar = opts.progress?.bar("read", files.length, "files");
  let filesRead = 0;
  for await (const doc of documentsFromFiles(paths, {
    onSkip: (s) => skipped.push(s),
    onFile: () => readBar?.update(++filesRead),
  })) {
    docs.push(doc);
  }
  readBar?.update(files.length);
  // Documents of different files may share an id (two JSONL files both with "1"); the last one wins, as in one file.
  const byId = new Map<string, SourceDocument>();
  for (const d of docs) {
    if (byId.has(d.id))
      skipped.push({ key: d.source ?? d.id, reason: `duplicate id "${d.id}": replaced by a later file` });
    byId.set(d.id, d);
  }
  if (byId.size === 0) {
    opts.progress?.stop();
    const why = skipped.length
      ? `; skipped: ${skipped.map((s) => `${s.key}${s.line ? `:${s.line}` : ""} (${s.reason})`).join(", ")}`
      : "";
    throw new ValidationError(`no documents found in ${paths.join(", ")} (${files.length} files)${why}`);
  }
  const passages = chunkDocuments(byId.values(), { maxTokens: cfg.chunkTokens, overlap: cfg.chunkOverlap });
  const readMs = ms(t0);

  const choice = describeEmbedderChoice(cfg);
  const embedder = await createEmbedder(cfg);
  log(`embedder: ${describeIdentity(embedder.identity)} (${choice.reason})`);
  const corpusStats = computeCorpusStats(
    embedder.identity,
    passages.map((p) => p.text),
  );

  const t1 = performance.now();
  const embedBar = opts.progress?.bar("embed", passages.length, "passages");
  const indexBar = opts.progress?.bar("index", passages.length, "passages");
  let embedded = 0;
  const built = await buildSnapshot({
    passages,
    embed: async (texts) => {
      const base = embedded;
      const vectors = await embedder.embedDocuments(texts, { onProgress: (done) => embedBar?.update(base + done) });
      embedded += texts.length;
      embedBar?.update(embedded);
      return vectors;
    },
    embedder: embedder.identity,
    corpusStats,
    indexType: cfg.indexType,
    indexParams: cfg.indexParams,
    sparse: cfg.sparseIndex,
    indexShards: cfg.indexShards,
    indexBuilder: faissIndexBuilder,
    ...(skipped.length ? { report: { skipped } } : {}),
    onProgress: (done) => indexBar?.update(done),
  });
  const buildMs = ms(t1);

  const t2 = performance.now();
  const published = await publishSnapshot(store, {
    indexPrefix: cfg.indexPrefix,
    manifest: built.manifest,
    files: built.files,
  });
  const pruned = await pruneSnapshots(store, cfg.indexPrefix, opts.keep ?? 3);
  const publishMs = ms(t2);
  opts.progress?.stop();

  return {
    version: published.version,
    previous_version: published.previousVersion,
    files: files.length,
    documents: built.manifest.counts.documents,
    passages: built.manifest.counts.passages,
    skipped,
    embedder: embedder.identity,
    embedder_reason: choice.reason,
    embedding_usage: embedder.usage(),
    index_type: built.manifest.index_type,
    index_shards: built.manifest.index_shards?.length ?? 1,
    store: store.describe(),
    index_prefix: cfg.indexPrefix,
    pruned,
    timings: { read_ms: readMs, build_ms: buildMs, publish_ms: publishMs, total_ms: ms(t0) },
  };
}

/** "fs:.data/store" or "s3://bucket (endpoint)" for messages. */
export function describeStore(s: StoreDescription): string {
  if (s.kind === "fs") return `filesystem store ${s.root ?? ""}`.trim();
  return `s3://${s.bucket}${s.endpoint ? ` at ${s.endpoint}` : ""}`;
}
