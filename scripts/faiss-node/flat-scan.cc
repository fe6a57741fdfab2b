// Added by two-stage-retrieval: the exact inner-product scan of shared/adapters/simd-flat.ts,
// compiled natively into our faiss-node build.
//
// Why: the flat scan is memory-bound, and the WebAssembly kernel stops at 128-bit lanes without
// FMA, about 1.3-1.4x the time of a plain read of the same bytes. With 256-bit loads and FMA it
// runs at about 1.05x (`npm run bench -- faiss`). faiss's own flat kernel cannot be used instead:
// Debian's libfaiss is built for baseline x86-64 and computes inner products with a scalar loop.
//
// scanInnerProduct(memory, q, rows, n, d, out), offsets in bytes into `memory` (the index's
// WebAssembly memory, so the rows are not copied): out[i] = <q, row_i> for i < n.
// scanInnerProductF16: the same with rows stored as IEEE binary16 (faiss SQfp16 codes), converted
// to float32 in registers (F16C). Why: an fp16 snapshot then stays fp16 in memory, so a load
// writes half the bytes (no float32 copy to fill) and each query reads half.
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FLAT_SCAN_X86 1
#endif

namespace {

// IEEE binary16 -> float32, exact for every pattern (subnormals, infinities, NaN).
inline float halfToFloat(uint16_t h)
{
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t frac = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f)
    bits = sign | 0x7f800000u | (frac << 13);
  else if (exp != 0)
    bits = sign | ((exp + 112) << 23) | (frac << 13);
  else if (frac == 0)
    bits = sign;
  else
  {
    // subnormal half: normalise into a float32 exponent
    exp = 113;
    while (!(frac & 0x400))
    {
      frac <<= 1;
      exp--;
    }
    bits = sign | (exp << 23) | ((frac & 0x3ff) << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// How each kernel reads a row: float32 as is, fp16 converted (one value, or eight into a register).
struct F32Row
{
  using T = float;
  static float one(const float *p) { return *p; }
#ifdef FLAT_SCAN_X86
  __attribute__((target("avx2,fma"))) static __m256 eight(const float *p) { return _mm256_loadu_ps(p); }
  __attribute__((target("avx2,fma"))) static float oneAvx(const float *p) { return *p; }
#endif
};

struct F16Row
{
  using T = uint16_t;
  static float one(const uint16_t *p) { return halfToFloat(*p); }
#ifdef FLAT_SCAN_X86
  __attribute__((target("avx2,fma,f16c"))) static __m256 eight(const uint16_t *p)
  {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
  }
  __attribute__((target("avx2,fma,f16c"))) static float oneAvx(const uint16_t *p) { return _cvtsh_ss(*p); }
#endif
};

// Portable kernel: eight independent partial sums, which compilers vectorise (SSE2, NEON).
template <typename Row> void scanPortable(const float *q, const typename Row::T *rows, size_t n, size_t d, float *out)
{
  for (size_t i = 0; i < n; i++)
  {
    const typename Row::T *r = rows + i * d;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
      for (int k = 0; k < 8; k++)
        acc[k] += q[j + k] * Row::one(r + j + k);
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < d; j++)
      s += q[j] * Row::one(r + j);
    out[i] = s;
  }
}

#ifdef FLAT_SCAN_X86
// 256-bit kernel: four accumulators over 32 values, then 8 at a time, then fused single values.
// The target lists F16C for both instantiations; only F16Row's reads emit F16C instructions, and
// the float32 kernel is picked on AVX2 + FMA alone.
template <typename Row>
__attribute__((target("avx2,fma,f16c"))) void scanAvx2(const float *q, const typename Row::T *rows, size_t n, size_t d,
                                                        float *out)
{
  for (size_t i = 0; i < n; i++)
  {
    const typename Row::T *r = rows + i * d;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t j = 0;
    for (; j + 32 <= d; j += 32)
    {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), Row::eight(r + j), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), Row::eight(r + j + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 16), Row::eight(r + j + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 24), Row::eight(r + j + 24), a3);
    }
    for (; j + 8 <= d; j += 8)
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), Row::eight(r + j), a0);
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
    float s = _mm_cvtss_f32(s4);
    // Fused tails, so the float32 and fp16 kernels round alike (tests compare them exactly).
    for (; j < d; j++)
      s = __builtin_fmaf(q[j], Row::oneAvx(r + j), s);
    out[i] = s;
  }
}
#endif

using ScanFn = void (*)(const float *, const float *, size_t, size_t, float *);
using ScanF16Fn = void (*)(const float *, const uint16_t *, size_t, size_t, float *);

// FLAT_SCAN_KERNEL=portable picks the portable kernels on any CPU (tests compare them).
bool portableForced()
{
  const char *v = std::getenv("FLAT_SCAN_KERNEL");
  return v != nullptr && std::string(v) == "portable";
}

ScanFn pickKernel(const char **name)
{
#ifdef FLAT_SCAN_X86
  __builtin_cpu_init();
  if (!portableForced() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
  {
    *name = "avx2-fma";
    return scanAvx2<F32Row>;
  }
#endif
  *name = "portable";
  return scanPortable<F32Row>;
}

ScanF16Fn pickKernelF16(const char **name)
{
#ifdef FLAT_SCAN_X86
  __builtin_cpu_init();
  if (!portableForced() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
  {
    *name = "avx2-fma-f16c";
    return scanAvx2<F16Row>;
  }
#endif
  *name = "portable";
  return scanPortable<F16Row>;
}

const char *kernelName = nullptr;
const ScanFn kernel = pickKernel(&kernelName);
const char *kernelF16Name = nullptr;
const ScanF16Fn kernelF16 = pickKernelF16(&kernelF16Name);

// A byte offset argument: a non-negative integer, `align`-byte aligned (4: float, 2: half access).
bool byteOffset(const Napi::Value &v, uint64_t *out, uint64_t align)
{
  if (!v.IsNumber())
    return false;
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(x >= 0) || x > 9007199254740991.0 || x != static_cast<double>(static_cast<uint64_t>(x)))
    return false;
  *out = static_cast<uint64_t>(x);
  return *out % align == 0;
}

// Checks (memory, q, rows, n, d, out) for a scan whose rows hold `rowElementBytes` per value and
// runs `scan` over the buffer; throws a JS error on bad arguments. Every range must lie inside it.
template <typename Row, typename Scan>
Napi::Value RunScan(const Napi::CallbackInfo &info, const char *fn, Scan scan)
{
  Napi::Env env = info.Env();
  if (info.Length() != 6 || !info[0].IsArrayBuffer())
  {
    Napi::TypeError::New(env, std::string(fn) + " expects (ArrayBuffer, q, rows, n, d, out).").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto memory = info[0].As<Napi::ArrayBuffer>();
  uint64_t q, rows, out, n, d;
  if (!byteOffset(info[1], &q, 4) || !byteOffset(info[2], &rows, sizeof(Row)) || !byteOffset(info[5], &out, 4) ||
      !info[3].IsNumber() || !info[4].IsNumber())
  {
    Napi::TypeError::New(env, std::string(fn) + ": offsets must be non-negative and aligned (q, out: 4; rows: " +
                                  std::to_string(sizeof(Row)) + ").")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double nd = info[3].As<Napi::Number>().DoubleValue();
  const double dd = info[4].As<Napi::Number>().DoubleValue();
  if (!(nd >= 0) || nd > 4294967296.0 || nd != static_cast<double>(static_cast<uint64_t>(nd)) ||
      !(dd >= 1) || dd > 1048576.0 || dd != static_cast<double>(static_cast<uint64_t>(dd)))
  {
    Napi::RangeError::New(env, std::string(fn) + ": n and d out of range.").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  n = static_cast<uint64_t>(nd);
  d = static_cast<uint64_t>(dd);
  const uint64_t size = memory.ByteLength();
  // n * d * 4 <= 2^32 * 2^20 * 4 cannot overflow 64 bits.
  const auto fits = [size](uint64_t at, uint64_t bytes) { return at <= size && bytes <= size - at; };
  if (!fits(q, d * 4) || !fits(rows, n * d * sizeof(Row)) || !fits(out, n * 4))
  {
    Napi::RangeError::New(env, std::string(fn) + ": a range lies outside the buffer.").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto *base = static_cast<uint8_t *>(memory.Data());
  scan(reinterpret_cast<const float *>(base + q), reinterpret_cast<const Row *>(base + rows), n, d,
       reinterpret_cast<float *>(base + out));
  return env.Undefined();
}

Napi::Value ScanInnerProduct(const Napi::CallbackInfo &info)
{
  return RunScan<float>(info, "scanInnerProduct", kernel);
}

Napi::Value ScanInnerProductF16(const Napi::CallbackInfo &info)
{
  return RunScan<uint16_t>(info, "scanInnerProductF16", kernelF16);
}

// adviseHugePages(memory): asks Linux to back `memory` with transparent huge pages
// (madvise(MADV_HUGEPAGE), the "madvise" THP mode most kernels ship with). Why: a snapshot load
// writes the whole index into never-touched memory, and on a microVM (Firecracker, as on Lambda)
// each 4 KiB first-touch fault is slow: 2 MiB pages take 512 times fewer. A hint only: false
// where the kernel or platform declines; the memory works the same either way.
Napi::Value AdviseHugePages(const Napi::CallbackInfo &info)
{
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsArrayBuffer())
  {
    Napi::TypeError::New(env, "adviseHugePages expects (ArrayBuffer).").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  auto memory = info[0].As<Napi::ArrayBuffer>();
  const uintptr_t huge = 2u << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(memory.Data());
  const uintptr_t end = start + memory.ByteLength();
  const uintptr_t from = (start + huge - 1) & ~(huge - 1); // whole huge pages inside the buffer only
  const uintptr_t to = end & ~(huge - 1);
  if (to <= from)
    return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, madvise(reinterpret_cast<void *>(from), to - from, MADV_HUGEPAGE) == 0);
#else
  return Napi::Boolean::New(env, false);
#endif
}

} // namespace

void RegisterFlatScan(Napi::Env env, Napi::Object exports)
{
  exports.Set("scanInnerProduct", Napi::Function::New(env, ScanInnerProduct, "scanInnerProduct"));
  exports.Set("scanInnerProductKernel", Napi::String::New(env, kernelName));
  exports.Set("scanInnerProductF16", Napi::Function::New(env, ScanInnerProductF16, "scanInnerProductF16"));
  exports.Set("scanInnerProductF16Kernel", Napi::String::New(env, kernelF16Name));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
}
