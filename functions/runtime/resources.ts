// Maps the resources SST links to a function (infra/*.ts `link: [...]`) onto the variable names
// shared/core/config.ts reads, so the rest of the code only ever sees one config shape.
//
// On AWS, SST injects linked resources (bucket name, function name, service URL, decrypted secrets)
// and `Resource` from "sst/resource" exposes them. Locally nothing is linked: `in` checks on the
// Resource proxy are false and never throw, so resourceEnv() returns {} and plain environment
// variables (or the embedded defaults) apply unchanged.
import { Resource } from "sst/resource";
import { type Config, loadConfig } from "../../shared/core/config.ts";

type Env = Record<string, string | undefined>;

/**
 * Linked resource name (the component name in infra/) → the property read → the config variable.
 * infra/ and this table must agree; test/infra/infra.test.ts checks both sides.
 */
export const LINKED_RESOURCES = {
  Data: { property: "name", variable: "BUCKET" },
  Reranker: { property: "name", variable: "RERANKER_FUNCTION" },
  RerankerService: { property: "url", variable: "RERANKER_URL" },
  OpenAiApiKey: { property: "value", variable: "OPENAI_API_KEY" },
  RerankerToken: { property: "value", variable: "RERANKER_TOKEN" },
  ReindexStateMachine: { property: "arn", variable: "REINDEX_STATE_MACHINE" },
  // A list: the shard function names, shard i → name i.
  IndexShards: { property: "names", variable: "SHARD_FUNCTIONS" },
} as const;

/**
 * Config variables filled from linked resources. `linked` defaults to SST's Resource proxy; tests
 * pass a plain object. Empty values (an unset optional secret) are left out, so they read as unset.
 */
export function resourceEnv(linked: object = Resource, env: Env = process.env): Record<string, string> {
  const source = linked as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const [name, { property, variable }] of Object.entries(LINKED_RESOURCES)) {
    if (!(name in source)) continue;
    const value = (source[name] as Record<string, unknown> | undefined)?.[property];
    if (typeof value === "string" && value !== "") out[variable] = value;
    else if (Array.isArray(value) && value.length && value.every((v) => typeof v === "string" && v !== ""))
      out[variable] = value.join(",");
  }
  // With provisioned concurrency the warm instances belong to a published version (infra sets the
  // qualifier); Lambda's Invoke accepts "name:version" as the function name.
  const qualifier = env.RERANKER_FUNCTION_QUALIFIER;
  if (out.RERANKER_FUNCTION && qualifier) out.RERANKER_FUNCTION = `${out.RERANKER_FUNCTION}:${qualifier}`;
  // A load balancer URL may end in "/"; clients append "/rerank" themselves.
  if (out.RERANKER_URL) out.RERANKER_URL = out.RERANKER_URL.replace(/\/+$/, "");
  return out;
}

/** The function's config: environment variables, overridden by linked resources where present. */
export function loadFunctionConfig(env: Env = process.env, linked: object = Resource): Config {
  return loadConfig({ ...env, ...resourceEnv(linked, env) });
}
