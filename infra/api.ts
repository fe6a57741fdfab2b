// The public HTTP API: API Gateway (HTTP API) in front of one search function.
//
// Every route, `$default` included, goes to the same function: the Hono app in
// shared/http/search-app.ts owns routing, validation and error shapes, so a path API Gateway does
// not list still gets the app's JSON 404 instead of API Gateway's own. The explicit routes document
// the surface (and the infra test checks them). There is no separate /rerank route: the reranker is
// reached only through the search function.
import { settings } from "./config.ts";
import { functionPackaging } from "./native.ts";
import { searchRerankerPort } from "./reranker.ts";
import { openAiApiKey } from "./secrets.ts";
import { indexShardsEnvironment, searchShardPort } from "./shards.ts";
import { bucket } from "./storage.ts";

export const SEARCH_HANDLER = "functions/search/handler.handler";
export const SEARCH_ROUTES = [
  "POST /search",
  "GET /search",
  "GET /health",
  "GET /openapi.json",
  "GET /",
  "$default",
] as const;

const { prefixes, api: apiSettings } = settings;
// faiss-node for the index; onnxruntime-node for the local ONNX embedder / in-process fallback.
const native = functionPackaging("search", settings.runtimeEnv);

export const search = new sst.aws.Function("Search", {
  handler: SEARCH_HANDLER,
  description: "Two-stage search: embed, FAISS top-N, rerank, fuse",
  runtime: "nodejs20.x",
  architecture: "x86_64",
  // The FAISS snapshot is held in memory; size this with the index (DEPLOY_SEARCH_MEMORY_MB).
  memory: `${settings.search.memoryMb} MB`,
  timeout: `${settings.search.timeoutS} seconds`,
  link: [bucket, openAiApiKey, ...searchRerankerPort.link, ...searchShardPort.link],
  permissions: searchRerankerPort.permissions,
  environment: {
    ...settings.runtimeEnv,
    STORE_KIND: "s3",
    CORPUS_PREFIX: prefixes.corpus,
    INDEX_PREFIX: prefixes.index,
    MODEL_PREFIX: prefixes.models,
    EMBED_CACHE_PREFIX: prefixes.cache,
    API_KEYS_PREFIX: prefixes.apiKeys,
    CORS_ORIGINS: apiSettings.corsOrigins.join(","),
    AUTH_MODE: apiSettings.authMode,
    ...searchRerankerPort.environment,
    ...searchShardPort.environment,
    // Read by `cli index` run with this function's settings; the search function follows the manifest.
    ...indexShardsEnvironment,
  },
  copyFiles: native.copyFiles,
  nodejs: native.nodejs,
  logging: { retention: settings.logRetention },
});

export const api = new sst.aws.ApiGatewayV2("Api", {
  cors: {
    allowOrigins: apiSettings.corsOrigins,
    allowMethods: ["GET", "POST", "OPTIONS"],
    allowHeaders: ["content-type", "authorization", "x-api-key"],
    exposeHeaders: ["server-timing", "x-request-id", "retry-after"],
    maxAge: "1 day",
  },
  accessLog: { retention: settings.logRetention },
  // Stage-wide throttling (token bucket per account+stage); per-key limits live in the app.
  transform: {
    stage: {
      defaultRouteSettings: {
        throttlingRateLimit: apiSettings.rateLimit,
        throttlingBurstLimit: apiSettings.burstLimit,
      },
    },
  },
});

for (const route of SEARCH_ROUTES) api.route(route, search.arn);
