import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  checkApiKey,
  digestsEqual,
  generateApiKey,
  hashSecret,
  parseApiKey,
  parseKeyRecord,
} from "../../shared/core/api-keys.ts";
import { DomainError, ValidationError } from "../../shared/core/errors.ts";
import { createFsStore } from "../../shared/adapters/fs-store.ts";
import { createKeyStore } from "../../shared/adapters/key-store.ts";

const rng = (n: number) => new Uint8Array(randomBytes(n));

describe("API key format and hashing", () => {
  it("makes tsr_<16 hex id>_<64 hex secret> keys from the injected RNG, and stores only a salted hash", () => {
    const made = generateApiKey({ name: "acme", rng, now: Date.UTC(2025, 0, 2) });
    expect(made.key).toMatch(/^tsr_[0-9a-f]{16}_[0-9a-f]{64}$/);
    const parsed = parseApiKey(made.key)!;
    expect(parsed.keyId).toBe(made.record.key_id);
    // 256 bits of secret; the record carries neither the key nor the secret.
    expect(parsed.secret).toHaveLength(64);
    const stored = JSON.stringify(made.record);
    expect(stored).not.toContain(parsed.secret);
    expect(stored).not.toContain(made.key);
    expect(made.record.created_at).toBe("2025-01-02T00:00:00.000Z");
    expect(made.record.hash).toBe(hashSecret(parsed.keyId, parsed.secret, made.record.salt));
  });

  it("uses exactly the RNG's bytes (deterministic under a seeded RNG)", () => {
    let counter = 0;
    const fixed = (n: number) => Uint8Array.from({ length: n }, () => counter++ & 0xff);
    const a = generateApiKey({ name: "x", rng: fixed, now: 0 });
    expect(a.record.key_id).toBe("0001020304050607");
    expect(parseApiKey(a.key)!.secret.slice(0, 8)).toBe("08090a0b");
    expect(() => generateApiKey({ name: "x", rng: () => new Uint8Array(3), now: 0 })).toThrow(/RNG returned 3 bytes/);
  });

  it("gives different salts and hashes for the same secret under different keys", () => {
    const a = generateApiKey({ name: "a", rng, now: 0 });
    const b = generateApiKey({ name: "b", rng, now: 0 });
    expect(a.record.salt).not.toBe(b.record.salt);
    const secret = parseApiKey(a.key)!.secret;
    expect(hashSecret(a.record.key_id, secret, a.record.salt)).not.toBe(
      hashSecret(a.record.key_id, secret, b.record.salt),
    );
    // The key id is bound into the hash: the same secret under another id does not verify.
    expect(hashSecret(a.record.key_id, secret, a.record.salt)).not.toBe(
      hashSecret(b.record.key_id, secret, a.record.salt),
    );
  });

  it("verifies the right key and rejects wrong secrets, unknown ids and revoked keys", () => {
    const made = generateApiKey({ name: "a", rng, now: 0 });
    const parsed = parseApiKey(made.key)!;
    expect(checkApiKey(parsed, made.record)).toEqual({ ok: true, record: made.record });
    const flipped = parsed.secret.replace(/^./, (ch) => (ch === "0" ? "1" : "0"));
    expect(checkApiKey({ keyId: parsed.keyId, secret: flipped }, made.record)).toEqual({
      ok: false,
      reason: "mismatch",
    });
    expect(checkApiKey(parsed, null)).toEqual({ ok: false, reason: "unknown" });
    expect(checkApiKey(parsed, { ...made.record, revoked_at: "2025-01-01T00:00:00Z" })).toEqual({
      ok: false,
      reason: "revoked",
    });
  });

  it("rejects anything not in the key format", () => {
    for (const bad of [
      "",
      "tsr_",
      "tsr_abc_def",
      "sk-123",
      `tsr_${"g".repeat(16)}_${"0".repeat(64)}`,
      `TSR_${"0".repeat(16)}_${"0".repeat(64)}`,
    ]) {
      expect(parseApiKey(bad)).toBeNull();
    }
    fc.assert(
      fc.property(fc.string(), (s) => parseApiKey(s) === null || /^tsr_[0-9a-f]{16}_[0-9a-f]{64}$/.test(s.trim())),
    );
  });

  it("compares digests in constant time and fails closed on length or encoding mismatch", () => {
    const h = "ab".repeat(32);
    expect(digestsEqual(h, h)).toBe(true);
    expect(digestsEqual(h, "ab".repeat(31))).toBe(false);
    expect(digestsEqual(h, "")).toBe(false);
    expect(digestsEqual("", "")).toBe(false);
    expect(digestsEqual(h, "zz".repeat(32))).toBe(false);
  });

  it("validates names, rates and stored records", () => {
    expect(() => generateApiKey({ name: "  ", rng, now: 0 })).toThrow(ValidationError);
    expect(() => generateApiKey({ name: "a", rng, now: 0, rate: { rps: 0, burst: 1 } })).toThrow(/rps/);
    expect(() => generateApiKey({ name: "a", rng, now: 0, rate: { rps: 1, burst: 0.5 } })).toThrow(/burst/);
    const made = generateApiKey({ name: "a", rng, now: 0, rate: { rps: 2, burst: 3 } });
    expect(parseKeyRecord(JSON.parse(JSON.stringify(made.record)))).toEqual(made.record);
    expect(() => parseKeyRecord({ ...made.record, hash: "nothex" })).toThrow(/Malformed/);
    expect(() => parseKeyRecord({ ...made.record, key_id: "../../etc" })).toThrow(/Malformed/);
    expect(() => parseKeyRecord(null)).toThrow(/Malformed/);
  });
});

describe("key store over the filesystem store", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "keys-"));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("creates, lists, verifies and revokes keys, storing one hash-only object per key id", async () => {
    const store = createFsStore(root);
    const keys = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 0 });
    const a = await keys.create({ name: "alpha" });
    const b = await keys.create({ name: "beta", rate: { rps: 5, burst: 10 } });

    const files = readdirSync(join(root, "auth/keys")).sort();
    expect(files).toEqual([`${a.record.key_id}.json`, `${b.record.key_id}.json`].sort());
    for (const f of files) {
      const text = readFileSync(join(root, "auth/keys", f), "utf8");
      expect(text).not.toContain(parseApiKey(a.key)!.secret);
      expect(text).not.toContain(parseApiKey(b.key)!.secret);
    }

    expect((await keys.list()).map((r) => r.name).sort()).toEqual(["alpha", "beta"]);
    expect(await keys.verify(a.key)).toMatchObject({ ok: true, record: { key_id: a.record.key_id } });
    expect(await keys.verify(b.key)).toMatchObject({ ok: true, record: { rate: { rps: 5, burst: 10 } } });
    expect(await keys.verify("tsr_nope")).toEqual({ ok: false, reason: "malformed" });

    const revoked = await keys.revoke(a.record.key_id);
    expect(revoked.revoked_at).toBeTruthy();
    expect(await keys.revoke(a.record.key_id)).toEqual(revoked);
    expect(await keys.verify(a.key)).toEqual({ ok: false, reason: "revoked" });
    expect(await keys.verify(b.key)).toMatchObject({ ok: true });
    await expect(keys.revoke("0123456789abcdef")).rejects.toSatisfy(
      (e) => e instanceof DomainError && e.status === 404,
    );
    await expect(keys.revoke("not-an-id")).rejects.toBeInstanceOf(ValidationError);
  });

  it("caches lookups for the TTL: a revocation elsewhere takes effect when the cached entry expires", async () => {
    let t = 0;
    const store = createFsStore(root);
    const serving = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 30_000, clock: { now: () => t } });
    const admin = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 0 });
    const a = await admin.create({ name: "alpha" });
    expect(await serving.verify(a.key)).toMatchObject({ ok: true });
    await admin.revoke(a.record.key_id);
    t = 29_000;
    expect(await serving.verify(a.key)).toMatchObject({ ok: true });
    t = 30_001;
    expect(await serving.verify(a.key)).toEqual({ ok: false, reason: "revoked" });
  });

  it("keeps a cached record while the store is failing, and propagates the failure when nothing is cached", async () => {
    let t = 0;
    const real = createFsStore(root);
    let down = false;
    const store = {
      ...real,
      get: (...args: Parameters<typeof real.get>) =>
        down ? Promise.reject(new Error("store down")) : real.get(...args),
    };
    const stale: string[] = [];
    const keys = createKeyStore({
      store,
      prefix: "auth/keys/",
      cacheTtlMs: 1000,
      clock: { now: () => t },
      onStaleServe: (id) => stale.push(id),
    });
    const a = await keys.create({ name: "alpha" });
    const b = await keys.create({ name: "beta" });
    expect(await keys.verify(a.key)).toMatchObject({ ok: true });
    down = true;
    t = 5000;
    expect(await keys.verify(a.key)).toMatchObject({ ok: true });
    expect(stale).toEqual([a.record.key_id]);
    await expect(keys.verify(b.key)).rejects.toThrow(/store down/);
  });

  it("caches unknown ids too, within a bounded cache, and shares one store read between concurrent lookups", async () => {
    const real = createFsStore(root);
    let reads = 0;
    const store = {
      ...real,
      get: (...args: Parameters<typeof real.get>) => {
        reads++;
        return real.get(...args);
      },
    };
    const keys = createKeyStore({
      store,
      prefix: "auth/keys/",
      cacheTtlMs: 60_000,
      maxCached: 2,
      clock: { now: () => 0 },
    });
    const unknown = `tsr_${"1".repeat(16)}_${"2".repeat(64)}`;
    await Promise.all([keys.verify(unknown), keys.verify(unknown), keys.verify(unknown)]);
    expect(reads).toBe(1);
    await keys.verify(unknown);
    expect(reads).toBe(1);
    // Two more ids push the first out of a 2-entry cache.
    await keys.verify(`tsr_${"3".repeat(16)}_${"2".repeat(64)}`);
    await keys.verify(`tsr_${"4".repeat(16)}_${"2".repeat(64)}`);
    await keys.verify(unknown);
    expect(reads).toBe(4);
  });
});
