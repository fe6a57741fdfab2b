// Publishing a snapshot: files first, then manifest.json, then the pointer flip with a
// conditional write. A reader that follows the pointer therefore always finds a complete
// snapshot, and two publishers racing cannot both flip from the same previous pointer.
import { ValidationError } from "./errors.ts";
import type { ObjectStore, SnapshotManifest } from "./ports.ts";
import {
  compareVersionsDesc,
  MANIFEST_FILE,
  parsePointer,
  pointerKey,
  type SnapshotPointer,
  snapshotFileKey,
  snapshotPrefix,
  verifySnapshotFile,
  versionOfKey,
} from "./snapshot.ts";

export interface PublishInput {
  indexPrefix: string;
  manifest: SnapshotManifest;
  /** File name (as in manifest.files) → bytes. */
  files: Record<string, Uint8Array>;
  /**
   * Compare-and-swap of the pointer: the ETag of the pointer this snapshot replaces, or null when
   * there must be none yet (first publish). Left undefined, the pointer is read just before the
   * flip and swapped against what was read.
   */
  expectedPointerEtag?: string | null;
  /** Uploads in parallel (default 4). */
  concurrency?: number;
}

export interface PublishResult {
  version: string;
  manifestKey: string;
  pointer: SnapshotPointer;
  /** ETag of the pointer as written; pass it as expectedPointerEtag to the next publish. */
  pointerEtag: string;
  /** Version the pointer named before, if any. */
  previousVersion: string | null;
}

export interface PointerState {
  pointer: SnapshotPointer;
  etag: string;
}

/** The live pointer and its ETag, or null when nothing is published yet. */
export async function readPointer(
  store: ObjectStore,
  indexPrefix: string,
  signal?: AbortSignal,
): Promise<PointerState | null> {
  const got = await store.get(pointerKey(indexPrefix), { signal });
  if (!got) return null;
  return { pointer: parsePointer(got.body), etag: got.etag };
}

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(workers);
}

/**
 * Uploads a snapshot and makes it live. Throws PreconditionFailedError when the pointer changed
 * since `expectedPointerEtag` (another publisher won; the caller may rebuild and retry); the
 * uploaded version stays in the store, unreferenced, and can be pruned.
 */
export async function publishSnapshot(store: ObjectStore, input: PublishInput): Promise<PublishResult> {
  const { indexPrefix, manifest, files } = input;
  const names = Object.keys(manifest.files);
  for (const name of names) {
    if (name === MANIFEST_FILE) throw new ValidationError(`${MANIFEST_FILE} cannot be listed as a snapshot file`);
    const bytes = files[name];
    if (!bytes) throw new ValidationError(`manifest lists ${name} but no bytes were given for it`);
    if (manifest.files[name].key !== name) {
      throw new ValidationError(
        `manifest entry ${name} has key "${manifest.files[name].key}"; keys are file names relative to the snapshot`,
      );
    }
    // Never publish a manifest that would fail its own verification at load time.
    verifySnapshotFile(name, bytes, manifest);
  }
  for (const name of Object.keys(files)) {
    if (!manifest.files[name]) throw new ValidationError(`file ${name} is not listed in the manifest`);
  }

  const version = manifest.version;
  await inParallel(names, input.concurrency ?? 4, async (name) => {
    await store.put(snapshotFileKey(indexPrefix, version, name), files[name], {
      contentType: "application/octet-stream",
    });
  });
  const manifestKey = snapshotFileKey(indexPrefix, version, MANIFEST_FILE);
  await store.put(manifestKey, JSON.stringify(manifest, null, 2), { contentType: "application/json" });

  let expected = input.expectedPointerEtag;
  let previousVersion: string | null = null;
  if (expected === undefined) {
    const cur = await readPointer(store, indexPrefix).catch(() => null);
    expected = cur?.etag ?? null;
    previousVersion = cur?.pointer.version ?? null;
  }
  const pointer: SnapshotPointer = { version, manifest_key: manifestKey, created_at: manifest.created_at };
  const { etag } = await store.put(pointerKey(indexPrefix), JSON.stringify(pointer), {
    contentType: "application/json",
    ...(expected === null ? { ifNoneMatch: "*" as const } : { ifMatch: expected }),
  });
  return { version, manifestKey, pointer, pointerEtag: etag, previousVersion };
}

/** Published versions under the prefix, newest first. */
export async function listSnapshotVersions(store: ObjectStore, indexPrefix: string): Promise<string[]> {
  const versions = new Set<string>();
  for await (const o of store.list(`${indexPrefix}v/`)) {
    const v = versionOfKey(indexPrefix, o.key);
    if (v) versions.add(v);
  }
  return [...versions].sort(compareVersionsDesc);
}

/**
 * Deletes all but the newest `keep` versions, never the live one. Deleting a version a warm
 * function is still downloading makes that load fail and keep its previous snapshot, so keep ≥ 2.
 */
export async function pruneSnapshots(store: ObjectStore, indexPrefix: string, keep = 3): Promise<string[]> {
  const live = (await readPointer(store, indexPrefix))?.pointer.version;
  const versions = await listSnapshotVersions(store, indexPrefix);
  const doomed = versions.slice(Math.max(1, keep)).filter((v) => v !== live);
  for (const v of doomed) {
    const keys: string[] = [];
    for await (const o of store.list(snapshotPrefix(indexPrefix, v))) keys.push(o.key);
    // The manifest goes first so a half-pruned version is never mistaken for a loadable one.
    keys.sort((a, b) => Number(b.endsWith(MANIFEST_FILE)) - Number(a.endsWith(MANIFEST_FILE)));
    for (const k of keys) await store.delete(k);
  }
  return doomed;
}
