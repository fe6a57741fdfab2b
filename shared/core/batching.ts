// Token-budget micro-batching for padded transformer inference (pure).
//
// A padded batch costs `longest × count` tokens of compute whatever the real lengths are, so
// pairs are sorted by length (neighbours pad little), cut greedily so each batch's padded cost
// stays within the budget, padded only to their own batch's longest sequence, and the results
// are put back in input order.

export interface MicroBatch {
  /** Positions in the caller's input array, longest first. */
  indices: number[];
  /** Length every row of this batch is padded to (its own longest sequence). */
  padTo: number;
}

/**
 * Plans micro-batches for sequences of the given lengths. Each batch satisfies
 * `padTo × indices.length ≤ budgetTokens`, except a single sequence longer than the budget,
 * which gets a batch of its own (it cannot be split here; callers truncate beforehand).
 * Optional `maxBatchSize` caps the rows of one batch.
 */
export function planBatches(
  lengths: readonly number[],
  budgetTokens: number,
  maxBatchSize = Number.POSITIVE_INFINITY,
): MicroBatch[] {
  if (!(budgetTokens >= 1)) throw new RangeError(`budgetTokens must be ≥ 1, got ${budgetTokens}`);
  if (!(maxBatchSize >= 1)) throw new RangeError(`maxBatchSize must be ≥ 1, got ${maxBatchSize}`);
  // Longest first, so the first row of a batch fixes its padded width; ties keep input order.
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const batches: MicroBatch[] = [];
  let current: MicroBatch | null = null;
  for (const i of order) {
    const len = Math.max(1, lengths[i]);
    if (
      current &&
      current.padTo * (current.indices.length + 1) <= budgetTokens &&
      current.indices.length < maxBatchSize
    ) {
      current.indices.push(i);
    } else {
      current = { indices: [i], padTo: len };
      batches.push(current);
    }
  }
  return batches;
}

/**
 * Runs `runBatch` over the planned micro-batches (sequentially: one inference at a time uses all
 * intra-op threads) and returns one result per input, in input order.
 * `runBatch` must return one result per index it is given, in the order given.
 */
export async function runInBatches<R>(
  lengths: readonly number[],
  budgetTokens: number,
  runBatch: (batch: MicroBatch) => Promise<ArrayLike<R>> | ArrayLike<R>,
  maxBatchSize?: number,
): Promise<R[]> {
  const out = new Array<R>(lengths.length);
  for (const batch of planBatches(lengths, budgetTokens, maxBatchSize)) {
    const results = await runBatch(batch);
    if (results.length !== batch.indices.length) {
      throw new Error(`runBatch returned ${results.length} results for a batch of ${batch.indices.length}`);
    }
    batch.indices.forEach((inputIndex, row) => {
      out[inputIndex] = results[row];
    });
  }
  return out;
}

/** Total padded tokens a plan costs (what the budget bounds per batch). */
export function paddedTokens(batches: readonly MicroBatch[]): number {
  return batches.reduce((sum, b) => sum + b.padTo * b.indices.length, 0);
}

/**
 * Copies the rows named by `indices` into one row-major [indices.length, padTo] buffer, filling the
 * tail of shorter rows with `padValue`. Rows longer than padTo are an error (plan from their lengths).
 */
export function padRows<T extends BigInt64Array | Int32Array | Float32Array>(
  rows: ReadonlyArray<ArrayLike<number>>,
  indices: readonly number[],
  padTo: number,
  padValue: number,
  alloc: (n: number) => T,
): T {
  const out = alloc(indices.length * padTo);
  const big = out instanceof BigInt64Array;
  indices.forEach((idx, r) => {
    const row = rows[idx];
    if (row.length > padTo) throw new RangeError(`row ${idx} has ${row.length} tokens, more than padTo=${padTo}`);
    const base = r * padTo;
    for (let j = 0; j < padTo; j++) {
      const v = j < row.length ? row[j] : padValue;
      (out as { [k: number]: number | bigint })[base + j] = big ? BigInt(v) : v;
    }
  });
  return out;
}
