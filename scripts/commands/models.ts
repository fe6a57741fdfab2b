import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "../cli.ts";
import { FETCH_USAGE, FetchModelError, fetchModelCli, KNOWN_MODELS } from "../fetch-model.ts";
import { DEFAULT_FIXTURE_CACHE, FIXTURE_NAMES, FIXTURES, REPO_ROOT } from "../fixtures/index.ts";
import { makeFixture, USAGE as FIXTURE_USAGE } from "../make-fixture-model.ts";
import { quantizeCli } from "../models/quantize.ts";
import { QuantizeRefusedError } from "../../shared/adapters/onnx-quantize.ts";

const USAGE = `npm run cli -- models <fetch|fixture|quantize|list> ...
  models fetch <name|owner/repo> [--revision REV] [--out DIR] [--quantized] [--files a,b] [--upload s3://bucket[/prefix/]] [--force]
      download a Hugging Face model folder (needs internet; HF_ENDPOINT for a mirror) and write checksums.json
  models quantize <folder> [--force]
      write onnx/model_quantized.onnx (dynamic int8) next to the folder's fp32 graph; the CPU reranker
      runs it by default (RERANKER_QUANTIZED=true)
  models fixture <${FIXTURE_NAMES.join("|")}> [--out DIR] [shape options]
      generate a fixture model with random weights (its scores mean nothing)
  models list
      known models, fixture names, and the model folders present locally

fetch: ${FETCH_USAGE}

fixture: ${FIXTURE_USAGE}`;

function describeFolder(dir: string): string {
  try {
    const cfg = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    const arch = (cfg.architectures ?? [cfg.model_type ?? "?"]).join(",");
    return `${arch}${cfg.fixture ? "  [FIXTURE: random weights, scores mean nothing]" : ""}`;
  } catch {
    return "(no readable config.json)";
  }
}

function listFolders(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith(".") && existsSync(path.join(root, e.name, "config.json")))
    .map((e) => path.join(root, e.name));
}

export const command: Command = {
  name: "models",
  summary: "fetch Hugging Face models, quantize them to int8, generate fixture models, list local model folders",
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    try {
      if (sub === "fetch") {
        const r = await fetchModelCli(rest);
        console.log(r.dir);
        return 0;
      }
      if (sub === "quantize") {
        console.log(await quantizeCli(rest));
        return 0;
      }
      if (sub === "fixture") {
        console.log(await makeFixture(rest));
        return 0;
      }
      if (sub === "list") {
        console.log("known models (models fetch <name>):");
        for (const [name, m] of Object.entries(KNOWN_MODELS))
          console.log(`  ${name.padEnd(26)} ${m.kind.padEnd(14)} ${m.repo}@${m.revision}`);
        console.log("\nfixtures (models fixture <name>; random weights):");
        for (const name of FIXTURE_NAMES) {
          const f = FIXTURES[name];
          console.log(
            `  ${name.padEnd(26)} ${f.family} ${f.head}, ${f.layers} layers, hidden ${f.hidden}, ${f.maxLength} tokens`,
          );
        }
        const local = [...listFolders(path.join(REPO_ROOT, "models")), ...listFolders(DEFAULT_FIXTURE_CACHE)];
        console.log(`\nlocal model folders:${local.length ? "" : " none"}`);
        for (const dir of local) console.log(`  ${path.relative(REPO_ROOT, dir)}  ${describeFolder(dir)}`);
        return 0;
      }
      console.error(USAGE);
      return 2;
    } catch (e) {
      if (
        e instanceof FetchModelError ||
        e instanceof QuantizeRefusedError ||
        (e instanceof Error && /^unknown (fixture|option)|needs a|no fp32 graph|exists \(use --force/.test(e.message))
      ) {
        console.error(e.message);
        return 2;
      }
      throw e;
    }
  },
};
