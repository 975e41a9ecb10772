// The register-blocked loops of the thin convolutions, written once for every instruction set.
// thin_conv.cc includes this file once per instruction set, inside a namespace that defines `Simd`
// (the vector type V of kLanes floats, Load, Store, Set1, Zero, Fma, Add, Window, InRegister, and the
// register budgets kMaxVectors, kConvAccumulators, kWeightGradBlock) and under that instruction set's
// target pragma; hence no include guard.

// Output channels × W-vectors of one output row, accumulated over every input channel and tap:
// acc[cb][nv] += w[c, kd, kh, kw, co0 + cb] · line(c, sd, sh)[offset + kw + nv·lanes], where tap kw
// reads its own line when `PerTap`. Lines and offsets are vector-aligned: the shifted windows of a
// single line are built from aligned loads, since loads that straddle cache lines are slow.
template <bool PerTap, int CB, int NV>
void ConvBlock(const ConvBlockArgs& a) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V acc[CB][NV];
#pragma GCC unroll 16
  for (int cb = 0; cb < CB; ++cb) {
    V init = a.bias ? Simd::Set1(a.bias[cb]) : Simd::Zero();
#pragma GCC unroll 16
    for (int nv = 0; nv < NV; ++nv) acc[cb][nv] = init;
  }
  const int64_t ct = a.dstChannels;
  for (int64_t c = 0; c < a.srcChannels; ++c) {
    for (int i = 0; i < a.depthTaps->count; ++i) {
      const float* plane = a.planes[i] + c * a.channelStride + a.offset;
      const float* wd = a.weights + (c * 3 + a.depthTaps->tap[i]) * 9 * ct;
      for (int j = 0; j < a.heightTaps->count; ++j) {
        const float* line = plane + a.heightTaps->source[j] * a.rowStride;
        const float* wk = wd + a.heightTaps->tap[j] * 3 * ct;
        V x[3][NV];
        if (PerTap) {
#pragma GCC unroll 16
          for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 16
            for (int nv = 0; nv < NV; ++nv) x[kw][nv] = Simd::Load(line + kw * a.tapStep + nv * L);
        } else {
          V v[NV + 1];
#pragma GCC unroll 16
          for (int nv = 0; nv <= NV; ++nv) v[nv] = Simd::Load(line + nv * L);
#pragma GCC unroll 16
          for (int nv = 0; nv < NV; ++nv) {
            x[0][nv] = v[nv];
            x[1][nv] = Simd::template Window<1>(line + nv * L, v[nv], v[nv + 1]);
            x[2][nv] = Simd::template Window<2>(line + nv * L, v[nv], v[nv + 1]);
          }
        }
#pragma GCC unroll 16
        for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 16
          for (int cb = 0; cb < CB; ++cb) {
            V wv = Simd::Set1(wk[kw * ct + cb]);
#pragma GCC unroll 16
            for (int nv = 0; nv < NV; ++nv) acc[cb][nv] = Simd::Fma(wv, x[kw][nv], acc[cb][nv]);
          }
      }
    }
  }
#pragma GCC unroll 16
  for (int cb = 0; cb < CB; ++cb) {
    float* out = a.out + cb * a.outChannelStride;
    if (a.valid == NV * L) {
#pragma GCC unroll 16
      for (int nv = 0; nv < NV; ++nv) Simd::Store(out + nv * L, acc[cb][nv]);
    } else {
      float tail[NV * L];
#pragma GCC unroll 16
      for (int nv = 0; nv < NV; ++nv) Simd::Store(tail + nv * L, acc[cb][nv]);
      std::memcpy(out, tail, sizeof(float) * a.valid);
    }
  }
}

// Two output rows h and h + 1 of one vector each (rows of at most one vector's width), both rows reading all
// three height taps in order: each weight broadcast feeds both rows, as the second vector of a wider row
// does in ConvBlock. acc[cb][r] += w[c, kd, kh, kw, co0 + cb] · line(c, sd, sh(h + r, kh))[offset + kw].
template <bool PerTap, int CB>
void ConvBlockTwoRows(const ConvBlockArgs& a) {
  using V = typename Simd::V;
  V acc[CB][2];
#pragma GCC unroll 16
  for (int cb = 0; cb < CB; ++cb) acc[cb][0] = acc[cb][1] = a.bias ? Simd::Set1(a.bias[cb]) : Simd::Zero();
  const int64_t ct = a.dstChannels;
  const Taps* rows[2] = {a.heightTaps, a.nextHeightTaps};
  for (int64_t c = 0; c < a.srcChannels; ++c) {
    for (int i = 0; i < a.depthTaps->count; ++i) {
      const float* plane = a.planes[i] + c * a.channelStride + a.offset;
      const float* wd = a.weights + (c * 3 + a.depthTaps->tap[i]) * 9 * ct;
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) {
        const float* wk = wd + kh * 3 * ct;
        V x[2][3];
#pragma GCC unroll 2
        for (int r = 0; r < 2; ++r) {
          const float* line = plane + rows[r]->source[kh] * a.rowStride;
          if (PerTap) {
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; ++kw) x[r][kw] = Simd::Load(line + kw * a.tapStep);
          } else {
            const V lo = Simd::Load(line), hi = Simd::Load(line + Simd::kLanes);
            x[r][0] = lo;
            x[r][1] = Simd::template Window<1>(line, lo, hi);
            x[r][2] = Simd::template Window<2>(line, lo, hi);
          }
        }
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 16
          for (int cb = 0; cb < CB; ++cb) {
            const V wv = Simd::Set1(wk[kw * ct + cb]);
            acc[cb][0] = Simd::Fma(wv, x[0][kw], acc[cb][0]);
            acc[cb][1] = Simd::Fma(wv, x[1][kw], acc[cb][1]);
          }
      }
    }
  }
#pragma GCC unroll 16
  for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 2
    for (int r = 0; r < 2; ++r) {
      float* out = a.out + cb * a.outChannelStride + r * a.outRowStride;
      if (a.valid == Simd::kLanes) {
        Simd::Store(out, acc[cb][r]);
      } else {
        float tail[Simd::kLanes];
        Simd::Store(tail, acc[cb][r]);
        std::memcpy(out, tail, sizeof(float) * a.valid);
      }
    }
}

// Weight-gradient sums of one (input channel, kd, kh) and a block of output channels over the rows
// of one plane: acc[cb][kw] += gy(co0 + cb, h)[v] · line(sh(h))[v + kw], lane by lane. The lanes are
// added into `sums` (a vector per weight) and summed across only once per chunk.
template <int CB>
void WeightGradBlock(const WeightGradBlockArgs& a) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V acc[CB][3];
#pragma GCC unroll 16
  for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 16
    for (int kw = 0; kw < 3; ++kw) acc[cb][kw] = Simd::Zero();
  for (int64_t h = 0; h < a.height; ++h) {
    const int sh = a.sourceRows[h];
    if (sh < 0) continue;
    const float* line = a.plane + sh * a.rowStride;
    const float* g = a.gy + h * a.span;
    for (int64_t v = 0; v < a.span; v += L) {
      V x[3];
      x[0] = Simd::Load(line + v);
      const V next = Simd::Load(line + v + L);
      x[1] = Simd::template Window<1>(line + v, x[0], next);
      x[2] = Simd::template Window<2>(line + v, x[0], next);
#pragma GCC unroll 16
      for (int cb = 0; cb < CB; ++cb) {
        const V gv = Simd::InRegister(Simd::Load(g + cb * a.gyChannelStride + v));
#pragma GCC unroll 16
        for (int kw = 0; kw < 3; ++kw) acc[cb][kw] = Simd::Fma(gv, x[kw], acc[cb][kw]);
      }
    }
  }
#pragma GCC unroll 16
  for (int kw = 0; kw < 3; ++kw)
#pragma GCC unroll 16
    for (int cb = 0; cb < CB; ++cb) {
      float* s = a.sums + (kw * a.outChannels + cb) * L;
      Simd::Store(s, Simd::Add(Simd::Load(s), acc[cb][kw]));
    }
}

template <bool PerTap, int NV>
ConvBlockFn ConvBlockFor(int cb) {
  switch (cb) {
    case 1: return &ConvBlock<PerTap, 1, NV>;
    case 2: return &ConvBlock<PerTap, 2, NV>;
    case 3: return &ConvBlock<PerTap, 3, NV>;
    case 4: return &ConvBlock<PerTap, 4, NV>;
    case 5: return &ConvBlock<PerTap, 5, NV>;
    case 6: return &ConvBlock<PerTap, 6, NV>;
    case 7: return &ConvBlock<PerTap, 7, NV>;
    default: return &ConvBlock<PerTap, 8, NV>;
  }
}

template <bool PerTap>
ConvBlockFn ConvBlockTwoRowsFor(int cb) {
  switch (cb) {
    case 1: return &ConvBlockTwoRows<PerTap, 1>;
    case 2: return &ConvBlockTwoRows<PerTap, 2>;
    case 3: return &ConvBlockTwoRows<PerTap, 3>;
    case 4: return &ConvBlockTwoRows<PerTap, 4>;
    case 5: return &ConvBlockTwoRows<PerTap, 5>;
    case 6: return &ConvBlockTwoRows<PerTap, 6>;
    case 7: return &ConvBlockTwoRows<PerTap, 7>;
    default: return &ConvBlockTwoRows<PerTap, 8>;
  }
}

template <bool PerTap>
ConvBlockFn ConvBlockFor(int cb, int nv) {
  return nv == 1 ? ConvBlockFor<PerTap, 1>(cb) : ConvBlockFor<PerTap, Simd::kMaxVectors>(cb);
}

WeightGradBlockFn WeightGradBlockFor(int cb) {
  switch (cb) {
    case 1: return &WeightGradBlock<1>;
    case 2: return &WeightGradBlock<2>;
    case 3: return &WeightGradBlock<3>;
    case 4: return &WeightGradBlock<4>;
    case 5: return &WeightGradBlock<5>;
    case 6: return &WeightGradBlock<6>;
    case 7: return &WeightGradBlock<7>;
    default: return &WeightGradBlock<8>;
  }
}

// Output planes [begin, end) of b·D + d: each output row is cut into blocks of output channels and
// chunks of NV vectors along W.
void ConvPlanes(const ConvProblem& p, int64_t begin, int64_t end) {
  constexpr int L = Simd::kLanes;
  const int nv = p.width > L ? Simd::kMaxVectors : 1;
  const int64_t chunk = static_cast<int64_t>(nv) * L;
  const int64_t chunks = (p.width + chunk - 1) / chunk;
  const bool perTap = p.lines == LineKind::kReflectTransposed;
  ChannelBlocks blocks(p.dstChannels, std::min(8, Simd::kConvAccumulators / nv));
  std::vector<ConvBlockFn> fns, twoRowFns;
  for (int64_t i = 0; i < blocks.count; ++i) {
    const int cb = static_cast<int>(blocks.Size(i));
    fns.push_back(perTap ? ConvBlockFor<true>(cb, nv) : ConvBlockFor<false>(cb, nv));
    twoRowFns.push_back(perTap ? ConvBlockTwoRowsFor<true>(cb) : ConvBlockTwoRowsFor<false>(cb));
  }
  // rows of one vector go in pairs where both rows read the three height taps in order (every row
  // but those next to a zero-padded border or a folded reflect-padded one)
  const auto allTaps = [&](int64_t h) {
    const Taps& t = p.heightTaps[h];
    return t.count == 3 && t.tap[0] == 0 && t.tap[1] == 1 && t.tap[2] == 2;
  };
  SourceRing ring(p.src, p.srcChannels, p.depth, p.height, p.width, p.lines, chunks * chunk, L);
  ConvBlockArgs a;
  a.srcChannels = p.srcChannels;
  a.dstChannels = p.dstChannels;
  a.channelStride = ring.channelStride;
  a.rowStride = ring.rowStride;
  a.tapStep = ring.tapStep;
  a.outChannelStride = p.depth * p.height * p.width;
  a.outRowStride = p.width;
  for (int64_t plane = begin; plane < end; ++plane) {
    const int64_t b = plane / p.depth, d = plane % p.depth;
    a.depthTaps = &p.depthTaps[d];
    for (int i = 0; i < a.depthTaps->count; ++i) a.planes[i] = ring.Plane(b, a.depthTaps->source[i]);
    for (int64_t h = 0; h < p.height; ++h) {
      a.heightTaps = &p.heightTaps[h];
      // a row of one vector is one chunk, so a pair of rows runs the same chunk loop
      const bool twoRows = nv == 1 && h + 1 < p.height && allTaps(h) && allTaps(h + 1);
      if (twoRows) a.nextHeightTaps = &p.heightTaps[h + 1];
      const std::vector<ConvBlockFn>& rowFns = twoRows ? twoRowFns : fns;
      for (int64_t i = 0; i < blocks.count; ++i) {
        const int64_t co0 = blocks.Start(i);
        a.weights = p.weights + co0;
        a.bias = p.bias ? p.bias + co0 : nullptr;
        float* rowOut = p.dst + (((b * p.dstChannels + co0) * p.depth + d) * p.height + h) * p.width;
        for (int64_t c = 0; c < chunks; ++c) {
          a.offset = c * chunk;
          a.out = rowOut + a.offset;
          a.valid = static_cast<int>(std::min(chunk, p.width - a.offset));
          rowFns[i](a);
        }
      }
      if (twoRows) ++h;
    }
  }
}

// Weight-gradient chunks [begin, end), fixed ranges of planes: each chunk's sums go to its own row of
// `partials`, so the result does not depend on how the chunks are spread over threads.
void WeightGradChunks(const WeightGradProblem& p, int64_t begin, int64_t end) {
  constexpr int L = Simd::kLanes;
  const int64_t span = (p.width + L - 1) / L * L;
  const int64_t weights = p.outChannels * p.inChannels * 27;
  ChannelBlocks blocks(p.outChannels, Simd::kWeightGradBlock);
  std::vector<WeightGradBlockFn> fns;
  for (int64_t i = 0; i < blocks.count; ++i) fns.push_back(WeightGradBlockFor(static_cast<int>(blocks.Size(i))));
  SourceRing ring(p.x, p.inChannels, p.depth, p.height, p.width, p.lines, span, L);
  // gy of one plane, rows padded with zeros to whole vectors; a cache line between channels keeps a
  // power-of-two plane size from mapping every channel's row to the same L1 set
  const int64_t gyChannelStride = p.height * span + 16;
  AlignedFloats gy(p.outChannels * gyChannelStride);
  AlignedFloats sums(weights * L);
  WeightGradBlockArgs a;
  a.height = p.height;
  a.rowStride = ring.rowStride;
  a.span = span;
  a.gyChannelStride = gyChannelStride;
  a.outChannels = p.outChannels;
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    std::fill(sums.data(), sums.data() + weights * L, 0.0f);
    for (int64_t plane = p.chunkStart[chunk]; plane < p.chunkStart[chunk + 1]; ++plane) {
      const int64_t b = plane / p.depth, d = plane % p.depth;
      for (int64_t co = 0; co < p.outChannels; ++co)
        for (int64_t h = 0; h < p.height; ++h)
          std::memcpy(gy.data() + co * gyChannelStride + h * span,
                      p.gy + (((b * p.outChannels + co) * p.depth + d) * p.height + h) * p.width, sizeof(float) * p.width);
      for (int64_t c = 0; c < p.inChannels; ++c)
        for (int kd = 0; kd < 3; ++kd) {
          const int sd = p.depthSource[kd * p.depth + d];
          if (sd < 0) continue;
          a.plane = ring.Plane(b, sd) + c * ring.channelStride;
          for (int kh = 0; kh < 3; ++kh) {
            a.sourceRows = p.heightSource + kh * p.height;
            for (int64_t i = 0; i < blocks.count; ++i) {
              const int64_t co0 = blocks.Start(i);
              a.gy = gy.data() + co0 * gyChannelStride;
              a.sums = sums.data() + (((c * 3 + kd) * 3 + kh) * 3 * p.outChannels + co0) * L;
              fns[i](a);
            }
          }
        }
    }
    // the sums are laid out (c, kd, kh, kw, co) × lanes; the gradient (co, c, kd, kh, kw)
    float* out = p.partials + chunk * weights;
    for (int64_t c = 0; c < p.inChannels; ++c)
      for (int64_t t = 0; t < 27; ++t)
        for (int64_t co = 0; co < p.outChannels; ++co) {
          const float* lanes = sums.data() + ((c * 27 + t) * p.outChannels + co) * L;
          float total = 0.0f;
          for (int l = 0; l < L; ++l) total += lanes[l];
          out[(co * p.inChannels + c) * 27 + t] = total;
        }
  }
}
