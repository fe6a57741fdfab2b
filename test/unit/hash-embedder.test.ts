import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  HASHING_MODEL,
  type HashingCorpusStats,
  HashingStatsBuilder,
  computeHashingStats,
  createHashingEmbedder,
  hashingTerms,
  murmur3,
  parseHashingStats,
} from "../../shared/adapters/hash-embedder.ts";
import { dot } from "../../shared/core/embedding.ts";
import { SnapshotInvalidError, ValidationError } from "../../shared/core/errors.ts";

const norm = (v: Float32Array) => Math.sqrt(dot(v, v));
const cos = (a: Float32Array, b: Float32Array) => dot(a, b) / (norm(a) * norm(b));

describe("hashingTerms", () => {
  it("lower-cases, folds accents, drops stop words and single letters, strips plural -s", () => {
    expect(hashingTerms("The Wings of a Café, and Naïve FLUTTER tests!").terms).toEqual([
      "wing",
      "cafe",
      "naive",
      "flutter",
      "test",
    ]);
    expect(hashingTerms("bodies wings cases status glass 1960 3 x").terms).toEqual([
      "body",
      "wing",
      "case",
      "status",
      "glass",
      "1960",
      "3",
    ]);
  });

  it("joins bigrams only across whitespace, hyphens and slashes", () => {
    const { terms, joins } = hashingTerms("wind tunnel. flow of air, high-speed lift/drag");
    expect(terms).toEqual(["wind", "tunnel", "flow", "air", "high", "speed", "lift", "drag"]);
    expect(joins).toEqual([false, true, false, false, false, true, true, true]);
  });
});

describe("murmur3", () => {
  it("is deterministic, seed-dependent and spreads words evenly over buckets", () => {
    expect(murmur3("aerofoil")).toBe(murmur3("aerofoil"));
    expect(murmur3("aerofoil", 1)).not.toBe(murmur3("aerofoil"));
    expect(murmur3("ab")).not.toBe(murmur3("ba"));
    const buckets = new Array(64).fill(0);
    for (let i = 0; i < 64_000; i++) buckets[murmur3(`word${i}`) % 64]++;
    // 1000 expected per bucket; a poor hash of such similar keys leaves buckets far off.
    for (const c of buckets) expect(Math.abs(c - 1000)).toBeLessThan(150);
    let top = 0;
    for (let i = 0; i < 10_000; i++) top += murmur3(`t${i}`) >>> 31;
    expect(Math.abs(top - 5000)).toBeLessThan(250); // the sign bit is balanced
  });
});

describe("createHashingEmbedder", () => {
  it("reports its identity and gives deterministic unit vectors with signed components", async () => {
    const e = createHashingEmbedder({ dimensions: 256 });
    expect(e.identity).toEqual({ kind: "hashing", model: HASHING_MODEL, dimensions: 256, normalized: true });
    const [a, b] = await e.embedDocuments(["Supersonic flow over a swept wing", "Supersonic flow over a swept wing"]);
    const c = (
      await createHashingEmbedder({ dimensions: 256 }).embedDocuments(["Supersonic flow over a swept wing"])
    )[0];
    expect(a).toHaveLength(256);
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).toEqual(Array.from(c));
    const many = await e.embedDocuments(Array.from({ length: 50 }, (_, i) => `term${i} other${i} word${i}`));
    expect(many.some((v) => v.some((x) => x < 0))).toBe(true);
    expect(many.some((v) => v.some((x) => x > 0))).toBe(true);
  });

  it("ignores stop words, case, accents and plural -s; word order matters through bigrams", async () => {
    const e = createHashingEmbedder({ dimensions: 4096 });
    const [w1, w2, o1, o2, sep, joined] = await e.embedDocuments([
      "The Wings of the CAFÉS",
      "wing. cafe",
      "wind tunnel",
      "tunnel wind",
      "flow of air",
      "flow air",
    ]);
    expect(cos(w1, w2)).toBeCloseTo(1, 5);
    expect(cos(o1, o2)).toBeLessThan(0.99); // different bigram
    expect(cos(o1, o2)).toBeGreaterThan(0.7); // same unigrams
    expect(cos(sep, joined)).toBeLessThan(0.99); // no bigram across a stop word
  });

  it("gives an empty or stop-word-only text a zero vector", async () => {
    const e = createHashingEmbedder({ dimensions: 64 });
    expect(norm(await e.embedQuery(""))).toBe(0);
    expect(norm((await e.embedDocuments(["the of and"]))[0])).toBe(0);
  });

  it("keeps document vectors independent of corpus statistics; weights queries by IDF", async () => {
    const corpus = ["flutter analysis", "wing wing wing wing", "wing design", "wing loads", "wing tips"];
    const stats = computeHashingStats(corpus, 1024);
    const plain = createHashingEmbedder({ dimensions: 1024 });
    const weighted = createHashingEmbedder({ dimensions: 1024, stats });
    const docsPlain = await plain.embedDocuments(corpus);
    const docsWeighted = await weighted.embedDocuments(corpus);
    expect(docsWeighted.map((v) => Array.from(v))).toEqual(docsPlain.map((v) => Array.from(v)));

    // "wing" is in four passages, "flutter" in one: IDF makes the rare term decide the ranking,
    // while plain TF prefers the passage that is all "wing".
    const q = "wing flutter";
    const best = (qv: Float32Array) => docsPlain.map((d, i) => [dot(qv, d), i]).sort((a, b) => b[0] - a[0])[0][1];
    expect(best(await weighted.embedQuery(q))).toBe(0);
    expect(best(await plain.embedQuery(q))).toBe(1);
  });

  it("counts texts in usage() and honours an aborted signal", async () => {
    const e = createHashingEmbedder({ dimensions: 32 });
    const progress: number[] = [];
    await e.embedDocuments(["a b", "c d", "e f"], { onProgress: (d) => progress.push(d) });
    await e.embedQuery("q");
    expect(e.usage()).toEqual({ calls: 0, texts: 4, tokens: 0 });
    expect(progress.at(-1)).toBe(3);
    const ac = new AbortController();
    ac.abort(new Error("stop"));
    await expect(e.embedDocuments(["x"], { signal: ac.signal })).rejects.toThrow("stop");
    await expect(e.embedQuery("x", { signal: ac.signal })).rejects.toThrow("stop");
  });

  it.each([0, 15, 100.5, 2 ** 21])("rejects dimensions=%s", (d) => {
    expect(() => createHashingEmbedder({ dimensions: d })).toThrow(ValidationError);
  });
});

describe("hashing corpus statistics", () => {
  it("counts each passage once per bucket and survives a JSON round trip", () => {
    const b = new HashingStatsBuilder(64);
    b.add("wing wing wing");
    b.add("wing flutter");
    b.add("");
    const stats = b.finish();
    expect(stats.n).toBe(3);
    expect(stats.model).toBe(HASHING_MODEL);
    expect(stats.df).toHaveLength(64);
    expect(Math.max(...stats.df)).toBe(2); // "wing" bucket
    // {wing, "wing wing"} + {wing, flutter, "wing flutter"}, no collisions among these in 64 buckets
    expect(stats.df.reduce((a, x) => a + x, 0)).toBe(2 + 3);
    const back = JSON.parse(JSON.stringify(stats));
    expect(parseHashingStats(back, 64)).toEqual(stats);
    expect(computeHashingStats(["wing wing wing", "wing flutter", ""], 64)).toEqual(stats);
  });

  it("rejects statistics that do not fit the embedder with SnapshotInvalidError", () => {
    const ok = computeHashingStats(["a b c"], 32);
    const bad: unknown[] = [
      null,
      "x",
      { ...ok, model: "other" },
      { ...ok, dimensions: 64 },
      { ...ok, df: ok.df.slice(1) },
      { ...ok, n: -1 },
      { ...ok, df: ok.df.map(() => 5) }, // df > n
    ];
    for (const s of bad) expect(() => parseHashingStats(s, 32)).toThrow(SnapshotInvalidError);
    expect(() => createHashingEmbedder({ dimensions: 64, stats: ok as HashingCorpusStats })).toThrow(
      SnapshotInvalidError,
    );
  });
});

// ---------- retrieval quality on real test collections ----------

const dataDir = resolve(import.meta.dirname, "../../../shared/data");

interface Collection {
  docs: Array<{ id: string; text: string }>;
  queries: Array<{ id: string; text: string }>;
  qrels: Map<string, Map<string, number>>;
}

function loadCollection(name: string): Collection | null {
  const dir = resolve(dataDir, name);
  if (!existsSync(resolve(dir, "corpus.jsonl"))) return null;
  const rows = (file: string) =>
    readFileSync(resolve(dir, file), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
  const docs = rows("corpus.jsonl")
    .map((r) => ({ id: r._id as string, text: [r.title, r.text].filter((x: string) => x?.trim()).join("\n\n") }))
    .filter((d) => d.text.trim());
  const qrels = new Map<string, Map<string, number>>();
  for (const line of readFileSync(resolve(dir, "qrels.tsv"), "utf8").trim().split("\n").slice(1)) {
    const [q, d, score] = line.split("\t");
    if (Number(score) <= 0) continue;
    if (!qrels.has(q)) qrels.set(q, new Map());
    qrels.get(q)!.set(d, Number(score));
  }
  const queries = rows("queries.jsonl")
    .map((r) => ({ id: r._id as string, text: r.text as string }))
    .filter((q) => qrels.has(q.id));
  return { docs, queries, qrels };
}

function ndcgAt10(ranked: string[], rel: Map<string, number>): number {
  const dcg = ranked.slice(0, 10).reduce((s, d, i) => s + (rel.get(d) ?? 0) / Math.log2(i + 2), 0);
  const ideal = [...rel.values()].sort((a, b) => b - a).slice(0, 10);
  return dcg / ideal.reduce((s, g, i) => s + g / Math.log2(i + 2), 0);
}

/** Mean nDCG@10 of exhaustive search: every document scored, best 10 kept. */
function meanNdcg(c: Collection, scoreAll: (query: string) => ArrayLike<number>): number {
  let sum = 0;
  for (const q of c.queries) {
    const scores = scoreAll(q.text);
    const ranked = c.docs
      .map((_d, i) => [scores[i], i] as const)
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .slice(0, 10)
      .map(([, i]) => c.docs[i].id);
    sum += ndcgAt10(ranked, c.qrels.get(q.id)!);
  }
  return sum / c.queries.length;
}

/** Plain cosine TF-IDF over the same terms (exact vocabulary, unigrams, (1+log tf)·idf on both sides), sparse. */
function tfidfNdcg(c: Collection): number {
  const vocab = new Map<string, number>();
  // Query terms outside the corpus vocabulary cannot match and do not change the ranking.
  const tf = (text: string, grow: boolean) => {
    const m = new Map<number, number>();
    for (const t of hashingTerms(text).terms) {
      if (!vocab.has(t) && grow) vocab.set(t, vocab.size);
      const k = vocab.get(t);
      if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
    }
    return m;
  };
  const docTf = c.docs.map((d) => tf(d.text, true));
  const df = new Float64Array(vocab.size);
  for (const m of docTf) for (const k of m.keys()) df[k]++;
  const n = c.docs.length;
  const weigh = (m: Map<number, number>) => {
    let sq = 0;
    for (const [k, f] of m) {
      const w = (1 + Math.log(f)) * (Math.log((n + 1) / (df[k] + 1)) + 1);
      m.set(k, w);
      sq += w * w;
    }
    for (const [k, w] of m) m.set(k, w / Math.sqrt(sq));
    return m;
  };
  const docVecs = docTf.map(weigh);
  return meanNdcg(c, (text) => {
    const q = weigh(tf(text, false));
    return docVecs.map((d) => {
      let s = 0;
      for (const [k, w] of q) s += w * (d.get(k) ?? 0);
      return s;
    });
  });
}

/** Expected nDCG@10 of a random ranking, averaged over seeded shuffles. */
function randomNdcg(c: Collection): number {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  let sum = 0;
  const rounds = 20;
  for (let r = 0; r < rounds; r++) {
    for (const q of c.queries) {
      const ids = c.docs.map((d) => d.id);
      for (let i = ids.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [ids[i], ids[j]] = [ids[j], ids[i]];
      }
      sum += ndcgAt10(ids, c.qrels.get(q.id)!);
    }
  }
  return sum / (rounds * c.queries.length);
}

async function hashingNdcg(c: Collection, dimensions: number): Promise<number> {
  const stats = computeHashingStats(
    c.docs.map((d) => d.text),
    dimensions,
  );
  const e = createHashingEmbedder({ dimensions, stats });
  const docVecs = await e.embedDocuments(c.docs.map((d) => d.text));
  const queryVecs = new Map<string, Float32Array>();
  for (const q of c.queries) queryVecs.set(q.text, await e.embedQuery(q.text));
  // Exact inner product over the dense vectors, as a Flat index would compute it.
  return meanNdcg(c, (t) => docVecs.map((v) => dot(queryVecs.get(t)!, v)));
}

describe.each(["adi", "cranfield"])("retrieval quality on %s (exact inner product, nDCG@10)", (name) => {
  const c = loadCollection(name);
  it.skipIf(!c)(
    `hashing-2048 is far above random and close to plain TF-IDF${c ? "" : ` (skipped: ${dataDir}/${name} is absent)`}`,
    async () => {
      const col = c!;
      const hashing = await hashingNdcg(col, 2048);
      const tfidf = tfidfNdcg(col);
      const random = randomNdcg(col);
      console.log(
        `${name}: ${col.docs.length} docs, ${col.queries.length} queries — nDCG@10 hashing-2048 ${hashing.toFixed(4)}, ` +
          `TF-IDF ${tfidf.toFixed(4)} (ratio ${(hashing / tfidf).toFixed(3)}), random ${random.toFixed(4)}`,
      );
      expect(hashing).toBeGreaterThan(3 * random);
      expect(hashing).toBeGreaterThan(0.9 * tfidf);
    },
  );
});
