// Scrubbing secrets out of anything that leaves the process: log lines, error messages, response bodies.
// Pure: the caller registers the secret values it knows (OPENAI_API_KEY, RERANKER_TOKEN, ...).
//
// Three layers, because any one can miss: (1) known secret values are replaced wherever they appear;
// (2) shapes of secrets are replaced in free text (our API keys, Bearer/Basic credentials, `sk-` provider
// keys, AWS access key ids, `name=value` pairs whose name says secret); (3) in structured data, string
// values under sensitive names are replaced whole.
import { API_KEY_LIKE } from "./api-keys.ts";

export const REDACTED = "[REDACTED]";

/**
 * Names whose values are secret. The brief's rule is "anything named *token*, *secret* or *key*"; names
 * that are deliberately logged and hold no secret are exempted below (object keys of S3, API key *ids*).
 * Numbers and booleans are kept (token counts like `embedding_tokens: 12` are not secrets).
 */
const SENSITIVE_NAME = /token|secret|passw|authori[sz]ation|cookie|credential|signature|key/i;
const SAFE_NAME =
  /^(key|keys|s3_?key|object_?key|source_?key|cache_?key|pointer_?key|key_?prefix|(api_?)?key_?ids?|[a-z_]*_key_id|keyId|apiKeyId)$/i;

export function isSensitiveName(name: string): boolean {
  return SENSITIVE_NAME.test(name) && !SAFE_NAME.test(name);
}

// Shapes of secrets. None of them can match a quote or a backslash, so they are also safe to apply to
// an already serialised JSON line without breaking it.
const SHAPE_PATTERNS: Array<[RegExp, string]> = [
  [API_KEY_LIKE, `tsr_${REDACTED}`],
  [/\b(Bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}/gi, `$1$2${REDACTED}`],
  [/\b(Basic)(\s+)[A-Za-z0-9+/=]{8,}/g, `$1$2${REDACTED}`],
  [/\bsk-[A-Za-z0-9_-]{12,}/g, `sk-${REDACTED}`],
  [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, REDACTED],
];

const TEXT_PATTERNS: Array<[RegExp, string]> = [
  ...SHAPE_PATTERNS,
  // `name=value`, `name: value`, `"name":"value"` where the name says secret (env dumps, query strings, JSON text).
  [
    /((?:[A-Za-z0-9]+[_-])*(?:api[_-]?key|apikey|token|secret|password|passwd|authorization|credential)s?["']?\s*[:=]\s*["']?)(?!\d+\b)([^\s"'&,;}{]{6,})/gi,
    `$1${REDACTED}`,
  ],
];

export interface Redactor {
  /** Registers a secret value (ignored when shorter than 8 characters: too likely to hit ordinary text). */
  addSecret(value: string | undefined): void;
  redactText(text: string): string;
  /** Known values and secret shapes only: safe on a serialised JSON line (a final pass over log output). */
  redactLine(line: string): string;
  /** Deep copy with secrets scrubbed from every string and sensitive names blanked. */
  redactValue<T>(value: T): T;
  /** A JSON.stringify replacer (Powertools' jsonReplacerFn has the same shape). */
  replacer: (key: string, value: unknown) => unknown;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export function createRedactor(secrets: Array<string | undefined> = []): Redactor {
  const known = new Set<string>();
  let knownPattern: RegExp | null = null;

  function addSecret(value: string | undefined) {
    if (!value || value.length < 8 || known.has(value)) return;
    known.add(value);
    // Longest first so a secret containing another is replaced whole.
    const alternatives = [...known].sort((a, b) => b.length - a.length).map(escapeRegExp);
    knownPattern = new RegExp(alternatives.join("|"), "g");
  }
  for (const s of secrets) addSecret(s);

  function redactText(text: string): string {
    let out = knownPattern ? text.replace(knownPattern, REDACTED) : text;
    for (const [re, replacement] of TEXT_PATTERNS) out = out.replace(re, replacement);
    return out;
  }

  function redactLine(line: string): string {
    // Known values are JSON-escaped in a serialised line; only plain ones can be found there, and the
    // structured pass has already replaced them, so this pass is a safety net for shapes.
    let out = knownPattern ? line.replace(knownPattern, REDACTED) : line;
    for (const [re, replacement] of SHAPE_PATTERNS) out = out.replace(re, replacement);
    return out;
  }

  function replacer(key: string, value: unknown): unknown {
    if (key !== "" && isSensitiveName(key) && value !== null && value !== undefined) {
      if (typeof value !== "number" && typeof value !== "boolean") return REDACTED;
    }
    if (typeof value === "string") return redactText(value);
    return value;
  }

  function redactValue<T>(value: T, seen = new WeakSet<object>()): T {
    if (typeof value === "string") return redactText(value) as T;
    if (value === null || typeof value !== "object") return value;
    if (seen.has(value)) return "[Circular]" as T;
    seen.add(value);
    if (Array.isArray(value)) return value.map((v) => redactValue(v, seen)) as T;
    if (value instanceof Error) {
      const e: Record<string, unknown> = { name: value.name, message: redactText(value.message) };
      if (value.stack) e.stack = redactText(value.stack);
      if (value.cause !== undefined) e.cause = redactValue(value.cause, seen);
      return e as T;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const r = replacer(k, v);
      out[k] = r === v && typeof v === "object" ? redactValue(v, seen) : r;
    }
    return out as T;
  }

  return { addSecret, redactText, redactLine, redactValue: (v) => redactValue(v), replacer };
}

/** Environment variables whose values are always secrets when set. */
export const SECRET_ENV_VARS = [
  "OPENAI_API_KEY",
  "RERANKER_TOKEN",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
] as const;
