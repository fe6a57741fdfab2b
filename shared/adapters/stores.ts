// Builds the configured object store (STORE_KIND): the filesystem by default, S3 when asked.
import type { Config } from "../core/config.ts";
import { ConfigError } from "../core/errors.ts";
import type { ObjectStore } from "../core/ports.ts";
import { createFsStore } from "./fs-store.ts";
import { createS3Store } from "./s3-store.ts";

export function createStore(
  cfg: Pick<Config, "storeKind" | "storeDir" | "bucket" | "s3Endpoint" | "s3ForcePathStyle" | "awsRegion">,
): ObjectStore {
  if (cfg.storeKind === "s3") {
    // loadConfig already refuses STORE_KIND=s3 without BUCKET; this guards hand-built configs.
    if (!cfg.bucket) throw new ConfigError("BUCKET", "required when STORE_KIND=s3");
    return createS3Store({
      bucket: cfg.bucket,
      endpoint: cfg.s3Endpoint,
      forcePathStyle: cfg.s3ForcePathStyle,
      region: cfg.awsRegion,
    });
  }
  return createFsStore(cfg.storeDir);
}
