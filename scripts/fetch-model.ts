// Model fetcher for machines with internet access: downloads a Hugging Face model folder (ONNX
// graph + tokenizer + config) at a resolved commit into models/<name>/, writes checksums.json
// (sha256 + size of every file; the model loader verifies them), and optionally uploads the folder
// to the bucket's model prefix.
//   npx tsx scripts/fetch-model.ts <name|owner/repo> [--revision REV] [--out DIR] [--quantized]
//     [--files a,b,c] [--upload s3://bucket[/prefix/]] [--force]
// HF_ENDPOINT overrides https://huggingface.co (mirrors); HF_TOKEN is sent as a bearer token.
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { loadConfig } from "../shared/core/config.ts";
import type { ObjectStore } from "../shared/core/ports.ts";
import {
  CHECKSUMS_FILE,
  type ChecksumsFile,
  listModelFiles,
  verifyChecksums,
  writeChecksums,
} from "./fixtures/checksums.ts";
import { REPO_ROOT } from "./fixtures/index.ts";

export interface ModelFile {
  /** Path in the Hugging Face repository. */
  path: string;
  /** Path in the local folder (default: the same). */
  as?: string;
  /** A 404 skips the file instead of failing. */
  optional?: boolean;
}

export interface KnownModel {
  repo: string;
  /**
   * Revision to fetch. "main" where no commit could be verified offline when this table was
   * written: pin it (pass --revision <commit>, or edit here) with the commit that checksums.json
   * records after the first fetch.
   */
  revision: string;
  kind: "cross-encoder" | "bi-encoder";
  files: ModelFile[];
  /** The int8 graph, fetched with --quantized and saved as onnx/model_quantized.onnx. */
  quantized?: ModelFile;
}

const TOKENIZER_FILES: ModelFile[] = [
  { path: "config.json" },
  { path: "tokenizer.json" },
  { path: "tokenizer_config.json" },
  { path: "special_tokens_map.json", optional: true },
];
const BERT_FILES: ModelFile[] = [
  ...TOKENIZER_FILES,
  { path: "vocab.txt", optional: true },
  { path: "onnx/model.onnx" },
];
// The cross-encoder/* repositories publish optimum exports under onnx/; their int8 variants are
// named by instruction set (model_quint8_avx2.onnx runs on any x86-64 with AVX2).
const CE_QUANTIZED: ModelFile = {
  path: "onnx/model_quint8_avx2.onnx",
  as: "onnx/model_quantized.onnx",
  optional: true,
};

export const KNOWN_MODELS: Record<string, KnownModel> = {
  "ms-marco-MiniLM-L-6-v2": {
    repo: "cross-encoder/ms-marco-MiniLM-L-6-v2",
    revision: "main",
    kind: "cross-encoder",
    files: BERT_FILES,
    quantized: CE_QUANTIZED,
  },
  "ms-marco-MiniLM-L-12-v2": {
    repo: "cross-encoder/ms-marco-MiniLM-L-12-v2",
    revision: "main",
    kind: "cross-encoder",
    files: BERT_FILES,
    quantized: CE_QUANTIZED,
  },
  "ms-marco-TinyBERT-L-2-v2": {
    repo: "cross-encoder/ms-marco-TinyBERT-L-2-v2",
    revision: "main",
    kind: "cross-encoder",
    files: BERT_FILES,
    quantized: CE_QUANTIZED,
  },
  "bge-reranker-base": {
    repo: "BAAI/bge-reranker-base",
    revision: "main",
    kind: "cross-encoder",
    files: [...TOKENIZER_FILES, { path: "onnx/model.onnx" }],
  },
  "bge-reranker-large": {
    repo: "BAAI/bge-reranker-large",
    revision: "main",
    kind: "cross-encoder",
    // Over 2 GB: ONNX keeps the weights in an external-data file beside the graph when the export has one.
    files: [...TOKENIZER_FILES, { path: "onnx/model.onnx" }, { path: "onnx/model.onnx_data", optional: true }],
  },
  "all-MiniLM-L6-v2": {
    repo: "sentence-transformers/all-MiniLM-L6-v2",
    revision: "main",
    kind: "bi-encoder",
    files: [
      ...BERT_FILES,
      { path: "modules.json", optional: true },
      { path: "sentence_bert_config.json", optional: true },
      { path: "1_Pooling/config.json", optional: true },
    ],
    quantized: { path: "onnx/model_quint8_avx2.onnx", as: "onnx/model_quantized.onnx", optional: true },
  },
};

export interface FetchOptions {
  /** Short name from KNOWN_MODELS or a Hugging Face id (owner/repo). */
  id: string;
  revision?: string;
  /** Destination folder (default models/<name>/ in the repository). */
  outDir?: string;
  quantized?: boolean;
  /** Replace the file list (repository paths). */
  files?: string[];
  endpoint?: string;
  token?: string;
  /** Replace an existing folder even when it already holds this commit. */
  force?: boolean;
  /** Milliseconds without a byte before a request is given up (default 30 s). */
  idleTimeoutMs?: number;
  log?: (message: string) => void;
}

export interface FetchResult {
  name: string;
  repo: string;
  commit: string;
  dir: string;
  files: ChecksumsFile["files"];
  /** True when the folder already held this commit and nothing was downloaded. */
  cached: boolean;
}

/** A failure the user can act on (no network, unknown model, missing file); the CLI prints only the message. */
export class FetchModelError extends Error {
  override name = "FetchModelError";
}

export function resolveModel(id: string): { name: string; model: KnownModel } {
  const known = KNOWN_MODELS[id] ?? Object.values(KNOWN_MODELS).find((m) => m.repo.toLowerCase() === id.toLowerCase());
  if (known) return { name: Object.keys(KNOWN_MODELS).find((k) => KNOWN_MODELS[k] === known)!, model: known };
  if (!/^[\w.-]+\/[\w.-]+$/.test(id))
    throw new FetchModelError(
      `unknown model "${id}": give a Hugging Face id (owner/name) or one of ${Object.keys(KNOWN_MODELS).join(", ")}`,
    );
  return { name: id.split("/")[1], model: { repo: id, revision: "main", kind: "cross-encoder", files: BERT_FILES } };
}

function networkReason(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return "timed out";
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
}

async function request(url: string, opts: { token?: string; timeoutMs: number }): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), opts.timeoutMs);
  try {
    return await fetch(url, {
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
      redirect: "follow",
      signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
  }
}

export async function fetchModel(opts: FetchOptions): Promise<FetchResult> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const { name, model } = resolveModel(opts.id);
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const token = opts.token ?? process.env.HF_TOKEN;
  const revision = opts.revision ?? model.revision;
  const idle = opts.idleTimeoutMs ?? 30_000;
  const dir = path.resolve(opts.outDir ?? path.join(REPO_ROOT, "models", name));

  // One metadata call first: it fails fast without network, and resolves the revision to a commit
  // so every file comes from the same snapshot of the repository.
  const apiUrl = `${endpoint}/api/models/${model.repo}/revision/${encodeURIComponent(revision)}`;
  let meta: { sha?: string; siblings?: Array<{ rfilename: string }> };
  try {
    const res = await request(apiUrl, { token, timeoutMs: Math.min(idle, 15_000) });
    if (res.status === 401 || res.status === 403)
      throw new FetchModelError(
        `${model.repo}@${revision}: access denied (HTTP ${res.status}); set HF_TOKEN for gated or private models`,
      );
    if (res.status === 404) throw new FetchModelError(`${model.repo}@${revision} not found on ${endpoint} (HTTP 404)`);
    if (!res.ok) throw new FetchModelError(`${apiUrl} answered HTTP ${res.status}`);
    meta = (await res.json()) as typeof meta;
  } catch (e) {
    if (e instanceof FetchModelError) throw e;
    throw new FetchModelError(
      `cannot reach ${endpoint} (${networkReason(e)}). Fetching models needs internet access to Hugging Face or a mirror (set HF_ENDPOINT); on offline machines copy a model folder in, or use a generated fixture: npm run cli -- models fixture tiny-cross`,
    );
  }
  const commit = meta.sha && /^[0-9a-f]{40}$/.test(meta.sha) ? meta.sha : revision;
  const available = meta.siblings ? new Set(meta.siblings.map((s) => s.rfilename)) : null;

  const wanted: ModelFile[] = opts.files
    ? opts.files.map((p) => ({ path: p }))
    : [...model.files, ...(opts.quantized && model.quantized ? [model.quantized] : [])];
  if (opts.quantized && !model.quantized && !opts.files)
    log(`${name}: no quantized graph known for this model; fetching the fp32 graph and quantizing it here`);

  const existing = path.join(dir, CHECKSUMS_FILE);
  if (!opts.force && existsSync(existing)) {
    const prev = JSON.parse(await readFile(existing, "utf8")) as ChecksumsFile & {
      source?: { repo?: string; commit?: string };
    };
    const sameFiles = wanted.filter((f) => !f.optional).every((f) => prev.files[f.as ?? f.path]);
    if (
      prev.source?.repo === model.repo &&
      prev.source?.commit === commit &&
      sameFiles &&
      (await verifyChecksums(dir, prev)).length === 0
    ) {
      log(`${name}: ${dir} already holds ${model.repo}@${commit.slice(0, 12)}, checksums verified`);
      return { name, repo: model.repo, commit, dir, files: prev.files, cached: true };
    }
  }

  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    for (const f of wanted) {
      const target = f.as ?? f.path;
      if (available && !available.has(f.path)) {
        if (f.optional) {
          log(`${name}: ${f.path} is not in the repository, skipped`);
          continue;
        }
        throw new FetchModelError(
          `${model.repo}@${commit.slice(0, 12)} has no ${f.path}${model.kind === "cross-encoder" ? " (is there an ONNX export in this repository?)" : ""}`,
        );
      }
      const url = `${endpoint}/${model.repo}/resolve/${commit}/${f.path.split("/").map(encodeURIComponent).join("/")}`;
      const bytes = await download(url, path.join(tmp, target), { token, idle, optional: !!f.optional });
      if (bytes === null) log(`${name}: ${f.path} not found (optional), skipped`);
      else log(`${name}: ${target} ${(bytes / 1e6).toFixed(1)} MB`);
    }
    // The hub had no int8 graph: write one here (models quantize), so --quantized always yields one.
    if (opts.quantized && !opts.files && !existsSync(path.join(tmp, "onnx", "model_quantized.onnx"))) {
      const { quantizeFolder } = await import("./models/quantize.ts");
      const q = await quantizeFolder(tmp);
      log(`${name}: onnx/model_quantized.onnx written here (${q.quantized} MatMuls to int8)`);
    }
    await writeChecksums(tmp, {
      source: { repo: model.repo, revision, commit, endpoint, fetched_at: new Date().toISOString() },
    });
    await rm(dir, { recursive: true, force: true });
    await mkdir(path.dirname(dir), { recursive: true });
    await rename(tmp, dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const written = JSON.parse(await readFile(existing, "utf8")) as ChecksumsFile;
  if (revision !== commit) log(`${name}: fetched ${model.repo} at commit ${commit}; pin it with --revision ${commit}`);
  return { name, repo: model.repo, commit, dir, files: written.files, cached: false };
}

/** Streams `url` into `file`, aborting after `idle` ms without data; null for an optional 404. */
async function download(
  url: string,
  file: string,
  o: { token?: string; idle: number; optional: boolean },
): Promise<number | null> {
  await mkdir(path.dirname(file), { recursive: true });
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), o.idle);
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(), o.idle);
  };
  let bytes = 0;
  try {
    let res: Response;
    try {
      res = await fetch(url, {
        headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
        redirect: "follow",
        signal: controller.signal,
      });
    } catch (e) {
      throw new FetchModelError(`cannot download ${url}: ${networkReason(e)}`);
    }
    if (res.status === 404 && o.optional) return null;
    if (!res.ok || !res.body) throw new FetchModelError(`cannot download ${url}: HTTP ${res.status}`);
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        touch();
        cb(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(res.body as import("node:stream/web").ReadableStream),
        counter,
        createWriteStream(file),
      );
    } catch (e) {
      throw new FetchModelError(`download of ${url} broke off after ${bytes} bytes: ${networkReason(e)}`);
    }
    const expected = Number(res.headers.get("content-length"));
    if (expected && !res.headers.get("content-encoding") && expected !== bytes)
      throw new FetchModelError(`download of ${url} is incomplete: ${bytes} of ${expected} bytes`);
    return bytes;
  } finally {
    clearTimeout(timer);
  }
}

/** Parses s3://bucket[/prefix]; a missing prefix becomes MODEL_PREFIX + name + "/". */
export function parseS3Url(url: string, name: string, modelPrefix = "models/"): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new FetchModelError(`--upload expects s3://bucket[/prefix/], got "${url}"`);
  let prefix = m[2];
  if (prefix === "") prefix = `${modelPrefix}${name}/`;
  else if (!prefix.endsWith("/")) prefix += "/";
  return { bucket: m[1], prefix };
}

/** Uploads every file of a model folder (checksums.json last, so a reader never sees it before the files). */
export async function uploadModelDir(
  dir: string,
  store: ObjectStore,
  prefix: string,
  log: (m: string) => void = () => {},
): Promise<string[]> {
  const files = await listModelFiles(dir);
  if (existsSync(path.join(dir, CHECKSUMS_FILE))) files.push(CHECKSUMS_FILE);
  for (const rel of files) {
    const body = await readFile(path.join(dir, rel));
    await store.put(prefix + rel, new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
    log(`uploaded ${prefix}${rel} (${(body.byteLength / 1e6).toFixed(1)} MB)`);
  }
  return files.map((f) => prefix + f);
}

export async function uploadToS3Url(
  dir: string,
  url: string,
  name: string,
  log: (m: string) => void,
): Promise<string[]> {
  const cfg = loadConfig();
  const { bucket, prefix } = parseS3Url(url, name, cfg.modelPrefix);
  const { createS3Store } = await import("../shared/adapters/s3-store.ts");
  const store = createS3Store({
    bucket,
    endpoint: cfg.s3Endpoint,
    forcePathStyle: cfg.s3ForcePathStyle,
    region: cfg.awsRegion,
  });
  log(`uploading ${dir} to s3://${bucket}/${prefix}`);
  return uploadModelDir(dir, store, prefix, log);
}

export const FETCH_USAGE = `usage: fetch-model <name|owner/repo> [--revision REV] [--out DIR] [--quantized] [--files a,b] [--upload s3://bucket[/prefix/]] [--force]
known models: ${Object.entries(KNOWN_MODELS)
  .map(([k, m]) => `${k} (${m.repo}@${m.revision})`)
  .join(", ")}
HF_ENDPOINT sets a mirror, HF_TOKEN a token. Revisions marked @main are not pinned: the commit fetched is printed and kept in checksums.json.`;

export async function fetchModelCli(
  argv: string[],
  log: (m: string) => void = (m) => console.error(m),
): Promise<FetchResult> {
  const [id, ...rest] = argv;
  if (!id || id.startsWith("--")) throw new FetchModelError(FETCH_USAGE);
  const opts: FetchOptions = { id, log };
  let upload: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new FetchModelError(`${flag} needs a value`);
      return v;
    };
    if (flag === "--revision") opts.revision = value();
    else if (flag === "--out") opts.outDir = value();
    else if (flag === "--quantized") opts.quantized = true;
    else if (flag === "--force") opts.force = true;
    else if (flag === "--files") opts.files = value().split(",").filter(Boolean);
    else if (flag === "--upload") upload = value();
    else throw new FetchModelError(`unknown option ${flag}\n${FETCH_USAGE}`);
  }
  if (upload) parseS3Url(upload, "x"); // reject a malformed URL before downloading anything
  const result = await fetchModel(opts);
  if (upload) await uploadToS3Url(result.dir, upload, result.name, log);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  fetchModelCli(process.argv.slice(2)).then(
    (r) => console.log(r.dir),
    (e) => {
      console.error(e instanceof FetchModelError ? e.message : e);
      process.exit(e instanceof FetchModelError ? 2 : 1);
    },
  );
}
