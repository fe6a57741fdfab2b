// `npm run cli -- index <path...>`: local files or folders → a snapshot in the configured store.
import { parseArgs } from "node:util";
import { createStore } from "../../shared/adapters/stores.ts";
import { type Config, loadConfig } from "../../shared/core/config.ts";
import { describeIdentity } from "../../shared/core/embedding.ts";
import type { Command } from "../cli.ts";
import { describeStore, indexLocalFiles } from "../local/index-files.ts";
import { createProgress, intFlag, type OutputMode, printJson } from "../local/output.ts";

const usage = `npm run cli -- index <path...> [options]

Builds an index snapshot from local files and folders (JSONL/NDJSON, JSON, Markdown, text; folders
are walked recursively, hidden entries left out) and publishes it to the configured store, by the
same build + publish path as the reindex function: documents → passages (CHUNK_TOKENS,
CHUNK_OVERLAP) → embedder (EMBEDDER: OpenAI when OPENAI_API_KEY is set, else a local ONNX model in
EMBEDDING_MODEL_DIR, else USE-lite joined with hashing, offline) → FAISS index (INDEX_TYPE) → snapshot under
INDEX_PREFIX, the live pointer flipped last. Bad rows and unsupported files are skipped and listed.

Store: STORE_KIND=fs (default; STORE_DIR, default .data/store) or STORE_KIND=s3 with BUCKET
(S3_ENDPOINT and S3_FORCE_PATH_STYLE=true for S3-compatible servers). In a bucket whose corpus
prefix feeds the reindex function, the next upload replaces this snapshot with one built from the
bucket's corpus.

  --store-dir <dir>   filesystem store root (implies STORE_KIND=fs)
  --index-type <t>    auto | flat | hnsw | ivf | ivfpq | ivfpq-refine | sq8 | fp16 (default INDEX_TYPE, auto)
  --embedder <kind>   auto | use-lite+hashing | use-lite | hashing | onnx | openai (default EMBEDDER, auto)
  --keep <n>          snapshot versions to keep; older ones are pruned (default 3)
  --json              print one JSON summary object as the last stdout line (no progress bars)
  --quiet             no progress bars or log lines; prints only the new version

Example: npm run cli -- index scripts/demo-corpus && npm run cli -- query "what is a cross-encoder"`;

export const command: Command = {
  name: "index",
  summary: "build a snapshot from local files/folders into the local store or a bucket",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        "store-dir": { type: "string" },
        "index-type": { type: "string" },
        embedder: { type: "string" },
        keep: { type: "string" },
        json: { type: "boolean", default: false },
        quiet: { type: "boolean", default: false },
      },
    });
    const mode: OutputMode = { json: values.json, quiet: values.quiet };
    const env = {
      ...process.env,
      ...(values["store-dir"] ? { STORE_KIND: "fs", STORE_DIR: values["store-dir"] } : {}),
      ...(values["index-type"] ? { INDEX_TYPE: values["index-type"] } : {}),
      ...(values.embedder ? { EMBEDDER: values.embedder } : {}),
    };
    const cfg: Config = loadConfig(env);
    const store = createStore(cfg);
    const progress = createProgress(mode);
    const log = progress.log;
    log(`indexing ${positionals.join(", ")} into ${describeStore(store.describe())} (${cfg.indexPrefix})`);
    const result = await indexLocalFiles(positionals, {
      cfg,
      store,
      progress,
      log,
      keep: intFlag(values.keep, "--keep") ?? 3,
    });

    if (mode.json) {
      printJson(result);
      return 0;
    }
    if (mode.quiet) {
      console.log(result.version);
      return 0;
    }
    for (const s of result.skipped) log(`skipped ${s.key}${s.line ? `:${s.line}` : ""}: ${s.reason}`);
    const usageLine =
      result.embedding_usage.calls > 0
        ? `, ${result.embedding_usage.calls} embedding calls, ${result.embedding_usage.tokens} tokens`
        : "";
    console.log(
      [
        `published snapshot ${result.version}${result.previous_version ? ` (replacing ${result.previous_version})` : ""}`,
        `  ${result.documents} documents from ${result.files} files → ${result.passages} passages, ${result.skipped.length} skipped`,
        `  embedder ${describeIdentity(result.embedder)}${usageLine}`,
        `  index ${result.index_type}${result.index_shards > 1 ? ` in ${result.index_shards} shards` : ""} in ${describeStore(result.store)} under ${result.index_prefix}`,
        `  ${result.timings.total_ms} ms (read ${result.timings.read_ms}, embed + index ${result.timings.build_ms}, publish ${result.timings.publish_ms})`,
        ...(result.pruned.length ? [`  pruned ${result.pruned.join(", ")}`] : []),
      ].join("\n"),
    );
    return 0;
  },
};
