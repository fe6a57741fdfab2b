// One entry point: `npm run cli -- <subcommand> [options]`. Each subcommand lives in
// scripts/commands/<name>.ts and exports `command: Command`.
import { existsSync } from "node:fs";

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number | undefined>;
}

const names = ["index", "reindex", "query", "eval", "bench", "models", "serve", "keys", "config"];

async function load(name: string): Promise<Command | null> {
  const file = new URL(`./commands/${name}.ts`, import.meta.url);
  if (!existsSync(file)) return null;
  return (await import(file.href)).command as Command;
}

async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h" || sub === "help") {
    const cmds = (await Promise.all(names.map(load))).filter((c): c is Command => c !== null);
    console.log("usage: npm run cli -- <subcommand> [options]\n\nsubcommands:");
    for (const c of cmds) console.log(`  ${c.name.padEnd(8)} ${c.summary}`);
    console.log("\nrun `npm run cli -- <subcommand> --help` for its options");
    return 0;
  }
  const cmd = await load(sub);
  if (!cmd) {
    console.error(`unknown subcommand "${sub}"; run with --help for the list`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(cmd.usage);
    return 0;
  }
  return (await cmd.run(rest)) ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (process.env.DEBUG ? err.stack : `error: ${err.message}`) : err);
    process.exit(1);
  },
);
