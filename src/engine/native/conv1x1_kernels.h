// The register-blocked loops of the 1×1×1 convolution, written once for every instruction set.
// conv1x1.cc includes this file once per instruction set, inside a namespace that defines `Simd` (the
// vector operations of simd.h and the register budgets kMixVectors, kMixBlock, kGramBlock) and under
// that instruction set's target pragma; hence no include guard.

// dst(t)[n] = bias[t] + Σ_s m[s, t] · src(s)[n] for a block of CB target channels, NV vectors of
// voxels at a time: each source vector is loaded once for all the block's channels.
template <int CB>
void MixBlock(const MixBlockArgs& a) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  constexpr int NV = Simd::kMixVectors;
  for (int64_t g = 0; g < a.groups; ++g) {
    const int64_t n = g * NV * L;
    V acc[CB][NV];
#pragma GCC unroll 16
    for (int cb = 0; cb < CB; ++cb) {
      const V init = a.bias ? Simd::Set1(a.bias[cb]) : Simd::Zero();
#pragma GCC unroll 4
      for (int nv = 0; nv < NV; ++nv) acc[cb][nv] = init;
    }
    for (int64_t s = 0; s < a.srcChannels; ++s) {
      const float* row = a.src + s * a.srcStride + n;
      const float* m = a.matrix + s * a.matrixStride;
      V x[NV];
#pragma GCC unroll 4
      for (int nv = 0; nv < NV; ++nv) x[nv] = Simd::Load(row + nv * L);
#pragma GCC unroll 16
      for (int cb = 0; cb < CB; ++cb) {
        const V wv = Simd::Set1(m[cb]);
#pragma GCC unroll 4
        for (int nv = 0; nv < NV; ++nv) acc[cb][nv] = Simd::Fma(wv, x[nv], acc[cb][nv]);
      }
    }
#pragma GCC unroll 16
    for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 4
      for (int nv = 0; nv < NV; ++nv) Simd::Store(a.dst + cb * a.dstStride + n + nv * L, acc[cb][nv]);
  }
}

// sums(ta, tb) += Σ_n a(ta)[n] · b(tb)[n], lane by lane, for a TA × TB block of channel pairs.
template <int TA, int TB>
void GramBlock(const GramBlockArgs& g) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V acc[TA][TB];
#pragma GCC unroll 8
  for (int i = 0; i < TA; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < TB; ++j) acc[i][j] = Simd::Zero();
  for (int64_t v = 0; v < g.vectors; ++v) {
    V b[TB];
#pragma GCC unroll 8
    for (int j = 0; j < TB; ++j) b[j] = Simd::InRegister(Simd::Load(g.b + j * g.bStride + v * L));
#pragma GCC unroll 8
    for (int i = 0; i < TA; ++i) {
      const V a = Simd::InRegister(Simd::Load(g.a + i * g.aStride + v * L));
#pragma GCC unroll 8
      for (int j = 0; j < TB; ++j) acc[i][j] = Simd::Fma(a, b[j], acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < TA; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < TB; ++j) {
      float* s = g.sums + (i * g.sumsStride + j) * L;
      Simd::Store(s, Simd::Add(Simd::Load(s), acc[i][j]));
    }
}

template <int... CB>
MixBlockFn MixBlockAt(int cb, std::integer_sequence<int, CB...>) {
  static constexpr MixBlockFn table[] = {&MixBlock<CB + 1>...};
  return table[cb - 1];
}

template <int TA, int... TB>
GramBlockFn GramBlockAt(int tb, std::integer_sequence<int, TB...>) {
  static constexpr GramBlockFn table[] = {&GramBlock<TA, TB + 1>...};
  return table[tb - 1];
}

GramBlockFn GramBlockFor(int ta, int tb) {
  static_assert(Simd::kGramBlock <= 4, "GramBlockFor lists blocks of up to 4 rows");
  constexpr auto columns = std::make_integer_sequence<int, Simd::kGramBlock>();
  switch (ta) {
    case 1: return GramBlockAt<1>(tb, columns);
    case 2: return GramBlockAt<2>(tb, columns);
    case 3: return GramBlockAt<3>(tb, columns);
    default: return GramBlockAt<4>(tb, columns);
  }
}

// Tiles [begin, end) of b · tiles + t: every block of target channels over the tile's whole groups of
// vectors, then the last few voxels through zero-padded copies.
void MixTiles(const MixProblem& p, int64_t begin, int64_t end) {
  constexpr int64_t G = Simd::kMixVectors * Simd::kLanes;
  ChannelBlocks blocks(p.dstChannels, Simd::kMixBlock);
  std::vector<MixBlockFn> fns;
  for (int64_t i = 0; i < blocks.count; ++i)
    fns.push_back(MixBlockAt(static_cast<int>(blocks.Size(i)), std::make_integer_sequence<int, Simd::kMixBlock>()));
  std::vector<float> srcTail(p.srcChannels * G, 0.0f), dstTail(p.dstChannels * G);
  MixBlockArgs a;
  a.srcChannels = p.srcChannels;
  a.matrixStride = p.dstChannels;
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / p.tiles, n0 = task % p.tiles * kTileVoxels;
    const int64_t count = std::min(kTileVoxels, p.voxels - n0);
    const int64_t whole = count / G * G, rest = count - whole;
    const float* src = p.src + b * p.srcChannels * p.voxels + n0;
    float* dst = p.dst + b * p.dstChannels * p.voxels + n0;
    if (rest > 0)
      for (int64_t s = 0; s < p.srcChannels; ++s) std::memcpy(srcTail.data() + s * G, src + s * p.voxels + whole, sizeof(float) * rest);
    for (int64_t i = 0; i < blocks.count; ++i) {
      const int64_t t0 = blocks.Start(i);
      a.matrix = p.matrix + t0;
      a.bias = p.bias ? p.bias + t0 : nullptr;
      a.src = src;
      a.srcStride = p.voxels;
      a.dst = dst + t0 * p.voxels;
      a.dstStride = p.voxels;
      a.groups = whole / G;
      fns[i](a);
      if (rest == 0) continue;
      a.src = srcTail.data();
      a.srcStride = G;
      a.dst = dstTail.data();
      a.dstStride = G;
      a.groups = 1;
      fns[i](a);
      for (int64_t t = 0; t < blocks.Size(i); ++t)
        std::memcpy(dst + (t0 + t) * p.voxels + whole, dstTail.data() + t * G, sizeof(float) * rest);
    }
  }
}

// Chunks [begin, end), fixed ranges of tiles: each chunk's sums go to its own row of `partials`, so
// the result does not depend on how the chunks are spread over threads.
void GramChunks(const GramProblem& p, int64_t begin, int64_t end) {
  constexpr int L = Simd::kLanes;
  const ChannelBlocks rows(p.aChannels, Simd::kGramBlock), columns(p.bChannels, Simd::kGramBlock);
  std::vector<GramBlockFn> fns;
  for (int64_t i = 0; i < rows.count; ++i)
    for (int64_t j = 0; j < columns.count; ++j)
      fns.push_back(GramBlockFor(static_cast<int>(rows.Size(i)), static_cast<int>(columns.Size(j))));
  const int64_t pairs = p.aChannels * p.bChannels;
  std::vector<float> sums(pairs * L), aTail(p.aChannels * L, 0.0f), bTail(p.bChannels * L, 0.0f);
  GramBlockArgs g;
  g.sumsStride = p.bChannels;
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    std::fill(sums.begin(), sums.end(), 0.0f);
    for (int64_t task = p.chunkStart[chunk]; task < p.chunkStart[chunk + 1]; ++task) {
      const int64_t b = task / p.tiles, n0 = task % p.tiles * kTileVoxels;
      const int64_t count = std::min(kTileVoxels, p.voxels - n0);
      const int64_t whole = count / L * L, rest = count - whole;
      const float* a = p.a + b * p.aChannels * p.voxels + n0;
      const float* x = p.b + b * p.bChannels * p.voxels + n0;
      if (rest > 0) {
        for (int64_t i = 0; i < p.aChannels; ++i) std::memcpy(aTail.data() + i * L, a + i * p.voxels + whole, sizeof(float) * rest);
        for (int64_t j = 0; j < p.bChannels; ++j) std::memcpy(bTail.data() + j * L, x + j * p.voxels + whole, sizeof(float) * rest);
      }
      for (int64_t i = 0; i < rows.count; ++i)
        for (int64_t j = 0; j < columns.count; ++j) {
          const int64_t r0 = rows.Start(i), c0 = columns.Start(j);
          const GramBlockFn fn = fns[i * columns.count + j];
          g.sums = sums.data() + (r0 * p.bChannels + c0) * L;
          g.a = a + r0 * p.voxels;
          g.aStride = p.voxels;
          g.b = x + c0 * p.voxels;
          g.bStride = p.voxels;
          g.vectors = whole / L;
          fn(g);
          if (rest == 0) continue;
          g.a = aTail.data() + r0 * L;
          g.aStride = L;
          g.b = bTail.data() + c0 * L;
          g.bStride = L;
          g.vectors = 1;
          fn(g);
        }
    }
    float* out = p.partials + chunk * pairs;
    for (int64_t k = 0; k < pairs; ++k) {
      float total = 0.0f;
      for (int l = 0; l < L; ++l) total += sums[k * L + l];
      out[k] = total;
    }
  }
}
