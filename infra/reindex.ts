// The reindex function and the bucket notification that drives it: every object created or removed
// under the corpus prefix starts a rebuild of the FAISS snapshot, which is then published by
// flipping the index pointer.
//
// Reserved concurrency 1: one rebuild at a time. The pointer flip is a conditional S3 write, but
// two concurrent rebuilds would still both embed and build, and the loser's work is wasted (or,
// with an unlucky interleaving, an older corpus view wins). S3 delivers notifications as async
// invocations, so events that arrive while a rebuild runs wait in Lambda's async queue (retried for
// up to 6 hours) instead of being dropped. Each rebuild lists the whole corpus, so a queued event
// whose object an earlier rebuild already saw costs a redundant rebuild (embeddings come from the
// cache), never a wrong index.
import { reindexStateMachine } from "../shared/core/state-machine.ts";
import { settings } from "./config.ts";
import { functionPackaging } from "./native.ts";
import { openAiApiKey } from "./secrets.ts";
import { indexShardsEnvironment } from "./shards.ts";
import { bucket } from "./storage.ts";

export const REINDEX_HANDLER = "functions/reindex/handler.handler";
export const REINDEX_SHARD_HANDLER = "functions/reindex/handler.shardHandler";
export const REINDEX_MERGE_HANDLER = "functions/reindex/handler.mergeHandler";
export const REINDEX_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"] as const;

const { prefixes, reindex: r } = settings;
const native = functionPackaging("reindex", settings.runtimeEnv);

const reindexEnvironment = {
  ...settings.runtimeEnv,
  STORE_KIND: "s3",
  CORPUS_PREFIX: prefixes.corpus,
  INDEX_PREFIX: prefixes.index,
  MODEL_PREFIX: prefixes.models,
  EMBED_CACHE_PREFIX: prefixes.cache,
  REINDEX_MODE: r.mode,
  ...indexShardsEnvironment,
};

/** The settings every reindex function (coordinator, shard worker, merge) shares. */
function reindexFunction(name: string, handler: string, description: string, over: Record<string, unknown> = {}) {
  return new sst.aws.Function(name, {
    handler,
    description,
    runtime: "nodejs20.x",
    architecture: "x86_64",
    memory: `${r.memoryMb} MB`,
    timeout: `${r.timeoutS} seconds`,
    storage: `${r.storageMb} MB`,
    link: [bucket, openAiApiKey],
    environment: reindexEnvironment,
    copyFiles: native.copyFiles,
    nodejs: native.nodejs,
    logging: { retention: settings.logRetention },
    ...over,
  });
}

/**
 * REINDEX_MODE=sharded (DEPLOY_REINDEX_MODE): a Step Functions state machine whose distributed Map
 * runs one shard worker per key-range shard, then the merge. The definition is the one the local
 * stack and the tests run in-process (shared/core/state-machine.ts). The merge gets the state
 * machine's ARN in its payload (to re-plan after a lost pointer flip), so its permission names the
 * state machine by its fixed name instead of referencing it, which would be a cycle.
 */
function createShardedWorkflow() {
  const machineName = `${$app.name}-${$app.stage}-reindex`;
  const machineArns = [
    `arn:aws:states:*:*:stateMachine:${machineName}`,
    `arn:aws:states:*:*:execution:${machineName}:*`,
  ];
  const shard = reindexFunction("ReindexShard", REINDEX_SHARD_HANDLER, "Sharded reindex: builds one shard");
  const merge = reindexFunction("ReindexMerge", REINDEX_MERGE_HANDLER, "Sharded reindex: merges shards, publishes", {
    memory: `${r.mergeMemoryMb} MB`,
    permissions: [{ actions: ["states:StartExecution", "states:DescribeExecution"], resources: machineArns }],
  });
  const role = new aws.iam.Role("ReindexWorkflowRole", {
    description: "Runs the sharded reindex state machine",
    assumeRolePolicy: JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { Service: "states.amazonaws.com" }, Action: "sts:AssumeRole" }],
    }),
  });
  new aws.iam.RolePolicy("ReindexWorkflowPolicy", {
    role: role.id,
    policy: $jsonStringify({
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: ["lambda:InvokeFunction"], Resource: [shard.arn, merge.arn] },
        // A distributed Map runs its items as child executions of the same state machine.
        {
          Effect: "Allow",
          Action: ["states:StartExecution", "states:DescribeExecution", "states:StopExecution"],
          Resource: machineArns,
        },
      ],
    }),
  });
  const machine = new aws.sfn.StateMachine("ReindexWorkflow", {
    name: machineName,
    type: "STANDARD",
    roleArn: role.arn,
    definition: $jsonStringify(
      reindexStateMachine({
        shardFunction: shard.arn as unknown as string,
        mergeFunction: merge.arn as unknown as string,
        maxConcurrency: r.shardConcurrency,
        shardAttempts: r.shardAttempts,
        mergeAttempts: 3,
        retryIntervalS: 5,
      }),
    ),
  });
  const link = new sst.Linkable("ReindexStateMachine", {
    properties: { arn: machine.arn },
    include: [
      sst.aws.permission({ actions: ["states:StartExecution", "states:DescribeExecution"], resources: machineArns }),
    ],
  });
  return { shard, merge, machine, link };
}

export const workflow = r.mode === "sharded" ? createShardedWorkflow() : null;

export const reindex = reindexFunction(
  "Reindex",
  REINDEX_HANDLER,
  workflow
    ? "Plans a sharded rebuild when the corpus prefix changes"
    : "Rebuilds the FAISS snapshot when the corpus prefix changes",
  {
    link: [bucket, openAiApiKey, ...(workflow ? [workflow.link] : [])],
    ...(r.reservedConcurrency === "off" ? {} : { concurrency: { reserved: r.reservedConcurrency } }),
    // Async retries of a failed rebuild (0-2).
    retries: 2,
  },
);

bucket.notify({
  notifications: [
    {
      name: "CorpusChanged",
      function: reindex.arn,
      events: [...REINDEX_EVENTS],
      filterPrefix: prefixes.corpus,
    },
  ],
});
