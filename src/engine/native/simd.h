// What the direct float32 kernels (thin_conv.cc, conv1x1.cc, norm_act.cc) share: the vector operations of
// each instruction set, the choice among them at run time, and the split of channels into register blocks.
// A kernel is written once against a `Simd` type (V of kLanes floats, Load, Store, Set1, Zero, Fma, Add,
// Sub, Mul, WherePositive, Window, InRegister) and compiled once per instruction set, under that set's
// target pragma.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

// Adds per-chunk partial sums (chunks × n, row-major) into `out` (n values, zeroed by the caller) in chunk
// order: a fixed order, so any thread count that produced the partials gives the same bits.
inline void SumChunkPartials(const float* partials, int64_t chunks, int64_t n, float* out) {
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t i = 0; i < n; ++i) out[i] += partials[c * n + i];
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SMML_SIMD_X86 1
#include <immintrin.h>
#endif

namespace smml {
namespace simd {

#ifdef SMML_SIMD_X86
#pragma GCC push_options
#pragma GCC target("avx512f")
struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V Set1(float s) { return _mm512_set1_ps(s); }
  static V Zero() { return _mm512_setzero_ps(); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // lanes of `a` where t > 0, of `b` elsewhere (NaN included)
  static V WherePositive(V t, V a, V b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, Zero(), _CMP_GT_OQ), b, a); }
  // lanes S … S + 15 of the pair (lo, hi), which lie at p
  template <int S>
  static V Window(const float*, V lo, V hi) {
    return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(0xffff, _mm512_castps_si512(hi), _mm512_castps_si512(lo), S));
  }
  // stops the compiler from folding the load of v into every instruction that uses it
  static V InRegister(V v) {
    asm("" : "+v"(v));
    return v;
  }
};
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Set1(float s) { return _mm256_set1_ps(s); }
  static V Zero() { return _mm256_setzero_ps(); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V WherePositive(V t, V a, V b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(t, Zero(), _CMP_GT_OQ)); }
  template <int S>
  static V Window(const float* p, V, V) {
    return _mm256_loadu_ps(p + S);
  }
  static V InRegister(V v) {
    asm("" : "+v"(v));
    return v;
  }
};
#pragma GCC pop_options
#endif

// Any CPU: the compiler's 4-float vectors (SSE2 on x86-64, NEON on ARM).
struct Generic {
  typedef float V __attribute__((vector_size(16)));
  static constexpr int kLanes = 4;
  static V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void Store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static V Set1(float s) { return V{s, s, s, s}; }
  static V Zero() { return V{0.0f, 0.0f, 0.0f, 0.0f}; }
  static V Fma(V a, V b, V c) { return a * b + c; }
  static V Add(V a, V b) { return a + b; }
  static V Sub(V a, V b) { return a - b; }
  static V Mul(V a, V b) { return a * b; }
  static V WherePositive(V t, V a, V b) { return t > 0 ? a : b; }
  template <int S>
  static V Window(const float* p, V, V) {
    return Load(p + S);
  }
  static V InRegister(V v) { return v; }
};

enum class Isa { kGeneric, kAvx2, kAvx512 };

// The widest instruction set this CPU runs (AVX-512 only on CPUs that also run AVX2 and FMA).
// SMML_THIN_CONV_ISA=avx2 or generic caps the choice, to test the narrower paths on a wider CPU.
inline Isa WidestIsa() {
  static const Isa isa = [] {
    const char* env = std::getenv("SMML_THIN_CONV_ISA");
    const std::string cap = env ? env : "";
#ifdef SMML_SIMD_X86
    __builtin_cpu_init();
    const bool hasAvx2 = (cap.empty() || cap == "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (hasAvx2 && cap.empty() && __builtin_cpu_supports("avx512f")) return Isa::kAvx512;
    if (hasAvx2) return Isa::kAvx2;
#endif
    return Isa::kGeneric;
  }();
  return isa;
}

// Off x86 a source compiles its kernels' generic namespace only; placed after it, this makes the names of
// the avx512 and avx2 builds refer to the generic one, so that ForWidestIsa always gets three tables.
#ifdef SMML_SIMD_X86
#define SMML_ALIAS_MISSING_ISAS
#else
#define SMML_ALIAS_MISSING_ISAS \
  namespace avx512 = generic;   \
  namespace avx2 = generic;
#endif

// Of one kernel table compiled once per instruction set, the one this CPU runs.
template <typename Table>
const Table& ForWidestIsa(const Table& avx512, const Table& avx2, const Table& generic) {
  switch (WidestIsa()) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    case Isa::kGeneric: break;
  }
  return generic;
}

}  // namespace simd

// Splits `channels` into the fewest blocks of at most `maxBlock`, of nearly equal sizes.
struct ChannelBlocks {
  ChannelBlocks(int64_t channels, int maxBlock)
      : count((channels + maxBlock - 1) / maxBlock), base(channels / count), extra(channels % count) {}
  int64_t Size(int64_t i) const { return base + (i < extra ? 1 : 0); }
  int64_t Start(int64_t i) const { return i * base + std::min(i, extra); }
  int64_t count, base, extra;
};

}  // namespace smml
