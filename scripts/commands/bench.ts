import type { Command } from "../cli.ts";
import { runSuites, suiteNames } from "../bench/index.ts";

export const command: Command = {
  name: "bench",
  summary: "run benchmark suites (faiss, snapshot, rerank, http, load, coldstart, all)",
  usage:
    "npm run bench -- <suite|all> [--json] [--quick]\n  --json   print one JSON object as the last line\n  --quick  reduced sizes for a smoke run (figures not representative)",
  async run(argv) {
    const json = argv.includes("--json");
    const quick = argv.includes("--quick");
    const positional = argv.filter((a) => !a.startsWith("--"));
    const wanted = positional[0] ?? "all";
    const names = wanted === "all" ? suiteNames().filter((n) => n !== "load") : [wanted];
    await runSuites(names, { json, quick, args: argv });
    return 0;
  },
};
