// A real S3-protocol server (s3rver) on an ephemeral loopback port, one per test file.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";

export interface LocalS3 {
  endpoint: string;
  bucket: string;
  port: number;
  directory: string;
  /** s3rver's instance: emits "event" with S3 notification records ({Records:[...]}) on put/copy/delete. */
  server: S3rver;
  credentials: { accessKeyId: string; secretAccessKey: string };
  close(): Promise<void>;
}

export async function startLocalS3(
  opts: { bucket?: string; port?: number; directory?: string } = {},
): Promise<LocalS3> {
  const bucket = opts.bucket ?? "test-bucket";
  const directory = opts.directory ?? mkdtempSync(join(tmpdir(), "s3rver-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: opts.port ?? 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
    allowMismatchedSignatures: true,
    vhostBuckets: false,
  });
  const { port } = (await server.run()) as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    port,
    directory,
    server,
    credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    async close() {
      await server.close();
      if (!opts.directory) rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** Environment that points the service's configuration (shared/core/config.ts) at this s3rver. */
export function localS3Env(s3: Pick<LocalS3, "bucket" | "endpoint" | "credentials">): Record<string, string> {
  return {
    STORE_KIND: "s3",
    BUCKET: s3.bucket,
    S3_ENDPOINT: s3.endpoint,
    S3_FORCE_PATH_STYLE: "true",
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
  };
}
