// Snapshot format: passage store encoding, manifest/pointer validation, file verification, versions.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SnapshotInvalidError, ValidationError } from "../../shared/core/errors.ts";
import type { SnapshotManifest } from "../../shared/core/ports.ts";
import {
  compareVersionsDesc,
  describePassageStore,
  encodePassageStore,
  INDEX_FILE,
  isSnapshotVersion,
  newSnapshotVersion,
  openPassageStore,
  PASSAGES_FILE,
  parseManifest,
  parsePointer,
  pointerKey,
  SNAPSHOT_FORMAT_VERSION,
  sha256Hex,
  snapshotFileKey,
  verifySnapshotFile,
  versionOfKey,
} from "../../shared/core/snapshot.ts";
import type { Passage } from "../../shared/core/types.ts";

const passage = (i: number, extra: Partial<Passage> = {}): Passage => ({
  id: `doc${i}#0`,
  docId: `doc${i}`,
  text: `passage ${i}`,
  start: 0,
  end: 9,
  ...extra,
});

describe("passage store", () => {
  it("round-trips passages with unicode, sources and metadata, by ordinal", () => {
    const ps: Passage[] = [
      passage(0, {
        text: "naïve café — 日本語 🎉",
        source: "corpus/a.md",
        metadata: { lang: "ja", tags: ["x", 1, null] },
      }),
      passage(1),
      passage(2, { text: "", start: 5, end: 5 }),
    ];
    const store = openPassageStore(encodePassageStore(ps));
    expect(store.count).toBe(3);
    expect(store.get(0)).toEqual(ps[0]);
    expect(store.get(2)).toEqual(ps[2]);
    expect(store.get(1)).toEqual(ps[1]);
    expect("source" in store.get(1)).toBe(false);
  });

  it("matches any list of passages (property)", () => {
    const arb = fc.array(
      fc.record(
        {
          id: fc.string({ minLength: 1 }),
          docId: fc.string(),
          text: fc.string({ unit: "grapheme" }),
          source: fc.string(),
          metadata: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.boolean())),
          start: fc.nat(),
          end: fc.nat(),
        },
        { requiredKeys: ["id", "docId", "text", "start", "end"] },
      ),
      { maxLength: 40 },
    );
    fc.assert(
      fc.property(arb, (ps) => {
        const store = openPassageStore(encodePassageStore(ps as Passage[]));
        expect(store.count).toBe(ps.length);
        for (let i = ps.length - 1; i >= 0; i--) expect(store.get(i)).toEqual(ps[i]);
      }),
      { numRuns: 60 },
    );
  });

  it("decodes one record without touching the others", () => {
    const ps = Array.from({ length: 1000 }, (_, i) => passage(i));
    const bytes = encodePassageStore(ps);
    const store = openPassageStore(bytes);
    // Corrupt record 10's JSON (the info section follows both offset tables): record 500 still
    // decodes, record 10 reports itself.
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const recordsStart = 16 + 16 * 1001;
    const off10 = Number(view.getBigUint64(16 + 8 * 10, true));
    bytes[recordsStart + off10] = 0x7b + 1; // "{" → "|"
    expect(store.get(500)).toEqual(ps[500]);
    expect(() => store.get(10)).toThrow(/record 10 does not decode/);
  });

  it("stores nothing for an empty list", () => {
    const store = openPassageStore(encodePassageStore([]));
    expect(store.count).toBe(0);
    expect(() => store.get(0)).toThrow(ValidationError);
  });

  it("rejects out-of-range ordinals and malformed bytes with clear errors", () => {
    const bytes = encodePassageStore([passage(0), passage(1)]);
    const store = openPassageStore(bytes);
    expect(() => store.get(2)).toThrow(/out of range/);
    expect(() => store.get(-1)).toThrow(/out of range/);
    expect(() => store.get(0.5)).toThrow(/out of range/);
    expect(() => openPassageStore(new Uint8Array(3))).toThrow(SnapshotInvalidError);
    expect(() => openPassageStore(new TextEncoder().encode('{"not": "a store"}'))).toThrow(/bad magic/);
    expect(() => openPassageStore(bytes.subarray(0, 20))).toThrow(/overruns/);
    expect(() => openPassageStore(bytes.subarray(0, bytes.length - 1))).toThrow(/do not span/);
  });

  it("reads stores in the v1 layout (one table, texts inside the records) of older snapshots", () => {
    const ps = [passage(0), passage(1), passage(2)];
    const enc = new TextEncoder();
    const records = ps.map((p) => enc.encode(JSON.stringify(p)));
    const total = records.reduce((a, r) => a + r.byteLength, 0);
    const out = new Uint8Array(16 + 8 * 4 + total);
    const view = new DataView(out.buffer);
    out.set([0x54, 0x53, 0x50, 0x53]);
    view.setUint32(4, 1, true);
    view.setUint32(8, 3, true);
    let off = 0;
    for (let i = 0; i < 3; i++) {
      view.setBigUint64(16 + 8 * i, BigInt(off), true);
      out.set(records[i], 16 + 32 + off);
      off += records[i].byteLength;
    }
    view.setBigUint64(16 + 24, BigInt(off), true);
    const store = openPassageStore(out);
    expect([0, 1, 2].map((i) => store.get(i))).toEqual(ps);
    expect(describePassageStore(out)).toBeNull();
  });

  it("describes a v2 store's head and text blocks for the manifest", () => {
    const ps = Array.from({ length: 400 }, (_, i) => passage(i));
    const bytes = encodePassageStore(ps);
    const layout = describePassageStore(bytes, 1024)!;
    expect(layout.head_bytes + layout.text_bytes).toBe(bytes.byteLength);
    expect(layout.blocks).toHaveLength(Math.ceil(layout.text_bytes / 1024));
    expect(layout.blocks[0]).toBe(sha256Hex(bytes.subarray(layout.head_bytes, layout.head_bytes + 1024)));
  });
});

function manifest(overrides: Record<string, unknown> = {}): SnapshotManifest {
  return {
    format_version: SNAPSHOT_FORMAT_VERSION,
    version: "20261125T190000Z-abc123",
    created_at: "2026-11-25T19:00:00.000Z",
    embedder: { kind: "hashing", model: "hashing-v1", dimensions: 64, normalized: true },
    metric: "inner_product",
    index_type: "flat",
    index_params: { factory: "Flat" },
    counts: { documents: 1, passages: 2 },
    files: {
      [INDEX_FILE]: { key: INDEX_FILE, bytes: 3, sha256: sha256Hex(new Uint8Array([1, 2, 3])) },
      [PASSAGES_FILE]: { key: PASSAGES_FILE, bytes: 0, sha256: sha256Hex(new Uint8Array(0)) },
    },
    ...overrides,
  } as SnapshotManifest;
}

describe("manifest", () => {
  it("parses a valid manifest from bytes, text or a value, keeping unknown fields", () => {
    const m = manifest({ future_field: { x: 1 } });
    const text = JSON.stringify(m);
    expect(parseManifest(text)).toEqual(m);
    expect(parseManifest(new TextEncoder().encode(text))).toEqual(m);
    expect((parseManifest(m) as unknown as { future_field: unknown }).future_field).toEqual({ x: 1 });
  });

  it("refuses garbage with a message naming the problem", () => {
    expect(() => parseManifest("not json")).toThrow(/manifest.json is not JSON/);
    expect(() => parseManifest("[]")).toThrow(SnapshotInvalidError);
    expect(() => parseManifest(manifest({ metric: "l2" }))).toThrow(/metric/);
    expect(() => parseManifest(manifest({ version: "latest" }))).toThrow(/version/);
    expect(() =>
      parseManifest(manifest({ embedder: { kind: "word2vec", model: "x", dimensions: 3, normalized: true } })),
    ).toThrow(/embedder.kind/);
    expect(() => parseManifest(manifest({ counts: { documents: -1, passages: 2 } }))).toThrow(/counts.documents/);
    expect(() =>
      parseManifest(manifest({ files: { [INDEX_FILE]: { key: INDEX_FILE, bytes: 3, sha256: "abc" } } })),
    ).toThrow(/sha256/);
    expect(() => parseManifest(manifest({ files: {} }))).toThrow(/lists no index.faiss/);
    expect(() => parseManifest(manifest({ format_version: SNAPSHOT_FORMAT_VERSION + 1 }))).toThrow(/reads up to/);
  });

  it("verifies a file's size and sha256 against the manifest", () => {
    const m = manifest();
    expect(() => verifySnapshotFile(INDEX_FILE, new Uint8Array([1, 2, 3]), m)).not.toThrow();
    expect(() => verifySnapshotFile(INDEX_FILE, new Uint8Array([1, 2, 4]), m)).toThrow(/sha256 .* does not match/);
    expect(() => verifySnapshotFile(INDEX_FILE, new Uint8Array([1, 2]), m)).toThrow(/has 2 bytes, the manifest says 3/);
    expect(() => verifySnapshotFile("extra.bin", new Uint8Array(), m)).toThrow(/no file "extra.bin"/);
  });
});

describe("pointer and versions", () => {
  it("parses the pointer and refuses a malformed one", () => {
    const p = {
      version: "20261125T190000Z-abc123",
      manifest_key: "index/v/20261125T190000Z-abc123/manifest.json",
      created_at: "2026-11-25T19:00:00Z",
    };
    expect(parsePointer(JSON.stringify(p))).toEqual(p);
    expect(() => parsePointer("{")).toThrow(/LATEST.json is not JSON/);
    expect(() => parsePointer(JSON.stringify({ ...p, version: 3 }))).toThrow(/LATEST.json is invalid: version/);
  });

  it("makes versions that sort by creation time and name their keys", () => {
    const a = newSnapshotVersion(new Date("2026-11-25T19:00:00.123Z"), "aaaaaa");
    const b = newSnapshotVersion(new Date("2026-11-25T19:00:01Z"));
    const c = newSnapshotVersion(new Date("2027-01-01T00:00:00Z"));
    expect(a).toBe("20261125T190000Z-aaaaaa");
    expect(isSnapshotVersion(b)).toBe(true);
    expect(isSnapshotVersion("../etc")).toBe(false);
    expect([a, c, b].sort(compareVersionsDesc)).toEqual([c, b, a]);
    expect(snapshotFileKey("index/", a, INDEX_FILE)).toBe(`index/v/${a}/index.faiss`);
    expect(pointerKey("index/")).toBe("index/LATEST.json");
    expect(versionOfKey("index/", `index/v/${a}/manifest.json`)).toBe(a);
    expect(versionOfKey("index/", "index/LATEST.json")).toBeNull();
  });
});
