// The cross-encoder reranker, on one of three backends chosen per stage (DEPLOY_RERANKER):
//
//   lambda    (default) functions/rerank/handler.ts on x86_64 Lambda, ONNX Runtime on CPU; the model
//             is read from the bucket's model prefix at cold start. Pay per query; optional
//             provisioned concurrency removes the model-loading cold start.
//   gpu       the same reranker HTTP app (functions/rerank/server.ts) as an ECS service on GPU EC2
//             capacity (SST's `gpu` option = ECS Managed Instances), behind a load balancer,
//             scaled on request count. Pays per instance-hour; for steady, heavy traffic or big models.
//   external  any Cohere/TEI-compatible /rerank URL (DEPLOY_RERANKER_URL) plus the RerankerToken secret.
//
// `searchRerankerPort` is what the search function needs to reach the chosen backend; the
// variable names are the ones shared/core/config.ts reads (RERANKER, RERANKER_FUNCTION, RERANKER_URL,
// RERANKER_TOKEN), filled from linked resources by functions/runtime/resources.ts.
import { settings } from "./config.ts";
import { functionPackaging } from "./native.ts";
import { rerankerToken } from "./secrets.ts";
import { bucket } from "./storage.ts";

export const RERANKER_HANDLER = "functions/rerank/handler.handler";
export const RERANKER_SERVER_ENTRY = "functions/rerank/server.ts";
export const RERANKER_GPU_DOCKERFILE = "infra/docker/reranker-gpu.Dockerfile";

export interface SearchRerankerPort {
  environment: Record<string, SstInput<string>>;
  link: unknown[];
  permissions: sst.aws.FunctionPermission[];
}

const { reranker: r, gpu: g, prefixes } = settings;

/** Settings both reranker backends read (model location and cache, or the lexical scorer). */
const modelEnvironment: Record<string, string> =
  r.scorer === "lexical"
    ? { STORE_KIND: "s3", RERANKER_BACKEND: "lexical" }
    : {
        STORE_KIND: "s3",
        MODEL_PREFIX: prefixes.models,
        RERANKER_MODEL_S3_PREFIX: r.modelPrefix,
        MODEL_CACHE_DIR: "/tmp/models",
      };

function createLambdaReranker(): sst.aws.Function {
  const native = functionPackaging("rerank", settings.runtimeEnv);
  return new sst.aws.Function("Reranker", {
    handler: RERANKER_HANDLER,
    description: "Cross-encoder reranker (ONNX Runtime, CPU); invoked directly by the search function",
    runtime: "nodejs20.x",
    // The native bundle is built for x86_64 (layers/build.sh).
    architecture: "x86_64",
    memory: `${r.memoryMb} MB`,
    timeout: `${r.timeoutS} seconds`,
    // Room in /tmp for the model folder cached from the bucket.
    storage: "2048 MB",
    link: [bucket],
    environment: {
      ...settings.runtimeEnv,
      ...modelEnvironment,
      RERANKER_PROVIDER: "cpu",
      RERANKER_QUANTIZED: String(r.quantized),
    },
    copyFiles: native.copyFiles,
    nodejs: native.nodejs,
    // DEPLOY_RERANKER_PROVISIONED counts warm searches: each fans out to `fanout` instances.
    ...(r.provisioned > 0 ? { versioning: true, concurrency: { provisioned: r.provisioned * r.fanout } } : {}),
    logging: { retention: settings.logRetention },
  });
}

function createGpuReranker(): sst.aws.Service {
  if (!rerankerToken) throw new Error("the GPU reranker needs the RerankerToken secret");
  // GPU hosts in private subnets; they pull the image and the model through small NAT instances
  // (fck-nat on EC2, a few dollars a month) instead of needing public addresses.
  const vpc = new sst.aws.Vpc("RerankerVpc", { nat: "ec2" });
  const cluster = new sst.aws.Cluster("RerankerCluster", { vpc });
  const forward = `${g.port}/http` as const;
  const tokenParameter = new aws.ssm.Parameter("RerankerTokenParameter", {
    type: "SecureString",
    value: rerankerToken.value,
    description: "Bearer token of the GPU reranker service (the RerankerToken SST secret)",
  });
  return new sst.aws.Service("RerankerService", {
    cluster,
    image: { context: ".", dockerfile: RERANKER_GPU_DOCKERFILE },
    architecture: "x86_64",
    gpu: g.accelerator,
    cpu: g.cpu,
    memory: g.memory,
    storage: g.storage,
    // The token is not linked: SST hands a container its links as plain task-definition variables.
    // ECS reads it from the SecureString parameter when the task starts instead.
    link: [bucket],
    ssm: { RERANKER_TOKEN: tokenParameter.arn },
    environment: {
      ...settings.runtimeEnv,
      ...modelEnvironment,
      RERANKER_PORT: String(g.port),
      // Asked for explicitly: if ORT has to fall back to the CPU, the app's /health answers 503
      // "degraded", so the load balancer replaces the task instead of serving at CPU speed.
      RERANKER_PROVIDER: "cuda",
      // int8 graphs are CPU kernels; GPUs want the fp32/fp16 model.
      RERANKER_QUANTIZED: "false",
    },
    loadBalancer: {
      domain: g.domain,
      rules: g.domain
        ? [
            { listen: "80/http", redirect: "443/https" },
            { listen: "443/https", forward },
          ]
        : [{ listen: "80/http", forward }],
      health: { [forward]: { path: "/health", interval: "15 seconds", timeout: "5 seconds" } },
    },
    // Request count per target tracks GPU load better than CPU utilisation does.
    scaling: {
      min: g.min,
      max: g.max,
      requestCount: g.requestsPerTarget,
      cpuUtilization: false,
      memoryUtilization: false,
      scaleOutCooldown: "60 seconds",
      scaleInCooldown: "300 seconds",
    },
    dev: { command: `node --import tsx ${RERANKER_SERVER_ENTRY}`, url: `http://localhost:${g.port}` },
  });
}

export const reranker = r.backend === "lambda" ? createLambdaReranker() : undefined;
export const rerankerService = r.backend === "gpu" ? createGpuReranker() : undefined;

function searchPort(): SearchRerankerPort {
  if (reranker) {
    const provisioned = r.provisioned > 0;
    return {
      // Provisioned concurrency lives on the published version: invoke name:version, not $LATEST.
      environment: {
        RERANKER: "lambda",
        ...(r.fanout > 1 ? { RERANKER_FANOUT: String(r.fanout) } : {}),
        ...(provisioned ? { RERANKER_FUNCTION_QUALIFIER: reranker.nodes.function.version } : {}),
      },
      link: [reranker],
      // The link grants InvokeFunction on the unqualified ARN only.
      permissions: provisioned
        ? [{ actions: ["lambda:InvokeFunction"], resources: [$interpolate`${reranker.arn}:*`] }]
        : [],
    };
  }
  if (rerankerService) {
    return { environment: { RERANKER: "http" }, link: [rerankerService, rerankerToken], permissions: [] };
  }
  return {
    environment: {
      RERANKER: "http",
      RERANKER_URL: r.externalUrl!,
      RERANKER_API: r.externalApi ?? "cohere",
      ...(r.externalModel ? { RERANKER_MODEL: r.externalModel } : {}),
    },
    link: [rerankerToken],
    permissions: [],
  };
}

export const searchRerankerPort: SearchRerankerPort = searchPort();
