// The model fetcher against a real HTTP server on loopback that speaks the two Hugging Face routes
// it uses (/api/models/<repo>/revision/<rev> and /<repo>/resolve/<commit>/<path>, with the CDN
// redirect for large files), and the S3 upload against s3rver.
import { createServer, type Server } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { fetchModel, fetchModelCli, FetchModelError, parseS3Url } from "../../scripts/fetch-model.ts";
import { listModelFiles, verifyChecksums } from "../../scripts/fixtures/checksums.ts";
import { ensureFixtureModel } from "../helpers/fixtures.ts";
import { startLocalS3, type LocalS3 } from "../helpers/s3rver.ts";

const REPO = "cross-encoder/ms-marco-MiniLM-L-6-v2";
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

interface FakeHub {
  url: string;
  requests: string[];
  /** Files the repository holds (path -> bytes). */
  files: Map<string, Buffer>;
  /** Paths whose body is cut short after the headers announce the full length. */
  truncate: Set<string>;
  close(): Promise<void>;
}

async function startFakeHub(source: string): Promise<FakeHub> {
  const files = new Map<string, Buffer>();
  for (const rel of await listModelFiles(source)) files.set(rel, await readFile(path.join(source, rel)));
  const requests: string[] = [];
  const truncate = new Set<string>();
  const server: Server = createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? "");
    requests.push(url);
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url);
    if (api) {
      if (api[1] !== REPO || (api[2] !== "main" && api[2] !== COMMIT)) return void res.writeHead(404).end("{}");
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(
        JSON.stringify({ id: REPO, sha: COMMIT, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }),
      );
    }
    const resolve = new RegExp(`^/${REPO}/resolve/${COMMIT}/(.+)$`).exec(url);
    if (resolve && files.has(resolve[1])) {
      // Large files live on a CDN: the hub answers with a redirect, as huggingface.co does for LFS.
      if (resolve[1].endsWith(".onnx")) return void res.writeHead(302, { location: `/cdn/${resolve[1]}` }).end();
      return void res.writeHead(200, { "content-length": files.get(resolve[1])!.length }).end(files.get(resolve[1]));
    }
    const cdn = /^\/cdn\/(.+)$/.exec(url);
    if (cdn && files.has(cdn[1])) {
      const body = files.get(cdn[1])!;
      res.writeHead(200, { "content-length": body.length });
      if (truncate.has(cdn[1])) {
        res.write(body.subarray(0, body.length >> 1));
        return void res.destroy();
      }
      return void res.end(body);
    }
    res.writeHead(404).end("not found");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    files,
    truncate,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

let fixture: string;
let hub: FakeHub;
let work: string;
const quiet = () => {};

beforeAll(async () => {
  fixture = await ensureFixtureModel("tiny-cross");
  hub = await startFakeHub(fixture);
  work = mkdtempSync(path.join(tmpdir(), "fetch-model-"));
});
afterAll(async () => {
  await hub?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("fetch-model", () => {
  it("fails fast with a clear message when the hub is unreachable (HF_ENDPOINT on a closed port)", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    try {
      const err = await fetchModel({
        id: "ms-marco-MiniLM-L-6-v2",
        outDir: path.join(work, "offline"),
        log: quiet,
      }).catch((e) => e);
      expect(err).toBeInstanceOf(FetchModelError);
      expect(err.message).toMatch(new RegExp(`cannot reach http://127.0.0.1:${port} \\(ECONNREFUSED\\)`));
      expect(err.message).toMatch(/models fixture/);
      expect(existsSync(path.join(work, "offline"))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });

  it("downloads every file at the resolved commit, follows CDN redirects and writes verifiable checksums", async () => {
    const out = path.join(work, "ms");
    const r = await fetchModel({
      id: "ms-marco-MiniLM-L-6-v2",
      outDir: out,
      endpoint: hub.url,
      quantized: true,
      log: quiet,
    });
    expect(r.commit).toBe(COMMIT);
    expect(r.cached).toBe(false);
    for (const rel of [
      "config.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "vocab.txt",
      "onnx/model.onnx",
    ]) {
      expect(readFileSync(path.join(out, rel)).equals(hub.files.get(rel)!), rel).toBe(true);
    }
    // Absent upstream (optional): --quantized writes it here from the fp32 graph (models quantize).
    expect(existsSync(path.join(out, "onnx/model_quantized.onnx"))).toBe(true);
    const checksums = JSON.parse(readFileSync(path.join(out, "checksums.json"), "utf8"));
    expect(checksums.source).toMatchObject({ repo: REPO, revision: "main", commit: COMMIT });
    expect(checksums.files["onnx/model.onnx"].bytes).toBe(hub.files.get("onnx/model.onnx")!.length);
    expect(await verifyChecksums(out, checksums)).toEqual([]);
    expect(hub.requests).toContain(`/cdn/onnx/model.onnx`);
    expect(hub.requests.filter((u) => u.includes("/resolve/")).every((u) => u.includes(COMMIT))).toBe(true);
  });

  it("reuses a folder that already holds the commit, and notices a corrupted file", async () => {
    const out = path.join(work, "ms");
    hub.requests.length = 0;
    const again = await fetchModel({ id: REPO, outDir: out, endpoint: hub.url, log: quiet });
    expect(again.cached).toBe(true);
    expect(hub.requests.filter((u) => u.includes("/resolve/"))).toEqual([]);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(path.join(out, "vocab.txt"), "tampered\n");
    const repaired = await fetchModel({ id: REPO, outDir: out, endpoint: hub.url, log: quiet });
    expect(repaired.cached).toBe(false);
    expect(readFileSync(path.join(out, "vocab.txt")).equals(hub.files.get("vocab.txt")!)).toBe(true);
  });

  it("reports a missing model, a missing required file and a broken download without leaving partial folders", async () => {
    await expect(
      fetchModel({ id: "someone/unknown-model", outDir: path.join(work, "x"), endpoint: hub.url, log: quiet }),
    ).rejects.toThrow(/not found/);
    await expect(
      fetchModel({
        id: REPO,
        outDir: path.join(work, "x"),
        endpoint: hub.url,
        files: ["onnx/missing.onnx"],
        log: quiet,
      }),
    ).rejects.toThrow(/has no onnx\/missing.onnx/);
    hub.truncate.add("onnx/model.onnx");
    try {
      const out = path.join(work, "broken");
      await expect(fetchModel({ id: REPO, outDir: out, endpoint: hub.url, log: quiet })).rejects.toThrow(
        FetchModelError,
      );
      expect(existsSync(out)).toBe(false);
      expect(existsSync(`${out}.tmp-${process.pid}`)).toBe(false);
    } finally {
      hub.truncate.clear();
    }
    expect(() => parseS3Url("https://bucket/x", "m")).toThrow(/s3:\/\/bucket/);
  });

  describe("--upload", () => {
    let s3: LocalS3;
    const saved: Record<string, string | undefined> = {};
    beforeAll(async () => {
      s3 = await startLocalS3();
      const env = {
        HF_ENDPOINT: hub.url,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
        AWS_REGION: "us-east-1",
      };
      for (const [k, v] of Object.entries(env)) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
    });
    afterAll(async () => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await s3?.close();
    });

    it("uploads the fetched folder, checksums.json included, under the model prefix", async () => {
      const out = path.join(work, "upload");
      await fetchModelCli([REPO, "--out", out, "--upload", `s3://${s3.bucket}`], quiet);
      const store = createS3Store({
        bucket: s3.bucket,
        endpoint: s3.endpoint,
        forcePathStyle: true,
        credentials: s3.credentials,
      });
      const keys: string[] = [];
      for await (const o of store.list("models/ms-marco-MiniLM-L-6-v2/")) keys.push(o.key);
      const local = [...(await listModelFiles(out)), "checksums.json"].map((f) => `models/ms-marco-MiniLM-L-6-v2/${f}`);
      expect(keys.sort()).toEqual(local.sort());
      const got = await store.get("models/ms-marco-MiniLM-L-6-v2/onnx/model.onnx");
      expect(Buffer.from(got!.body).equals(readFileSync(path.join(out, "onnx/model.onnx")))).toBe(true);
    });
  });
});
