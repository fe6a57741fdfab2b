// ObjectStore over Amazon S3 (or an S3-compatible server: endpoint + path-style addressing).
// Conditional writes use S3's If-Match / If-None-Match on PutObject (honoured by AWS S3 since
// 2024; some S3-compatible servers, s3rver among them, ignore the headers).
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { PreconditionFailedError, StoreUnavailableError, ValidationError } from "../core/errors.ts";
import type { ObjectInfo, ObjectStore, PutOptions, StoreDescription } from "../core/ports.ts";

export interface S3StoreOptions {
  bucket: string;
  /** An existing client (tests add middleware to it); otherwise one is built from the fields below. */
  client?: S3Client;
  endpoint?: string;
  forcePathStyle?: boolean;
  region?: string;
  credentials?: S3ClientConfig["credentials"];
  /** SDK attempts per request (network errors and 5xx are retried by the SDK). */
  maxAttempts?: number;
  /** Keys per ListObjectsV2 page (S3's maximum and default is 1000). */
  listPageSize?: number;
}

interface S3LikeError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(e: unknown): number | undefined {
  return (e as S3LikeError)?.$metadata?.httpStatusCode;
}

function isNotFound(e: unknown): boolean {
  const err = e as S3LikeError;
  return statusOf(e) === 404 || err?.name === "NoSuchKey" || err?.name === "NotFound" || err?.Code === "NoSuchKey";
}

function isAbort(e: unknown): boolean {
  return (e as Error)?.name === "AbortError";
}

function mapError(op: string, key: string, e: unknown): Error {
  if (isAbort(e) || e instanceof ValidationError) return e as Error;
  const status = statusOf(e);
  if (status === 412 || status === 409 || (e as S3LikeError)?.name === "PreconditionFailed") {
    return new PreconditionFailedError(`conditional ${op} of ${key} lost: ${(e as Error).message || status}`);
  }
  if (status === 416) return new ValidationError(`requested range of ${key} is not satisfiable`);
  // Everything else (connection refused, timeouts, 5xx after retries, access denied) means the
  // store cannot serve us right now.
  const detail = (e as Error)?.message || (e as S3LikeError)?.name || String(e);
  return new StoreUnavailableError(`S3 ${op} ${key} failed: ${detail}${status ? ` (HTTP ${status})` : ""}`, e);
}

/** S3 ETags are quoted; accept either form from callers. */
function quoteEtag(etag: string): string {
  return etag === "*" || etag.startsWith('"') || etag.startsWith('W/"') ? etag : `"${etag}"`;
}

/**
 * Drains a response body into one buffer of the announced length: the SDK's transformToByteArray
 * keeps every chunk and then concatenates, holding each part twice at its peak.
 */
async function readBody(body: unknown, length: number | undefined, into?: Uint8Array): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const stream = body as AsyncIterable<Uint8Array> & { transformToByteArray?: () => Promise<Uint8Array> };
  if (length === undefined || typeof stream[Symbol.asyncIterator] !== "function") {
    return stream.transformToByteArray ? stream.transformToByteArray() : new Uint8Array(0);
  }
  const out = into && into.byteLength >= length ? into.subarray(0, length) : new Uint8Array(length);
  let at = 0;
  for await (const chunk of stream) {
    if (at + chunk.byteLength > length) throw new Error(`response body is longer than its Content-Length ${length}`);
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  if (at !== length) throw new Error(`response body ended after ${at} of ${length} bytes`);
  return out;
}

export function createS3Store(opts: S3StoreOptions): ObjectStore {
  if (!opts.bucket) throw new ValidationError("S3 store needs a bucket");
  const { bucket } = opts;
  const client =
    opts.client ??
    new S3Client({
      region: opts.region ?? "us-east-1",
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials: opts.credentials,
      maxAttempts: opts.maxAttempts ?? 3,
    });

  const store: ObjectStore = {
    describe(): StoreDescription {
      return opts.endpoint ? { kind: "s3", bucket, endpoint: opts.endpoint } : { kind: "s3", bucket };
    },

    async get(key, o = {}) {
      let range: string | undefined;
      if (o.range) {
        const [start, end] = o.range;
        if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start) {
          throw new ValidationError(`invalid range [${o.range.join(", ")}]`);
        }
        range = `bytes=${start}-${end}`;
      }
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }), {
          abortSignal: o.signal,
        });
        return { body: await readBody(res.Body, res.ContentLength, o.into), etag: res.ETag ?? "" };
      } catch (e) {
        if (isNotFound(e)) return null;
        throw mapError("get", key, e);
      }
    },

    async getStream(key, o = {}) {
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: o.signal });
        const body = (res.Body ?? (async function* () {})()) as AsyncIterable<Uint8Array>;
        return { body, etag: res.ETag ?? "", size: res.ContentLength ?? 0 };
      } catch (e) {
        if (isNotFound(e)) return null;
        throw mapError("get", key, e);
      }
    },

    async head(key) {
      try {
        const res = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { key, size: res.ContentLength ?? 0, etag: res.ETag ?? "", lastModified: res.LastModified };
      } catch (e) {
        if (isNotFound(e)) return null;
        throw mapError("head", key, e);
      }
    },

    async put(key, body, o: PutOptions = {}) {
      try {
        const res = await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: typeof body === "string" ? Buffer.from(body, "utf8") : body,
            ContentType: o.contentType,
            IfMatch: o.ifMatch !== undefined ? quoteEtag(o.ifMatch) : undefined,
            IfNoneMatch: o.ifNoneMatch,
          }),
        );
        return { etag: res.ETag ?? "" };
      } catch (e) {
        throw mapError("put", key, e);
      }
    },

    async delete(key) {
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (e) {
        if (isNotFound(e)) return;
        throw mapError("delete", key, e);
      }
    },

    async *list(prefix) {
      let token: string | undefined;
      do {
        let page: ListObjectsV2CommandOutput;
        try {
          page = await client.send(
            new ListObjectsV2Command({
              Bucket: bucket,
              Prefix: prefix,
              ContinuationToken: token,
              MaxKeys: opts.listPageSize,
            }),
          );
        } catch (e) {
          throw mapError("list", prefix, e);
        }
        for (const o of page.Contents ?? []) {
          if (!o.Key) continue;
          const info: ObjectInfo = { key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? "", lastModified: o.LastModified };
          yield info;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
  };
  return store;
}
