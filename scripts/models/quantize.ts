// `npm run cli -- models quantize <folder>`: writes onnx/model_quantized.onnx (dynamic int8, the
// transformation of shared/adapters/onnx-quantize.ts) next to the fp32 graph of a BERT/XLM-R
// cross-encoder or bi-encoder folder, and records it in the folder's checksums.json when it has one.
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { quantizeDynamicInt8, type QuantizeReport } from "../../shared/adapters/onnx-quantize.ts";
import { CHECKSUMS_FILE, type ChecksumsFile, writeChecksums } from "../fixtures/checksums.ts";

export const QUANTIZE_USAGE = "usage: models quantize <model folder> [--force]";

export interface QuantizeResult extends QuantizeReport {
  input: string;
  output: string;
}

export async function quantizeFolder(dir: string, opts: { force?: boolean } = {}): Promise<QuantizeResult> {
  const input = [path.join(dir, "onnx", "model.onnx"), path.join(dir, "model.onnx")].find((f) => existsSync(f));
  if (!input) throw new Error(`${dir}: no fp32 graph (onnx/model.onnx or model.onnx) to quantize`);
  const output = path.join(dir, "onnx", "model_quantized.onnx");
  if (existsSync(output) && !opts.force) throw new Error(`${output} exists (use --force to overwrite)`);
  const { model, report } = quantizeDynamicInt8(new Uint8Array(await readFile(input)));
  await mkdir(path.dirname(output), { recursive: true });
  await writeFile(output, model);
  const checksums = path.join(dir, CHECKSUMS_FILE);
  if (existsSync(checksums)) {
    const { files: _files, ...extra } = JSON.parse(await readFile(checksums, "utf8")) as ChecksumsFile;
    await writeChecksums(dir, extra);
  }
  return { ...report, input, output };
}

export async function quantizeCli(argv: string[]): Promise<string> {
  const dir = argv.find((a) => !a.startsWith("--"));
  if (!dir) throw new Error(`quantize needs a model folder\n${QUANTIZE_USAGE}`);
  const r = await quantizeFolder(path.resolve(dir), { force: argv.includes("--force") });
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  return `${r.output}: ${r.quantized} MatMuls to int8 (${r.kept} left in fp32), ${r.gathers} embedding table${r.gathers === 1 ? "" : "s"} to int8 rows, ${mb(r.bytesBefore)} MB → ${mb(r.bytesAfter)} MB`;
}
