// RERANKER_WORKERS > 1: N worker threads, each with its own ONNX session of the model and
// cores ÷ N intra-op threads. onnxruntime-node's run() executes on the calling thread (see
// microsoft/onnxruntime#19611), so two sessions in one thread only take turns; threads of their
// own let a search's fanned-out rerank calls run at the same time on one host.
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { PairScoreOptions, PairScores } from "../core/rerank.ts";
import type { CrossEncoder, CrossEncoderOptions } from "./cross-encoder.ts";
import type { ProviderFallback } from "./ort-session.ts";

/** What a worker reports once its model is loaded: the CrossEncoder fields the reranker shows. */
export type WorkerScorer = Pick<
  CrossEncoder,
  "model" | "provider" | "fallbacks" | "maxLength" | "batchTokens" | "fixture" | "precision" | "modelFile"
> & {
  scorePairs(query: string, documents: string[], opts?: Partial<PairScoreOptions>): Promise<PairScores>;
  describe(): { model: string; provider: string; fixture: boolean; precision: string };
  terminate(): Promise<void>;
};

interface Ready {
  type: "ready";
  model: string;
  provider: string;
  fallbacks: ProviderFallback[];
  maxLength: number;
  batchTokens: number;
  fixture: boolean;
  precision: "int8" | "fp32";
  modelFile: string;
}

const here = import.meta.url;

/** Starts one worker and resolves when its model is loaded. */
export function startRerankWorker(opts: CrossEncoderOptions): Promise<WorkerScorer> {
  const file = new URL(here.endsWith(".ts") ? "./rerank-worker.ts" : "./rerank-worker.mjs", here);
  // Under TypeScript sources (tests, tsx) the worker registers tsx's loader before importing the
  // entry (a loader given with --import does not reach worker threads on Node 20); a bundle ships
  // rerank-worker.mjs beside itself (infra/bundles.ts).
  const workerData = { ...opts, log: undefined };
  const worker = file.pathname.endsWith(".ts")
    ? new Worker(
        `import("tsx/esm/api").then((tsx) => { tsx.register(); return import(${JSON.stringify(file.href)}); });`,
        { eval: true, workerData },
      )
    : new Worker(file, { workerData });
  worker.unref();
  const waiting = new Map<number, { resolve: (r: PairScores) => void; reject: (e: Error) => void }>();
  let next = 0;
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => {
      reject(e);
      for (const w of waiting.values()) w.reject(e);
      waiting.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => {
      if (code !== 0) fail(new Error(`reranker worker ${path.basename(file.pathname)} exited with code ${code}`));
    });
    worker.on(
      "message",
      (
        msg:
          | Ready
          | { type: "failed"; error: string }
          | ({ type: "scored"; id: number } & PairScores)
          | { type: "error"; id: number; error: string },
      ) => {
        if (msg.type === "failed") return fail(new Error(msg.error));
        if (msg.type === "ready") {
          const { type: _t, ...info } = msg;
          return resolve({
            ...info,
            describe: () => ({
              model: info.model,
              provider: info.provider,
              fixture: info.fixture,
              precision: info.precision,
            }),
            scorePairs(query, documents, o = {}) {
              const id = next++;
              return new Promise<PairScores>((res, rej) => {
                waiting.set(id, { resolve: res, reject: rej });
                worker.postMessage({ id, query, documents, maxTokensPerDoc: o.maxTokensPerDoc, strategy: o.strategy });
              });
            },
            terminate: async () => {
              await worker.terminate();
            },
          });
        }
        const w = waiting.get(msg.id);
        if (!w) return;
        waiting.delete(msg.id);
        if (msg.type === "error") w.reject(new Error(msg.error));
        else {
          const { type: _t, id: _i, ...scores } = msg;
          w.resolve(scores as PairScores);
        }
      },
    );
  });
}
