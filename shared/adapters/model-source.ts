// Where a model folder (Hugging Face layout) comes from: a local folder, or a prefix in the
// object store copied once into a local cache (Lambda's /tmp) and verified by sha256 against the
// folder's checksums.json when it has one. Re-used across warm invocations and processes: files
// whose hash (or, without checksums.json, ETag and size) still match are not downloaded again.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { DomainError } from "../core/errors.ts";
import type { ObjectStore } from "../core/ports.ts";

export interface ModelChecksums {
  files: Record<string, { sha256: string; bytes: number }>;
}

export interface ResolveModelOptions {
  /** A folder on this machine; used as it is when given. */
  localDir?: string;
  store?: ObjectStore;
  /** Key prefix of the model folder in the store, e.g. "models/ms-marco-MiniLM-L-6-v2/". */
  prefix?: string;
  /** Parent of the local cache folders (e.g. /tmp/models). */
  cacheDir?: string;
  /** Which relative paths to fetch (e.g. skip the quantized graph when it is not used). Default: all. */
  include?: (relativePath: string) => boolean;
  /** Files the folder must hold, checked in either case. */
  required?: string[];
  log?: (message: string) => void;
  signal?: AbortSignal;
}

export const CHECKSUMS_FILE = "checksums.json";
const ETAGS_FILE = ".etags.json";

/** A model folder that cannot be used: missing files, or bytes that do not match their checksum. */
export class ModelSourceError extends DomainError {
  constructor(message: string, cause?: unknown) {
    super("config_invalid", 500, message, { cause });
  }
}

/** Resolves to a local folder holding the model. */
export async function resolveModelDir(opts: ResolveModelOptions): Promise<string> {
  const required = opts.required ?? [];
  if (opts.localDir) {
    const dir = path.resolve(opts.localDir);
    if (!existsSync(dir)) throw new ModelSourceError(`model folder ${dir} does not exist`);
    assertFiles(dir, required, `model folder ${dir}`);
    return dir;
  }
  if (!opts.store || opts.prefix === undefined)
    throw new ModelSourceError("no model source: give a local folder or a store and prefix");
  const dir = await fetchToCache(opts.store, normalisePrefix(opts.prefix), opts);
  assertFiles(dir, required, `model prefix "${opts.prefix}"`);
  return dir;
}

function normalisePrefix(prefix: string): string {
  return prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
}

function assertFiles(dir: string, files: string[], what: string): void {
  const missing = files.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) throw new ModelSourceError(`${what} lacks ${missing.join(", ")}`);
}

/** Local cache folder for a store prefix: stable across processes, distinct per bucket/endpoint/prefix. */
export function cacheFolderFor(store: ObjectStore, prefix: string, cacheDir: string): string {
  const d = store.describe();
  const id = createHash("sha256")
    .update(JSON.stringify([d.kind, d.bucket ?? "", d.endpoint ?? "", d.root ?? "", prefix]))
    .digest("hex")
    .slice(0, 16);
  const name = prefix.split("/").filter(Boolean).pop() ?? "model";
  return path.join(cacheDir, `${name.replace(/[^\w.-]/g, "_")}-${id}`);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return hash.digest("hex");
}

async function fetchToCache(store: ObjectStore, prefix: string, opts: ResolveModelOptions): Promise<string> {
  const dir = cacheFolderFor(store, prefix, opts.cacheDir ?? "/tmp/models");
  await mkdir(dir, { recursive: true });
  const log = opts.log ?? (() => {});

  const objects = [];
  try {
    for await (const o of store.list(prefix)) objects.push(o);
  } catch (e) {
    throw new ModelSourceError(`cannot list model prefix "${prefix}": ${(e as Error).message}`, e);
  }
  if (objects.length === 0) throw new ModelSourceError(`model prefix "${prefix}" holds no files`);

  let checksums: ModelChecksums | null = null;
  if (objects.some((o) => o.key === prefix + CHECKSUMS_FILE)) {
    const got = await store.get(prefix + CHECKSUMS_FILE, { signal: opts.signal });
    if (got) {
      try {
        checksums = JSON.parse(new TextDecoder().decode(got.body)) as ModelChecksums;
        if (typeof checksums?.files !== "object") throw new Error("no `files` object");
      } catch (e) {
        throw new ModelSourceError(`${prefix}${CHECKSUMS_FILE} is not valid: ${(e as Error).message}`, e);
      }
      await writeFile(path.join(dir, CHECKSUMS_FILE), got.body);
    }
  }

  const etagsPath = path.join(dir, ETAGS_FILE);
  const etags: Record<string, string> = existsSync(etagsPath) ? JSON.parse(await readFile(etagsPath, "utf8")) : {};
  const include = opts.include ?? (() => true);
  let fetched = 0;
  for (const o of objects) {
    const rel = o.key.slice(prefix.length);
    if (!rel || rel.endsWith("/") || rel === CHECKSUMS_FILE || !include(rel)) continue;
    if (rel.split("/").some((part) => part === ".." || part === ""))
      throw new ModelSourceError(`refusing unsafe key ${o.key}`);
    const target = path.join(dir, rel);
    const expected = checksums?.files[rel];
    if (await cachedCopyIsGood(target, o.size, o.etag, etags[rel], expected)) continue;

    await mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.${process.pid}.${Date.now()}.part`;
    const hash = createHash("sha256");
    try {
      const stream = await store.getStream(o.key, { signal: opts.signal });
      if (!stream) throw new ModelSourceError(`${o.key} disappeared while the model was being fetched`);
      const out = createWriteStream(tmp);
      await pipeline(async function* () {
        for await (const chunk of stream.body) {
          hash.update(chunk);
          yield chunk;
        }
      }, out);
      const digest = hash.digest("hex");
      if (expected && (digest !== expected.sha256 || statSync(tmp).size !== expected.bytes)) {
        throw new ModelSourceError(
          `${o.key} does not match ${CHECKSUMS_FILE}: sha256 ${digest} (${statSync(tmp).size} bytes), expected ${expected.sha256} (${expected.bytes} bytes)`,
        );
      }
      await rename(tmp, target);
      etags[rel] = o.etag;
      fetched++;
    } catch (e) {
      await rm(tmp, { force: true });
      if (e instanceof ModelSourceError) throw e;
      throw new ModelSourceError(`cannot fetch ${o.key}: ${(e as Error).message}`, e);
    }
  }
  if (checksums) {
    const missing = Object.keys(checksums.files).filter((rel) => include(rel) && !existsSync(path.join(dir, rel)));
    if (missing.length)
      throw new ModelSourceError(
        `model prefix "${prefix}" lacks files listed in ${CHECKSUMS_FILE}: ${missing.join(", ")}`,
      );
  }
  await writeFile(etagsPath, JSON.stringify(etags));
  log(`model ${prefix}: ${fetched} file(s) fetched into ${dir}, ${objects.length - fetched} already cached or skipped`);
  return dir;
}

/** A cached file is reused when it matches its checksum, or (without one) the object's ETag and size. */
async function cachedCopyIsGood(
  file: string,
  size: number,
  etag: string,
  cachedEtag: string | undefined,
  expected: { sha256: string; bytes: number } | undefined,
): Promise<boolean> {
  if (!existsSync(file)) return false;
  const bytes = statSync(file).size;
  if (expected) return bytes === expected.bytes && (await sha256File(file)) === expected.sha256;
  return bytes === size && cachedEtag !== undefined && cachedEtag === etag;
}
