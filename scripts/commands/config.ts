import { loadConfig, settingsTable } from "../../shared/core/config.ts";
import type { Command } from "../cli.ts";

export const command: Command = {
  name: "config",
  summary: "print every setting (markdown table) or check the current environment (--check)",
  usage: "npm run cli -- config [--check]",
  async run(argv) {
    if (argv.includes("--check")) {
      const cfg = loadConfig();
      console.log(
        JSON.stringify(
          {
            ...cfg,
            openaiApiKey: cfg.openaiApiKey ? "(set)" : undefined,
            rerankerToken: cfg.rerankerToken ? "(set)" : undefined,
          },
          null,
          2,
        ),
      );
      return 0;
    }
    console.log(settingsTable());
    return 0;
  },
};
