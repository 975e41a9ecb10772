// The loops of the fused instance norm + LeakyReLU, written once for every instruction set. norm_act.cc
// includes this file once per instruction set, inside a namespace that defines `Simd` and under that
// set's target pragma; hence no include guard. Each loop runs two vectors at a time (two independent
// sums), then the leftover elements one by one; the sums finish in double.

// The sum of a vector's lanes, in double.
double LaneSum(typename Simd::V v) {
  float lanes[Simd::kLanes];
  Simd::Store(lanes, v);
  double sum = 0.0;
  for (int l = 0; l < Simd::kLanes; ++l) sum += lanes[l];
  return sum;
}

Moments InstanceMoments(const float* x, int64_t n, double eps) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const int64_t whole = n / (2 * L) * (2 * L);
  V s0 = Simd::Zero(), s1 = Simd::Zero();
  for (int64_t i = 0; i < whole; i += 2 * L) {
    s0 = Simd::Add(s0, Simd::Load(x + i));
    s1 = Simd::Add(s1, Simd::Load(x + i + L));
  }
  double sum = LaneSum(s0) + LaneSum(s1);
  for (int64_t i = whole; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  const V m = Simd::Set1(mean);
  V q0 = Simd::Zero(), q1 = Simd::Zero();
  for (int64_t i = 0; i < whole; i += 2 * L) {
    const V a = Simd::Sub(Simd::Load(x + i), m), b = Simd::Sub(Simd::Load(x + i + L), m);
    q0 = Simd::Fma(a, a, q0);
    q1 = Simd::Fma(b, b, q1);
  }
  double squares = LaneSum(q0) + LaneSum(q1);
  for (int64_t i = whole; i < n; ++i) squares += (x[i] - mean) * (x[i] - mean);
  return {mean, static_cast<float>(1.0 / std::sqrt(squares / n + eps))};
}

void Forward(const float* x, float* y, int64_t n, Moments mo, float slope) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const V m = Simd::Set1(mo.mean), r = Simd::Set1(mo.rstd), s = Simd::Set1(slope);
  const int64_t whole = n / L * L;
  for (int64_t i = 0; i < whole; i += L) {
    const V t = Simd::Mul(Simd::Sub(Simd::Load(x + i), m), r);
    Simd::Store(y + i, Simd::WherePositive(t, t, Simd::Mul(t, s)));
  }
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    y[i] = t > 0 ? t : t * slope;
  }
}

void Backward(const float* x, const float* gy, float* gx, int64_t n, Moments mo, float slope) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const V m = Simd::Set1(mo.mean), r = Simd::Set1(mo.rstd), s = Simd::Set1(slope), one = Simd::Set1(1.0f);
  const int64_t whole = n / L * L;
  V sg = Simd::Zero(), sgx = Simd::Zero();
  for (int64_t i = 0; i < whole; i += L) {
    const V t = Simd::Mul(Simd::Sub(Simd::Load(x + i), m), r);
    const V g = Simd::Mul(Simd::Load(gy + i), Simd::WherePositive(t, one, s));
    sg = Simd::Add(sg, g);
    sgx = Simd::Fma(g, t, sgx);
  }
  double sumG = LaneSum(sg), sumGx = LaneSum(sgx);
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    const float g = gy[i] * (t > 0 ? 1.0f : slope);
    sumG += g;
    sumGx += g * t;
  }
  const float meanG = static_cast<float>(sumG / n), meanGx = static_cast<float>(sumGx / n);
  const V mg = Simd::Set1(meanG), mgx = Simd::Set1(meanGx);
  for (int64_t i = 0; i < whole; i += L) {
    const V t = Simd::Mul(Simd::Sub(Simd::Load(x + i), m), r);
    const V g = Simd::Mul(Simd::Load(gy + i), Simd::WherePositive(t, one, s));
    Simd::Store(gx + i, Simd::Mul(r, Simd::Sub(Simd::Sub(g, mg), Simd::Mul(t, mgx))));
  }
  for (int64_t i = whole; i < n; ++i) {
    const float t = (x[i] - mo.mean) * mo.rstd;
    const float g = gy[i] * (t > 0 ? 1.0f : slope);
    gx[i] = mo.rstd * (g - meanG - t * meanGx);
  }
}
