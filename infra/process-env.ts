// Variables every function's process starts with, ahead of DEPLOY_RUNTIME_ENV (which can override
// them). Pure data, no SST globals: the coldstart benchmark starts its bundles with the same values.

/**
 * glibc malloc settings, read by the dynamic loader when the runtime's process starts (setting them
 * from JavaScript would be too late). ONNX Runtime's session creation takes ~16K of a search cold
 * start's ~45K page faults: it copies the model through malloc'd buffers, frees them and allocates
 * again, and each 4 KiB page the kernel backs anew costs a fault.
 * - `top_pad` (64 MiB) keeps freed memory at the top of the heap instead of returning it to the
 *   kernel after each free, so the next allocation reuses pages that are already backed. glibc has
 *   read it since 2.26, so Lambda's Amazon Linux 2023 runtimes honour it.
 * - `hugetlb=1` (glibc ≥ 2.35) advises transparent huge pages for malloc's own memory, one fault per
 *   2 MiB instead of per 4 KiB. Older glibc ignores a tunable it does not know.
 * The cost is the retained memory: ~20 MB more peak RSS in the coldstart benchmark.
 * Set `GLIBC_TUNABLES` to "" in DEPLOY_RUNTIME_ENV to start with glibc's defaults.
 */
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  GLIBC_TUNABLES: "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864",
};
