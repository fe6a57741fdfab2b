// The local CLI as a user runs it (real subprocesses): `index` a small folder into a temporary
// filesystem store (real parser, hashing embedder, faiss, build + publish), `query` it in-process
// with the tiny fixture cross-encoder on onnxruntime-node, and `serve` it over loopback HTTP for
// `query --url`. Outputs are parsed from the --json contract, never compared with recorded runs.
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureFixtureModel } from "../helpers/fixtures.ts";
import { type Child, cleanEnv, lastJsonLine, portOpen, runCli, spawnScript } from "../helpers/child.ts";
import { startLocalS3 } from "../helpers/s3rver.ts";

interface IndexSummary {
  version: string;
  previous_version: string | null;
  files: number;
  documents: number;
  passages: number;
  skipped: Array<{ key: string; line?: number; reason: string }>;
  embedder: { kind: string; dimensions: number };
  store: { kind: string; root?: string };
  index_shards: number;
}

interface Hit {
  id: string;
  doc_id: string;
  retrieval: { rank: number; score: number };
  rerank: { rank: number; score: number } | null;
}
interface SearchAnswer {
  results: Hit[];
  reranked: boolean;
  reranked_candidates: number;
  warnings: string[];
  index: { version: string; count: number };
}

let tmp: string;
let corpus: string;
let storeDir: string;
let env: NodeJS.ProcessEnv;
let serve: Child | undefined;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "cli-test-"));
  corpus = path.join(tmp, "corpus");
  storeDir = path.join(tmp, "store");
  await mkdir(path.join(corpus, "notes"), { recursive: true });
  await writeFile(
    path.join(corpus, "facts.jsonl"),
    [
      JSON.stringify({
        id: "bees",
        title: "Honeybees",
        text: "Honeybees dance to tell their hive where nectar flowers grow.",
      }),
      JSON.stringify({ id: "tides", text: "Tides rise and fall twice a day because the moon pulls on the oceans." }),
      "{ this line is broken",
      JSON.stringify({ id: "volcano", text: "Basalt lava from shield volcanoes flows far before it cools into rock." }),
    ].join("\n"),
  );
  await writeFile(
    path.join(corpus, "notes", "glaciers.md"),
    "# Glaciers\n\nA glacier grinds rock into fine sediment and leaves a moraine of gravel where its ice stops.\n",
  );
  await writeFile(
    path.join(corpus, "notes", "bread.txt"),
    "Sourdough bread rises slowly because wild yeast ferments the dough.\n",
  );
  await writeFile(path.join(corpus, "table.csv"), "a,b\n1,2\n");
  const reranker = await ensureFixtureModel("tiny-cross");
  env = cleanEnv({ EMBEDDER: "hashing", RERANKER_MODEL_DIR: reranker, RERANKER_TIMEOUT_MS: "60000" });
});

afterAll(async () => {
  serve?.kill();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("npm run cli -- index", () => {
  it("builds and publishes a snapshot of a folder, listing what it skipped", async () => {
    const r = await runCli(["index", corpus, "--store-dir", storeDir, "--json"], env);
    expect(r.code, r.stderr).toBe(0);
    const s = lastJsonLine<IndexSummary>(r.stdout);
    expect(s.files).toBe(4);
    expect(s.documents).toBe(5); // 3 JSONL rows + Markdown + text
    expect(s.passages).toBeGreaterThanOrEqual(5);
    expect(s.previous_version).toBeNull();
    expect(s.embedder.kind).toBe("hashing");
    expect(s.store).toEqual({ kind: "fs", root: storeDir });
    const reasons = s.skipped.map((k) => `${k.key}:${k.line ?? ""}`);
    expect(reasons).toEqual(expect.arrayContaining(["facts.jsonl:3", "table.csv:"]));
    // Progress bars go to an interactive stderr only; a pipe gets none.
    expect(r.stderr).not.toMatch(/ETA/);
  });

  it("re-indexing replaces the live version; --quiet prints only the version", async () => {
    const r = await runCli(["index", corpus, "--store-dir", storeDir, "--quiet"], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]+$/);
    expect(r.stderr).toBe("");
  });

  it("INDEX_SHARDS=3: publishes three index files and queries them as one index", async () => {
    const shardedDir = path.join(tmp, "sharded-store");
    const built = await runCli(["index", corpus, "--store-dir", shardedDir, "--json"], { ...env, INDEX_SHARDS: "3" });
    expect(built.code, built.stderr).toBe(0);
    expect(lastJsonLine<IndexSummary>(built.stdout).index_shards).toBe(3);
    const q = ["query", "glacier moraine sediment", "--json", "-k", "3", "--candidates", "5"];
    const sharded = lastJsonLine<SearchAnswer>((await runCli([...q, "--store-dir", shardedDir], env)).stdout);
    const single = lastJsonLine<SearchAnswer>((await runCli([...q, "--store-dir", storeDir], env)).stdout);
    expect(sharded.results.map((h) => [h.id, h.retrieval.score])).toEqual(
      single.results.map((h) => [h.id, h.retrieval.score]),
    );
  });

  it("fails with a clear message for a missing path or a folder without documents", async () => {
    const missing = await runCli(["index", path.join(tmp, "nope"), "--store-dir", storeDir], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such file or folder: .*nope/);
    const empty = path.join(tmp, "empty");
    await mkdir(empty, { recursive: true });
    await writeFile(path.join(empty, "x.csv"), "a\n");
    const none = await runCli(["index", empty, "--store-dir", storeDir], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no documents found .*unsupported file type \.csv/);
  });
});

describe("npm run cli -- query (in-process)", () => {
  it("finds the matching document first and reports both stages' ranks", async () => {
    const r = await runCli(
      ["query", "glacier moraine sediment", "--store-dir", storeDir, "--json", "-k", "5", "--candidates", "5"],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    const res = lastJsonLine<SearchAnswer>(r.stdout);
    expect(res.results).toHaveLength(5);
    expect(res.reranked).toBe(true);
    expect(res.reranked_candidates).toBe(5);
    expect(res.warnings).toEqual([]);
    // Every candidate is shown, so the first stage's ranks are a permutation of 1..5 and the
    // (lexical) first stage ranks the glacier note first, whatever the fixture reranker says.
    expect(res.results.map((h) => h.retrieval.rank).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(res.results.find((h) => h.retrieval.rank === 1)?.doc_id).toBe("notes/glaciers.md");
    // The final order follows the reranker's ranks (fusion "rerank").
    expect(res.results.map((h) => h.rerank!.rank)).toEqual([1, 2, 3, 4, 5]);

    const firstOnly = lastJsonLine<SearchAnswer>(
      (
        await runCli(
          ["query", "glacier moraine sediment", "--store-dir", storeDir, "--json", "--no-rerank", "-k", "2"],
          env,
        )
      ).stdout,
    );
    expect(firstOnly.reranked).toBe(false);
    expect(firstOnly.results[0].doc_id).toBe("notes/glaciers.md");
    expect(firstOnly.results.every((h) => h.rerank === null)).toBe(true);
  });

  it("prints a table with first-stage and reranked ranks and the movement", async () => {
    const r = await runCli(["query", "why do tides rise", "--store-dir", storeDir, "-k", "4"], env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/#\s+first\s+rerank\s+move\s+retrieval\s+rerank score\s+document\s+text/);
    const rows = lines.slice(2, lines.indexOf(""));
    expect(rows).toHaveLength(4);
    for (const [i, row] of rows.entries()) {
      const [pos, first, rerank, move] = row.trim().split(/\s+/);
      expect(Number(pos)).toBe(i + 1);
      const delta = Number(first) - (i + 1);
      expect(move).toBe(delta > 0 ? `▲${delta}` : delta < 0 ? `▼${-delta}` : "=");
      expect(Number(rerank)).toBe(i + 1);
    }
    expect(r.stdout).toMatch(/reranked \d+ of \d+ candidates/);
    // The fixture reranker is announced, on stderr.
    expect(r.stderr).toMatch(/RERANKER IS A FIXTURE/);
  });

  it("rejects bad input with the API's message", async () => {
    const r = await runCli(["query", "tides", "--store-dir", storeDir, "-k", "9", "--candidates", "3"], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/k: must be ≤ candidates \(3\)/);
    const empty = await runCli(["query", "tides", "--store-dir", path.join(tmp, "no-store")], env);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/no index snapshot has been published/i);
  });
});

describe("index and query against a bucket (STORE_KIND=s3)", () => {
  it("publishes to the bucket's index prefix and queries it from there", async () => {
    const s3 = await startLocalS3();
    try {
      const s3env = {
        ...env,
        STORE_KIND: "s3",
        BUCKET: s3.bucket,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
        INDEX_PREFIX: "cli-index/",
      };
      const r = await runCli(["index", path.join(corpus, "notes"), "--json"], s3env);
      expect(r.code, r.stderr).toBe(0);
      const s = lastJsonLine<IndexSummary>(r.stdout);
      expect(s).toMatchObject({ documents: 2, store: { kind: "s3", bucket: s3.bucket, endpoint: s3.endpoint } });
      const q = await runCli(["query", "sourdough yeast", "--json", "--no-rerank", "-k", "1"], s3env);
      expect(q.code, q.stderr).toBe(0);
      const res = lastJsonLine<SearchAnswer>(q.stdout);
      expect(res.index.version).toBe(s.version);
      expect(res.results[0].doc_id).toBe("bread.txt");
    } finally {
      await s3.close();
    }
  });
});

describe("npm run cli -- serve", () => {
  it("serves the store over loopback HTTP, answers query --url like the in-process query, stops on SIGINT", async () => {
    serve = spawnScript(
      ["scripts/cli.ts", "serve", "--store-dir", storeDir, "--port", "0", "--reranker-port", "0"],
      env,
    );
    const [, url] = await serve.waitFor(/search API\s+(http:\/\/127\.0\.0\.1:\d+)/, 60_000);
    const [, rerankUrl] = await serve.waitFor(/reranker\s+.* at (http:\/\/127\.0\.0\.1:\d+)/, 5_000);
    await serve.waitFor(/ready \(Ctrl-C stops\)/, 60_000);

    const health = (await (await fetch(`${url}/health`)).json()) as {
      status: string;
      reranker: { kind: string; fixture?: boolean };
    };
    expect(health.status).toBe("ok");
    expect(health.reranker).toMatchObject({ kind: "http", fixture: true });
    const page = await fetch(`${url}/`);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);

    const args = ["query", "honeybees dance to show nectar", "--json", "-k", "3", "--candidates", "5"];
    const viaHttp = await runCli([...args, "--url", url], env);
    expect(viaHttp.code, viaHttp.stderr).toBe(0);
    const inProcess = await runCli([...args, "--store-dir", storeDir], env);
    const a = lastJsonLine<SearchAnswer>(viaHttp.stdout);
    const b = lastJsonLine<SearchAnswer>(inProcess.stdout);
    expect(a.reranked).toBe(true);
    expect(a.index.version).toBe(b.index.version);
    expect(a.results.map((h) => h.id)).toEqual(b.results.map((h) => h.id));

    const searchPort = Number(new URL(url).port);
    const rerankPort = Number(new URL(rerankUrl).port);
    serve.process.kill("SIGINT");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
    expect(await portOpen(searchPort)).toBe(false);
    expect(await portOpen(rerankPort)).toBe(false);
  });

  it("query --url names the address when nothing answers", async () => {
    const r = await runCli(["query", "tides", "--url", "http://127.0.0.1:9"], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no search API answers at http:\/\/127\.0\.0\.1:9/);
  });
});
