// Request and response schemas of the search API. The same zod objects validate requests and
// generate /openapi.json, so the documentation cannot drift from what the service accepts.
// Limits come from configuration, hence factories rather than constants.
import { z } from "@hono/zod-openapi";
import type { Config } from "../core/config.ts";
import { DEFAULT_ALPHA, DEFAULT_RRF_K } from "../core/fusion.ts";

export type SearchLimitsConfig = Pick<
  Config,
  | "defaultK"
  | "defaultCandidates"
  | "maxCandidates"
  | "maxQueryChars"
  | "defaultRetrieval"
  | "hybridFusion"
  | "denseWeight"
>;

/** Longest latency budget a request may ask for (API Gateway's integration timeout is 30 s). */
export const MAX_BUDGET_MS = 30_000;

const FUSION_MODES = ["rerank", "linear", "rrf"] as const;
const RETRIEVAL_MODES = ["dense", "sparse", "hybrid"] as const;
const HYBRID_FUSIONS = ["rrf", "convex"] as const;

const intIn = (min: number, max: number) =>
  z
    .number({ error: "must be a number" })
    .int({ error: "must be an integer" })
    .min(min, { error: `must be ≥ ${min}` })
    .max(max, { error: `must be ≤ ${max}` });

const unit = () =>
  z
    .number({ error: "must be a number" })
    .min(0, { error: "must be between 0 and 1" })
    .max(1, { error: "must be between 0 and 1" });
const positive = () => z.number({ error: "must be a number" }).gt(0, { error: "must be > 0" });
const retrievalEnum = () => z.enum(RETRIEVAL_MODES, { error: `must be one of ${RETRIEVAL_MODES.join(", ")}` });
const hybridFusionEnum = () => z.enum(HYBRID_FUSIONS, { error: `must be one of ${HYBRID_FUSIONS.join(", ")}` });

const unknownFields = (iss: { code?: string; keys?: string[] }) =>
  iss.code === "unrecognized_keys" && iss.keys
    ? `unknown field${iss.keys.length > 1 ? "s" : ""} ${iss.keys.map((k) => `"${k}"`).join(", ")}`
    : "must be a JSON object";

export const filterSchema = z
  .strictObject(
    {
      source_prefix: z.string({ error: "must be a string" }).optional().openapi({
        description: "Keep passages whose `source` starts with this string.",
        example: "kb/",
      }),
      metadata: z
        .record(
          z.string(),
          z.union([z.string(), z.number(), z.boolean(), z.null()], {
            error: "must be a string, number, boolean or null",
          }),
          { error: "must be an object of string, number, boolean or null values" },
        )
        .optional()
        .openapi({
          description:
            "Keep passages whose metadata has every one of these key/value pairs (strict equality; an array value in the passage must contain the value).",
          example: { lang: "en" },
        }),
    },
    { error: unknownFields },
  )
  .openapi("SearchFilter");

export interface HybridOptions {
  fusion?: (typeof HYBRID_FUSIONS)[number];
  dense_weight?: number;
  rrf_k?: number;
}

/** The fields every search request has once defaults are applied (the core's SearchRequest). */
export interface ParsedSearch {
  query: string;
  retrieval: (typeof RETRIEVAL_MODES)[number];
  /** fusion and dense_weight always set (request, else configuration); rrf_k when the request gives it. */
  hybrid: HybridOptions & { fusion: (typeof HYBRID_FUSIONS)[number]; dense_weight: number };
  k: number;
  candidates: number;
  rerank: boolean;
  /** Absent: the core's default for the reranker that answers (defaultFusion). */
  fusion?: (typeof FUSION_MODES)[number];
  alpha?: number;
  filter?: z.infer<typeof filterSchema>;
  collapse: boolean;
  budget_ms?: number;
}

interface RawSearch {
  query: string;
  retrieval?: (typeof RETRIEVAL_MODES)[number];
  hybrid?: HybridOptions;
  k?: number;
  candidates?: number;
  rerank?: boolean;
  fusion?: (typeof FUSION_MODES)[number];
  alpha?: number;
  filter?: z.infer<typeof filterSchema>;
  collapse?: boolean;
  budget_ms?: number;
}

/**
 * Cross-field rules and defaults shared by POST and GET: k defaults to min(SEARCH_DEFAULT_K,
 * candidates) so a small `candidates` alone is valid; an explicit k must not exceed candidates.
 * retrieval and the hybrid fusion settings default to the configuration's, so the core always
 * receives an explicit first stage.
 */
function finish(limits: SearchLimitsConfig, queryField: string) {
  return (v: RawSearch, ctx: z.RefinementCtx<RawSearch>): ParsedSearch => {
    const candidates = v.candidates ?? limits.defaultCandidates;
    const k = v.k ?? Math.min(limits.defaultK, candidates);
    if (k > candidates) ctx.addIssue({ code: "custom", path: ["k"], message: `must be ≤ candidates (${candidates})` });
    if (v.query.trim() === "") ctx.addIssue({ code: "custom", path: [queryField], message: "must not be empty" });
    return {
      query: v.query.trim(),
      retrieval: v.retrieval ?? limits.defaultRetrieval,
      hybrid: {
        fusion: v.hybrid?.fusion ?? limits.hybridFusion,
        dense_weight: v.hybrid?.dense_weight ?? limits.denseWeight,
        ...(v.hybrid?.rrf_k !== undefined ? { rrf_k: v.hybrid.rrf_k } : {}),
      },
      k,
      candidates,
      rerank: v.rerank ?? true,
      ...(v.fusion !== undefined ? { fusion: v.fusion } : {}),
      ...(v.alpha !== undefined ? { alpha: v.alpha } : {}),
      ...(v.filter !== undefined ? { filter: v.filter } : {}),
      collapse: v.collapse ?? false,
      ...(v.budget_ms !== undefined ? { budget_ms: v.budget_ms } : {}),
    };
  };
}

const docs = (limits: SearchLimitsConfig) => ({
  query: `The search text, at most ${limits.maxQueryChars} characters.`,
  k: `Results to return (default ${limits.defaultK}, or candidates when smaller); at most candidates.`,
  candidates: `First-stage candidates sent to the reranker (default ${limits.defaultCandidates}, at most ${limits.maxCandidates}); in hybrid retrieval each side contributes this many, so the deduplicated pool holds up to twice as many.`,
  retrieval: `First stage (default ${limits.defaultRetrieval}): "dense" (the vector index), "sparse" (the BM25 index), "hybrid" (both: the union of each side's top \`candidates\`, deduplicated and ranked by the hybrid fusion). A snapshot without a BM25 index answers dense, and hybrid answers from BM25 alone when the query embedding fails; the response's \`retrieval\` and \`warnings\` say so.`,
  hybrid_fusion: `How hybrid retrieval merges the two rankings (default ${limits.hybridFusion}): "rrf" scores Σ 1/(rrf_k + rank) over the sides a passage is on; "convex" scores w·minmax(dense) + (1−w)·minmax(bm25) with w = dense_weight. A side the passage is missing from contributes 0.`,
  dense_weight: `Convex hybrid fusion only: weight w of the dense side, 0..1 (default ${limits.denseWeight}); BM25 gets 1 − w.`,
  rrf_k: `RRF hybrid fusion only: the rank constant k, > 0 (default ${DEFAULT_RRF_K}).`,
  rerank: "Rerank the candidates with the cross-encoder (default true).",
  fusion: `How the two stages' scores merge: "rerank" (cross-encoder score), "linear" (alpha·minmax(rerank) + (1−alpha)·minmax(retrieval)), "rrf" (Σ 1/(${DEFAULT_RRF_K} + rank)). Default: "rerank" for a cross-encoder, "linear" when the reranker is the weight-free lexical scorer (it adds to the first stage rather than replacing it); the response's \`fusion\` names the one used.`,
  alpha: `Weight of the rerank score in linear fusion, 0..1 (default ${DEFAULT_ALPHA}).`,
  collapse: "Keep only the best passage of each document (default false).",
  budget_ms: `Latency budget in ms (1..${MAX_BUDGET_MS}); when reranking every candidate would exceed it, fewer (or none) are reranked and a warning says so.`,
});

function hybridSchema(limits: SearchLimitsConfig) {
  const d = docs(limits);
  return z
    .strictObject(
      {
        fusion: hybridFusionEnum().optional().openapi({ description: d.hybrid_fusion }),
        dense_weight: unit().optional().openapi({ description: d.dense_weight }),
        rrf_k: positive().optional().openapi({ description: d.rrf_k }),
      },
      { error: unknownFields },
    )
    .openapi("HybridOptions", {
      description: "How hybrid retrieval fuses the dense and BM25 rankings; ignored by dense and sparse retrieval.",
    });
}

export function searchBodySchema(limits: SearchLimitsConfig) {
  const d = docs(limits);
  return z
    .strictObject(
      {
        query: z
          .string({ error: (iss) => (iss.input === undefined ? "is required" : "must be a string") })
          .max(limits.maxQueryChars, { error: `must be at most ${limits.maxQueryChars} characters` })
          .openapi({ description: d.query, example: "how do cats purr" }),
        retrieval: retrievalEnum().optional().openapi({ description: d.retrieval }),
        hybrid: hybridSchema(limits).optional(),
        k: intIn(1, limits.maxCandidates).optional().openapi({ description: d.k, example: limits.defaultK }),
        candidates: intIn(1, limits.maxCandidates)
          .optional()
          .openapi({ description: d.candidates, example: limits.defaultCandidates }),
        rerank: z.boolean({ error: "must be true or false" }).optional().openapi({ description: d.rerank }),
        fusion: z
          .enum(FUSION_MODES, { error: `must be one of ${FUSION_MODES.join(", ")}` })
          .optional()
          .openapi({ description: d.fusion }),
        alpha: unit().optional().openapi({ description: d.alpha }),
        filter: filterSchema.optional(),
        collapse: z.boolean({ error: "must be true or false" }).optional().openapi({ description: d.collapse }),
        budget_ms: intIn(1, MAX_BUDGET_MS).optional().openapi({ description: d.budget_ms }),
      },
      { error: unknownFields },
    )
    .transform(finish(limits, "query"))
    .openapi("SearchRequest");
}

// Query-string values arrive as strings; each is converted, then checked like its JSON twin.
const numberParam = (schema: z.ZodType<number>) =>
  z.preprocess((v) => (typeof v === "string" && v.trim() !== "" ? Number(v) : v), schema);
const boolParam = z.preprocess(
  (v) => (v === "true" || v === "1" ? true : v === "false" || v === "0" ? false : v),
  z.boolean({ error: "must be true or false" }),
);

export function searchQuerySchema(limits: SearchLimitsConfig) {
  const d = docs(limits);
  return z
    .object({
      q: z
        .string({ error: (iss) => (iss.input === undefined ? "is required" : "must be a string") })
        .max(limits.maxQueryChars, { error: `must be at most ${limits.maxQueryChars} characters` })
        .openapi({ description: d.query, example: "how do cats purr" }),
      retrieval: retrievalEnum().optional().openapi({ description: d.retrieval }),
      hybrid_fusion: hybridFusionEnum().optional().openapi({ description: d.hybrid_fusion }),
      dense_weight: numberParam(unit()).optional().openapi({ type: "number", description: d.dense_weight }),
      rrf_k: numberParam(positive()).optional().openapi({ type: "number", description: d.rrf_k }),
      k: numberParam(intIn(1, limits.maxCandidates)).optional().openapi({ type: "integer", description: d.k }),
      candidates: numberParam(intIn(1, limits.maxCandidates))
        .optional()
        .openapi({ type: "integer", description: d.candidates }),
      rerank: boolParam.optional().openapi({ type: "boolean", description: d.rerank }),
      fusion: z
        .enum(FUSION_MODES, { error: `must be one of ${FUSION_MODES.join(", ")}` })
        .optional()
        .openapi({ description: d.fusion }),
      alpha: numberParam(unit()).optional().openapi({ type: "number", description: d.alpha }),
      collapse: boolParam.optional().openapi({ type: "boolean", description: d.collapse }),
      budget_ms: numberParam(intIn(1, MAX_BUDGET_MS)).optional().openapi({ type: "integer", description: d.budget_ms }),
      source_prefix: z
        .string()
        .optional()
        .openapi({ description: "Keep passages whose source starts with this string." }),
    })
    .transform(({ q, source_prefix, hybrid_fusion, dense_weight, rrf_k, ...rest }, ctx) => {
      const hybrid: HybridOptions = {
        ...(hybrid_fusion !== undefined ? { fusion: hybrid_fusion } : {}),
        ...(dense_weight !== undefined ? { dense_weight } : {}),
        ...(rrf_k !== undefined ? { rrf_k } : {}),
      };
      return finish(limits, "q")(
        { query: q, ...rest, hybrid, ...(source_prefix !== undefined ? { filter: { source_prefix } } : {}) },
        ctx as unknown as z.RefinementCtx<RawSearch>,
      );
    });
}

// ---------- responses (documentation) ----------

const stageScore = z
  .object({ score: z.number(), rank: z.number().int().openapi({ description: "1-based rank in this stage." }) })
  .openapi("StageScore");

export const searchHitSchema = z
  .object({
    id: z.string().openapi({ description: "Passage id (`<doc_id>#<chunk>`)." }),
    doc_id: z.string(),
    text: z.string(),
    source: z.string().optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    score: z.number().openapi({
      description:
        "The fused score (see `fusion`); candidates that were not reranked follow the reranked ones and carry their retrieval score.",
    }),
    retrieval: stageScore,
    dense: stageScore.nullable().openapi({
      description:
        "Score (inner product) and rank of this passage in the dense side's top candidates; null when it is not among them or the dense side did not run.",
    }),
    sparse: stageScore.nullable().openapi({
      description:
        "BM25 score and rank of this passage in the sparse side's top candidates; null when it is not among them or the sparse side did not run.",
    }),
    rerank: stageScore.nullable(),
  })
  .openapi("SearchHit", {
    description:
      "A passage with each stage's score and rank: `retrieval` is the first stage's (the dense or BM25 one, or in hybrid retrieval the fused one), `dense` and `sparse` each side's own, `rerank` the cross-encoder's.",
  });

export const timingsSchema = z
  .object({
    embed_ms: z.number(),
    search_ms: z.number().openapi({ description: "Dense (vector index) search." }),
    sparse_ms: z.number().openapi({ description: "Sparse (BM25) search; 0 when it did not run." }),
    texts_ms: z
      .number()
      .openapi({ description: "Reading the candidates' passage texts (by byte range until they are all in memory)." }),
    rerank_ms: z.number(),
    total_ms: z.number(),
  })
  .openapi("SearchTimings");

export const searchResponseSchema = z
  .object({
    results: z.array(searchHitSchema),
    index: z.object({ version: z.string(), count: z.number().int() }),
    reranked: z.boolean(),
    reranked_candidates: z.number().int(),
    candidates: z.number().int().openapi({ description: "First-stage candidates after filtering." }),
    fusion: z.enum(FUSION_MODES),
    retrieval: z.enum(RETRIEVAL_MODES).openapi({
      description:
        "The first stage that answered; may differ from the request's (no BM25 index in the snapshot, a failed query embedding), and `warnings` then says why.",
    }),
    warnings: z.array(z.string()).openapi({
      description:
        "Why results are degraded: reranker failure or timeout, latency budget, filter matching few passages, a first stage other than the one asked for, index shards that did not answer.",
    }),
    shards: z
      .object({
        total: z.number().int(),
        answered: z.number().int(),
        missing: z.array(
          z.object({
            shard: z.number().int(),
            code: z.enum(["timeout", "unavailable", "invalid"]),
            message: z.string(),
          }),
        ),
      })
      .optional()
      .openapi({
        description:
          "Only when the search function fans dense search out to index shard functions (SEARCH_SHARDS=lambda|http): shards asked, how many answered, and the ones that did not (their passages are missing from the dense side; a warning says so).",
      }),
    timings: timingsSchema,
  })
  .openapi("SearchResponse");

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "invalid_request" }),
      message: z.string().openapi({ example: "k: must be ≤ candidates (20)" }),
    }),
  })
  .openapi("Error");

export const healthSchema = z
  .object({
    status: z.enum(["ok", "unavailable"]),
    index: z
      .object({
        version: z.string(),
        count: z.number().int(),
        age_s: z.number().nullable(),
        load_ms: z
          .number()
          .optional()
          .openapi({ description: "How long this instance took to load the snapshot (cold start or swap)." }),
        passages: z.record(z.string(), z.unknown()).openapi({
          description:
            "How passage texts are held (PASSAGE_TEXTS): texts = memory | lazy | filling, cached_bytes, block_reads, block_hits, failed_reads.",
        }),
        type: z.string().openapi({ description: "Index type (flat, hnsw, ivf, ivfpq, ivfpq-refine, sq8, fp16)." }),
        params: z
          .record(z.string(), z.union([z.string(), z.number()]))
          .openapi({ description: "Factory and the search parameters in effect (efSearch, nprobe, kFactor)." }),
      })
      .nullable()
      .openapi({ description: "The snapshot being served; null before one is published." }),
    embedder: z.object({ setting: z.string(), identity: z.record(z.string(), z.unknown()).nullable() }),
    reranker: z.record(z.string(), z.unknown()),
    store: z.object({ kind: z.string(), bucket: z.string().optional(), endpoint: z.string().optional() }).nullable(),
    cold: z.boolean(),
    error: errorSchema.shape.error.optional(),
  })
  .openapi("Health");
