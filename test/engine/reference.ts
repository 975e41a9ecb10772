// Plain-loop reference implementations of the engine's volumetric operations, written from their
// definitions, for the value and gradient tests. Arrays are row-major (B, C, D, H, W).

export type Shape5 = [number, number, number, number, number];
export type Triple = [number, number, number];

const index5 = (s: Shape5, b: number, c: number, d: number, h: number, w: number) => (((b * s[1] + c) * s[2] + d) * s[3] + h) * s[4] + w;

/**
 * Cross-correlation as in deep-learning convolutions:
 * out[b, o, z, y, x] = bias[o] + Σ_{c in o's group, k} in[b, c, z·s − p + k·dil, …] · w[o, c − group start, k…].
 */
export function conv3dLoop(
  input: ArrayLike<number>,
  inShape: Shape5,
  weight: ArrayLike<number>,
  wShape: Shape5,
  bias: ArrayLike<number> | null,
  opts: { stride: Triple; padding: Triple; dilation: Triple; groups: number },
): { data: Float64Array; shape: Shape5 } {
  const [B, , D, H, W] = inShape;
  const [Cout, CinG, KD, KH, KW] = wShape;
  const { stride: s, padding: p, dilation: dl, groups } = opts;
  const outSize = (n: number, k: number, i: number) => Math.floor((n + 2 * p[i] - dl[i] * (k - 1) - 1) / s[i]) + 1;
  const shape: Shape5 = [B, Cout, outSize(D, KD, 0), outSize(H, KH, 1), outSize(W, KW, 2)];
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
  const coutG = Cout / groups;
  for (let b = 0; b < B; b++)
    for (let o = 0; o < Cout; o++) {
      const g = Math.floor(o / coutG);
      for (let z = 0; z < shape[2]; z++)
        for (let y = 0; y < shape[3]; y++)
          for (let x = 0; x < shape[4]; x++) {
            let acc = bias ? bias[o] : 0;
            for (let cl = 0; cl < CinG; cl++)
              for (let kd = 0; kd < KD; kd++)
                for (let kh = 0; kh < KH; kh++)
                  for (let kw = 0; kw < KW; kw++) {
                    const iz = z * s[0] - p[0] + kd * dl[0];
                    const iy = y * s[1] - p[1] + kh * dl[1];
                    const ix = x * s[2] - p[2] + kw * dl[2];
                    if (iz < 0 || iz >= D || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                    acc += input[index5(inShape, b, g * CinG + cl, iz, iy, ix)] * weight[index5(wShape, o, cl, kd, kh, kw)];
                  }
            data[index5(shape, b, o, z, y, x)] = acc;
          }
    }
  return { data, shape };
}

/**
 * Transposed convolution by scattering: each input voxel adds w[c, o − group start, k…] · in[b, c, i…]
 * to out[b, o, i·s − p + k·dil, …]. Output size (n − 1)·s − 2p + dil·(k − 1) + outputPadding + 1.
 */
export function convTranspose3dLoop(
  input: ArrayLike<number>,
  inShape: Shape5,
  weight: ArrayLike<number>,
  wShape: Shape5,
  bias: ArrayLike<number> | null,
  opts: { stride: Triple; padding: Triple; outputPadding: Triple; dilation: Triple; groups: number },
): { data: Float64Array; shape: Shape5 } {
  const [B, Cin, D, H, W] = inShape;
  const [, CoutG, KD, KH, KW] = wShape;
  const { stride: s, padding: p, outputPadding: op, dilation: dl, groups } = opts;
  const Cout = CoutG * groups;
  const outSize = (n: number, k: number, i: number) => (n - 1) * s[i] - 2 * p[i] + dl[i] * (k - 1) + op[i] + 1;
  const shape: Shape5 = [B, Cout, outSize(D, KD, 0), outSize(H, KH, 1), outSize(W, KW, 2)];
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
  const cinG = Cin / groups;
  for (let b = 0; b < B; b++)
    for (let o = 0; o < Cout; o++)
      for (let z = 0; z < shape[2]; z++)
        for (let y = 0; y < shape[3]; y++)
          for (let x = 0; x < shape[4]; x++) data[index5(shape, b, o, z, y, x)] = bias ? bias[o] : 0;
  for (let b = 0; b < B; b++)
    for (let c = 0; c < Cin; c++) {
      const g = Math.floor(c / cinG);
      for (let z = 0; z < D; z++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const v = input[index5(inShape, b, c, z, y, x)];
            for (let ol = 0; ol < CoutG; ol++)
              for (let kd = 0; kd < KD; kd++)
                for (let kh = 0; kh < KH; kh++)
                  for (let kw = 0; kw < KW; kw++) {
                    const oz = z * s[0] - p[0] + kd * dl[0];
                    const oy = y * s[1] - p[1] + kh * dl[1];
                    const ox = x * s[2] - p[2] + kw * dl[2];
                    if (oz < 0 || oz >= shape[2] || oy < 0 || oy >= shape[3] || ox < 0 || ox >= shape[4]) continue;
                    data[index5(shape, b, g * CoutG + ol, oz, oy, ox)] += v * weight[index5(wShape, c, ol, kd, kh, kw)];
                  }
          }
    }
  return { data, shape };
}

/** Mirror padding without repeating the edge: index −1 reads 1, index n reads n − 2. */
export function reflectPad3d(input: ArrayLike<number>, shape: Shape5, pad: Triple): { data: Float64Array; shape: Shape5 } {
  const [B, C, D, H, W] = shape;
  const out: Shape5 = [B, C, D + 2 * pad[0], H + 2 * pad[1], W + 2 * pad[2]];
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const data = new Float64Array(out.reduce((a, b) => a * b, 1));
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let z = 0; z < out[2]; z++)
        for (let y = 0; y < out[3]; y++)
          for (let x = 0; x < out[4]; x++)
            data[index5(out, b, c, z, y, x)] = input[index5(shape, b, c, reflect(z - pad[0], D), reflect(y - pad[1], H), reflect(x - pad[2], W))];
  return { data, shape: out };
}

/** Trilinear resize with align_corners = true: output index i samples input position i·(n − 1)/(m − 1). */
export function trilinearAlignedLoop(input: ArrayLike<number>, shape: Shape5, size: Triple): Float64Array {
  const [B, C, D, H, W] = shape;
  const inSizes = [D, H, W];
  const coordinate = (i: number, axis: number) => {
    const n = inSizes[axis];
    const m = size[axis];
    const pos = m === 1 ? 0 : (i * (n - 1)) / (m - 1);
    const lo = Math.min(Math.floor(pos), n - 1);
    const hi = Math.min(lo + 1, n - 1);
    return { lo, hi, t: pos - lo };
  };
  const out = new Float64Array(B * C * size[0] * size[1] * size[2]);
  const outShape: Shape5 = [B, C, ...size];
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let z = 0; z < size[0]; z++)
        for (let y = 0; y < size[1]; y++)
          for (let x = 0; x < size[2]; x++) {
            const cz = coordinate(z, 0);
            const cy = coordinate(y, 1);
            const cx = coordinate(x, 2);
            let acc = 0;
            for (const [iz, wz] of [[cz.lo, 1 - cz.t], [cz.hi, cz.t]])
              for (const [iy, wy] of [[cy.lo, 1 - cy.t], [cy.hi, cy.t]])
                for (const [ix, wx] of [[cx.lo, 1 - cx.t], [cx.hi, cx.t]]) acc += wz * wy * wx * input[index5(shape, b, c, iz, iy, ix)];
            out[index5(outShape, b, c, z, y, x)] = acc;
          }
  return out;
}

/** erf by its Maclaurin series 2/√π Σ (−1)ⁿ x²ⁿ⁺¹ / (n! (2n + 1)), accurate to ~1e-14 for |x| ≤ 3. */
export function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
