// One reindex of the corpus prefix in the configured store, as the reindex function runs it on an
// event: REINDEX_MODE=single builds in this process; REINDEX_MODE=sharded plans shards and runs the
// Step Functions definition in-process (or, with REINDEX_STATE_MACHINE set, starts it on AWS).
import { parseArgs } from "node:util";
import { createReindexService, summarize } from "../../functions/runtime/reindex-deps.ts";
import { loadConfig } from "../../shared/core/config.ts";
import type { Command } from "../cli.ts";

const usage = `npm run cli -- reindex [--json]

Rebuilds the snapshot from everything under CORPUS_PREFIX (STORE_KIND/STORE_DIR or BUCKET/S3_ENDPOINT),
like the reindex function does on an upload. REINDEX_MODE=sharded runs the sharded build (docs/REINDEX.md).`;

export const command: Command = {
  name: "reindex",
  summary: "rebuild the snapshot from the corpus prefix (REINDEX_MODE=single|sharded)",
  usage,
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { json: { type: "boolean" } } });
    const cfg = loadConfig();
    const quiet = () => {};
    const service = createReindexService(cfg, { log: values.json ? quiet : undefined });
    const summary = summarize(await service.run({ trigger: ["cli"] }), 0);
    if (values.json) console.log(JSON.stringify(summary));
    else
      console.error(
        `${summary.status}: version ${summary.version ?? "(none)"}, ${summary.documents} documents, ` +
          `${summary.passages} passages, ${summary.embedded} embedded, ${summary.cached} cached` +
          (summary.shards ? `, ${summary.shards} shards (${summary.reused_shards} reused)` : ""),
      );
    return 0;
  },
};
