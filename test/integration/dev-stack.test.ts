// `npm run demo` (scripts/dev.ts) as a child process on free ports: s3rver, the demo corpus
// uploaded and indexed through s3rver's events, the reranker service and the search API. A new
// document uploaded to the local bucket with the S3 client becomes searchable without a restart;
// SIGINT stops everything with exit code 0 and frees every port; a second run reuses the bucket
// and the snapshot instead of rebuilding it.
import { readdir } from "node:fs/promises";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Child, cleanEnv, portOpen, spawnScript } from "../helpers/child.ts";

interface Hit {
  id: string;
  doc_id: string;
  retrieval: { rank: number };
  rerank: { rank: number } | null;
}
interface SearchAnswer {
  results: Hit[];
  reranked: boolean;
  warnings: string[];
  index: { version: string; count: number };
}

const repoRoot = path.resolve(import.meta.dirname, "../..");
let dataDir: string;
let env: NodeJS.ProcessEnv;
let stack: Child | undefined;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "dev-stack-"));
  env = cleanEnv({
    PORT: "0",
    RERANKER_PORT: "0",
    S3_PORT: "0",
    RERANKER_TIMEOUT_MS: "60000",
  });
});

afterAll(async () => {
  stack?.kill();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Ids of the demo corpus documents: JSONL row ids and the paths of Markdown/text files. */
async function demoDocIds(): Promise<Set<string>> {
  const dir = path.join(repoRoot, "scripts/demo-corpus");
  const ids = new Set<string>();
  const { readFile } = await import("node:fs/promises");
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const rel = path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/");
    if (rel.endsWith(".jsonl")) {
      for (const line of (await readFile(path.join(dir, rel), "utf8")).split("\n").filter(Boolean))
        ids.add((JSON.parse(line) as { id: string }).id);
    } else ids.add(rel);
  }
  return ids;
}

async function search(url: string, body: Record<string, unknown>): Promise<SearchAnswer> {
  const res = await fetch(`${url}/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as SearchAnswer;
}

describe("npm run demo", () => {
  let url: string;
  let s3Endpoint: string;
  let bucket: string;
  let versionAfterUpload: string;

  it("starts s3rver, indexes the demo corpus through the S3 events and serves it", async () => {
    stack = spawnScript(["scripts/dev.ts", "--data-dir", dataDir], env);
    // The banner is printed line by line: wait for its last line, not its first.
    await stack.waitFor(/aws --endpoint-url \S+ s3 cp notes.md/, 180_000);
    const out = stack.output();
    url = out.match(/search API\s+(http:\/\/127\.0\.0\.1:\d+)/)![1];
    [, s3Endpoint, bucket] = out.match(/local S3\s+(http:\/\/127\.0\.0\.1:\d+)\s+bucket (\S+)/)!;
    expect(out).toMatch(new RegExp(`playground\\s+${url}/`));
    // No trained cross-encoder on this machine: the weight-free lexical reranker, in the search process.
    expect(out).toMatch(/reranker\s+lexical-v1 \(no trained cross-encoder/);
    expect(out).toMatch(/Second stage: lexical-v1/);
    expect(out).toMatch(/models fetch ms-marco-MiniLM-L-6-v2/);
    expect(out).toMatch(/reranker\s+in the search process/);
    expect(out).not.toMatch(/FIXTURE/);
    // The embedded default first stage: USE-lite (trained, from npm) joined with hashing.
    expect(out).toMatch(/embedder\s+use-lite\+hashing \(/);
    expect(out).toMatch(/uploaded 9 demo files/);
    expect(out).toMatch(/reindexed\s+\S+: \d+ documents/);
    const curls = out.split("\n").filter((l) => l.trim().startsWith("curl "));
    expect(curls).toHaveLength(2);

    const health = (await (await fetch(`${url}/health`)).json()) as {
      status: string;
      store: { kind: string; bucket: string; endpoint: string };
      reranker: { kind: string; fixture?: boolean; model?: string; note?: string };
      embedder: { setting: string; identity: { kind: string } };
      index: { count: number };
    };
    expect(health.embedder).toMatchObject({ setting: "auto", identity: { kind: "use-lite+hashing" } });
    expect(health.status).toBe("ok");
    expect(health.store).toEqual({ kind: "s3", bucket, endpoint: s3Endpoint });
    expect(health.reranker).toMatchObject({ kind: "in-process", model: "lexical-v1" });
    expect(health.reranker.fixture).not.toBe(true);
    expect(health.reranker.note).toMatch(/lexical reranker: no trained cross-encoder .*models fetch/);

    const ids = await demoDocIds();
    expect(ids.size).toBeGreaterThanOrEqual(20);
    const res = await search(url, { query: "how are index snapshots published with a pointer", k: 5 });
    expect(res.reranked).toBe(true);
    expect(res.results).toHaveLength(5);
    for (const h of res.results) expect(ids.has(h.doc_id), h.doc_id).toBe(true);
    const firstStage = await search(url, {
      query: "how are index snapshots published with a pointer",
      k: 1,
      rerank: false,
    });
    expect(firstStage.results[0].doc_id).toBe("operations/snapshots.md");

    // The two printed curl commands, run as printed (reranked, default settings), answer with the
    // document that answers them first: a user's first impression of the service.
    const get = curls[0].match(/'(http[^']+)'/)![1];
    const getRes = await fetch(get);
    expect(getRes.status).toBe(200);
    const getAnswer = (await getRes.json()) as SearchAnswer & { retrieval: string; fusion: string };
    expect(getAnswer.reranked).toBe(true);
    expect(getAnswer.retrieval).toBe("hybrid");
    // The lexical reranker's score is blended with the first stage's, not put in its place.
    expect(getAnswer.fusion).toBe("linear");
    expect(getAnswer.results[0].doc_id).toBe("notes/why-two-stages.txt");
    const body = JSON.parse(curls[1].match(/-d '([^']+)'/)![1]) as Record<string, unknown>;
    const postAnswer = await search(url, body);
    expect(postAnswer.reranked).toBe(true);
    expect(postAnswer.warnings).toEqual([]);
    expect(postAnswer.results[0].doc_id).toBe("operations/snapshots.md");
  });

  it("makes a document uploaded to the local bucket searchable without a restart", async () => {
    const s3 = new S3Client({
      endpoint: s3Endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    });
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "corpus/uploads/axolotl.md",
        Body: "# Axolotl regeneration\n\nAn axolotl regrows a lost limb, including bone and nerves, within weeks.\n",
      }),
    );
    const deadline = Date.now() + 90_000;
    let found: Hit | undefined;
    while (!found && Date.now() < deadline) {
      const res = await search(url, { query: "axolotl regrows a lost limb", k: 1 });
      found = res.results.find((h) => h.doc_id === "uploads/axolotl.md");
      if (!found) await new Promise((r) => setTimeout(r, 500));
    }
    expect(found, `not searchable in time; output:\n${stack!.output()}`).toBeDefined();
    // A second upload, searched by its own rare words with default settings: it comes first.
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "corpus/uploads/festival.md",
        Body: "# Village events\n\nThe quokka xylophone festival opens the summer season on the island.\n",
      }),
    );
    let festival: SearchAnswer | undefined;
    while (Date.now() < deadline) {
      festival = await search(url, { query: "quokka xylophone festival", k: 3 });
      if (festival.results.some((h) => h.doc_id === "uploads/festival.md")) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(festival!.reranked).toBe(true);
    expect(festival!.results[0].doc_id).toBe("uploads/festival.md");
    expect(stack!.output()).toMatch(/reindexed\s+\S+: \d+ documents, \d+ passages \(embedded 1, cached \d+\)/);
    const health = (await (await fetch(`${url}/health`)).json()) as { index: { version: string } };
    versionAfterUpload = health.index.version;
  });

  it("stops everything on SIGINT with exit code 0 and frees the ports", async () => {
    const ports = [url, s3Endpoint].map((u) => Number(new URL(u).port));
    for (const p of ports) expect(await portOpen(p)).toBe(true);
    stack!.process.kill("SIGINT");
    expect(await stack!.exited).toEqual({ code: 0, signal: null });
    expect(stack!.output()).toMatch(/SIGINT: stopping\s+stopped/);
    for (const p of ports) expect(await portOpen(p), `port ${p}`).toBe(false);
  });

  it("re-running reuses the bucket, the objects and the snapshot (--once: start, check, stop)", async () => {
    const again = spawnScript(["scripts/dev.ts", "--data-dir", dataDir, "--once", "--no-rerank-service"], env);
    stack = again;
    const exit = await again.exited;
    const out = again.output();
    expect(exit, out).toEqual({ code: 0, signal: null });
    expect(out).toMatch(/reusing 11 objects/);
    expect(out).not.toMatch(/uploaded \d+ demo files/);
    expect(out).not.toMatch(/reindexed/);
    expect(out).toMatch(new RegExp(`index\\s+${versionAfterUpload}, \\d+ passages`));
    expect(out).toMatch(/reranker\s+in the search process/);
    expect(out).toMatch(/check: search answered with \S+/);
  });

  it("SEARCH_SHARDS=http INDEX_SHARDS=2: indexes into two index files and answers through two shard worker processes", async () => {
    const own = await mkdtemp(path.join(os.tmpdir(), "dev-stack-shards-"));
    try {
      const sharded = spawnScript(["scripts/dev.ts", "--data-dir", own, "--once", "--no-rerank-service"], {
        ...env,
        SEARCH_SHARDS: "http",
        INDEX_SHARDS: "2",
      });
      stack = sharded;
      const exit = await sharded.exited;
      const out = sharded.output();
      expect(exit, out).toEqual({ code: 0, signal: null });
      expect(out).toMatch(/reindexed/);
      expect(out).toMatch(
        /index shards 2 worker processes \(SEARCH_SHARDS=http\): http:\/\/127\.0\.0\.1:\d+ http:\/\/127\.0\.0\.1:\d+/,
      );
      expect(out).toMatch(/check: search answered with \S+/);
      const files = (await readdir(own, { recursive: true })).map(String);
      expect(files.some((f) => f.includes("index-1.faiss"))).toBe(true);
      expect(files.some((f) => f.includes("index-2.faiss"))).toBe(false);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });
});
