// functions/runtime/resources.ts: linked SST resources → the config variables shared/core/config.ts reads.
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { LINKED_RESOURCES, loadFunctionConfig, resourceEnv } from "../../functions/runtime/resources.ts";
import { settings } from "../../shared/core/config.ts";

const repoRoot = resolve(import.meta.dirname, "../..");

describe("resourceEnv", () => {
  it("maps each linked resource to the config variable named in LINKED_RESOURCES", () => {
    const linked = {
      App: { name: "two-stage-retrieval", stage: "prod" },
      Data: { name: "app-prod-data-123" },
      Reranker: { name: "app-prod-Reranker" },
      OpenAiApiKey: { value: "sk-1" },
      RerankerToken: { value: "tok" },
    };
    expect(resourceEnv(linked, {})).toEqual({
      BUCKET: "app-prod-data-123",
      RERANKER_FUNCTION: "app-prod-Reranker",
      OPENAI_API_KEY: "sk-1",
      RERANKER_TOKEN: "tok",
    });
  });

  it("only targets variables the config table reads", () => {
    const known = new Set(Object.values(settings).map((s) => s.env));
    for (const { variable } of Object.values(LINKED_RESOURCES)) expect(known).toContain(variable);
  });

  it("leaves out resources that are not linked and secrets left empty", () => {
    expect(resourceEnv({}, {})).toEqual({});
    expect(resourceEnv({ RerankerToken: { value: "" }, Data: { other: "x" } }, {})).toEqual({});
  });

  it("invokes the published version when infra sets a qualifier", () => {
    expect(resourceEnv({ Reranker: { name: "fn" } }, { RERANKER_FUNCTION_QUALIFIER: "12" })).toEqual({
      RERANKER_FUNCTION: "fn:12",
    });
    // A qualifier without a linked function changes nothing.
    expect(resourceEnv({}, { RERANKER_FUNCTION_QUALIFIER: "12" })).toEqual({});
  });

  it("drops the trailing slash of a service URL", () => {
    expect(resourceEnv({ RerankerService: { url: "http://lb.example.com/" } }, {})).toEqual({
      RERANKER_URL: "http://lb.example.com",
    });
  });

  it("returns nothing outside SST, where no resource is linked", () => {
    expect(resourceEnv()).toEqual({});
  });
});

describe("loadFunctionConfig", () => {
  it("lets linked resources override plain variables and validates the result", () => {
    const cfg = loadFunctionConfig(
      { STORE_KIND: "s3", BUCKET: "stale", RERANKER: "lambda" },
      { Data: { name: "live" }, Reranker: { name: "fn" } },
    );
    expect(cfg.bucket).toBe("live");
    expect(cfg.rerankerFunction).toBe("fn");
    expect(() => loadFunctionConfig({ STORE_KIND: "s3" }, {})).toThrow(/BUCKET/);
  });

  it("reads the resources SST injects into a real process (SST_RESOURCE_* variables)", () => {
    const script = `import { loadFunctionConfig } from ${JSON.stringify(resolve(repoRoot, "functions/runtime/resources.ts"))};
      const c = loadFunctionConfig(); console.log(JSON.stringify({ bucket: c.bucket, fn: c.rerankerFunction, key: c.openaiApiKey }));`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: repoRoot,
      encoding: "utf8",
      env: {
        PATH: process.env.PATH,
        STORE_KIND: "s3",
        RERANKER: "lambda",
        RERANKER_FUNCTION_QUALIFIER: "3",
        SST_RESOURCE_App: JSON.stringify({ name: "two-stage-retrieval", stage: "test" }),
        SST_RESOURCE_Data: JSON.stringify({ name: "bucket-from-sst", type: "sst.aws.Bucket" }),
        SST_RESOURCE_Reranker: JSON.stringify({ name: "reranker-fn", type: "sst.aws.Function" }),
        SST_RESOURCE_OpenAiApiKey: JSON.stringify({ value: "sk-from-sst", type: "sst.sst.Secret" }),
      },
    });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ bucket: "bucket-from-sst", fn: "reranker-fn:3", key: "sk-from-sst" });
  });
});
