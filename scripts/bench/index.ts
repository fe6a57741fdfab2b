// Suite registry for `npm run bench -- <suite>`; each suite lives in scripts/bench/suites/<name>.ts
// and exports `suite: Suite`.
import { existsSync } from "node:fs";
import { registerSuite } from "./harness.ts";

const suites = ["faiss", "snapshot", "rerank", "hybrid", "embed", "http", "load", "coldstart", "scale"];
for (const name of suites) {
  const file = new URL(`./suites/${name}.ts`, import.meta.url);
  if (existsSync(file)) registerSuite(name, async () => (await import(file.href)).suite);
}

export { runSuites, suiteNames } from "./harness.ts";
