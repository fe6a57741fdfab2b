// API key administration against the configured store (STORE_KIND=fs by default, s3 with BUCKET).
import { parseArgs } from "node:util";
import type { RateLimitSpec } from "../../shared/core/api-keys.ts";
import { type Config, loadConfig } from "../../shared/core/config.ts";
import { ValidationError } from "../../shared/core/errors.ts";
import { createKeyStore } from "../../shared/adapters/key-store.ts";
import { createStore } from "../../shared/adapters/stores.ts";
import type { Command } from "../cli.ts";

const usage = `npm run cli -- keys <create|revoke|list> [options]

  keys create --name NAME [--rps N --burst N]   make a key; prints the plaintext key ONCE (only its hash is stored)
  keys revoke KEY_ID                             revoke a key (serving instances stop accepting it within API_KEY_CACHE_TTL_S)
  keys list [--json]                             key ids, names, dates, limits (never keys or hashes)

Uses STORE_KIND/STORE_DIR (or BUCKET, S3_ENDPOINT for s3) and API_KEYS_PREFIX from the environment.`;

function positiveNumber(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new ValidationError(`--${name} must be a positive number, got "${raw}"`);
  return n;
}

/** Both limits or neither: a key either follows RATE_LIMIT_RPS/RATE_LIMIT_BURST or has its own. */
function rateFrom(cfg: Config, rps?: number, burst?: number): RateLimitSpec | undefined {
  if (rps === undefined && burst === undefined) return undefined;
  const r = rps ?? cfg.rateLimitRps;
  // Same shape as the defaults (burst = 2 × rate) when only --rps is given.
  return { rps: r, burst: burst ?? Math.max(1, Math.ceil(2 * r)) };
}

export const command: Command = {
  name: "keys",
  summary: "create, revoke or list API keys (stored as hashes in the configured store)",
  usage,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        name: { type: "string" },
        rps: { type: "string" },
        burst: { type: "string" },
        json: { type: "boolean" },
      },
    });
    const [action, ...rest] = positionals;
    const cfg = loadConfig();
    const store = createStore(cfg);
    const keys = createKeyStore({ store, prefix: cfg.apiKeysPrefix, cacheTtlMs: 0 });
    const where =
      cfg.storeKind === "s3" ? `s3://${cfg.bucket}/${cfg.apiKeysPrefix}` : `${cfg.storeDir}/${cfg.apiKeysPrefix}`;

    switch (action) {
      case "create": {
        if (!values.name) throw new ValidationError("keys create needs --name NAME");
        const burst = positiveNumber("burst", values.burst);
        if (burst !== undefined && !Number.isInteger(burst))
          throw new ValidationError("--burst must be a whole number");
        const rate = rateFrom(cfg, positiveNumber("rps", values.rps), burst);
        const made = await keys.create({ name: values.name, rate });
        console.error(`created key ${made.record.key_id} "${made.record.name}" in ${where}`);
        console.error(
          made.record.rate
            ? `rate limit: ${made.record.rate.rps} req/s, burst ${made.record.rate.burst}`
            : `rate limit: defaults (RATE_LIMIT_RPS=${cfg.rateLimitRps}, RATE_LIMIT_BURST=${cfg.rateLimitBurst})`,
        );
        console.error(
          "the key below is shown once and cannot be recovered; send it as x-api-key or Authorization: Bearer",
        );
        // The key alone on stdout, so `KEY=$(npm run -s cli -- keys create --name x)` works.
        console.log(made.key);
        return 0;
      }
      case "revoke": {
        const keyId = rest[0];
        if (!keyId) throw new ValidationError("keys revoke needs a KEY_ID (see keys list)");
        const record = await keys.revoke(keyId);
        console.log(
          `revoked ${record.key_id} "${record.name}" at ${record.revoked_at}; serving instances stop accepting it within ${cfg.apiKeyCacheTtlS} s`,
        );
        return 0;
      }
      case "list": {
        const records = await keys.list();
        const rows = records.map((r) => ({
          key_id: r.key_id,
          name: r.name,
          created_at: r.created_at,
          revoked_at: r.revoked_at ?? null,
          rate: r.rate ?? null,
        }));
        if (values.json) {
          console.log(JSON.stringify(rows, null, 2));
          return 0;
        }
        if (rows.length === 0) {
          console.log(`no keys in ${where}`);
          return 0;
        }
        for (const r of rows) {
          const state = r.revoked_at ? `revoked ${r.revoked_at}` : "active";
          const rate = r.rate ? `${r.rate.rps} rps / burst ${r.rate.burst}` : "default rate";
          console.log(`${r.key_id}  ${state.padEnd(32)}  ${rate.padEnd(22)}  ${r.created_at}  ${r.name}`);
        }
        return 0;
      }
      default:
        console.error(usage);
        return 2;
    }
  },
};
