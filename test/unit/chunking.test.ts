import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadTokenizer } from "../../shared/adapters/hf-tokenizer.ts";
import { type TokenSpanner, approximateSpanner, chunkDocument, chunkDocuments } from "../../shared/core/chunking.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import type { Passage, SourceDocument } from "../../shared/core/types.ts";

/** FC_RUNS=n runs the properties longer when hunting for counterexamples. */
const runs = (n: number) => Number(process.env.FC_RUNS ?? n);

const pieces = (text: string, spanner: TokenSpanner = approximateSpanner) =>
  spanner.spans(text).map(([a, b]) => text.slice(a, b));

/**
 * A WordPiece-like spanner whose counts grow when a word is cut: the first piece of a word has 2
 * characters, continuation pieces 4, so a slice starting inside a word re-tokenises into more pieces.
 */
const uneven: TokenSpanner = {
  spans(text) {
    const out: Array<[number, number]> = [];
    for (const m of text.matchAll(/[a-z]+|[^\sa-z]/g)) {
      let at = m.index;
      const end = at + m[0].length;
      let first = true;
      while (at < end) {
        const len = first ? 2 : 4;
        out.push([at, Math.min(end, at + len)]);
        at += len;
        first = false;
      }
    }
    return out;
  },
};

/** Checks every documented guarantee of chunkDocument for one document and options. */
function checkPassages(
  doc: SourceDocument,
  passages: Passage[],
  maxTokens: number,
  overlap: number,
  spanner: TokenSpanner,
) {
  const tokens = spanner.spans(doc.text);
  if (tokens.length === 0) {
    expect(passages).toEqual([]);
    return;
  }
  expect(passages.length).toBeGreaterThan(0);
  if (tokens.length <= maxTokens) expect(passages).toHaveLength(1);
  expect(passages[0].start).toBe(tokens[0][0]);
  expect(passages.at(-1)!.end).toBe(tokens.at(-1)![1]);
  passages.forEach((p, i) => {
    expect(p.id).toBe(`${doc.id}#${i}`);
    expect(p.docId).toBe(doc.id);
    expect(p.text).toBe(doc.text.slice(p.start, p.end));
    expect(p.end).toBeGreaterThan(p.start);
    // The passage fits when the model tokenises it on its own, not just by the document's spans.
    expect(spanner.spans(p.text).length).toBeLessThanOrEqual(maxTokens);
    if (i > 0) {
      const prev = passages[i - 1];
      expect(p.start).toBeGreaterThan(prev.start);
      expect(p.end).toBeGreaterThan(prev.end);
      const shared = tokens.filter(([a, b]) => a >= p.start && b <= prev.end).length;
      expect(shared).toBeLessThanOrEqual(overlap);
    }
  });
  // Every token lies inside at least one passage.
  let j = 0;
  for (const [a, b] of tokens) {
    while (j < passages.length && passages[j].end < b) j++;
    expect(j).toBeLessThan(passages.length);
    expect(passages.some((p) => p.start <= a && b <= p.end)).toBe(true);
  }
}

describe("approximateSpanner", () => {
  it("keeps short words whole, cuts long words into 4-character pieces, separates punctuation", () => {
    expect(pieces("Unaffable aeroelastic models")).toEqual(["Unaf", "fabl", "e", "aero", "elas", "tic", "models"]);
    expect(pieces("Berlin: 3,520,031 people!")).toEqual(["Berlin", ":", "3", ",", "520", ",", "031", "people", "!"]);
    expect(pieces("don't")).toEqual(["don", "'", "t"]);
  });

  it("gives each CJK ideograph its own token and never splits surrogate pairs", () => {
    expect(pieces("日本語 text")).toEqual(["日", "本", "語", "text"]);
    expect(pieces("go 🚀!")).toEqual(["go", "🚀", "!"]);
    const math = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢𝔰𝔢"; // 9 code points, 18 UTF-16 units
    expect(pieces(math)).toEqual(["𝔘𝔫𝔦𝔠", "𝔬𝔡𝔢𝔰", "𝔢"]);
    expect(pieces("naïve café")).toEqual(["naïve", "café"]);
  });

  it("finds no tokens in whitespace", () => {
    expect(approximateSpanner.spans(" \n\t\r\n ")).toEqual([]);
  });
});

describe("chunkDocument", () => {
  const doc = (text: string, extra: Partial<SourceDocument> = {}): SourceDocument => ({ id: "d", text, ...extra });

  it("returns nothing for empty and whitespace-only documents", () => {
    expect(chunkDocument(doc(""), { maxTokens: 8, overlap: 2 })).toEqual([]);
    expect(chunkDocument(doc("  \n\t "), { maxTokens: 8, overlap: 2 })).toEqual([]);
  });

  it("returns one trimmed passage for a short document, keeping source and metadata", () => {
    const d = doc("  Short text here.\n", { id: "x/y.md", source: "corpus/x/y.md", metadata: { title: "T" } });
    expect(chunkDocument(d, { maxTokens: 16, overlap: 4 })).toEqual([
      {
        id: "x/y.md#0",
        docId: "x/y.md",
        text: "Short text here.",
        start: 2,
        end: 18,
        source: "corpus/x/y.md",
        metadata: { title: "T" },
      },
    ]);
  });

  it("prefers sentence ends over filling the window", () => {
    const text = "One two three four five six. Seven eight nine ten eleven twelve. Thirteen fourteen.";
    const ps = chunkDocument(doc(text), { maxTokens: 10, overlap: 0 });
    expect(ps.map((p) => p.text)).toEqual([
      "One two three four five six.",
      "Seven eight nine ten eleven twelve.",
      "Thirteen fourteen.",
    ]);
    checkPassages(doc(text), ps, 10, 0, approximateSpanner);
  });

  it("prefers paragraph breaks and starts overlaps at word starts", () => {
    const text = "alpha beta gamma delta\n\nepsilon zeta eta theta iota kappa lambda mu";
    const ps = chunkDocument(doc(text), { maxTokens: 6, overlap: 2 });
    expect(ps[0].text).toBe("alpha beta gamma delta");
    // The overlap holds no sentence start, so it begins at a word start.
    expect(ps[1].text.startsWith("gamma delta\n\nepsilon")).toBe(true);
    for (const p of ps) expect(/^\w/.test(p.text) && /\w$/.test(p.text)).toBe(true);
    checkPassages(doc(text), ps, 6, 2, approximateSpanner);
  });

  it("overlaps neighbouring passages by up to `overlap` tokens", () => {
    const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(" ");
    const ps = chunkDocument(doc(words), { maxTokens: 10, overlap: 3 });
    expect(ps.map((p) => p.text.split(" ").length)).toEqual([10, 10, 10, 10, 10, 5]);
    expect(ps[1].text.startsWith("w7 ")).toBe(true);
    checkPassages(doc(words), ps, 10, 3, approximateSpanner);
  });

  it("splits a single word longer than the window", () => {
    const long = "x".repeat(100); // 25 approximate tokens
    const ps = chunkDocument(doc(`a ${long} b`), { maxTokens: 8, overlap: 0 });
    expect(ps.map((p) => p.text.replace(/\s/g, "")).join("")).toBe(`a${long}b`);
    // Ends at the space before the long word rather than inside it, then cuts the word into full windows.
    expect(ps.map((p) => p.text)).toEqual(["a", "x".repeat(32), "x".repeat(32), "x".repeat(32), "xxxx b"]);
    checkPassages(doc(`a ${long} b`), ps, 8, 0, approximateSpanner);
  });

  it("keeps CRLF and unicode text intact in passage offsets", () => {
    const text = "Grüße 🚀 aus Köln.\r\n\r\n日本語のテキスト。\r\nNaïve café résumé.";
    const ps = chunkDocument(doc(text), { maxTokens: 5, overlap: 1 });
    checkPassages(doc(text), ps, 5, 1, approximateSpanner);
    const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
    for (const p of ps) expect(loneSurrogate.test(p.text)).toBe(false);
  });

  it("shrinks windows whose slice re-tokenises into more tokens than the document spans", () => {
    const text = `start ${"abcdefghij".repeat(6)} end`;
    const ps = chunkDocument(doc(text), { maxTokens: 5, overlap: 1, spanner: uneven });
    checkPassages(doc(text), ps, 5, 1, uneven);
  });

  it.each([
    [0, 0],
    [1.5, 0],
    [8, 8],
    [8, -1],
    [8, 0.5],
  ])("rejects maxTokens=%s overlap=%s", (maxTokens, overlap) => {
    expect(() => chunkDocument(doc("text"), { maxTokens, overlap })).toThrow(ValidationError);
  });

  it("numbers passages per document in chunkDocuments", () => {
    const ps = chunkDocuments(
      [
        { id: "a", text: "one two three four" },
        { id: "b", text: "five" },
      ],
      { maxTokens: 2, overlap: 0 },
    );
    expect(ps.map((p) => p.id)).toEqual(["a#0", "a#1", "b#0"]);
  });
});

describe("chunkDocument properties (fast-check)", () => {
  const word = fc.oneof(
    fc.constantFrom("the", "a", "of", "wing", "flow", "supersonic", "aeroelasticity", "3,520", "é", "日本", "🚀"),
    fc.stringMatching(/^[a-z]{1,30}$/),
  );
  const sep = fc.constantFrom(" ", " ", " ", ", ", ". ", "! ", "\n", "\n\n", "\r\n", "\t", "-", "");
  const prose = fc.array(fc.tuple(word, sep), { maxLength: 200 }).map((parts) => parts.map(([w, s]) => w + s).join(""));
  const anyText = fc.oneof(
    prose,
    fc.string({ unit: "grapheme", maxLength: 300 }),
    fc.string({ unit: "binary", maxLength: 200 }),
  );
  const window = fc
    .integer({ min: 1, max: 40 })
    .chain((maxTokens) => fc.tuple(fc.constant(maxTokens), fc.integer({ min: 0, max: maxTokens - 1 })));

  it("approximate spanner: fits, covers, monotonic, overlap respected", () => {
    fc.assert(
      fc.property(anyText, window, (text, [maxTokens, overlap]) => {
        const d = { id: "doc", text };
        checkPassages(d, chunkDocument(d, { maxTokens, overlap }), maxTokens, overlap, approximateSpanner);
      }),
      { numRuns: runs(400) },
    );
  });

  it("a spanner whose counts grow on cut words: every passage still fits on its own", () => {
    // One token of this spanner re-tokenises into at most 2, so windows of 1 token cannot be guaranteed.
    const wider = fc
      .integer({ min: 2, max: 40 })
      .chain((m) => fc.tuple(fc.constant(m), fc.integer({ min: 0, max: m - 1 })));
    fc.assert(
      fc.property(prose, wider, (text, [maxTokens, overlap]) => {
        const d = { id: "doc", text: text.toLowerCase() };
        checkPassages(d, chunkDocument(d, { maxTokens, overlap, spanner: uneven }), maxTokens, overlap, uneven);
      }),
      { numRuns: runs(300) },
    );
  });

  it("spans of the approximate spanner are ordered, non-empty and non-overlapping", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        let last = 0;
        for (const [a, b] of approximateSpanner.spans(text)) {
          expect(a).toBeGreaterThanOrEqual(last);
          expect(b).toBeGreaterThan(a);
          expect(text.slice(a, b).trim()).toBe(text.slice(a, b));
          last = b;
        }
      }),
      { numRuns: runs(300) },
    );
  });
});

describe("chunkDocument with a real WordPiece tokenizer (Cranfield, MiniLM tokenizer.json)", () => {
  const data = resolve(import.meta.dirname, "../../../shared/data");
  const modelDir = resolve(data, "models/ms-marco-MiniLM-L-6-v2");
  const corpus = resolve(data, "cranfield/corpus.jsonl");
  const present = existsSync(resolve(modelDir, "tokenizer.json")) && existsSync(corpus);

  it.skipIf(!present)(
    `passages fit the window when the model tokenises them${present ? "" : ` (skipped: ${modelDir} or ${corpus} is absent)`}`,
    async () => {
      const tok = await loadTokenizer(modelDir);
      const docs = readFileSync(corpus, "utf8")
        .trim()
        .split("\n")
        .slice(0, 300)
        .map((l) => JSON.parse(l))
        .map((r) => ({ id: r._id as string, text: `${r.title}\n\n${r.text}` }));
      let multi = 0;
      for (const d of docs) {
        // Exact spans from the tokenizer itself.
        const exact = chunkDocument(d, { maxTokens: 48, overlap: 8, spanner: tok });
        checkPassages(d, exact, 48, 8, tok);
        if (exact.length > 1) multi++;
        // The approximate spanner over-counts WordPiece tokens on this text, so its windows fit too
        // (at 64 tokens and more; much smaller windows can meet a run of words WordPiece splits more).
        for (const size of [64, 256]) {
          for (const p of chunkDocument(d, { maxTokens: size, overlap: 8 }))
            expect(tok.countTokens(p.text)).toBeLessThanOrEqual(size);
        }
      }
      expect(multi).toBeGreaterThan(100); // most abstracts are longer than one window
    },
  );
});
