// Composition root of an index shard function / worker: the store, faiss decoding of one shard's
// index file, and the shard service that keeps the loaded shard while the instance is warm.
import {
  allocateSnapshotBytes,
  createFaissIndexSinkFactory,
  decodeFaissSnapshotIndex,
} from "../../shared/adapters/faiss-index.ts";
import { logger } from "../../shared/adapters/observability.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Config } from "../../shared/core/config.ts";
import { createIndexShardService, type IndexShardService } from "../../shared/core/index-shard-service.ts";
import type { ObjectStore } from "../../shared/core/ports.ts";
import { loadIndexShard } from "../../shared/core/snapshot-loader.ts";

export function createShardService(cfg: Config, opts: { store?: ObjectStore } = {}): IndexShardService {
  const store = opts.store ?? createStore(cfg);
  const openIndexSink = createFaissIndexSinkFactory({ searchParams: cfg.indexSearchParams });
  return createIndexShardService({
    shardId: cfg.shardId,
    loadShard: (version, shard) =>
      loadIndexShard(store, cfg.indexPrefix, version, shard, {
        decodeIndex: (bytes, manifest) => decodeFaissSnapshotIndex(bytes, manifest, cfg.indexSearchParams),
        openIndexSink,
        allocate: allocateSnapshotBytes,
      }),
    log: (level, msg, data) => logger[level](msg, { ...data }),
  });
}
