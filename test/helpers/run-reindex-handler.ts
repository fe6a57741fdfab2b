// Runs the deployed reindex handler once in its own process (configuration from the environment),
// so a test can kill it with SIGKILL mid-build. Prints "reindex-result <json>" when it finishes.
// Usage: node --import tsx test/helpers/run-reindex-handler.ts <corpus key>
import { handler } from "../../functions/reindex/handler.ts";

const key = process.argv[2] ?? "corpus/a.jsonl";
const event = {
  Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: process.env.BUCKET ?? "" }, object: { key } } }],
};
const context = { getRemainingTimeInMillis: () => 600_000 } as unknown as Parameters<typeof handler>[1];
const result = await handler(event as unknown as Parameters<typeof handler>[0], context);
console.log(`reindex-result ${JSON.stringify(result)}`);
