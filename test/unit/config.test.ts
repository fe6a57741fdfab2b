import { describe, expect, it } from "vitest";
import { ConfigError } from "../../shared/core/errors.ts";
import { loadConfig, settingsTable } from "../../shared/core/config.ts";

describe("loadConfig", () => {
  it("gives the documented defaults on an empty environment", () => {
    const c = loadConfig({});
    expect(c.defaultK).toBe(4);
    expect(c.defaultCandidates).toBe(20);
    expect(c.storeKind).toBe("fs");
    expect(c.corpusPrefix).toBe("corpus/");
    expect(c.rerankerTimeoutMs).toBe(1500);
  });

  it("parses typed values and normalises prefixes", () => {
    const c = loadConfig({
      SEARCH_DEFAULT_K: "7",
      S3_FORCE_PATH_STYLE: "true",
      CORPUS_PREFIX: "docs",
      STORE_KIND: "s3",
      BUCKET: "b",
    });
    expect(c.defaultK).toBe(7);
    expect(c.s3ForcePathStyle).toBe(true);
    expect(c.corpusPrefix).toBe("docs/");
  });

  it.each([
    ["SEARCH_DEFAULT_K", "four"],
    ["STORE_KIND", "gcs"],
    ["S3_FORCE_PATH_STYLE", "maybe"],
    ["PORT", "70000"],
    ["CORPUS_PREFIX", "/abs"],
  ])("names the variable when %s=%s is invalid", (name, value) => {
    try {
      loadConfig({ [name]: value });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).variable).toBe(name);
      expect((e as Error).message).toContain(name);
    }
  });

  it("parses INDEX_PARAMS / INDEX_SEARCH_PARAMS and names the variable when a pair is wrong", () => {
    expect(loadConfig({}).indexParams).toBeUndefined();
    expect(loadConfig({ INDEX_PARAMS: " nlist=2048, nprobe = 16 ,efConstruction=100" }).indexParams).toEqual({
      nlist: 2048,
      nprobe: 16,
      efConstruction: 100,
    });
    expect(loadConfig({ INDEX_SEARCH_PARAMS: "efSearch=64" }).indexSearchParams).toEqual({ efSearch: 64 });
    const bad = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error("accepted");
    };
    expect(bad({ INDEX_PARAMS: "nprob=4" })).toMatch(/INDEX_PARAMS.*unknown parameter "nprob"/);
    expect(bad({ INDEX_PARAMS: "nprobe=0" })).toMatch(/INDEX_PARAMS.*positive integer/);
    expect(bad({ INDEX_PARAMS: "nprobe=1.5" })).toMatch(/INDEX_PARAMS.*name=integer/);
    expect(bad({ INDEX_PARAMS: "nprobe" })).toMatch(/INDEX_PARAMS.*name=integer/);
    expect(bad({ INDEX_SEARCH_PARAMS: "nlist=4" })).toMatch(/INDEX_SEARCH_PARAMS.*unknown parameter "nlist"/);
  });

  it("checks cross-field rules", () => {
    expect(() => loadConfig({ STORE_KIND: "s3" })).toThrow(/BUCKET/);
    expect(() => loadConfig({ RERANKER: "http" })).toThrow(/RERANKER_URL/);
    expect(() => loadConfig({ CHUNK_TOKENS: "32", CHUNK_OVERLAP: "32" })).toThrow(/CHUNK_OVERLAP/);
  });

  it("documents every setting", () => {
    expect(settingsTable()).toContain("`RERANKER_TIMEOUT_MS`");
  });
});
