// Shared pieces of the reindex tests: an embedder wrapper that counts (and can fail), a reader of
// the live snapshot, and the reindex options for the real parts (hashing embedder, faiss builder).
import { corpusStatsBuilder } from "../../shared/adapters/embedders.ts";
import { faissIndexBuilder } from "../../shared/adapters/faiss-index.ts";
import { createHashingEmbedder } from "../../shared/adapters/hash-embedder.ts";
import { EmbedderUnavailableError } from "../../shared/core/errors.ts";
import type { Embedder, ObjectStore } from "../../shared/core/ports.ts";
import { readPointer } from "../../shared/core/publish.ts";
import type { ReindexManifest, ReindexOptions } from "../../shared/core/reindex.ts";
import { openPassageStore, PASSAGES_FILE, parseManifest, snapshotFileKey } from "../../shared/core/snapshot.ts";
import type { LogFn } from "../../shared/core/snapshot-loader.ts";

export const DIMS = 256;

export interface CountingEmbedder extends Embedder {
  /** Texts passed to embedDocuments. */
  readonly embeddedTexts: string[];
  /** Fail (EmbedderUnavailableError) once this many texts were embedded; null = never. */
  failAfter: number | null;
}

/** The hashing embedder, counting what it embeds; usage().calls counts requests like a paid API. */
export function countingEmbedder(dimensions = DIMS): CountingEmbedder {
  const inner = createHashingEmbedder({ dimensions });
  const embeddedTexts: string[] = [];
  let calls = 0;
  const self: CountingEmbedder = {
    identity: inner.identity,
    embeddedTexts,
    failAfter: null,
    async embedDocuments(texts) {
      if (self.failAfter !== null && embeddedTexts.length + texts.length > self.failAfter) {
        throw new EmbedderUnavailableError("embedding service unreachable (test)", new Error("ECONNREFUSED"));
      }
      calls++;
      embeddedTexts.push(...texts);
      return inner.embedDocuments(texts);
    },
    embedQuery: (text) => inner.embedQuery(text),
    usage: () => ({ calls, texts: embeddedTexts.length, tokens: 0 }),
  };
  return self;
}

export interface LogLine {
  level: string;
  msg: string;
  data?: Record<string, unknown>;
}

export function captureLog(): { log: LogFn; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: (level, msg, data) => lines.push({ level, msg, data }) };
}

export function reindexOptions(
  store: ObjectStore,
  embedder: Embedder,
  over: Partial<ReindexOptions> = {},
): ReindexOptions {
  return {
    store,
    corpusPrefix: "corpus/",
    indexPrefix: "index/",
    cachePrefix: "cache/embeddings/",
    embedder,
    indexBuilder: faissIndexBuilder,
    indexType: "flat",
    chunking: { maxTokens: 48, overlap: 8 },
    corpusStats: corpusStatsBuilder,
    retryDelayMs: 1,
    ...over,
  };
}

export interface LiveSnapshotView {
  version: string;
  etag: string;
  manifest: ReindexManifest;
  docIds: string[];
  passageIds: string[];
  passageTexts: string[];
}

/** The live snapshot as published (pointer → manifest → passage store), or null. */
export async function liveSnapshot(store: ObjectStore, indexPrefix = "index/"): Promise<LiveSnapshotView | null> {
  const state = await readPointer(store, indexPrefix);
  if (!state) return null;
  const manifest = parseManifest((await store.get(state.pointer.manifest_key))!.body) as ReindexManifest;
  const passages = openPassageStore(
    (await store.get(snapshotFileKey(indexPrefix, manifest.version, PASSAGES_FILE)))!.body,
  );
  const passageIds: string[] = [];
  const passageTexts: string[] = [];
  const docs = new Set<string>();
  for (let i = 0; i < passages.count; i++) {
    const p = passages.get(i);
    passageIds.push(p.id);
    passageTexts.push(p.text);
    docs.add(p.docId);
  }
  return { version: manifest.version, etag: state.etag, manifest, docIds: [...docs].sort(), passageIds, passageTexts };
}

export const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

const WORDS =
  "river mountain glacier harbor meadow canyon volcano desert forest island lagoon prairie tundra reef delta plateau " +
  "comet nebula quasar pulsar galaxy orbit eclipse meteor asteroid crater aurora zenith horizon equinox solstice";

/** A document about `topic` with a few sentences (deterministic). */
export function doc(id: string, topic: string, sentences = 3): { id: string; text: string } {
  const words = WORDS.split(" ");
  const parts: string[] = [];
  for (let s = 0; s < sentences; s++) {
    const a = words[(id.length * 7 + s * 5) % words.length];
    const b = words[(id.charCodeAt(id.length - 1) + s * 3) % words.length];
    parts.push(`The ${topic} report ${id} section ${s} mentions ${a} and ${b} near the ${topic} station.`);
  }
  return { id, text: parts.join(" ") };
}
