// Best-k selection shared by the flat vector scan and the sparse (BM25) index.

export interface TopK {
  /** Ids (ordinals) of the best k, best first. */
  ordinals: number[];
  scores: number[];
}

/**
 * Best k of `n` scored entries, descending, ties by the lower id (as a full sort would give): a
 * size-k heap with the worst entry on top, whose score lives in a local, so the common case (a
 * score below it) is one comparison per entry. O(n log k). Entry i has score `scores[i]` and id
 * `ids[i]` (default: i). Scores are kept in double precision, so float64 inputs (BM25) rank exactly.
 */
export function topK(
  scores: Float32Array | Float64Array,
  k: number,
  ids?: Int32Array | Uint32Array,
  n: number = scores.length,
): TopK {
  k = Math.min(k, n);
  if (k <= 0) return { ordinals: [], scores: [] };
  const hs = new Float64Array(k);
  const hi = new Int32Array(k);
  // a ranks below b: lower score, or the same score and a later id.
  const below = (a: number, b: number) => hs[a] < hs[b] || (hs[a] === hs[b] && hi[a] > hi[b]);
  const siftDown = (pos: number) => {
    for (;;) {
      const l = 2 * pos + 1;
      if (l >= k) return;
      const r = l + 1;
      const m = r < k && below(r, l) ? r : l;
      if (!below(m, pos)) return;
      const s = hs[m];
      hs[m] = hs[pos];
      hs[pos] = s;
      const t = hi[m];
      hi[m] = hi[pos];
      hi[pos] = t;
      pos = m;
    }
  };
  for (let i = 0; i < k; i++) {
    hs[i] = scores[i];
    hi[i] = ids ? ids[i] : i;
  }
  for (let p = (k >> 1) - 1; p >= 0; p--) siftDown(p);
  let floor = hs[0];
  let floorId = hi[0];
  for (let i = k; i < n; i++) {
    const s = scores[i];
    if (s < floor) continue;
    const id = ids ? ids[i] : i;
    // An equal score only enters with a lower id (ids may come in any order).
    if (s === floor && id > floorId) continue;
    hs[0] = s;
    hi[0] = id;
    siftDown(0);
    floor = hs[0];
    floorId = hi[0];
  }
  const order = Array.from({ length: k }, (_, i) => i).sort((a, b) => hs[b] - hs[a] || hi[a] - hi[b]);
  return { ordinals: order.map((i) => hi[i]), scores: order.map((i) => hs[i]) };
}
