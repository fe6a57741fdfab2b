// The filesystem object store: S3-like semantics (ETags, ranges, listing, not-found as null) and a
// real compare-and-swap for conditional writes, within one process and across processes.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { PreconditionFailedError, ValidationError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";

let root: string;
let store: ObjectStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fs-store-"));
  store = createFsStore(root);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const md5 = (s: string | Uint8Array) => `"${createHash("md5").update(s).digest("hex")}"`;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function collect(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

describe("fs store basics", () => {
  it("puts, gets, heads and deletes with S3-style quoted md5 ETags", async () => {
    const { etag } = await store.put("corpus/a.txt", "hello");
    expect(etag).toBe(md5("hello"));
    const got = await store.get("corpus/a.txt");
    expect(text(got!.body)).toBe("hello");
    expect(got!.etag).toBe(etag);
    expect(await store.head("corpus/a.txt")).toMatchObject({ key: "corpus/a.txt", size: 5, etag });
    await store.delete("corpus/a.txt");
    expect(await store.get("corpus/a.txt")).toBeNull();
    expect(await store.head("corpus/a.txt")).toBeNull();
    await store.delete("corpus/a.txt"); // deleting nothing is fine, as in S3
  });

  it("serves inclusive byte ranges and clamps the end like S3", async () => {
    await store.put("f.bin", new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    expect([...(await store.get("f.bin", { range: [2, 4] }))!.body]).toEqual([2, 3, 4]);
    expect([...(await store.get("f.bin", { range: [8, 100] }))!.body]).toEqual([8, 9]);
    await expect(store.get("f.bin", { range: [10, 12] })).rejects.toThrow(ValidationError);
    await expect(store.get("f.bin", { range: [3, 2] })).rejects.toThrow(ValidationError);
    // A ranged read reports the whole object's ETag.
    expect((await store.get("f.bin", { range: [0, 0] }))!.etag).toBe(
      md5(new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
    );
  });

  it("streams an object", async () => {
    const big = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => i % 251);
    await store.put("big.bin", big);
    const s = await store.getStream("big.bin");
    expect(s!.size).toBe(big.length);
    const chunks: Uint8Array[] = [];
    for await (const c of s!.body) chunks.push(c);
    expect(Buffer.concat(chunks).equals(Buffer.from(big))).toBe(true);
    expect(await store.getStream("nope")).toBeNull();
  });

  it("lists by prefix in byte order, skipping its own bookkeeping", async () => {
    for (const k of ["index/v/2/a", "index/v/1/b", "index/LATEST.json", "corpus/x.md", "indexes.txt"])
      await store.put(k, k);
    expect(await collect(store.list("index/"))).toEqual(["index/LATEST.json", "index/v/1/b", "index/v/2/a"]);
    expect(await collect(store.list("index"))).toEqual([
      "index/LATEST.json",
      "index/v/1/b",
      "index/v/2/a",
      "indexes.txt",
    ]);
    expect(await collect(store.list("index/v/1"))).toEqual(["index/v/1/b"]);
    expect(await collect(store.list(""))).toHaveLength(5);
    expect(await collect(store.list("missing/"))).toEqual([]);
  });

  it("writes atomically: no temp files or partial objects are ever visible", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.put("hot", `value-${i}`.repeat(1000))));
    const body = text((await store.get("hot"))!.body);
    expect(body).toMatch(/^(value-\d+)\1*$/);
    expect(readdirSync(join(root, ".fs-store", "tmp"))).toEqual([]);
    expect(await collect(store.list(""))).toEqual(["hot"]);
  });

  it("recomputes the ETag of a file changed behind its back", async () => {
    await store.put("doc.txt", "one");
    writeFileSync(join(root, "doc.txt"), "two!");
    const future = new Date(Date.now() + 5000);
    utimesSync(join(root, "doc.txt"), future, future);
    expect((await store.head("doc.txt"))!.etag).toBe(md5("two!"));
    // Files dropped into the folder by hand are objects too.
    await mkdir(join(root, "corpus"), { recursive: true });
    await writeFile(join(root, "corpus", "hand.md"), "# hi");
    expect((await store.get("corpus/hand.md"))!.etag).toBe(md5("# hi"));
  });

  it("refuses keys that would escape the root", async () => {
    for (const k of ["../x", "/abs", "a//b", "a/./b", "", "dir/", ".fs-store/locks/x"]) {
      await expect(store.put(k, "x"), k).rejects.toThrow(ValidationError);
    }
  });

  it("is what createStore builds for STORE_KIND=fs", async () => {
    const s = createStore(loadConfig({ STORE_KIND: "fs", STORE_DIR: root }));
    expect(s.describe()).toEqual({ kind: "fs", root: resolve(root) });
    await s.put("k", "v");
    expect(text((await store.get("k"))!.body)).toBe("v");
  });
});

describe("fs store conditional writes (compare-and-swap)", () => {
  it("If-None-Match: * creates once; If-Match swaps only from the current ETag", async () => {
    const first = await store.put("ptr", "v1", { ifNoneMatch: "*" });
    await expect(store.put("ptr", "v1b", { ifNoneMatch: "*" })).rejects.toThrow(PreconditionFailedError);
    const second = await store.put("ptr", "v2", { ifMatch: first.etag });
    await expect(store.put("ptr", "v3", { ifMatch: first.etag })).rejects.toThrow(PreconditionFailedError);
    await expect(store.put("missing", "x", { ifMatch: first.etag })).rejects.toThrow(/does not exist/);
    // Unquoted ETags are accepted too.
    await store.put("ptr", "v3", { ifMatch: second.etag.replaceAll('"', "") });
    expect(text((await store.get("ptr"))!.body)).toBe("v3");
  });

  it("exactly one of many concurrent conditional writers wins each round", async () => {
    const writers = Array.from({ length: 12 }, () => createFsStore(root)); // separate instances: no shared memory
    for (let round = 0; round < 8; round++) {
      const key = `race/${round}`;
      const create = await Promise.allSettled(writers.map((w, i) => w.put(key, `writer-${i}`, { ifNoneMatch: "*" })));
      expect(create.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of create) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(PreconditionFailedError);

      const { etag } = (await store.head(key))!;
      const swap = await Promise.allSettled(writers.map((w, i) => w.put(key, `swap-${i}`, { ifMatch: etag })));
      expect(swap.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const winner = swap.findIndex((r) => r.status === "fulfilled");
      expect(text((await store.get(key))!.body)).toBe(`swap-${winner}`);
    }
  });

  it("read-modify-write with If-Match loses no update across processes", async () => {
    const procs = 3;
    const increments = 25;
    await store.put("counter", "0");
    const script = join(root, "..", `cas-child-${process.pid}.mts`);
    const fsStoreUrl = new URL("../../shared/adapters/fs-store.ts", import.meta.url).href;
    writeFileSync(
      script,
      `import { createFsStore } from ${JSON.stringify(fsStoreUrl)};
const store = createFsStore(process.argv[2]);
// Start together (tsx start-up times differ) so the writers really overlap.
await new Promise((r) => setTimeout(r, Math.max(0, Number(process.argv[3]) - Date.now())));
let conflicts = 0;
for (let i = 0; i < ${increments}; i++) {
  for (;;) {
    const cur = await store.get("counter");
    const next = String(Number(new TextDecoder().decode(cur.body)) + 1);
    try { await store.put("counter", next, { ifMatch: cur.etag }); break; }
    catch (e) { if (e.code !== "conflict") throw e; conflicts++; }
  }
}
console.log(conflicts);
`,
    );
    try {
      const startAt = String(Date.now() + 4000);
      const runs = Array.from(
        { length: procs },
        () =>
          new Promise<number>((resolveRun, reject) => {
            const child = spawn(process.execPath, ["--import", "tsx", script, root, startAt], {
              stdio: ["ignore", "pipe", "pipe"],
            });
            let out = "";
            let err = "";
            child.stdout.on("data", (d) => (out += d));
            child.stderr.on("data", (d) => (err += d));
            child.on("exit", (code) =>
              code === 0 ? resolveRun(Number(out.trim())) : reject(new Error(`child failed: ${err}`)),
            );
          }),
      );
      const conflicts = await Promise.all(runs);
      expect(text((await store.get("counter"))!.body)).toBe(String(procs * increments));
      console.log(
        `cross-process CAS: ${procs}×${increments} increments, ${conflicts.reduce((a, b) => a + b, 0)} lost races retried`,
      );
    } finally {
      rmSync(script, { force: true });
    }
  });

  it("breaks a lock left behind by a crashed writer", async () => {
    const s = createFsStore(root, { staleLockMs: 200 });
    await s.put("k", "v0");
    const lockDir = join(root, ".fs-store", "locks");
    const lock = join(lockDir, `${createHash("sha1").update("k").digest("hex")}.lock`);
    writeFileSync(lock, "99999:dead");
    const old = new Date(Date.now() - 10_000);
    utimesSync(lock, old, old);
    await s.put("k", "v1", { ifMatch: md5("v0") });
    expect(text((await s.get("k"))!.body)).toBe("v1");
  });

  it("waits for a live lock instead of breaking it", async () => {
    const s = createFsStore(root, { staleLockMs: 60_000, lockTimeoutMs: 300 });
    const lock = join(root, ".fs-store", "locks", `${createHash("sha1").update("k").digest("hex")}.lock`);
    await mkdir(join(root, ".fs-store", "locks"), { recursive: true });
    writeFileSync(lock, "1:alive");
    await expect(s.put("k", "v")).rejects.toThrow(/timed out waiting for the lock/);
    expect(await s.get("k")).toBeNull();
  });
});
