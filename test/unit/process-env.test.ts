// The allocator settings every function starts with (infra/process-env.ts) are read by glibc's
// dynamic loader, which ignores a name it does not know: a misspelt tunable would silently do
// nothing. `ld.so --list-tunables` (glibc ≥ 2.33) prints what the loader parsed from the variable.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ALLOCATOR_ENV } from "../../infra/process-env.ts";

const LOADERS = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"];

function listTunables(loader: string, tunables?: string): Map<string, string> | null {
  try {
    const env = { ...process.env, GLIBC_TUNABLES: tunables ?? "" };
    const out = execFileSync(loader, ["--list-tunables"], { env, encoding: "utf8" });
    return new Map([...out.matchAll(/^(\S+): (\S+)/gm)].map((m) => [m[1], m[2]]));
  } catch {
    return null; // glibc < 2.33, or not glibc
  }
}

const loader = LOADERS.find((l) => existsSync(l));
const known = loader ? listTunables(loader) : null;
if (!known) console.warn("skipping the glibc tunables check: no glibc loader with --list-tunables here");

describe.skipIf(!known)("ALLOCATOR_ENV", () => {
  const pairs = ALLOCATOR_ENV.GLIBC_TUNABLES.split(":").map((p) => p.split("=") as [string, string]);

  it("names tunables this glibc parses, with the values it will use", () => {
    const parsed = listTunables(loader as string, ALLOCATOR_ENV.GLIBC_TUNABLES) as Map<string, string>;
    // top_pad is as old as the tunables themselves (2.26); hugetlb arrived in 2.35.
    expect(known?.has("glibc.malloc.top_pad")).toBe(true);
    for (const [name, value] of pairs) {
      if (!known?.has(name)) {
        expect(name, "only hugetlb may be missing, on glibc < 2.35").toBe("glibc.malloc.hugetlb");
        continue;
      }
      expect(parsed.get(name), name).toBe(`0x${Number(value).toString(16)}`);
      expect(known.get(name), `${name} differs from glibc's default`).not.toBe(parsed.get(name));
    }
  });
});
