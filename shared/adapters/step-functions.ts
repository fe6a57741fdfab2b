// Starts sharded reindex executions on AWS Step Functions (the ExecutionStarter of
// shared/core/sharded-reindex.ts). An execution name is unique per state machine for 90 days, which
// is what makes a duplicate S3 event free: the coordinator asks for the same name twice, and the
// second call finds the first execution instead of starting another.
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import type { ExecutionStart, ExecutionStarter, ExecutionStatus } from "../core/sharded-reindex.ts";

/** arn:aws:states:<region>:<account>:stateMachine:<name> → …:execution:<name>:<execution name>. */
export function executionArn(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`;
}

export function createStepFunctionsStarter(
  stateMachineArn: string,
  client: SFNClient = new SFNClient({}),
): ExecutionStarter {
  const describe = async (name: string): Promise<ExecutionStart | null> => {
    try {
      const d = await client.send(new DescribeExecutionCommand({ executionArn: executionArn(stateMachineArn, name) }));
      return { started: false, id: d.executionArn!, status: (d.status ?? "RUNNING") as ExecutionStatus };
    } catch (e) {
      if (e instanceof ExecutionDoesNotExist) return null;
      throw e;
    }
  };
  return {
    async start(name, input) {
      const existing = await describe(name);
      if (existing) return existing;
      try {
        const r = await client.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }));
        return { started: true, id: r.executionArn!, status: "RUNNING" };
      } catch (e) {
        // Started by a concurrent coordinator between our describe and start.
        if (e instanceof ExecutionAlreadyExists)
          return (await describe(name)) ?? { started: false, id: name, status: "RUNNING" };
        throw e;
      }
    },
  };
}
