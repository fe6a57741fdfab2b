// The local tools' embedded defaults: which embedder and second stage run when nothing is
// configured (fetched models in models/ first, then the offline hashing embedder and the lexical
// reranker; a generated fixture only when asked for, announced as such), and the first-run model
// fetch offer's checks.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../shared/core/config.ts";
import {
  DEFAULT_EMBEDDING_MODEL,
  DEFAULT_RERANKER_MODEL,
  fixtureNotice,
  hasOnnxModel,
  lexicalNotice,
  resolveEmbeddedDefaults,
} from "../../scripts/local/defaults.ts";
import { huggingFaceReachable, missingModels } from "../../scripts/local/fetch-offer.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";

let tmp: string;
let emptyModels: string;
let fetchedModels: string;

/** A folder shaped like a fetched model (the loader is not run here, only the choice). */
async function fakeModel(dir: string, config: Record<string, unknown> = {}): Promise<void> {
  await mkdir(path.join(dir, "onnx"), { recursive: true });
  await writeFile(path.join(dir, "onnx", "model.onnx"), "");
  await writeFile(path.join(dir, "tokenizer.json"), "{}");
  await writeFile(path.join(dir, "config.json"), JSON.stringify(config));
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "local-defaults-"));
  emptyModels = path.join(tmp, "none");
  fetchedModels = path.join(tmp, "models");
  await fakeModel(path.join(fetchedModels, DEFAULT_EMBEDDING_MODEL));
  await fakeModel(path.join(fetchedModels, DEFAULT_RERANKER_MODEL));
  await ensureFixtureModel("tiny-cross");
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("resolveEmbeddedDefaults", () => {
  it("falls back to USE-lite + hashing (npm) and the lexical reranker, never to a fixture", async () => {
    const d = await resolveEmbeddedDefaults(loadConfig({}), { fast: true, modelsDir: emptyModels });
    expect(d.embedder.kind).toBe("use-lite+hashing");
    expect(d.reranker).toMatchObject({ kind: "lexical", name: "lexical-v1", fixture: false });
    expect(d.reranker.reason).toMatch(/no trained cross-encoder/);
    expect(d.cfg.rerankerModelDir).toBeUndefined();
    expect(d.cfg.rerankerBackend).toBe("auto");
    expect(lexicalNotice().join(" ")).toMatch(/lexical-v1.* models fetch ms-marco-MiniLM-L-6-v2/);
    // RERANKER_BACKEND=lexical wins even over a fetched model.
    const forced = await resolveEmbeddedDefaults(loadConfig({ RERANKER_BACKEND: "lexical" }), {
      modelsDir: fetchedModels,
    });
    expect(forced.reranker.kind).toBe("lexical");
  });

  it("uses a generated fixture only when asked for (RERANKER=fixture), flagged as random", async () => {
    const d = await resolveEmbeddedDefaults(loadConfig({ RERANKER: "fixture" }), {
      fast: true,
      modelsDir: fetchedModels,
    });
    expect(d.reranker).toMatchObject({ kind: "model", name: "tiny-cross", fixture: true });
    expect(d.cfg).toMatchObject({ reranker: "in-process", rerankerBackend: "onnx", rerankerModelDir: d.reranker.dir });
    expect(hasOnnxModel(d.reranker.dir!)).toBe(true);
    expect(fixtureNotice(d.reranker).join(" ")).toMatch(/RERANKER IS A FIXTURE: tiny-cross .* NO meaning/);
  });

  it("prefers models fetched into models/, and OpenAI when a key is set", async () => {
    const d = await resolveEmbeddedDefaults(loadConfig({}), { modelsDir: fetchedModels });
    expect(d.embedder.kind).toBe("onnx");
    expect(d.cfg.embeddingModelDir).toBe(path.join(fetchedModels, DEFAULT_EMBEDDING_MODEL));
    expect(d.reranker).toMatchObject({ kind: "model", name: DEFAULT_RERANKER_MODEL, fixture: false });
    const withKey = await resolveEmbeddedDefaults(loadConfig({ OPENAI_API_KEY: "sk-test" }), {
      modelsDir: fetchedModels,
    });
    expect(withKey.embedder.kind).toBe("openai");
  });

  it("respects explicit settings: RERANKER_MODEL_DIR (fixture detected from config.json), RERANKER=none/http, --no-rerank", async () => {
    const own = path.join(tmp, "own-fixture");
    await fakeModel(own, { fixture: true });
    const explicit = await resolveEmbeddedDefaults(loadConfig({ RERANKER_MODEL_DIR: own }), {
      modelsDir: fetchedModels,
    });
    expect(explicit.reranker).toMatchObject({ kind: "model", dir: own, fixture: true });

    const none = await resolveEmbeddedDefaults(loadConfig({ RERANKER: "none" }), { modelsDir: fetchedModels });
    expect(none.reranker.kind).toBe("none");
    const off = await resolveEmbeddedDefaults(loadConfig({}), { rerank: false, modelsDir: fetchedModels });
    expect(off).toMatchObject({ reranker: { kind: "none" }, cfg: { reranker: "none" } });
    const http = await resolveEmbeddedDefaults(loadConfig({ RERANKER: "http", RERANKER_URL: "http://127.0.0.1:9/" }), {
      modelsDir: emptyModels,
    });
    expect(http.reranker).toMatchObject({ kind: "remote", fixture: false });
    expect(http.cfg.rerankerModelDir).toBeUndefined();
  });
});

describe("model fetch offer", () => {
  let server: Server;
  let seen: string[];
  beforeAll(async () => {
    seen = [];
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(200).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("offers only the default models that are missing and not replaced by settings", () => {
    expect(missingModels(loadConfig({}), emptyModels)).toEqual([DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL]);
    expect(missingModels(loadConfig({}), fetchedModels)).toEqual([]);
    expect(missingModels(loadConfig({ OPENAI_API_KEY: "sk-test", RERANKER: "none" }), emptyModels)).toEqual([]);
    expect(missingModels(loadConfig({ RERANKER_MODEL_DIR: "/x" }), emptyModels)).toEqual([DEFAULT_EMBEDDING_MODEL]);
  });

  it("probes the Hugging Face endpoint (HF_ENDPOINT) with a short timeout", async () => {
    const saved = process.env.HF_ENDPOINT;
    try {
      process.env.HF_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      expect(await huggingFaceReachable(2000)).toBe(true);
      expect(seen).toEqual([`HEAD /api/models/cross-encoder/${DEFAULT_RERANKER_MODEL}`]);
      process.env.HF_ENDPOINT = "http://127.0.0.1:9";
      expect(await huggingFaceReachable(2000)).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });
});
