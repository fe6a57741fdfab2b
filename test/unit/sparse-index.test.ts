// The snapshot's sparse (BM25) index: file round trip, scores against a direct evaluation of the
// BM25 formula, filters, statistics for the reranker, and rejection of damaged files.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ANSERINI_BM25, analyze } from "../../shared/core/analyzer.ts";
import { SnapshotInvalidError, ValidationError } from "../../shared/core/errors.ts";
import {
  analyzerFromDescription,
  describeAnalyzer,
  openSparseIndex,
  SparseIndexBuilder,
  sparseTerms,
} from "../../shared/core/sparse-index.ts";
import { topK } from "../../shared/core/top-k.ts";

function build(texts: string[], opts?: ConstructorParameters<typeof SparseIndexBuilder>[0]) {
  const b = new SparseIndexBuilder(opts);
  for (const t of texts) b.add(t);
  const bytes = b.finish();
  return { bytes, info: b.info("sparse.bin", bytes.byteLength), index: openSparseIndex(bytes, opts) };
}

/** BM25 written out directly from its definition, over analysed texts. */
function referenceScores(texts: string[], query: string, { k1, b } = ANSERINI_BM25): Map<number, number> {
  const docs = texts.map((t) => analyze(t));
  const nonEmpty = docs.filter((d) => d.length > 0);
  const N = nonEmpty.length;
  const avgdl = nonEmpty.reduce((a, d) => a + d.length, 0) / Math.max(1, N);
  const out = new Map<number, number>();
  const qtf = new Map<string, number>();
  for (const t of analyze(query)) qtf.set(t, (qtf.get(t) ?? 0) + 1);
  for (const [term, count] of qtf) {
    const df = docs.filter((d) => d.includes(term)).length;
    if (df === 0) continue;
    const idf = Math.log(1 + (N - df + 0.5) / (df + 0.5));
    docs.forEach((d, i) => {
      const tf = d.filter((x) => x === term).length;
      if (tf === 0) return;
      const norm = k1 * (1 - b + (b * d.length) / avgdl);
      out.set(i, (out.get(i) ?? 0) + (count * idf * tf * (k1 + 1)) / (tf + norm));
    });
  }
  return out;
}

const corpus = [
  "Snapshots are published by writing the files first and flipping the LATEST pointer last.",
  "The reranker reads the query and each candidate passage together.",
  "A published snapshot is verified with sha256 before it is swapped in.",
  "",
  "Cold starts load the snapshot from S3 into memory; the pointer names the version.",
  "Quokka xylophone festival: an unusual document with rare words.",
];

describe("sparse index", () => {
  it("round-trips through its file and scores exactly like the BM25 formula", () => {
    const { index, info } = build(corpus);
    expect(index.count).toBe(corpus.length);
    expect(index.documentCount).toBe(5);
    expect(info).toMatchObject({ format: "bm25-v1", passages: 6, documents: 5, params: ANSERINI_BM25 });
    for (const q of ["how are snapshots published", "pointer", "quokka festival", "the of"]) {
      const got = index.search(q, 10);
      const want = referenceScores(corpus, q);
      expect(new Map(got.ordinals.map((o, i) => [o, got.scores[i]]))).toEqual(
        new Map([...want].map(([o, s]) => [o, expect.closeTo(s, 12)])),
      );
      expect(got.matched).toBe(want.size);
      // best first, ties by lower ordinal
      const order = [...want].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([o]) => o);
      expect(got.ordinals).toEqual(order);
    }
    expect(index.search("quokka xylophone", 1).ordinals).toEqual([5]);
  });

  it("equals the reference on random corpora (property)", () => {
    const words = ["wing", "flow", "shock", "layer", "boundary", "heat", "the", "of", "nozzle", "jet"];
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.constantFrom(...words), { maxLength: 12 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.constantFrom(...words), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 50 }),
        (docs, q, k) => {
          const texts = docs.map((d) => d.join(" "));
          const query = q.join(" ");
          const got = build(texts).index.search(query, k);
          const want = [...referenceScores(texts, query)].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, k);
          expect(got.ordinals).toEqual(want.map(([o]) => o));
          for (const [i, s] of got.scores.entries()) expect(s).toBeCloseTo(want[i][1], 10);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("returns up to k passages the filter accepts", () => {
    const { index } = build(corpus);
    const all = index.search("snapshot pointer", 10);
    expect(all.ordinals.length).toBeGreaterThan(2);
    const odd = index.search("snapshot pointer", 10, (o) => o % 2 === 0);
    expect(odd.ordinals).toEqual(all.ordinals.filter((o) => o % 2 === 0));
    expect(index.search("snapshot pointer", 1, (o) => o === 4).ordinals).toEqual([4]);
    // the scratch accumulator is clean after a filter that throws
    expect(() =>
      index.search("snapshot", 3, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(index.search("snapshot pointer", 10)).toEqual(all);
  });

  it("gives the query's corpus statistics", () => {
    const { index } = build(corpus);
    const stats = index.termStatistics("How are snapshots published? snapshots!");
    expect(stats).toEqual({
      documents: 5,
      average_length: index.averageLength,
      document_frequencies: { how: 0, snapshot: 3, publish: 2 },
    });
    expect(index.termStatistics("zebra").document_frequencies).toEqual({ zebra: 0 });
    expect(index.documentFrequency("pointer")).toBe(2);
    expect(index.idf("zebra")).toBe(0);
  });

  it("keeps its dictionary sorted and finds non-ASCII terms", () => {
    const { bytes, index } = build(["Zürich über alles", "zebra", "ärger", "aaa"]);
    const terms = sparseTerms(bytes);
    const enc = new TextEncoder();
    const sorted = [...terms].sort((a, b) => Buffer.compare(enc.encode(a), enc.encode(b)));
    expect(terms).toEqual(sorted);
    expect(index.search("über", 5).ordinals).toEqual([0]);
    expect(index.search("ärger", 5).ordinals).toEqual([2]);
  });

  it("handles an empty corpus and a corpus of empty texts", () => {
    expect(build([]).index.search("x", 3).ordinals).toEqual([]);
    const empties = build(["", "the of"]);
    expect(empties.index.documentCount).toBe(0);
    expect(empties.index.search("the", 3).ordinals).toEqual([]);
  });

  it("rejects damaged files with SnapshotInvalidError", () => {
    const { bytes } = build(corpus);
    const cases: Array<[string, (b: Uint8Array) => Uint8Array]> = [
      ["magic", (b) => b.map((x, i) => (i === 0 ? 0 : x))],
      ["truncated", (b) => b.slice(0, b.length - 3)],
      ["longer", (b) => Uint8Array.from([...b, 0, 0])],
      ["length table", (b) => b.map((x, i) => (i === 32 ? x + 1 : x))],
      ["short", () => new Uint8Array(10)],
    ];
    for (const [, damage] of cases) expect(() => openSparseIndex(damage(bytes))).toThrow(SnapshotInvalidError);
    // a flipped postings byte is caught when that term is read (never an out-of-range passage)
    const flipped = Uint8Array.from(bytes);
    flipped[flipped.length - 2] = 0xff;
    flipped[flipped.length - 1] = 0xff;
    const index = openSparseIndex(flipped);
    expect(() => {
      for (const t of sparseTerms(bytes)) index.search(t, 3);
    }).toThrow(SnapshotInvalidError);
  });

  it("records its analyzer and refuses one it cannot record or read", () => {
    expect(describeAnalyzer()).toMatchObject({ stop_words: "lucene-english-33", stemmer: "porter" });
    expect(analyzerFromDescription(describeAnalyzer({ stopWords: false, stem: false }))).toEqual({
      stopWords: false,
      stem: false,
    });
    expect(() => describeAnalyzer({ stopWords: new Set(["x"]) })).toThrow(ValidationError);
    expect(() => analyzerFromDescription({ ...describeAnalyzer(), name: "other" } as never)).toThrow(
      SnapshotInvalidError,
    );
    expect(() => new SparseIndexBuilder({ params: { k1: 1, b: 3 } })).toThrow(ValidationError);
  });
});

describe("topK", () => {
  it("equals a full sort for ids in any order, ties by lower id (property)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 250 }),
        fc.integer({ min: 0, max: 1000 }),
        (ids, k, seed) => {
          const scores = Float64Array.from(ids, (id) => ((id * 7 + seed) % 5) / 4);
          const want = ids
            .map((id, i) => ({ id, s: scores[i] }))
            .sort((a, b) => b.s - a.s || a.id - b.id)
            .slice(0, k);
          const got = topK(scores, k, Int32Array.from(ids));
          expect(got.ordinals).toEqual(want.map((w) => w.id));
          expect(got.scores).toEqual(want.map((w) => w.s));
        },
      ),
      { numRuns: 200 },
    );
  });
});
