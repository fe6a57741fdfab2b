// The MiniLM-L6 fixture against an independent PyTorch export of the same shape
// (../shared/data/models/minilm-l6-cross-encoder-random-weights): after ONNX Runtime's graph
// optimisation both must reduce to the same fused ops (LayerNormalization, BiasGelu, FusedMatMul...),
// i.e. ORT treats the generated graph as it treats a real export. Cost per token is compared in the
// rerank benchmark, not here (tests check behaviour, not timing).
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { summarizeModel } from "../../shared/adapters/onnx-graph.ts";
import { ensureFixtureModel, sharedDataDir } from "../helpers/fixtures.ts";

const exportDir = sharedDataDir()
  ? path.join(sharedDataDir()!, "models", "minilm-l6-cross-encoder-random-weights")
  : null;
const exportModel = exportDir ? path.join(exportDir, "onnx", "model.onnx") : "";
const present = !!exportDir && existsSync(exportModel);
const work = mkdtempSync(path.join(tmpdir(), "fixture-vs-export-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function optimisedOps(model: string, name: string) {
  const out = path.join(work, `${name}.opt.onnx`);
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: "all",
    optimizedModelFilePath: out,
    intraOpNumThreads: 1,
    logSeverityLevel: 3,
  });
  await session.release();
  return summarizeModel(readFileSync(out));
}

describe.skipIf(!present)(
  `MiniLM-L6 fixture vs the PyTorch export${present ? "" : " (skipped: ../shared/data/models/minilm-l6-cross-encoder-random-weights not found)"}`,
  () => {
    it("has the export's signature and the same optimised op counts", async () => {
      const fixture = path.join(await ensureFixtureModel("minilm-l6-cross"), "onnx", "model.onnx");
      const raw = { ours: summarizeModel(readFileSync(fixture)), torch: summarizeModel(readFileSync(exportModel)) };
      expect(raw.ours.inputs.map((i) => [i.name, i.elemType])).toEqual(
        raw.torch.inputs.map((i) => [i.name, i.elemType]),
      );
      expect(raw.ours.outputs.map((o) => [o.name, o.dims[1]])).toEqual(
        raw.torch.outputs.map((o) => [o.name, o.dims[1]]),
      );
      expect(raw.ours.parameters).toBe(raw.torch.parameters);
      const ours = await optimisedOps(fixture, "ours");
      const torch = await optimisedOps(exportModel, "torch");
      expect(ours.ops).toEqual(torch.ops);
      expect(ours.ops).toMatchObject({
        LayerNormalization: 13,
        "com.microsoft:BiasGelu": 6,
        "com.microsoft:FusedMatMul": 6,
      });
    }, 180_000);
  },
);
