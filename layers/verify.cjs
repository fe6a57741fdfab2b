// Loads the bundles on the Lambda runtime image itself (no compiler, no -devel packages), the way a
// function will: proof that every library the addons need is inside the bundles.
//   node verify.cjs <root> faiss onnxruntime
const assert = require("node:assert/strict");
const path = require("node:path");

const [root, ...bundles] = process.argv.slice(2);
const checks = {
  faiss() {
    const faiss = require(path.join(root, "faiss/nodejs/node_modules/faiss-node"));
    const index = new faiss.IndexFlatIP(2);
    index.add([1, 0, 0, 1]);
    assert.equal(index.search([0.9, 0.1], 1).labels[0], 0);
    // The repository's patch (scripts/faiss-node/patch-methods.cc) must be in this build.
    for (const m of ["addTyped", "searchTyped", "setSearchParameter"]) assert.equal(typeof index[m], "function", m);
    // ... and its native flat scan (scripts/faiss-node/flat-scan.cc): <q, row_i> over a buffer.
    const mem = new ArrayBuffer(64);
    new Float32Array(mem).set([1, 2, 3, 4, 0.5, 0.5]); // q = [1, 2], rows [3, 4] and [0.5, 0.5]
    faiss.scanInnerProduct(mem, 0, 8, 2, 2, 32);
    assert.deepEqual(Array.from(new Float32Array(mem, 32, 2)), [11, 1.5]);
    console.log(`flat scan kernel: ${faiss.scanInnerProductKernel}`);
  },
  async onnxruntime() {
    const ort = require(path.join(root, "onnxruntime/nodejs/node_modules/onnxruntime-node"));
    // y = Add(x, x) on float[1,2]: the same hand-encoded graph as test/unit/native.test.ts.
    const model = Buffer.from(
      "CAg6PQoOCgF4CgF4EgF5IgNBZGQSAWdaEwoBeBIOCgwIARIICgIIAQoCCAJiEwoBeRIOCgwIARIICgIIAQoCCAJCAhAN",
      "base64",
    );
    const session = await ort.InferenceSession.create(model);
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1.5, -2]), [1, 2]) });
    assert.deepEqual(Array.from(out.y.data), [3, -4]);
  },
};

(async () => {
  for (const b of bundles) {
    if (!checks[b]) throw new Error(`unknown bundle ${b}`);
    await checks[b]();
    console.log(`[verify] ${b}: loads and runs on the Lambda runtime image`);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
