// ObjectStore on the local filesystem: the embedded default (STORE_KIND=fs).
//
// - Writes are atomic: the body goes to a temp file under `${root}/.fs-store/tmp/`, then rename().
// - ETags are the quoted md5 of the content, like S3's for single-part uploads. They are cached in
//   a sidecar under `${root}/.fs-store/etags/`, valid only while the file's inode, size, mtime and
//   ctime still match, so files changed behind the store's back are re-hashed.
// - Every write and delete of a key runs under an exclusive lock file (open "wx"), which makes
//   If-Match / If-None-Match a real compare-and-swap, also between processes.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, type Stats } from "node:fs";
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { PreconditionFailedError, StoreUnavailableError, ValidationError } from "../core/errors.ts";
import type { ObjectInfo, ObjectStore, PutOptions, StoreDescription } from "../core/ports.ts";

const INTERNAL = ".fs-store";

export interface FsStoreOptions {
  /** A lock older than this is considered left behind by a crashed writer and broken. */
  staleLockMs?: number;
  /** How long a writer waits for a key's lock before giving up (StoreUnavailableError). */
  lockTimeoutMs?: number;
}

type BigStats = Awaited<ReturnType<FileHandle["stat"]>> & { ino: bigint };

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

function unavailable(what: string, e: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`filesystem store: ${what} failed: ${(e as Error).message}`, e);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createFsStore(root: string, opts: FsStoreOptions = {}): ObjectStore {
  const base = resolve(root);
  const staleLockMs = opts.staleLockMs ?? 30_000;
  const lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
  const tmpDir = join(base, INTERNAL, "tmp");
  const lockDir = join(base, INTERNAL, "locks");
  const etagDir = join(base, INTERNAL, "etags");

  function pathOf(key: string): string {
    if (typeof key !== "string" || key === "" || key.startsWith("/") || key.endsWith("/")) {
      throw new ValidationError(`invalid object key "${key}"`);
    }
    const parts = key.split("/");
    if (parts.some((p) => p === "" || p === "." || p === "..") || parts[0] === INTERNAL || key.includes("\0")) {
      throw new ValidationError(`invalid object key "${key}"`);
    }
    return join(base, ...parts);
  }

  const hashName = (key: string) => createHash("sha1").update(key).digest("hex");
  const identity = (s: Stats | BigStats) =>
    `${s.ino}:${s.size}:${(s as unknown as { mtimeNs?: bigint }).mtimeNs ?? s.mtimeMs}:${(s as unknown as { ctimeNs?: bigint }).ctimeNs ?? s.ctimeMs}`;

  async function hashFile(fh: FileHandle): Promise<string> {
    const h = createHash("md5");
    const stream = fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 });
    for await (const chunk of stream) h.update(chunk as Buffer);
    return `"${h.digest("hex")}"`;
  }

  // One hash per file version, even when many ranged reads of a fresh file arrive at once.
  const inflight = new Map<string, Promise<string>>();

  async function etagOf(key: string, fh: FileHandle, st: BigStats): Promise<string> {
    const id = identity(st);
    const sidecar = join(etagDir, hashName(key));
    try {
      const [sid, etag] = (await readFile(sidecar, "utf8")).split("\n");
      if (sid === id && etag) return etag;
    } catch {}
    const flightKey = `${key}\n${id}`;
    let p = inflight.get(flightKey);
    if (!p) {
      p = (async () => {
        const etag = await hashFile(fh);
        await writeSidecar(key, id, etag).catch(() => {});
        return etag;
      })().finally(() => inflight.delete(flightKey));
      inflight.set(flightKey, p);
    }
    return p;
  }

  async function writeSidecar(key: string, id: string, etag: string): Promise<void> {
    // A cache entry only: never recreate a store folder that was removed meanwhile.
    if (!(await stat(base).catch(() => null))) return;
    const tmp = join(tmpDir, `etag-${randomBytes(8).toString("hex")}`);
    await mkdir(tmpDir, { recursive: true });
    await mkdir(etagDir, { recursive: true });
    await writeFile(tmp, `${id}\n${etag}`);
    await rename(tmp, join(etagDir, hashName(key)));
  }

  async function openExisting(key: string): Promise<{ fh: FileHandle; st: BigStats } | null> {
    const file = pathOf(key);
    let fh: FileHandle;
    try {
      fh = await open(file, "r");
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR" || errno(e) === "EISDIR") return null;
      throw unavailable(`open ${key}`, e);
    }
    const st = (await fh.stat({ bigint: true })) as unknown as BigStats;
    if (!st.isFile()) {
      await fh.close();
      return null;
    }
    return { fh, st };
  }

  async function currentEtag(key: string): Promise<string | null> {
    const cur = await openExisting(key);
    if (!cur) return null;
    try {
      return await etagOf(key, cur.fh, cur.st);
    } finally {
      await cur.fh.close();
    }
  }

  async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(lockDir, { recursive: true });
    const lock = join(lockDir, `${hashName(key)}.lock`);
    const token = `${process.pid}:${randomBytes(8).toString("hex")}`;
    const deadline = Date.now() + lockTimeoutMs;
    let delay = 2;
    for (;;) {
      try {
        const fh = await open(lock, "wx");
        await fh.writeFile(token);
        await fh.close();
        break;
      } catch (e) {
        if (errno(e) !== "EEXIST") throw unavailable(`lock ${key}`, e);
      }
      await breakIfStale(lock);
      if (Date.now() > deadline)
        throw new StoreUnavailableError(`filesystem store: timed out waiting for the lock of ${key}`);
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 50);
    }
    try {
      return await fn();
    } finally {
      // Only remove our own lock (a stale-lock breaker may have replaced it in theory).
      try {
        if ((await readFile(lock, "utf8")) === token) await unlink(lock);
      } catch {}
    }
  }

  async function breakIfStale(lock: string): Promise<void> {
    let st: Stats;
    let seen: string;
    try {
      st = await stat(lock);
      seen = await readFile(lock, "utf8");
    } catch {
      return;
    }
    if (Date.now() - st.mtimeMs < staleLockMs) return;
    // Move the lock aside first: only one breaker's rename succeeds. If what we moved is not the
    // lock we judged stale (a fresh one replaced it meanwhile), put it back.
    const aside = `${lock}.stale-${randomBytes(6).toString("hex")}`;
    try {
      await rename(lock, aside);
    } catch {
      return;
    }
    const moved = await readFile(aside, "utf8").catch(() => "");
    if (moved !== seen) await link(aside, lock).catch(() => {});
    await unlink(aside).catch(() => {});
  }

  async function* walk(dir: string, keyPrefix: string): AsyncGenerator<string> {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return;
      throw unavailable(`list ${dir}`, e);
    }
    for (const ent of entries) {
      if (keyPrefix === "" && ent.name === INTERNAL) continue;
      const key = keyPrefix + ent.name;
      if (ent.isDirectory()) yield* walk(join(dir, ent.name), `${key}/`);
      else if (ent.isFile()) yield key;
    }
  }

  const store: ObjectStore = {
    describe(): StoreDescription {
      return { kind: "fs", root: base };
    },

    async get(key, opts = {}) {
      opts.signal?.throwIfAborted();
      const cur = await openExisting(key);
      if (!cur) return null;
      const { fh, st } = cur;
      try {
        const size = Number(st.size);
        let start = 0;
        let end = size - 1;
        if (opts.range) {
          [start, end] = opts.range;
          if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start) {
            throw new ValidationError(`invalid range [${opts.range.join(", ")}]`);
          }
          if (start >= size && size > 0)
            throw new ValidationError(`range start ${start} is beyond the object's ${size} bytes`);
          end = Math.min(end, size - 1);
        }
        const length = Math.max(0, end - start + 1);
        const body =
          opts.into && opts.into.byteLength >= length ? opts.into.subarray(0, length) : new Uint8Array(length);
        let done = 0;
        while (done < length) {
          opts.signal?.throwIfAborted();
          const { bytesRead } = await fh.read(body, done, length - done, start + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        const etag = await etagOf(key, fh, st);
        return { body: done === length ? body : body.subarray(0, done), etag };
      } catch (e) {
        if (e instanceof ValidationError || (e as Error).name === "AbortError") throw e;
        throw unavailable(`read ${key}`, e);
      } finally {
        await fh.close();
      }
    },

    async getStream(key, opts = {}) {
      opts.signal?.throwIfAborted();
      const cur = await openExisting(key);
      if (!cur) return null;
      let etag: string;
      try {
        etag = await etagOf(key, cur.fh, cur.st);
      } catch (e) {
        await cur.fh.close();
        throw unavailable(`read ${key}`, e);
      }
      const size = Number(cur.st.size);
      const fh = cur.fh;
      async function* body(): AsyncGenerator<Uint8Array> {
        // The stream reads the opened handle, so a concurrent replace of the key cannot mix versions.
        const stream = createReadStream("", { fd: fh, highWaterMark: 1 << 20, signal: opts.signal });
        try {
          for await (const chunk of stream) yield chunk as Buffer;
        } finally {
          stream.destroy();
        }
      }
      return { body: body(), etag, size };
    },

    async head(key) {
      const cur = await openExisting(key);
      if (!cur) return null;
      try {
        const etag = await etagOf(key, cur.fh, cur.st);
        return { key, size: Number(cur.st.size), etag, lastModified: new Date(Number(cur.st.mtimeMs)) };
      } catch (e) {
        throw unavailable(`head ${key}`, e);
      } finally {
        await cur.fh.close();
      }
    },

    async put(key, body, opts: PutOptions = {}) {
      const file = pathOf(key);
      const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
      const etag = `"${createHash("md5").update(bytes).digest("hex")}"`;
      const tmp = join(tmpDir, `put-${randomBytes(8).toString("hex")}`);
      try {
        await mkdir(tmpDir, { recursive: true });
        await mkdir(dirname(file), { recursive: true });
        // Write (and flush) the body before taking the lock, so the lock is held only for check + rename.
        const fh = await open(tmp, "wx", 0o644);
        try {
          await fh.writeFile(bytes);
          await fh.sync();
        } finally {
          await fh.close();
        }
      } catch (e) {
        await rm(tmp, { force: true }).catch(() => {});
        throw unavailable(`write ${key}`, e);
      }
      try {
        await withLock(key, async () => {
          if (opts.ifMatch !== undefined || opts.ifNoneMatch !== undefined) {
            const current = await currentEtag(key);
            if (opts.ifNoneMatch === "*" && current !== null) {
              throw new PreconditionFailedError(`${key} already exists (If-None-Match: *)`);
            }
            if (opts.ifMatch !== undefined && current !== normaliseEtag(opts.ifMatch)) {
              throw new PreconditionFailedError(
                current === null
                  ? `${key} does not exist (If-Match ${opts.ifMatch})`
                  : `${key} changed (ETag ${current}, If-Match ${opts.ifMatch})`,
              );
            }
          }
          try {
            await rename(tmp, file);
          } catch (e) {
            throw unavailable(`write ${key}`, e);
          }
          const st = await stat(file, { bigint: true }).catch(() => null);
          if (st) await writeSidecar(key, identity(st as unknown as BigStats), etag).catch(() => {});
        });
      } finally {
        await rm(tmp, { force: true }).catch(() => {});
      }
      return { etag };
    },

    async delete(key) {
      const file = pathOf(key);
      await withLock(key, async () => {
        try {
          await unlink(file);
        } catch (e) {
          if (errno(e) !== "ENOENT") throw unavailable(`delete ${key}`, e);
        }
      });
    },

    async *list(prefix) {
      // Walk only the deepest folder the prefix names; filter the rest by string prefix.
      const cut = prefix.lastIndexOf("/");
      const dirKey = cut >= 0 ? prefix.slice(0, cut + 1) : "";
      const dir = dirKey ? join(base, ...dirKey.split("/").filter(Boolean)) : base;
      if (dirKey && !dir.startsWith(base + sep)) return;
      const keys: string[] = [];
      for await (const key of walk(dir, dirKey)) if (key.startsWith(prefix)) keys.push(key);
      // S3 lists in UTF-8 byte order; keep the same order.
      keys.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const key of keys) {
        const info: ObjectInfo | null = await store.head(key).catch((e) => {
          if (e instanceof ValidationError) return null;
          throw e;
        });
        if (info) yield info;
      }
    },
  };
  return store;
}

/** Accepts ETags with or without quotes (S3 clients differ). */
function normaliseEtag(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}
