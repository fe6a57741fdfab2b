import { readFileSync } from "node:fs";
import path from "node:path";
import { AutoTokenizer, env } from "@huggingface/transformers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/core/errors.ts";
import {
  createPairTokenizer,
  loadTokenizer,
  modelMaxLengthOf,
  type PairTokenizer,
} from "../../shared/adapters/hf-tokenizer.ts";
import { ensureFixtureModel, sharedDataDir, sharedModelDir } from "../helpers/fixtures.ts";

env.allowRemoteModels = false;

// transformers.js as the reference tokenizer, from local files only.
async function referenceTokenizer(dir: string) {
  env.localModelPath = `${path.dirname(dir)}/`;
  return AutoTokenizer.from_pretrained(path.basename(dir), { local_files_only: true });
}
type Ref = Awaited<ReturnType<typeof referenceTokenizer>>;
function refPair(ref: Ref, a: string, b?: string) {
  const out = ref(a, b === undefined ? {} : { text_pair: b });
  const row = (t: { tolist(): unknown[][] } | undefined) =>
    t ? (t.tolist()[0] as Array<bigint | number>).map(Number) : undefined;
  return { ids: row(out.input_ids)!, typeIds: row(out.token_type_ids), mask: row(out.attention_mask)! };
}

const TEXTS = [
  "How many people live in Berlin?",
  "Berlin has a population of 3,520,031 registered inhabitants.",
  "The flow over a WING at supersonic speed (Mach 2.5) causes shock waves!",
  "Ünïcode façade — naïve café, 日本語のテキスト and emoji 🚀🎉 mixed in",
  "tabs\tand\nnewlines   and    spaces",
  "",
  "  ",
  "a",
  "[SEP] injected [CLS] tokens <s> </s>",
  "x\u0301y\u200bz\u0000w",
];

const ms = sharedModelDir("ms-marco-MiniLM-L-6-v2");
const allMini = sharedModelDir("all-MiniLM-L6-v2");
const noShared = (what: string) => `skipped: ${what} not found under ../shared/data/models`;

let tinyDir: string;
let xlmrDir: string;
let tiny: PairTokenizer;
let xlmr: PairTokenizer;

beforeAll(async () => {
  [tinyDir, xlmrDir] = await Promise.all([ensureFixtureModel("tiny-cross"), ensureFixtureModel("tiny-xlmr-cross")]);
  [tiny, xlmr] = await Promise.all([loadTokenizer(tinyDir), loadTokenizer(xlmrDir)]);
});

describe("parity with @huggingface/transformers AutoTokenizer", () => {
  for (const [label, get] of [
    ["tiny WordPiece fixture", () => [tinyDir, tiny] as const],
    ["tiny Unigram (XLM-R) fixture", () => [xlmrDir, xlmr] as const],
  ] as const) {
    it(`${label}: single texts and pairs give the reference's ids, type ids and masks`, async () => {
      const [dir, ours] = get();
      const ref = await referenceTokenizer(dir);
      for (const t of TEXTS) {
        const r = refPair(ref, t);
        const o = ours.encode(t);
        expect(o.ids, t).toEqual(r.ids);
        expect(o.attentionMask).toEqual(r.mask);
        if (r.typeIds) expect(o.typeIds).toEqual(r.typeIds);
        expect(o.truncated).toBe(false);
      }
      for (const q of TEXTS.slice(0, 4)) {
        // transformers.js turns an empty text_pair into no pair at all (`text_pair || null`); an empty
        // document is checked against the pair template separately below.
        for (const d of TEXTS.filter((x) => x !== "")) {
          const r = refPair(ref, q, d);
          const o = ours.encodePair(q, d);
          expect(o.ids, `${q} | ${d}`).toEqual(r.ids);
          if (r.typeIds) expect(o.typeIds).toEqual(r.typeIds);
          expect(o.attentionMask).toEqual(r.mask);
        }
      }
      // Empty document: the pair template with nothing between its separators.
      const q = ours.encode(TEXTS[0]).ids;
      const empty = ours.encodePair(TEXTS[0], "").ids;
      expect(empty.slice(0, q.length)).toEqual(q);
      expect(empty).toHaveLength(q.length + ours.pairOverhead - ours.singleOverhead);
    });
  }

  it.skipIf(!ms)(
    `real ms-marco-MiniLM-L-6-v2 tokenizer gives the ids ../shared/data/README.md lists ${ms ? "" : noShared("ms-marco-MiniLM-L-6-v2")}`,
    async () => {
      const t = await loadTokenizer(ms!);
      expect(t.encode("How many people live in Berlin?").ids).toEqual([
        101, 2129, 2116, 2111, 2444, 1999, 4068, 1029, 102,
      ]);
      const pair = t.encodePair(
        "How many people live in Berlin?",
        "Berlin has a population of 3,520,031 registered inhabitants.",
      );
      expect(pair.ids).toEqual([
        101, 2129, 2116, 2111, 2444, 1999, 4068, 1029, 102, 4068, 2038, 1037, 2313, 1997, 1017, 1010, 19611, 1010, 6021,
        2487, 5068, 4864, 1012, 102,
      ]);
      expect(pair.typeIds).toEqual([...Array(9).fill(0), ...Array(15).fill(1)]);
      expect(t.tokenize("Unaffable aeroelastic models")).toEqual([
        "una",
        "##ffa",
        "##ble",
        "aero",
        "##ela",
        "##stic",
        "models",
      ]);
      expect(t.modelMaxLength).toBe(512);
      expect(t.pairOverhead).toBe(3);
    },
  );

  it.skipIf(!ms || !sharedDataDir())("real tokenizer: Cranfield query/document pairs match the reference", async () => {
    const t = await loadTokenizer(ms!);
    const ref = await referenceTokenizer(ms!);
    const root = sharedDataDir()!;
    const docs = readFileSync(path.join(root, "cranfield", "corpus.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .slice(0, 40)
      .map((l) => JSON.parse(l).text as string);
    const queries = readFileSync(path.join(root, "cranfield", "queries.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .slice(0, 5)
      .map((l) => JSON.parse(l).text as string);
    for (const q of queries) {
      for (const d of docs) {
        const r = refPair(ref, q, d);
        if (r.ids.length > 512) continue; // the reference cuts pairs differently (drops the final [SEP])
        expect(t.encodePair(q, d).ids).toEqual(r.ids);
      }
    }
  });

  it.skipIf(!allMini)("all-MiniLM-L6-v2's stored 128-token padding/truncation is ignored", async () => {
    const t = await loadTokenizer(allMini!);
    expect(t.encode("How many people live in Berlin?").ids).toEqual([
      101, 2129, 2116, 2111, 2444, 1999, 4068, 1029, 102,
    ]);
    const long = "word ".repeat(300);
    expect(t.encode(long, { maxLength: 256 }).ids).toHaveLength(256);
  });
});

describe("truncation", () => {
  const words = (n: number, w = "flow") => Array(n).fill(w).join(" ");

  it("keeps the whole query and cuts the document to fit, ending with [SEP]", () => {
    const q = "how many people live in berlin";
    const qIds = tiny.tokenIds(q);
    const e = tiny.encodePair(q, words(500), { maxLength: 64 });
    expect(e.ids).toHaveLength(64);
    expect(e.truncated).toBe(true);
    expect(e.ids.slice(1, 1 + qIds.length)).toEqual(qIds);
    const sep = tiny.encode("").ids[1];
    expect(e.ids[1 + qIds.length]).toBe(sep);
    expect(e.ids[63]).toBe(sep);
    expect(e.queryTokens).toBe(qIds.length);
    expect(e.docTokens).toBe(500);
    expect(e.docTokensKept).toBe(64 - 3 - qIds.length);
    expect(e.typeIds.filter((t) => t === 1)).toHaveLength(e.docTokensKept + 1);
  });

  it("defaults to the model's limit", () => {
    const e = tiny.encodePair("query", words(1000));
    expect(e.ids).toHaveLength(tiny.modelMaxLength);
    expect(tiny.modelMaxLength).toBe(128);
  });

  it("applies max_tokens_per_doc even when the pair would fit", () => {
    const e = tiny.encodePair("query", words(20), { maxTokensPerDoc: 5 });
    expect(e.docTokensKept).toBe(5);
    expect(e.truncated).toBe(true);
    expect(e.ids).toHaveLength(1 + 1 + 1 + 5 + 1);
    expect(tiny.encodePair("query", words(5), { maxTokensPerDoc: 5 }).truncated).toBe(false);
  });

  it("cuts an over-long query only to its share, leaving the document the rest", () => {
    const e = tiny.encodePair(words(200, "wing"), words(200), { maxLength: 64 });
    const budget = 64 - 3;
    expect(e.queryTokens).toBe(Math.ceil(budget / 2));
    expect(e.docTokensKept).toBe(budget - Math.ceil(budget / 2));
    expect(e.ids).toHaveLength(64);
    // A short document keeps all its tokens; the query gets what is left.
    const short = tiny.encodePair(words(200, "wing"), "flow flow", { maxLength: 64 });
    expect(short.docTokensKept).toBe(2);
    expect(short.queryTokens).toBe(budget - 2);
  });

  it("keeps the XLM-R pair template when cutting", () => {
    const e = xlmr.encodePair("query", words(300), { maxLength: 32 });
    expect(e.ids).toHaveLength(32);
    expect(e.ids[0]).toBe(0); // <s>
    expect(e.ids.at(-1)).toBe(2); // </s>
    expect(xlmr.pairOverhead).toBe(4);
  });

  it("property: any lengths give a well-formed pair within the limit", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 150 }),
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 5, max: 128 }),
        fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined }),
        (nq, nd, maxLength, cap) => {
          const e = tiny.encodePair(words(nq, "wing"), words(nd), { maxLength, maxTokensPerDoc: cap });
          const [cls, sep] = tiny.encode("").ids;
          expect(e.ids.length).toBeLessThanOrEqual(maxLength);
          expect(e.ids[0]).toBe(cls);
          expect(e.ids.at(-1)).toBe(sep);
          expect(e.ids.length).toBe(e.queryTokens + e.docTokensKept + 3);
          const dCap = cap === undefined ? nd : Math.min(nd, cap);
          if (nq + dCap <= maxLength - 3) {
            expect(e.queryTokens).toBe(nq);
            expect(e.docTokensKept).toBe(dCap);
          } else {
            expect(e.ids.length).toBe(maxLength); // nothing is cut that would have fitted
          }
          if (nq <= Math.ceil((maxLength - 3) / 2)) expect(e.queryTokens).toBe(nq); // a short query is never cut
          expect(e.truncated).toBe(e.queryTokens < nq || e.docTokensKept < nd);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("single texts are cut to maxLength with their special tokens", () => {
    const e = tiny.encode(words(300), { maxLength: 16 });
    expect(e.ids).toHaveLength(16);
    expect(e.truncated).toBe(true);
    expect(e.ids.at(-1)).toBe(tiny.encode("").ids[1]);
  });

  it("rejects limits that cannot hold a pair or exceed the model's", () => {
    expect(() => tiny.encodePair("a", "b", { maxLength: 4 })).toThrow(ValidationError);
    expect(() => tiny.encodePair("a", "b", { maxLength: 129 })).toThrow(/exceeds the model's limit of 128/);
    expect(() => tiny.encodePair("a", "b", { maxLength: 10.5 })).toThrow(ValidationError);
    expect(() => tiny.encodePair("a", "b", { maxTokensPerDoc: 0 })).toThrow(/max_tokens_per_doc/);
    expect(() => tiny.encode("a", { maxLength: 2 })).toThrow(ValidationError);
    expect(tiny.encodePair("a", "b", { maxLength: 5 }).ids).toHaveLength(5);
  });
});

describe("spans", () => {
  const slices = (t: PairTokenizer, s: string) => t.spans(s).map(([a, b]) => s.slice(a, b));

  it("gives each token's characters in the original text", () => {
    expect(slices(tiny, "How many people live in Berlin?")).toEqual([
      "How",
      "many",
      "people",
      "live",
      "in",
      "Berlin",
      "?",
    ]);
    expect(slices(tiny, "Ünïcode façade")).toEqual(["Ü", "n", "ïc", "o", "d", "e", "f", "a", "ç", "a", "d", "e"]);
    expect(tiny.tokenize("Ünïcode façade")).toEqual([
      "u",
      "##n",
      "##ic",
      "##o",
      "##d",
      "##e",
      "f",
      "##a",
      "##c",
      "##a",
      "##d",
      "##e",
    ]);
    expect(slices(xlmr, "many people")).toEqual(["many", "people"]);
  });

  it.skipIf(!ms)("real WordPiece: sub-words, [UNK] words and CJK characters", async () => {
    const t = await loadTokenizer(ms!);
    expect(slices(t, "Unaffable aeroelastic models")).toEqual(["Una", "ffa", "ble", "aero", "ela", "stic", "models"]);
    expect(slices(t, "∰abc abc 日本")).toEqual(["∰abc", "abc", "日", "本"]);
  });

  it("lowercase ASCII words: every span is exactly its token's surface", () => {
    const word = fc.stringMatching(/^[a-z]{1,12}$/);
    fc.assert(
      fc.property(fc.array(word, { maxLength: 30 }), fc.constantFrom(" ", "  ", "\n", ", "), (ws, sep) => {
        const text = ws.join(sep);
        const toks = tiny.tokenize(text);
        const got = slices(tiny, text);
        expect(got).toEqual(toks.map((t) => t.replace(/^##/, "")));
      }),
      { numRuns: 100 },
    );
  });
});

describe("arbitrary unicode never throws", () => {
  // Code points of every plane plus raw UTF-16 units (lone surrogates included).
  const anyText = fc.string({
    unit: fc.oneof(
      fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
      fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }),
    ),
    maxLength: 120,
  });

  for (const [name, get] of [
    ["WordPiece", () => tiny],
    ["Unigram", () => xlmr],
  ] as const) {
    it(`${name}: encode, encodePair, countTokens, spans and chunkDoc on any string`, () => {
      const t = get();
      fc.assert(
        fc.property(anyText, anyText, (a, b) => {
          const single = t.encode(a);
          expect(single.ids.every((id) => Number.isInteger(id) && id >= 0)).toBe(true);
          const pair = t.encodePair(a, b, { maxLength: 48 });
          expect(pair.ids.length).toBeLessThanOrEqual(48);
          const n = t.countTokens(a);
          const spans = t.spans(a);
          expect(spans).toHaveLength(n);
          let prev = 0;
          for (const [s, e] of spans) {
            expect(s).toBeGreaterThanOrEqual(prev);
            expect(e).toBeGreaterThanOrEqual(s);
            expect(e).toBeLessThanOrEqual(a.length);
            prev = e;
          }
          for (const w of t.chunkDoc(b, a, { maxLength: 24 })) expect(a.slice(w.start, w.end)).toBe(w.text);
        }),
        { numRuns: 300 },
      );
    });
  }
});

describe("chunkDoc", () => {
  const doc = Array.from(
    { length: 120 },
    (_, i) => ["the", "flow", "over", "a", "wing", "boundary", "layer", "pressure"][i % 8],
  ).join(" ");

  it("cuts a long document into windows that each fit a pair without truncation", () => {
    const windows = tiny.chunkDoc("boundary layer flow", doc, { maxLength: 32, overlapTokens: 4 });
    expect(windows.length).toBeGreaterThan(3);
    for (const w of windows) {
      expect(doc.slice(w.start, w.end)).toBe(w.text);
      const e = tiny.encodePair("boundary layer flow", w.text, { maxLength: 32 });
      expect(e.truncated).toBe(false);
      expect(e.docTokensKept).toBe(w.tokens);
    }
    expect(windows[0].start).toBe(0);
    expect(windows.at(-1)!.end).toBe(doc.length);
    for (let i = 1; i < windows.length; i++) {
      expect(windows[i].start).toBeLessThan(windows[i - 1].end); // overlapping neighbours
      expect(windows[i].start).toBeGreaterThan(windows[i - 1].start);
    }
  });

  it("returns the whole document when it fits, honours maxChunks and max_tokens_per_doc", () => {
    expect(tiny.chunkDoc("q", "a short document")).toEqual([
      { text: "a short document", start: 0, end: 16, tokens: tiny.countTokens("a short document") },
    ]);
    expect(tiny.chunkDoc("q", doc, { maxLength: 32, maxChunks: 2 })).toHaveLength(2);
    const capped = tiny.chunkDoc("q", doc, { maxLength: 128, maxTokensPerDoc: 10 });
    expect(capped).toHaveLength(1);
    expect(capped[0].tokens).toBe(10);
    expect(capped[0].text).toBe(doc.split(" ").slice(0, 10).join(" "));
  });
});

describe("model limits and file handling", () => {
  it("reads the limit from tokenizer_config and the position table (RoBERTa offset)", () => {
    expect(modelMaxLengthOf({ model_max_length: 512 }, { max_position_embeddings: 512, model_type: "bert" })).toBe(512);
    expect(
      modelMaxLengthOf(
        { model_max_length: 1e30 },
        { max_position_embeddings: 514, model_type: "xlm-roberta", pad_token_id: 1 },
      ),
    ).toBe(512);
    expect(modelMaxLengthOf({}, { max_position_embeddings: 128, model_type: "bert" })).toBe(128);
    expect(modelMaxLengthOf({}, {})).toBe(512);
    expect(xlmr.modelMaxLength).toBe(128);
    expect(xlmr.padId).toBe(1);
    expect(tiny.padId).toBe(0);
  });

  it.skipIf(!sharedModelDir("bge-reranker-base", "config.json"))("bge-reranker-base's real config gives 512", () => {
    const dir = sharedModelDir("bge-reranker-base", "config.json")!;
    const read = (f: string) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));
    expect(modelMaxLengthOf(read("tokenizer_config.json"), read("config.json"))).toBe(512);
  });

  it("ignores truncation and padding stored in tokenizer.json", () => {
    const json = JSON.parse(readFileSync(path.join(tinyDir, "tokenizer.json"), "utf8"));
    json.truncation = { direction: "Right", max_length: 4, strategy: "LongestFirst", stride: 0 };
    json.padding = {
      strategy: { Fixed: 16 },
      direction: "Right",
      pad_to_multiple_of: null,
      pad_id: 0,
      pad_type_id: 0,
      pad_token: "[PAD]",
    };
    const t = createPairTokenizer({
      tokenizer: json,
      tokenizerConfig: JSON.parse(readFileSync(path.join(tinyDir, "tokenizer_config.json"), "utf8")),
    });
    expect(t.encode("how many people live in berlin").ids).toEqual(tiny.encode("how many people live in berlin").ids);
    expect(t.encode("how many people live in berlin").ids).toHaveLength(8);
  });

  it("a folder without tokenizer.json fails with a clear message", async () => {
    await expect(loadTokenizer(path.join(tinyDir, "onnx"))).rejects.toThrow(/no tokenizer.json/);
  });
});
