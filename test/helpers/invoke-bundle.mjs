// Runs a bundled Lambda handler (dist/functions/<name>/handler.mjs) under plain Node, no tsx, the
// way the Lambda runtime does: import the module once, then call `handler(event, context)` for
// each event in the JSON array file. Prints "invoke-result <json>" per event.
// Usage: node test/helpers/invoke-bundle.mjs <handler.mjs> <events.json>
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [handlerFile, eventsFile] = process.argv.slice(2);
const mod = await import(pathToFileURL(handlerFile).href);
const events = JSON.parse(readFileSync(eventsFile, "utf8"));
let n = 0;
for (const event of events) {
  const context = {
    awsRequestId: `bundle-test-${++n}`,
    functionName: "bundle-test",
    functionVersion: "$LATEST",
    memoryLimitInMB: "1024",
    getRemainingTimeInMillis: () => 60_000,
  };
  const result = await mod.handler(event, context);
  console.log(`invoke-result ${JSON.stringify(result)}`);
}
process.exit(0);
