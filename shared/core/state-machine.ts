// The sharded reindex's Step Functions state machine (Amazon States Language, JSONPath), and a small
// local runner for exactly that definition. infra/reindex.ts deploys the definition; the local stack,
// the CLI and the tests run the same JSON through runStateMachine(), with the Lambda tasks mapped to
// in-process calls, so the retry and concurrency settings that run in AWS are the ones tested here.
//
// The runner covers the subset this definition uses (Task with lambda:invoke, Retry, Map with
// ItemsPath/ItemSelector/MaxConcurrency, ResultPath null, OutputPath, Next/End) and refuses anything
// else: it is a stand-in for one workflow, not a workflow engine.
import { ValidationError } from "./errors.ts";

export const LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke";

/** Attempts per shard (first try + retries) and per merge; Step Functions' Retry counts retries. */
export interface ReindexWorkflowSettings {
  /** Lambda function (name or ARN) that builds one shard. */
  shardFunction: string;
  /** Lambda function that merges the shards and publishes. */
  mergeFunction: string;
  /** Shard workers running at once (the embedding API's rate limit decides it). */
  maxConcurrency: number;
  shardAttempts: number;
  mergeAttempts: number;
  /** Seconds before the first retry; doubled after each. */
  retryIntervalS: number;
}

export const DEFAULT_WORKFLOW: Omit<ReindexWorkflowSettings, "shardFunction" | "mergeFunction"> = {
  maxConcurrency: 8,
  shardAttempts: 3,
  mergeAttempts: 3,
  retryIntervalS: 5,
};

// biome-ignore lint/suspicious/noExplicitAny: ASL is JSON; the runner checks what it reads
export type AslState = Record<string, any>;
export interface AslDefinition {
  Comment?: string;
  StartAt: string;
  States: Record<string, AslState>;
}

function retry(attempts: number, intervalS: number) {
  if (!Number.isInteger(attempts) || attempts < 1) throw new ValidationError(`attempts must be ≥ 1, got ${attempts}`);
  return attempts === 1
    ? []
    : [{ ErrorEquals: ["States.ALL"], IntervalSeconds: intervalS, MaxAttempts: attempts - 1, BackoffRate: 2 }];
}

/**
 * Input: {plan_key, shards: number[]} (what the coordinator starts it with). A distributed Map runs
 * one shard worker per item, each retried; any shard that still fails fails the execution before the
 * merge, so nothing is published. The merge gets its own state machine's ARN so that, when it loses
 * the pointer flip, it can start the next execution from a fresh listing.
 */
export function reindexStateMachine(s: ReindexWorkflowSettings): AslDefinition {
  return {
    Comment: "Sharded reindex: build every shard (distributed Map), then merge and publish",
    StartAt: "BuildShards",
    States: {
      BuildShards: {
        Type: "Map",
        ItemsPath: "$.shards",
        ItemSelector: { "plan_key.$": "$.plan_key", "shard.$": "$$.Map.Item.Value" },
        MaxConcurrency: s.maxConcurrency,
        ItemProcessor: {
          ProcessorConfig: { Mode: "DISTRIBUTED", ExecutionType: "STANDARD" },
          StartAt: "BuildShard",
          States: {
            BuildShard: {
              Type: "Task",
              Resource: LAMBDA_INVOKE,
              Parameters: { FunctionName: s.shardFunction, "Payload.$": "$" },
              OutputPath: "$.Payload",
              Retry: retry(s.shardAttempts, s.retryIntervalS),
              End: true,
            },
          },
        },
        ResultPath: null,
        Next: "Merge",
      },
      Merge: {
        Type: "Task",
        Resource: LAMBDA_INVOKE,
        Parameters: {
          FunctionName: s.mergeFunction,
          Payload: { "plan_key.$": "$.plan_key", "state_machine.$": "$$.StateMachine.Id" },
        },
        OutputPath: "$.Payload",
        Retry: retry(s.mergeAttempts, s.retryIntervalS),
        End: true,
      },
    },
  };
}

// ---------- the local runner ----------

export interface RunContext {
  /** $$.StateMachine.Id */
  stateMachineId: string;
  /** $$.Execution.Name */
  executionName: string;
}

export interface StateMachineRunOptions {
  /** A lambda:invoke task: the function named in Parameters.FunctionName, with its payload. */
  invoke: (functionName: string, payload: unknown) => Promise<unknown>;
  context: RunContext;
  /** Retry waits (tests pass a no-op). */
  sleep?: (ms: number) => Promise<void>;
}

/** A task failed after its retries (the execution fails, as in Step Functions). */
export class ExecutionFailedError extends Error {
  constructor(
    readonly state: string,
    cause: unknown,
  ) {
    super(`state ${state} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "ExecutionFailedError";
  }
}

function readPath(path: string, input: unknown, ctx: Record<string, unknown>): unknown {
  const [root, rest] = path.startsWith("$$") ? [ctx, path.slice(2)] : [input, path.slice(1)];
  if (rest === "") return root;
  if (!rest.startsWith(".")) throw new ValidationError(`unsupported JSONPath "${path}"`);
  let cur: unknown = root;
  for (const part of rest.slice(1).split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Parameters/ItemSelector: keys ending in ".$" are paths, other values are copied (objects recursively). */
function fill(template: unknown, input: unknown, ctx: Record<string, unknown>): unknown {
  if (template === null || typeof template !== "object" || Array.isArray(template)) return template;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(template)) {
    if (k.endsWith(".$")) out[k.slice(0, -2)] = readPath(String(v), input, ctx);
    else out[k] = fill(v, input, ctx);
  }
  return out;
}

const KNOWN_FIELDS = new Set([
  "Type",
  "Comment",
  "Resource",
  "Parameters",
  "OutputPath",
  "Retry",
  "End",
  "Next",
  "ItemsPath",
  "ItemSelector",
  "MaxConcurrency",
  "ItemProcessor",
  "ResultPath",
]);

async function runTask(
  name: string,
  st: AslState,
  input: unknown,
  ctx: Record<string, unknown>,
  o: StateMachineRunOptions,
) {
  if (st.Resource !== LAMBDA_INVOKE)
    throw new ValidationError(`state ${name}: only ${LAMBDA_INVOKE} tasks run locally`);
  const params = fill(st.Parameters ?? {}, input, ctx) as { FunctionName?: string; Payload?: unknown };
  if (typeof params.FunctionName !== "string") throw new ValidationError(`state ${name} names no FunctionName`);
  const rule = (st.Retry ?? [])[0] as
    | { MaxAttempts?: number; IntervalSeconds?: number; BackoffRate?: number }
    | undefined;
  const retries = rule ? (rule.MaxAttempts ?? 3) : 0;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 0; ; attempt++) {
    try {
      const payload = await o.invoke(params.FunctionName, params.Payload ?? input);
      return { Payload: payload, StatusCode: 200 };
    } catch (e) {
      if (attempt >= retries) throw new ExecutionFailedError(name, e);
      await sleep(1000 * (rule?.IntervalSeconds ?? 1) * (rule?.BackoffRate ?? 2) ** attempt);
    }
  }
}

async function runStates(def: AslDefinition, input: unknown, ctx: Record<string, unknown>, o: StateMachineRunOptions) {
  let name: string | undefined = def.StartAt;
  let data = input;
  while (name !== undefined) {
    const st: AslState | undefined = def.States[name];
    if (!st) throw new ValidationError(`no state named ${name}`);
    for (const k of Object.keys(st))
      if (!KNOWN_FIELDS.has(k)) throw new ValidationError(`state ${name}: field ${k} is not run locally`);
    let result: unknown;
    if (st.Type === "Task") {
      result = await runTask(name, st, data, ctx, o);
    } else if (st.Type === "Map") {
      const items = readPath(st.ItemsPath ?? "$", data, ctx);
      if (!Array.isArray(items)) throw new ValidationError(`state ${name}: ItemsPath does not select an array`);
      const limit = st.MaxConcurrency > 0 ? st.MaxConcurrency : items.length;
      const results: unknown[] = new Array(items.length);
      let next = 0;
      let failed: unknown;
      const worker = async () => {
        while (next < items.length && failed === undefined) {
          const i = next++;
          const itemCtx = { ...ctx, Map: { Item: { Index: i, Value: items[i] } } };
          const itemInput = st.ItemSelector ? fill(st.ItemSelector, data, itemCtx) : items[i];
          try {
            results[i] = await runStates(st.ItemProcessor, itemInput, itemCtx, o);
          } catch (e) {
            failed ??= e; // Step Functions stops the Map at the first failed iteration (0% tolerated)
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
      if (failed !== undefined) throw failed;
      result = results;
    } else {
      throw new ValidationError(`state ${name}: type ${st.Type} is not run locally`);
    }
    // ResultPath null keeps the state's input; otherwise the result replaces it (ResultPath "$").
    if (st.ResultPath !== null) data = st.OutputPath ? readPath(st.OutputPath, result, ctx) : result;
    name = st.End ? undefined : st.Next;
  }
  return data;
}

/** Runs a definition to its end; throws ExecutionFailedError when a state fails after its retries. */
export function runStateMachine(def: AslDefinition, input: unknown, o: StateMachineRunOptions): Promise<unknown> {
  const ctx = {
    StateMachine: { Id: o.context.stateMachineId },
    Execution: { Name: o.context.executionName },
  };
  return runStates(def, input, ctx, o);
}
