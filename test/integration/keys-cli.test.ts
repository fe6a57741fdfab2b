// `npm run cli -- keys ...` as a real subprocess against S3 (s3rver on loopback): the printed key
// authenticates through the key store, the bucket holds only hashes, revoke and list work.
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseApiKey } from "../../shared/core/api-keys.ts";
import { createKeyStore } from "../../shared/adapters/key-store.ts";
import { createS3Store } from "../../shared/adapters/s3-store.ts";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, "../..");
let s3: LocalS3;

beforeAll(async () => {
  s3 = await startLocalS3();
});
afterAll(async () => {
  await s3?.close();
});

function cli(...args: string[]) {
  return run(process.execPath, ["--import", "tsx", "scripts/cli.ts", "keys", ...args], {
    cwd: repoRoot,
    env: {
      ...process.env,
      STORE_KIND: "s3",
      BUCKET: s3.bucket,
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      API_KEYS_PREFIX: "auth/keys/",
    },
  });
}

describe("keys CLI against S3", () => {
  it("creates a key printed once on stdout, lists it without secrets, and revokes it", async () => {
    const created = await cli("create", "--name", "integration", "--rps", "5", "--burst", "7");
    const key = created.stdout.trim();
    const parsed = parseApiKey(key);
    expect(parsed).not.toBeNull();
    expect(created.stderr).toContain(`created key ${parsed!.keyId}`);
    expect(created.stderr).not.toContain(parsed!.secret);

    const store = createS3Store({
      bucket: s3.bucket,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: s3.credentials,
    });
    const keys = createKeyStore({ store, prefix: "auth/keys/", cacheTtlMs: 0 });
    expect(await keys.verify(key)).toMatchObject({
      ok: true,
      record: { name: "integration", rate: { rps: 5, burst: 7 } },
    });
    const stored = await store.get(`auth/keys/${parsed!.keyId}.json`);
    expect(new TextDecoder().decode(stored!.body)).not.toContain(parsed!.secret);

    const listed = JSON.parse((await cli("list", "--json")).stdout) as Array<{
      key_id: string;
      revoked_at: string | null;
    }>;
    expect(listed).toEqual([expect.objectContaining({ key_id: parsed!.keyId, revoked_at: null })]);
    expect(JSON.stringify(listed)).not.toMatch(/hash|salt/);

    const revoked = await cli("revoke", parsed!.keyId);
    expect(revoked.stdout).toContain(`revoked ${parsed!.keyId}`);
    expect(await keys.verify(key)).toEqual({ ok: false, reason: "revoked" });

    await expect(cli("revoke", "ffffffffffffffff")).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining("No API key"),
    });
    await expect(cli("create")).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("--name") });
  });
});
