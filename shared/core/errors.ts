// Domain errors carry a stable machine code and an HTTP status; only the HTTP layer maps
// them to responses, so the core stays transport-free.

export type ErrorCode =
  | "invalid_request"
  | "not_found"
  | "payload_too_large"
  | "unauthorized"
  | "rate_limited"
  | "overloaded"
  | "index_not_ready"
  | "embedder_mismatch"
  | "embedder_unavailable"
  | "reranker_unavailable"
  | "shards_unavailable"
  | "store_unavailable"
  | "snapshot_invalid"
  | "conflict"
  | "config_invalid"
  | "internal";

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds a client should wait before retrying (503/429). */
  readonly retryAfterS?: number;
  readonly details?: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    status: number,
    message: string,
    opts: { cause?: unknown; retryAfterS?: number; details?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.retryAfterS = opts.retryAfterS;
    this.details = opts.details;
  }
}

export class ValidationError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super("invalid_request", 400, message, { details });
  }
}

export class IndexNotReadyError extends DomainError {
  constructor(
    message = "No index snapshot has been published yet; upload documents to the corpus prefix.",
    cause?: unknown,
  ) {
    super("index_not_ready", 503, message, { retryAfterS: 5, cause });
  }
}

export class EmbedderMismatchError extends DomainError {
  constructor(message: string) {
    super("embedder_mismatch", 409, message);
  }
}

export class SnapshotInvalidError extends DomainError {
  constructor(message: string, cause?: unknown) {
    super("snapshot_invalid", 502, message, { cause });
  }
}

export class StoreUnavailableError extends DomainError {
  constructor(message: string, cause?: unknown) {
    super("store_unavailable", 503, message, { retryAfterS: 5, cause });
  }
}

export class EmbedderUnavailableError extends DomainError {
  constructor(message: string, cause?: unknown, retryAfterS = 5) {
    super("embedder_unavailable", 503, message, { retryAfterS, cause });
  }
}

export class RerankerUnavailableError extends DomainError {
  constructor(message: string, cause?: unknown) {
    super("reranker_unavailable", 503, message, { retryAfterS: 5, cause });
  }
}

/** An index shard did not answer (fan-out search); `timeout` says whether its time limit passed. */
export class ShardUnavailableError extends DomainError {
  readonly timeout: boolean;
  constructor(message: string, opts: { cause?: unknown; timeout?: boolean } = {}) {
    super("shards_unavailable", 503, message, { retryAfterS: 2, cause: opts.cause });
    this.timeout = opts.timeout ?? false;
  }
}

/** A conditional write lost a race (If-Match / If-None-Match precondition failed). */
export class PreconditionFailedError extends DomainError {
  constructor(message: string) {
    super("conflict", 409, message);
  }
}

export class ConfigError extends DomainError {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super("config_invalid", 500, `Invalid configuration ${variable}: ${message}`);
    this.variable = variable;
  }
}

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}
