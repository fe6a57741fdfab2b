// API keys: format, hashing and verification. Pure: randomness and time are injected.
//
// A key looks like `tsr_<keyId>_<secret>`: keyId is 16 hex chars (64 bits, not secret: it names the stored
// record and appears in logs), secret is 64 hex chars (256 bits from the injected RNG). Only
// HMAC-SHA256(salt, keyId ":" secret) is stored, with a random per-key salt. A fast keyed hash is enough
// because the secret is 256 random bits: brute force is infeasible at any hash speed, and a slow KDF
// (bcrypt/scrypt) would only add CPU per request, which is itself a denial-of-service lever. The salt
// stops precomputation across keys; binding the key id stops a hash being copied onto another record.
import { createHmac, timingSafeEqual } from "node:crypto";
import { ValidationError } from "./errors.ts";

export const API_KEY_PREFIX = "tsr_";
const KEY_ID_BYTES = 8;
const SECRET_BYTES = 32;
const SALT_BYTES = 16;
const KEY_PATTERN = /^tsr_([0-9a-f]{16})_([0-9a-f]{64})$/;
const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;
/** Anything that looks like one of our keys, even truncated or malformed: for redaction. */
export const API_KEY_LIKE = /tsr_[A-Za-z0-9_-]{4,}/g;

/** Fills a fresh buffer with n cryptographically random bytes (node:crypto randomBytes in production). */
export type RandomBytes = (n: number) => Uint8Array;

export interface RateLimitSpec {
  /** Sustained requests per second. */
  rps: number;
  /** Bucket size: requests allowed at once after an idle period. */
  burst: number;
}

/** What the store holds for a key: never the plaintext secret. */
export interface ApiKeyRecord {
  key_id: string;
  /** Hex HMAC-SHA256(salt, `${key_id}:${secret}`). */
  hash: string;
  /** Hex random salt, per key. */
  salt: string;
  alg: "hmac-sha256";
  name: string;
  /** ISO timestamp. */
  created_at: string;
  /** ISO timestamp; a revoked key never authenticates again. */
  revoked_at?: string;
  /** Per-key override of the configured RATE_LIMIT_RPS / RATE_LIMIT_BURST. */
  rate?: RateLimitSpec;
}

export interface NewApiKey {
  /** The plaintext key: shown to the caller once, never stored. */
  key: string;
  record: ApiKeyRecord;
}

const toHex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

function randomHex(rng: RandomBytes, n: number): string {
  const bytes = rng(n);
  if (bytes.length !== n) throw new Error(`RNG returned ${bytes.length} bytes, expected ${n}`);
  return toHex(bytes);
}

export function hashSecret(keyId: string, secret: string, saltHex: string): string {
  return createHmac("sha256", Buffer.from(saltHex, "hex")).update(`${keyId}:${secret}`).digest("hex");
}

/** Constant-time equality of two hex digests (false on any length or encoding mismatch). */
export function digestsEqual(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, "hex");
  const b = Buffer.from(bHex, "hex");
  if (a.length === 0 || a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

export function validateRate(rate: RateLimitSpec): RateLimitSpec {
  if (!Number.isFinite(rate.rps) || rate.rps <= 0)
    throw new ValidationError(`rps must be a positive number, got ${rate.rps}`);
  if (!Number.isInteger(rate.burst) || rate.burst < 1)
    throw new ValidationError(`burst must be a positive integer, got ${rate.burst}`);
  return { rps: rate.rps, burst: rate.burst };
}

/** Makes a new key and the record to store. `now` is wall-clock ms. */
export function generateApiKey(opts: { name: string; rng: RandomBytes; now: number; rate?: RateLimitSpec }): NewApiKey {
  const name = opts.name.trim();
  if (!name || name.length > 200) throw new ValidationError("A key name of 1-200 characters is required");
  const keyId = randomHex(opts.rng, KEY_ID_BYTES);
  const secret = randomHex(opts.rng, SECRET_BYTES);
  const salt = randomHex(opts.rng, SALT_BYTES);
  const record: ApiKeyRecord = {
    key_id: keyId,
    hash: hashSecret(keyId, secret, salt),
    salt,
    alg: "hmac-sha256",
    name,
    created_at: new Date(opts.now).toISOString(),
    ...(opts.rate ? { rate: validateRate(opts.rate) } : {}),
  };
  return { key: `${API_KEY_PREFIX}${keyId}_${secret}`, record };
}

/** Splits a presented key; null when it is not in our format (treated exactly like an unknown key). */
export function parseApiKey(presented: string): { keyId: string; secret: string } | null {
  const m = KEY_PATTERN.exec(presented.trim());
  return m ? { keyId: m[1], secret: m[2] } : null;
}

export function isKeyId(s: string): boolean {
  return KEY_ID_PATTERN.test(s);
}

export type KeyCheck =
  | { ok: true; record: ApiKeyRecord }
  | { ok: false; reason: "malformed" | "unknown" | "revoked" | "mismatch" };

/**
 * Checks a parsed key against its stored record (or null when none). The reason is for internal logs
 * only; callers must answer every failure the same way so keys cannot be probed.
 */
export function checkApiKey(parsed: { keyId: string; secret: string }, record: ApiKeyRecord | null): KeyCheck {
  if (!record || record.key_id !== parsed.keyId) return { ok: false, reason: "unknown" };
  // Hash before looking at revocation so both failures cost the same work.
  const matches = digestsEqual(hashSecret(parsed.keyId, parsed.secret, record.salt), record.hash);
  if (!matches) return { ok: false, reason: "mismatch" };
  if (record.revoked_at) return { ok: false, reason: "revoked" };
  return { ok: true, record };
}

/** Parses a stored record, rejecting anything that is not a well-formed hash-only record. */
export function parseKeyRecord(json: unknown): ApiKeyRecord {
  const r = json as Partial<ApiKeyRecord> | null;
  const hex = (s: unknown, len: number) => typeof s === "string" && s.length === len && /^[0-9a-f]+$/.test(s);
  if (
    !r ||
    typeof r !== "object" ||
    typeof r.key_id !== "string" ||
    !isKeyId(r.key_id) ||
    !hex(r.hash, 64) ||
    !hex(r.salt, SALT_BYTES * 2) ||
    r.alg !== "hmac-sha256" ||
    typeof r.name !== "string" ||
    typeof r.created_at !== "string"
  ) {
    throw new ValidationError("Malformed API key record");
  }
  return {
    key_id: r.key_id,
    hash: r.hash as string,
    salt: r.salt as string,
    alg: "hmac-sha256",
    name: r.name,
    created_at: r.created_at,
    ...(typeof r.revoked_at === "string" ? { revoked_at: r.revoked_at } : {}),
    ...(r.rate ? { rate: validateRate(r.rate) } : {}),
  };
}
