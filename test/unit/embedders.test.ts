import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/core/config.ts";
import {
  assertEmbedderMatches,
  describeIdentity,
  dot,
  l2normalize,
  sameIdentity,
} from "../../shared/core/embedding.ts";
import { ConfigError, EmbedderMismatchError, SnapshotInvalidError } from "../../shared/core/errors.ts";
import type { EmbedderIdentity } from "../../shared/core/types.ts";

// Native addons loaded by this process, recorded from here on: the hashing and OpenAI paths must not
// pull in onnxruntime. Modules under test are imported after the hook is in place.
const loadedAddons: string[] = [];
const realDlopen = process.dlopen;
process.dlopen = ((module: unknown, filename: string, ...rest: unknown[]) => {
  loadedAddons.push(filename);
  return (realDlopen as (...a: unknown[]) => unknown)(module, filename, ...rest);
}) as typeof process.dlopen;

const { computeCorpusStats, corpusStatsBuilder, createEmbedder, describeEmbedderChoice } = await import(
  "../../shared/adapters/embedders.ts"
);
const { HASHING_MODEL, computeHashingStats } = await import("../../shared/adapters/hash-embedder.ts");

const tmp = mkdtempSync(path.join(tmpdir(), "embedders-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A folder that looks like a sentence-transformers export (only the file auto-detection checks). */
function fakeModelDir(withOnnx: boolean): string {
  const dir = mkdtempSync(path.join(tmp, "model-"));
  if (withOnnx) {
    mkdirSync(path.join(dir, "onnx"));
    writeFileSync(path.join(dir, "onnx", "model.onnx"), "");
  }
  return dir;
}

const hashing = (dimensions: number): EmbedderIdentity => ({
  kind: "hashing",
  model: HASHING_MODEL,
  dimensions,
  normalized: true,
});
const openai = (dimensions = 1536, model = "text-embedding-3-small"): EmbedderIdentity => ({
  kind: "openai",
  model,
  dimensions,
  normalized: true,
});

describe("l2normalize and identities", () => {
  it("normalises in place and leaves zero vectors alone", () => {
    const v = Float32Array.from([3, 4]);
    expect(l2normalize(v)).toBe(v);
    expect(Array.from(v)).toEqual([0.6000000238418579, 0.800000011920929]);
    expect(Array.from(l2normalize(new Float32Array(3)))).toEqual([0, 0, 0]);
    expect(dot(Float32Array.from([1, 2]), Float32Array.from([3, 4]))).toBe(11);
  });

  it("compares every field of an identity, pooling included", () => {
    const onnx: EmbedderIdentity = { kind: "onnx", model: "m", dimensions: 384, normalized: true, pooling: "mean" };
    expect(sameIdentity(onnx, { ...onnx })).toBe(true);
    for (const change of [
      { kind: "hashing" },
      { model: "n" },
      { dimensions: 768 },
      { normalized: false },
      { pooling: "cls" },
      { pooling: undefined },
    ]) {
      expect(sameIdentity(onnx, { ...onnx, ...change } as EmbedderIdentity)).toBe(false);
    }
    expect(describeIdentity(onnx)).toBe("onnx/m (384 dims, normalised, mean pooling)");
  });

  it("assertEmbedderMatches names both identities and how to fix it", () => {
    expect(() => assertEmbedderMatches(hashing(2048), hashing(2048))).not.toThrow();
    try {
      assertEmbedderMatches(hashing(1024), openai());
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(EmbedderMismatchError);
      const err = e as EmbedderMismatchError;
      expect(err.status).toBe(409);
      expect(err.code).toBe("embedder_mismatch");
      expect(err.message).toContain("hashing/hashing-v1-uni+bi (1024 dims");
      expect(err.message).toContain("openai/text-embedding-3-small (1536 dims");
      expect(err.message).toMatch(/reindex/);
      expect(err.message).toContain("EMBEDDER=hashing HASHING_DIMENSIONS=1024");
    }
  });
});

describe("describeEmbedderChoice", () => {
  const cfg = (env: Record<string, string>) => loadConfig(env);

  it("auto: openai with a key, else onnx with a model file, else use-lite+hashing, else hashing", () => {
    const withModel = fakeModelDir(true);
    const noModel = fakeModelDir(false);
    expect(describeEmbedderChoice(cfg({ OPENAI_API_KEY: "sk-x", EMBEDDING_MODEL_DIR: withModel })).kind).toBe("openai");
    expect(describeEmbedderChoice(cfg({ EMBEDDING_MODEL_DIR: withModel }))).toEqual({
      kind: "onnx",
      reason: expect.stringContaining(path.join(withModel, "onnx", "model.onnx")),
    });
    // The USE-lite package is a regular dependency, so a checkout has it.
    const missing = describeEmbedderChoice(cfg({ EMBEDDING_MODEL_DIR: noModel }));
    expect(missing.kind).toBe("use-lite+hashing");
    expect(missing.reason).toMatch(/does not exist/);
    expect(describeEmbedderChoice(cfg({}))).toEqual({
      kind: "use-lite+hashing",
      reason: expect.stringMatching(/no OPENAI_API_KEY.*Universal Sentence Encoder Lite/),
    });
    // Without the package: the hashing embedder.
    const notInstalled = () => false;
    expect(describeEmbedderChoice(cfg({}), undefined, notInstalled)).toEqual({
      kind: "hashing",
      reason: expect.stringMatching(/no OPENAI_API_KEY/),
    });
    const noModelNoPackage = describeEmbedderChoice(cfg({ EMBEDDING_MODEL_DIR: noModel }), undefined, notInstalled);
    expect(noModelNoPackage).toMatchObject({ kind: "hashing", reason: expect.stringMatching(/does not exist/) });
    // A snapshot joined with USE-lite cannot be followed without the package: explicit kinds still win.
    expect(describeEmbedderChoice(cfg({ EMBEDDER: "use-lite+hashing" }), undefined, notInstalled).kind).toBe(
      "use-lite+hashing",
    );
  });

  it("an explicit EMBEDDER wins, even over a snapshot", () => {
    expect(describeEmbedderChoice(cfg({ EMBEDDER: "hashing", OPENAI_API_KEY: "k" }))).toEqual({
      kind: "hashing",
      reason: "EMBEDDER=hashing",
    });
    expect(describeEmbedderChoice(cfg({ EMBEDDER: "openai" }), hashing(64)).kind).toBe("openai");
  });

  it("auto follows the snapshot's kind when it can run it", () => {
    const c = cfg({ OPENAI_API_KEY: "sk-x" });
    expect(describeEmbedderChoice(c, hashing(512))).toEqual({
      kind: "hashing",
      reason: expect.stringMatching(/follows the snapshot/),
    });
    // no key: cannot follow, so the offline default
    expect(describeEmbedderChoice(cfg({}), openai()).kind).toBe("use-lite+hashing");
    expect(describeEmbedderChoice(cfg({}), hashing(512)).kind).toBe("hashing");
  });
});

describe("createEmbedder", () => {
  it("builds the hashing embedder from HASHING_DIMENSIONS by default", async () => {
    const e = await createEmbedder(loadConfig({ EMBEDDER: "hashing", HASHING_DIMENSIONS: "256" }));
    expect(e.identity).toEqual(hashing(256));
    expect(await createEmbedder(loadConfig({ EMBEDDER: "hashing" }))).toHaveProperty("identity.dimensions", 2048);
  });

  it("matches a hashing snapshot's dimensions and uses its corpus stats for queries", async () => {
    const texts = ["wing flutter", "wing design", "wing loads", "wing tips"];
    const stats = computeCorpusStats(hashing(128), texts);
    expect(stats).toEqual(computeHashingStats(texts, 128));
    const c = loadConfig({ HASHING_DIMENSIONS: "4096" });
    const withStats = await createEmbedder(c, {
      identity: hashing(128),
      corpusStats: JSON.parse(JSON.stringify(stats)),
    });
    const without = await createEmbedder(c, { identity: hashing(128) });
    expect(withStats.identity.dimensions).toBe(128);
    const [d] = await withStats.embedDocuments(["wing flutter"]);
    // IDF raises the rare term "flutter" in the query, so the query moves towards the flutter passage's own vector.
    expect(dot(await withStats.embedQuery("wing flutter"), d)).not.toBe(
      dot(await without.embedQuery("wing flutter"), d),
    );
    await expect(createEmbedder(c, { identity: hashing(128), corpusStats: { n: 1, df: [1] } })).rejects.toBeInstanceOf(
      SnapshotInvalidError,
    );
  });

  it("builds the OpenAI embedder matching a snapshot's model and dimensions", async () => {
    const c = loadConfig({ OPENAI_API_KEY: "sk-test", OPENAI_EMBEDDING_MODEL: "text-embedding-3-large" });
    expect((await createEmbedder(c)).identity).toEqual(openai(3072, "text-embedding-3-large"));
    expect((await createEmbedder(c, { identity: openai(256) })).identity).toEqual(openai(256));
    const dims = loadConfig({ OPENAI_API_KEY: "sk-test", OPENAI_EMBEDDING_DIMENSIONS: "512" });
    expect((await createEmbedder(dims)).identity).toEqual(openai(512));
  });

  it("refuses an embedder that cannot match the snapshot, with the fix in the message", async () => {
    const err = await createEmbedder(loadConfig({ EMBEDDER: "hashing" }), { identity: openai() }).catch((e) => e);
    expect(err).toBeInstanceOf(EmbedderMismatchError);
    expect(err.message).toContain("EMBEDDER=openai OPENAI_EMBEDDING_MODEL=text-embedding-3-small");
  });

  it("names the missing setting for an explicit kind", async () => {
    await expect(createEmbedder(loadConfig({ EMBEDDER: "openai" }))).rejects.toMatchObject({
      variable: "OPENAI_API_KEY",
    });
    await expect(createEmbedder(loadConfig({ EMBEDDER: "onnx" }))).rejects.toMatchObject({
      variable: "EMBEDDING_MODEL_DIR",
    });
    await expect(createEmbedder(loadConfig({ EMBEDDER: "openai" }))).rejects.toBeInstanceOf(ConfigError);
  });

  it("offers corpus statistics only for the hashing embedder", () => {
    expect(corpusStatsBuilder(openai())).toBeNull();
    expect(computeCorpusStats(openai(), ["x"])).toBeUndefined();
    const b = corpusStatsBuilder(hashing(32))!;
    b.add("a b");
    expect(b.finish()).toMatchObject({ n: 1, dimensions: 32, model: HASHING_MODEL });
  });

  it("never loads onnxruntime for the hashing and OpenAI embedders", async () => {
    await createEmbedder(loadConfig({ EMBEDDER: "hashing" }));
    await createEmbedder(loadConfig({ OPENAI_API_KEY: "sk-test" }));
    expect(loadedAddons.filter((f) => /onnxruntime/i.test(f))).toEqual([]);
  });

  it("loads the ONNX embedder lazily when chosen (and the addon hook sees it)", async () => {
    const { ensureFixtureModel } = await import("../helpers/fixtures.ts");
    const dir = await ensureFixtureModel("tiny-bi");
    const c = loadConfig({ EMBEDDING_MODEL_DIR: dir });
    expect(describeEmbedderChoice(c).kind).toBe("onnx");
    // auto without a key cannot follow an OpenAI snapshot (it builds USE-lite + hashing, on onnxruntime)
    await expect(createEmbedder(loadConfig({}), { identity: openai() })).rejects.toBeInstanceOf(EmbedderMismatchError);
    const e = await createEmbedder(c);
    expect(e.identity).toMatchObject({ kind: "onnx", pooling: "mean", normalized: true });
    const [v] = await e.embedDocuments(["hello world"]);
    expect(dot(v, v)).toBeCloseTo(1, 5);
    expect(loadedAddons.some((f) => /onnxruntime/i.test(f))).toBe(true);
    // A snapshot built with CLS pooling gets a CLS embedder, whatever EMBEDDING_POOLING says.
    const cls = await createEmbedder(c, { identity: { ...e.identity, pooling: "cls" } });
    expect(cls.identity.pooling).toBe("cls");
  });
});
