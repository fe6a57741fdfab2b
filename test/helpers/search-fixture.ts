// A small corpus, a deterministic bag-of-words embedder and snapshot builders for the search
// tests. The embedder is ours (feature hashing of lower-cased words, L2-normalised), so
// first-stage rankings are lexical and predictable; the index is either a brute-force JS index
// (unit tests) or a real faiss-node IndexFlatIP (integration tests, via the real adapter).
import { openSparseIndex, SparseIndexBuilder } from "../../shared/core/sparse-index.ts";
import type { Embedder, LoadedSnapshot, PassageStore, SnapshotManifest, VectorIndex } from "../../shared/core/ports.ts";
import type { EmbedderIdentity, Passage, RerankRequest, RerankResponse } from "../../shared/core/types.ts";

export const BOW_DIMENSIONS = 256;
export const bowIdentity: EmbedderIdentity = {
  kind: "hashing",
  model: "test-bow-256",
  dimensions: BOW_DIMENSIONS,
  normalized: true,
};

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function bowVector(text: string, dimensions = BOW_DIMENSIONS): Float32Array {
  const v = new Float32Array(dimensions);
  for (const w of text.toLowerCase().match(/[a-z0-9]+/g) ?? []) v[fnv1a(w) % dimensions] += 1;
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i] /= norm;
  return v;
}

export function bowEmbedder(identity: EmbedderIdentity = bowIdentity): Embedder & { queries: string[] } {
  const queries: string[] = [];
  return {
    identity,
    queries,
    async embedDocuments(texts) {
      return texts.map((t) => bowVector(t, identity.dimensions));
    },
    async embedQuery(text) {
      queries.push(text);
      return bowVector(text, identity.dimensions);
    },
    usage: () => ({ calls: 0, texts: queries.length, tokens: 0 }),
  };
}

interface Doc {
  id: string;
  source: string;
  metadata: Record<string, unknown>;
  passages: string[];
}

/** Ten documents, some with several passages; sources and metadata for the filter tests. */
export const DOCS: Doc[] = [
  {
    id: "cats",
    source: "kb/animals/cats.md",
    metadata: { lang: "en", topic: "animals", tags: ["pets", "mammals"] },
    passages: [
      "Cats are small domesticated carnivorous mammals kept as pets.",
      "A cat purrs when content and sleeps for most of the day.",
      "Cats hunt mice and birds and groom their fur with rough tongues.",
    ],
  },
  {
    id: "dogs",
    source: "kb/animals/dogs.md",
    metadata: { lang: "en", topic: "animals", tags: ["pets"] },
    passages: [
      "Dogs are loyal pets that bark, fetch and guard the house.",
      "A dog needs daily walks and likes to play fetch.",
    ],
  },
  {
    id: "lions",
    source: "kb/animals/lions.md",
    metadata: { lang: "en", topic: "animals", tags: ["wild", "mammals"] },
    passages: ["Lions are large wild cats living in prides on the African savanna."],
  },
  {
    id: "rust",
    source: "kb/code/rust.md",
    metadata: { lang: "en", topic: "code" },
    passages: ["Rust is a systems programming language focused on memory safety without garbage collection."],
  },
  {
    id: "python",
    source: "kb/code/python.md",
    metadata: { lang: "en", topic: "code" },
    passages: ["Python is a dynamic programming language popular for data science and scripting."],
  },
  {
    id: "bread",
    source: "blog/food/bread.md",
    metadata: { lang: "en", topic: "food" },
    passages: ["Bake bread with flour, water, salt and yeast; let the dough rise before baking."],
  },
  {
    id: "coffee",
    source: "blog/food/coffee.md",
    metadata: { lang: "en", topic: "food" },
    passages: ["Brew coffee with freshly ground beans and water just below boiling."],
  },
  {
    id: "katzen",
    source: "kb/animals/katzen.md",
    metadata: { lang: "de", topic: "animals" },
    passages: ["Katzen sind kleine Haustiere; cats in German are called Katzen."],
  },
  {
    id: "tea",
    source: "blog/food/tea.md",
    metadata: { lang: "en", topic: "food" },
    passages: ["Green tea is brewed with water cooler than for black tea."],
  },
  {
    id: "sql",
    source: "kb/code/sql.md",
    metadata: { lang: "en", topic: "code", version: 2 },
    passages: ["SQL is a query language for relational databases and tables."],
  },
];

export function corpusPassages(docs: Doc[] = DOCS): Passage[] {
  const out: Passage[] = [];
  for (const d of docs) {
    let offset = 0;
    d.passages.forEach((text, i) => {
      out.push({
        id: `${d.id}#${i}`,
        docId: d.id,
        text,
        source: d.source,
        metadata: d.metadata,
        start: offset,
        end: offset + text.length,
      });
      offset += text.length + 1;
    });
  }
  return out;
}

/** Brute-force inner-product index in plain JS; counts its searches (widening tests). */
export function bruteForceIndex(vectors: Float32Array[], dimensions: number): VectorIndex & { searches: number[] } {
  const searches: number[] = [];
  return {
    dimensions,
    count: vectors.length,
    searches,
    search(query, k) {
      searches.push(k);
      const scored = vectors.map((v, ordinal) => {
        let s = 0;
        for (let i = 0; i < dimensions; i++) s += v[i] * query[i];
        return { ordinal, s: Math.fround(s) };
      });
      scored.sort((a, b) => b.s - a.s || a.ordinal - b.ordinal);
      const top = scored.slice(0, Math.min(k, vectors.length));
      return { ordinals: top.map((x) => x.ordinal), scores: top.map((x) => x.s) };
    },
  };
}

export function passageStore(passages: Passage[]): PassageStore {
  return { count: passages.length, get: (i) => passages[i] };
}

export function manifestFor(
  version: string,
  passages: Passage[],
  identity: EmbedderIdentity = bowIdentity,
): SnapshotManifest {
  return {
    format_version: 1,
    version,
    created_at: new Date(0).toISOString(),
    embedder: identity,
    metric: "inner_product",
    index_type: "flat",
    counts: { documents: new Set(passages.map((p) => p.docId)).size, passages: passages.length },
    files: {},
  };
}

/** A loaded snapshot over the brute-force index. */
export function jsSnapshot(
  passages: Passage[] = corpusPassages(),
  version = "v-test-1",
  opts: { sparse?: boolean } = {},
): LoadedSnapshot & { index: ReturnType<typeof bruteForceIndex> } {
  const vectors = passages.map((p) => bowVector(p.text));
  const manifest = manifestFor(version, passages);
  let sparse: LoadedSnapshot["sparse"] = null;
  if (opts.sparse) {
    const builder = new SparseIndexBuilder();
    for (const p of passages) builder.add(p.text);
    const bytes = builder.finish();
    manifest.sparse = builder.info("sparse.bin", bytes.byteLength);
    sparse = openSparseIndex(bytes);
  }
  return {
    version,
    manifest,
    index: bruteForceIndex(vectors, BOW_DIMENSIONS),
    passages: passageStore(passages),
    sparse,
    loadedAt: Date.now(),
  };
}

/**
 * A reranker answer in our service's shape, scoring each document with `score(text)`: results
 * sorted by score, as every rerank API returns them.
 */
export function rerankAnswer(req: RerankRequest, score: (text: string) => number, tokens = 0): RerankResponse {
  const texts = req.documents.map((d) => (typeof d === "string" ? d : d.text));
  const results = texts
    .map((t, index) => ({ index, relevance_score: score(t), logit: score(t) }))
    .sort((a, b) => b.relevance_score - a.relevance_score);
  return {
    results,
    meta: {
      model: "test",
      provider: "test",
      pairs: texts.length,
      tokens,
      truncated: 0,
      timings: { tokenize_ms: 0, inference_ms: 0, total_ms: 0 },
    },
  };
}

/** A word-overlap "cross-encoder": fraction of query words present, plus a small length prior. Deterministic. */
export function overlapScore(query: string): (text: string) => number {
  const q = new Set(query.toLowerCase().match(/[a-z0-9]+/g) ?? []);
  return (text) => {
    const words = text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
    const hits = new Set(words.filter((w) => q.has(w))).size;
    return hits / Math.max(1, q.size) + 1 / (10 + words.length);
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
