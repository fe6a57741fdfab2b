// Property-based tests (fast-check) of the parts that read untrusted bytes and text: the tokenizer
// on arbitrary unicode (lone surrogates, control characters, astral planes), and the snapshot reader
// (manifest parser, passage store, file verification, faiss decoding) on corrupted bytes. Every
// rejection must be a DomainError with a message, never a crash or a stray TypeError/RangeError.
// Case counts are printed ("fuzz: …") so runs report how much was tried.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeFaissSnapshotIndex, type FaissVectorIndex } from "../../shared/adapters/faiss-index.ts";
import { loadTokenizer, type PairTokenizer } from "../../shared/adapters/hf-tokenizer.ts";
import type { BuiltSnapshot } from "../../shared/core/build.ts";
import { isDomainError } from "../../shared/core/errors.ts";
import type { SnapshotManifest } from "../../shared/core/ports.ts";
import {
  INDEX_FILE,
  openPassageStore,
  PASSAGES_FILE,
  parseManifest,
  verifySnapshotFile,
} from "../../shared/core/snapshot.ts";
import { ensureFixtureModel, sharedModelDir } from "../helpers/fixtures.ts";
import { buildCorpusSnapshot, makeCorpus } from "../helpers/snapshots.ts";

let cases = 0;
afterAll(() => console.log(`fuzz: ${cases} cases (tokenizer + snapshot reader)`));

/** Runs a property, counting its cases. */
function check<T>(arb: fc.Arbitrary<T>, predicate: (v: T) => void, numRuns: number): void {
  fc.assert(
    fc.property(arb, (v) => {
      cases++;
      predicate(v);
    }),
    { numRuns },
  );
}

/** Only a DomainError with a non-empty message may escape `fn`. */
function rejectsCleanly(fn: () => unknown): "ok" | "rejected" {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (!isDomainError(e)) throw new Error(`not a DomainError: ${String(e)}`, { cause: e });
    expect(e.message.length).toBeGreaterThan(0);
    return "rejected";
  }
}

// Every UTF-16 code unit (lone surrogates included), full code points, and mixed grapheme text.
const anyText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)), maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: "grapheme", maxLength: 120 }),
  fc.constantFrom("", " ", "\u0000", "\ud800", "\udfff\ud800", "🧪".repeat(600), "a\u0301".repeat(400), "\u200b\ufeff"),
);

describe("tokenizer never throws on arbitrary text", () => {
  const tokenizers: Array<[string, PairTokenizer]> = [];
  beforeAll(async () => {
    tokenizers.push(["tiny-cross fixture", await loadTokenizer(await ensureFixtureModel("tiny-cross"))]);
    const ms = sharedModelDir("ms-marco-MiniLM-L-6-v2");
    if (ms) tokenizers.push(["ms-marco-MiniLM-L-6-v2", await loadTokenizer(ms)]);
    else console.log("fuzz: ../shared/data absent; only the fixture tokenizer is fuzzed");
  });

  it("tokenize/encode/encodePair/countTokens/spans/chunkDoc stay within limits", () => {
    for (const [name, tok] of tokenizers) {
      check(
        fc.tuple(anyText, anyText, fc.integer({ min: 8, max: 64 })),
        ([query, doc, maxLength]) => {
          const ids = tok.tokenIds(doc);
          expect(tok.tokenize(doc).length, name).toBe(ids.length);
          expect(tok.countTokens(doc), name).toBe(ids.length);
          expect(tok.encode(doc, { maxLength }).ids.length, name).toBeLessThanOrEqual(maxLength);
          const pair = tok.encodePair(query, doc, { maxLength });
          expect(pair.ids.length, name).toBeLessThanOrEqual(maxLength);
          let last = 0;
          for (const [s, e] of tok.spans(doc)) {
            expect(s, name).toBeGreaterThanOrEqual(last);
            expect(e, name).toBeLessThanOrEqual(doc.length);
            last = e;
          }
          for (const w of tok.chunkDoc(query, doc, { maxLength, maxChunks: 8 })) {
            expect(doc.slice(w.start, w.end), name).toBe(w.text);
          }
        },
        150,
      );
    }
  });
});

describe("snapshot reader rejects corrupted bytes with a clear error", () => {
  const built: Record<string, BuiltSnapshot<FaissVectorIndex>> = {};
  beforeAll(async () => {
    const corpus = makeCorpus({ n: 60, d: 16, seed: 7, label: "fuzz" });
    built.flat = await buildCorpusSnapshot(corpus, { indexType: "flat" });
    built.hnsw = await buildCorpusSnapshot(corpus, { indexType: "hnsw" });
  });

  /** A copy of `bytes` with flipped bytes, a truncation, or junk appended (always differs from the original). */
  const mutation = (bytes: Uint8Array) =>
    fc.oneof(
      fc
        .array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        })
        .map((flips) => {
          // Uint8Array.from, not slice(): the built files are Buffers, whose slice() is a view.
          const c = Uint8Array.from(bytes);
          // Distinct positions so two flips never cancel out.
          for (const [at, x] of new Map(flips)) c[at] ^= x;
          return c;
        }),
      fc.nat({ max: bytes.length - 1 }).map((n) => Uint8Array.from(bytes.subarray(0, n))),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((junk) => Uint8Array.from([...bytes, ...junk])),
    );

  it("parseManifest: arbitrary bytes and JSON are rejected as snapshot_invalid; mutations never escape as other errors", () => {
    const manifestText = JSON.stringify(built.flat.manifest);
    check(
      fc.uint8Array({ maxLength: 512 }),
      (bytes) => {
        expect(rejectsCleanly(() => parseManifest(bytes))).toBe("rejected");
      },
      200,
    );
    check(
      fc.jsonValue(),
      (v) => {
        expect(rejectsCleanly(() => parseManifest(v))).toBe("rejected");
      },
      200,
    );
    check(
      mutation(new TextEncoder().encode(manifestText)),
      (bytes) => {
        rejectsCleanly(() => parseManifest(bytes));
      },
      200,
    );
  });

  it("verifySnapshotFile rejects every mutation of index.faiss and passages.bin", () => {
    for (const kind of ["flat", "hnsw"]) {
      const { manifest, files } = built[kind] as { manifest: SnapshotManifest; files: Record<string, Uint8Array> };
      for (const name of [INDEX_FILE, PASSAGES_FILE]) {
        verifySnapshotFile(name, files[name], manifest); // the original passes
        check(
          mutation(files[name]),
          (bytes) => {
            expect(rejectsCleanly(() => verifySnapshotFile(name, bytes, manifest))).toBe("rejected");
          },
          100,
        );
      }
    }
  });

  it("openPassageStore: corrupted stores are rejected or read back without any non-domain error", () => {
    const passages = built.flat.files[PASSAGES_FILE];
    check(
      fc.oneof(mutation(passages), fc.uint8Array({ maxLength: 256 })),
      (bytes) => {
        rejectsCleanly(() => {
          const store = openPassageStore(bytes);
          for (let i = 0; i < store.count; i++) store.get(i);
        });
      },
      300,
    );
  });

  it("faiss decoding (flat and HNSW) rejects corrupted index bytes without crashing the process", () => {
    for (const kind of ["flat", "hnsw"]) {
      const { manifest, files } = built[kind] as { manifest: SnapshotManifest; files: Record<string, Uint8Array> };
      let rejected = 0;
      check(
        mutation(files[INDEX_FILE]),
        (bytes) => {
          if (rejectsCleanly(() => decodeFaissSnapshotIndex(bytes, manifest)) === "rejected") rejected++;
        },
        100,
      );
      // Most mutations break the structure; those that only touch vector data decode (the sha256 check
      // above is what catches them before decoding in the loader).
      expect(rejected, kind).toBeGreaterThan(0);
    }
  });
});
