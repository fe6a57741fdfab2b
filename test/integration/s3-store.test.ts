// The S3 object store against a real S3-protocol server (s3rver on loopback), with a recording
// HTTP proxy in front of it to see what goes over the wire. s3rver ignores If-Match /
// If-None-Match, so conditional writes are checked by the headers sent and by mapping real 412
// and 409 answers (served by the proxy) to PreconditionFailedError.
import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import { loadConfig } from "../../shared/core/config.ts";
import { PreconditionFailedError, StoreUnavailableError } from "../../shared/core/errors.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";

interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** Forwards to s3rver, records requests; can answer conditional PUTs with a given S3 error instead. */
function startProxy(target: number) {
  const seen: Recorded[] = [];
  let failConditional: { status: number; code: string } | null = null;
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    // s3rver cannot paginate on Node 20 (its continuation tokens use DES, which OpenSSL 3 disables),
    // so listings under "paged/" are served here as two canned ListObjectsV2 pages.
    if (req.method === "GET" && req.url!.includes("list-type=2") && req.url!.includes("prefix=paged%2F")) {
      const second = req.url!.includes("continuation-token=tok-2");
      const keys = second ? ["paged/c"] : ["paged/a", "paged/b"];
      res.writeHead(200, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>paged/</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>${!second}</IsTruncated>${second ? "" : "<NextContinuationToken>tok-2</NextContinuationToken>"}${keys.map((k) => `<Contents><Key>${k}</Key><LastModified>2026-11-25T19:00:00.000Z</LastModified><ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>`).join("")}</ListBucketResult>`,
      );
      return;
    }
    const conditional = req.headers["if-match"] !== undefined || req.headers["if-none-match"] !== undefined;
    if (failConditional && req.method === "PUT" && conditional) {
      req.resume();
      res.writeHead(failConditional.status, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${failConditional.code}</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`,
      );
      return;
    }
    const up = request(
      { host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  return new Promise<{
    port: number;
    seen: Recorded[];
    failNext(v: { status: number; code: string } | null): void;
    close(): Promise<void>;
  }>((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        seen,
        failNext: (v) => {
          failConditional = v;
        },
        close: () => new Promise((r) => server.close(() => r())),
      }),
    ),
  );
}

let s3: LocalS3;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let store: ObjectStore;

beforeAll(async () => {
  s3 = await startLocalS3();
  proxy = await startProxy(s3.port);
  store = createS3Store({
    bucket: s3.bucket,
    endpoint: `http://127.0.0.1:${proxy.port}`,
    forcePathStyle: true,
    credentials: s3.credentials,
    listPageSize: 1000,
  });
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
});
beforeEach(() => {
  proxy.seen.length = 0;
  proxy.failNext(null);
});

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("S3 store on s3rver", () => {
  it("puts, gets, heads and deletes; missing objects are null", async () => {
    const { etag } = await store.put("corpus/a.txt", "hello", { contentType: "text/plain" });
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const got = await store.get("corpus/a.txt");
    expect(text(got!.body)).toBe("hello");
    expect(got!.etag).toBe(etag);
    expect(await store.head("corpus/a.txt")).toMatchObject({ key: "corpus/a.txt", size: 5, etag });
    await store.delete("corpus/a.txt");
    expect(await store.get("corpus/a.txt")).toBeNull();
    expect(await store.head("corpus/a.txt")).toBeNull();
    expect(await store.getStream("corpus/a.txt")).toBeNull();
  });

  it("sends ranged GETs and returns exactly the range", async () => {
    const bytes = new Uint8Array(1000).map((_, i) => i % 256);
    await store.put("bin/r", bytes);
    const got = await store.get("bin/r", { range: [10, 19] });
    expect([...got!.body]).toEqual([...bytes.subarray(10, 20)]);
    expect(proxy.seen.find((r) => r.method === "GET")?.headers.range).toBe("bytes=10-19");
  });

  it("streams a whole object", async () => {
    const bytes = new Uint8Array(200_000).map((_, i) => (i * 7) % 256);
    await store.put("bin/s", bytes);
    const s = await store.getStream("bin/s");
    expect(s!.size).toBe(bytes.length);
    const chunks: Uint8Array[] = [];
    for await (const c of s!.body) chunks.push(c);
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true);
  });

  it("lists a prefix", async () => {
    const keys = ["list/a", "list/b", "list/c"];
    for (const k of keys) await store.put(k, k);
    await store.put("listing-not/x", "x");
    const out: string[] = [];
    for await (const o of store.list("list/")) out.push(o.key);
    expect(out).toEqual(keys);
  });

  it("follows ListObjectsV2 continuation tokens across pages", async () => {
    const out: Array<{ key: string; etag: string; size: number }> = [];
    for await (const o of store.list("paged/")) out.push({ key: o.key, etag: o.etag, size: o.size });
    expect(out.map((o) => o.key)).toEqual(["paged/a", "paged/b", "paged/c"]);
    expect(out[0]).toMatchObject({ etag: '"0123456789abcdef0123456789abcdef"', size: 3 });
    const listCalls = proxy.seen.filter((r) => r.method === "GET" && r.url.includes("list-type=2"));
    expect(listCalls).toHaveLength(2);
    expect(listCalls[1].url).toContain("continuation-token=tok-2");
  });

  it("sends If-None-Match: * and If-Match with a quoted ETag on conditional puts", async () => {
    const { etag } = await store.put("ptr/LATEST.json", "{}", { ifNoneMatch: "*" });
    await store.put("ptr/LATEST.json", "{1}", { ifMatch: etag });
    await store.put("ptr/LATEST.json", "{2}", { ifMatch: etag.replaceAll('"', "") });
    await store.put("ptr/plain", "x");
    const puts = proxy.seen.filter((r) => r.method === "PUT");
    expect(puts[0].headers["if-none-match"]).toBe("*");
    expect(puts[0].headers["if-match"]).toBeUndefined();
    expect(puts[1].headers["if-match"]).toBe(etag);
    expect(puts[2].headers["if-match"]).toBe(etag);
    expect(puts[3].headers["if-match"]).toBeUndefined();
    expect(puts[3].headers["if-none-match"]).toBeUndefined();
  });

  it("maps S3's 412 PreconditionFailed and 409 ConditionalRequestConflict to PreconditionFailedError", async () => {
    proxy.failNext({ status: 412, code: "PreconditionFailed" });
    await expect(store.put("ptr/x", "a", { ifNoneMatch: "*" })).rejects.toThrow(PreconditionFailedError);
    proxy.failNext({ status: 409, code: "ConditionalRequestConflict" });
    await expect(store.put("ptr/x", "a", { ifMatch: '"abc"' })).rejects.toThrow(PreconditionFailedError);
    // Only one attempt each: a lost race is not retried by the SDK.
    expect(proxy.seen.filter((r) => r.method === "PUT")).toHaveLength(2);
  });

  it("turns an unreachable endpoint into StoreUnavailableError", async () => {
    const dead = createServer();
    const port = await new Promise<number>((r) =>
      dead.listen(0, "127.0.0.1", () => r((dead.address() as AddressInfo).port)),
    );
    await new Promise((r) => dead.close(r));
    const down = createS3Store({
      bucket: "b",
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials: s3.credentials,
      maxAttempts: 1,
    });
    await expect(down.get("k")).rejects.toThrow(StoreUnavailableError);
    await expect(down.head("k")).rejects.toThrow(StoreUnavailableError);
    await expect(down.put("k", "v")).rejects.toThrow(StoreUnavailableError);
    await expect(
      (async () => {
        for await (const _ of down.list("")) {
        }
      })(),
    ).rejects.toThrow(StoreUnavailableError);
  });

  it("is what createStore builds for STORE_KIND=s3", async () => {
    process.env.AWS_ACCESS_KEY_ID ??= s3.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY ??= s3.credentials.secretAccessKey;
    const cfg = loadConfig({
      STORE_KIND: "s3",
      BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: "true",
    });
    const s = createStore(cfg);
    expect(s.describe()).toEqual({ kind: "s3", bucket: s3.bucket, endpoint: s3.endpoint });
    await s.put("cfg/k", "v");
    expect(text((await store.get("cfg/k"))!.body)).toBe("v");
  });
});
