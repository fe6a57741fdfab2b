// The same HTTP call through three transports: Hono's app.request(), a real HTTP server on
// loopback (@hono/node-server), and the Lambda path (hono/aws-lambda's handle() fed an API
// Gateway HTTP API v2 event built from test/fixtures/apigw-v2-event.json).
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";

export interface Call {
  method: "GET" | "POST" | "OPTIONS" | "PUT" | "DELETE";
  /** Path with an optional query string. */
  path: string;
  body?: string;
  headers?: Record<string, string>;
  /** Lambda only: send the body base64-encoded, as API Gateway does for binary media types. */
  base64?: boolean;
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test answers are inspected field by field
  json: any;
}

export type Transport = (call: Call) => Promise<Answer>;

// biome-ignore lint/suspicious/noExplicitAny: any Hono app (OpenAPIHono included), whatever its Env
type AnyApp = Hono<any, any, any>;

const parse = (text: string) => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

async function fromResponse(res: Response): Promise<Answer> {
  const text = await res.text();
  return { status: res.status, headers: Object.fromEntries(res.headers), text, json: parse(text) };
}

const init = (call: Call): RequestInit => ({ method: call.method, headers: call.headers, body: call.body });

export function viaApp(app: AnyApp): Transport {
  return async (call) => fromResponse(await app.request(call.path, init(call)));
}

export async function viaHttp(app: AnyApp): Promise<{ call: Transport; port: number; close(): Promise<void> }> {
  let server!: ReturnType<typeof serve>;
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => resolve(info.port));
  });
  return {
    port,
    call: async (call) => fromResponse(await fetch(`http://127.0.0.1:${port}${call.path}`, init(call))),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

const FIXTURE = JSON.parse(readFileSync(new URL("../fixtures/apigw-v2-event.json", import.meta.url), "utf8"));
let requestNo = 0;

/** An API Gateway HTTP API (payload 2.0) event for `call`, on the recorded event's shape. */
export function apiGatewayEvent(call: Call): Record<string, unknown> {
  const event = structuredClone(FIXTURE);
  const [rawPath, rawQueryString = ""] = call.path.split("?", 2);
  const body = call.body ?? "";
  event.rawPath = rawPath;
  event.rawQueryString = rawQueryString;
  if (rawQueryString) {
    // API Gateway joins repeated parameters with commas and decodes values.
    const params: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(rawQueryString))
      params[k] = params[k] === undefined ? v : `${params[k]},${v}`;
    event.queryStringParameters = params;
  }
  const headers: Record<string, string> = { ...event.headers };
  if (!call.body) delete headers["content-type"];
  for (const [k, v] of Object.entries(call.headers ?? {})) headers[k.toLowerCase()] = v;
  headers["content-length"] = String(Buffer.byteLength(body));
  event.headers = headers;
  event.requestContext.http.method = call.method;
  event.requestContext.http.path = rawPath;
  event.requestContext.requestId = `req-${++requestNo}-${Date.now().toString(36)}`;
  event.requestContext.timeEpoch = Date.now();
  if (call.body === undefined) delete event.body;
  else {
    event.body = call.base64 ? Buffer.from(body).toString("base64") : body;
    event.isBase64Encoded = call.base64 === true;
  }
  return event;
}

export const lambdaContext = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: "search",
  functionVersion: "$LATEST",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:search",
  memoryLimitInMB: "2048",
  awsRequestId: "8f5c1e4a-3a8e-4f7e-9f5e-2b8a1c3d4e5f",
  logGroupName: "/aws/lambda/search",
  logStreamName: "2026/03/13/[$LATEST]0123456789abcdef",
  getRemainingTimeInMillis: () => 29_000,
  done: () => {},
  fail: () => {},
  succeed: () => {},
};

interface LambdaResult {
  statusCode: number;
  headers?: Record<string, string>;
  multiValueHeaders?: Record<string, string[]>;
  body: string;
  isBase64Encoded: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: the handler's event/context types are the adapter's
export function viaLambda(handler: (event: any, context: any) => Promise<unknown>): Transport {
  return async (call) => {
    const out = (await handler(apiGatewayEvent(call), lambdaContext)) as LambdaResult;
    const text = out.isBase64Encoded ? Buffer.from(out.body, "base64").toString("utf8") : out.body;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(out.headers ?? {})) headers[k.toLowerCase()] = v;
    for (const [k, v] of Object.entries(out.multiValueHeaders ?? {})) headers[k.toLowerCase()] = v.join(", ");
    return { status: out.statusCode, headers, text, json: parse(text) };
  };
}
