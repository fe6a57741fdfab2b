// One reranker worker thread (RERANKER_WORKERS > 1): loads its own cross-encoder session and
// scores pairs for the pool in rerank-worker-pool.ts. onnxruntime-node runs inference on the
// calling thread, so parallel requests on one host need threads of their own.
import { parentPort, workerData } from "node:worker_threads";
import { type CrossEncoderOptions, loadCrossEncoder } from "./cross-encoder.ts";

interface ScoreMessage {
  id: number;
  query: string;
  documents: string[];
  maxTokensPerDoc?: number;
  strategy?: "truncate" | "chunk";
}

const port = parentPort;
if (!port) throw new Error("rerank-worker.ts runs as a worker thread");
const ready = loadCrossEncoder(workerData as CrossEncoderOptions);
ready.then(
  (m) =>
    port.postMessage({
      type: "ready",
      model: m.model,
      provider: m.provider,
      fallbacks: m.fallbacks,
      maxLength: m.maxLength,
      batchTokens: m.batchTokens,
      fixture: m.fixture,
      precision: m.precision,
      modelFile: m.modelFile,
    }),
  (e) => port.postMessage({ type: "failed", error: (e as Error).message }),
);
port.on("message", async (msg: ScoreMessage) => {
  try {
    const m = await ready;
    const r = await m.scorePairs(msg.query, msg.documents, {
      maxTokensPerDoc: msg.maxTokensPerDoc,
      strategy: msg.strategy,
    });
    port.postMessage({ type: "scored", id: msg.id, ...r });
  } catch (e) {
    port.postMessage({ type: "error", id: msg.id, error: (e as Error).message });
  }
});
