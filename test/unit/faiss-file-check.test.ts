// The bounds check that runs before faiss reads an index file: it accepts every type our builder
// writes (walking each file to its last byte), and rejects a corrupted length field itself instead
// of letting faiss allocate what the field claims (a flipped high bit in the HNSW level table once
// made faiss zero-fill tens of gigabytes and the process die).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { clusteredVectors } from "../../scripts/bench/vectors.ts";
import { bytesSource, checkFaissFile, checkFaissFileAt } from "../../shared/adapters/faiss-file-check.ts";
import {
  buildFaissIndex,
  type ConcreteIndexType,
  faissIndexFromBuffer,
  faissIndexFromFile,
} from "../../shared/adapters/faiss-index.ts";
import { isDomainError } from "../../shared/core/errors.ts";

const d = 16;
const n = 600;
const base = clusteredVectors({ n, d, seed: 11, clusters: 12 });
const files: Partial<Record<ConcreteIndexType, Uint8Array>> = {};
const types: ConcreteIndexType[] = ["flat", "sq8", "fp16", "hnsw", "ivf", "ivfpq", "ivfpq-refine"];
const dir = mkdtempSync(join(tmpdir(), "faiss-check-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fileOf(type: ConcreteIndexType): Promise<Uint8Array> {
  files[type] ??= Uint8Array.from((await buildFaissIndex({ dimensions: d, type, count: n }, [base])).toBuffer());
  return files[type];
}

function rejection(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!isDomainError(e)) throw e;
    return e.message;
  }
  throw new Error("expected a rejection");
}

/** The first byte offset (from `from`) of consecutive little-endian uint64s equal to `values`. */
function offsetOfU64(bytes: Uint8Array, values: number[], from = 0): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = from; at + 8 * values.length <= bytes.length; at++)
    if (values.every((v, i) => view.getBigUint64(at + 8 * i, true) === BigInt(v))) return at;
  throw new Error(`no uint64s ${values} in the file`);
}

describe("checkFaissFile", () => {
  it.each(types)("accepts a %s index written by faiss, to its last byte", async (type) => {
    const bytes = await fileOf(type);
    expect(() => checkFaissFile(bytesSource(bytes))).not.toThrow();
    const file = join(dir, `${type}.faiss`);
    writeFileSync(file, bytes);
    expect(() => checkFaissFileAt(file)).not.toThrow();
    expect(faissIndexFromFile(file).count).toBe(n);
  });

  it("rejects an HNSW level table whose length was corrupted, naming the field, before faiss allocates it", async () => {
    const bytes = Uint8Array.from(await fileOf("hnsw"));
    // The levels vector is the only HNSW vector with exactly n entries; its size_t precedes it.
    const at = offsetOfU64(bytes, [n], 37);
    bytes[at + 4] ^= 0x80; // n + 2^39 entries: what faiss would resize to (2 TiB)
    const message = rejection(() => faissIndexFromBuffer(bytes));
    expect(message).toMatch(/not a readable FAISS index: HNSW levels .* (out of range|needs|entries)/);
  });

  it("rejects inverted list sizes that do not add up to the header's vector count", async () => {
    const bytes = Uint8Array.from(await fileOf("ivf"));
    const view = new DataView(bytes.buffer);
    // The "full" tag is followed by nlist then nlist list sizes; grow the first list by one vector.
    const full = Buffer.from(bytes).indexOf("full");
    const first = full + 4 + 8;
    view.setBigUint64(first, view.getBigUint64(first, true) + 1n, true);
    expect(rejection(() => checkFaissFile(bytesSource(bytes)))).toMatch(/inverted list|remain/);
  });

  it("rejects truncation, trailing bytes and unknown index types", async () => {
    const flat = await fileOf("flat");
    expect(rejection(() => checkFaissFile(bytesSource(flat.subarray(0, flat.length - 1))))).toMatch(/remain/);
    const longer = Uint8Array.from([...flat, 0]);
    expect(rejection(() => checkFaissFile(bytesSource(longer)))).toMatch(/1 bytes after the end of the flat index/);
    const other = Uint8Array.from(flat);
    other.set(new TextEncoder().encode("IBxF"), 0);
    expect(rejection(() => checkFaissFile(bytesSource(other)))).toMatch(/unsupported index type "IBxF"/);
    expect(rejection(() => checkFaissFile(bytesSource(new Uint8Array(0))))).toMatch(/needs 4 bytes, 0 remain/);
  });

  it("rejects a product quantizer whose bit count would size an absurd codebook", async () => {
    const bytes = Uint8Array.from(await fileOf("ivfpq"));
    const view = new DataView(bytes.buffer);
    // The builder picks PQ2x8 at this size: code size 2, then the quantizer's d, M and nbits.
    const nbits = offsetOfU64(bytes, [2, d, 2, 8], 37) + 24;
    view.setBigUint64(nbits, 40n, true);
    expect(rejection(() => checkFaissFile(bytesSource(bytes)))).toMatch(/product quantizer d=16 M=2 nbits=40/);
  });
});
