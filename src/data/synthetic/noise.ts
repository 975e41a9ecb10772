/**
 * Smooth random fields for the synthetic phantom: seeded 3D gradient noise on a
 * periodic lattice, evaluated point by point so that callers only pay for the
 * voxels they need.
 */

import type { Rng } from '../random.ts';

/** Lattice size per axis; coordinates wrap around it, so fields are periodic with this period (in lattice cells). */
const LATTICE = 16;
const LATTICE_MASK = LATTICE - 1;

/** Derivative of `fade`. */
function fadeSlope(t: number): number {
  return 30 * t * t * (t - 1) * (t - 1);
}

/** Quintic fade keeps the field's second derivative continuous, so iso-surfaces have no lattice creases. */
function fade(t: number): number {
  return t * t * t * (t * (t * 6 - 15) + 10);
}

/**
 * Gradient noise with zero mean and values roughly in [-1, 1] (standard deviation about 0.2 to 0.25).
 * `cellSize` is the feature size in voxels: the field changes sign about once per cell.
 */
export class GradientNoise {
  private readonly gradients: Float32Array; /* (LATTICE^3, 3) unit vectors */
  private readonly inverseCell: number;
  private readonly offset: [number, number, number];
  constructor(rng: Rng, cellSize: number) {
    if (!(cellSize > 0)) throw new Error(`GradientNoise: cell size must be positive, got ${cellSize}`);
    this.inverseCell = 1 / cellSize;
    this.gradients = new Float32Array(LATTICE * LATTICE * LATTICE * 3);
    for (let i = 0; i < LATTICE * LATTICE * LATTICE; i++) {
      // Uniform direction on the sphere: uniform z and uniform azimuth.
      const z = 2 * rng() - 1;
      const azimuth = 2 * Math.PI * rng();
      const radial = Math.sqrt(1 - z * z);
      this.gradients[3 * i] = radial * Math.cos(azimuth);
      this.gradients[3 * i + 1] = radial * Math.sin(azimuth);
      this.gradients[3 * i + 2] = z;
    }
    // A random lattice offset so that integer voxel positions do not sit on lattice nodes (where the field is 0).
    this.offset = [rng() * LATTICE, rng() * LATTICE, rng() * LATTICE];
  }

  /** Field value at a point given in voxel coordinates. */
  at(x: number, y: number, z: number): number {
    const px = x * this.inverseCell + this.offset[0];
    const py = y * this.inverseCell + this.offset[1];
    const pz = z * this.inverseCell + this.offset[2];
    const fx = Math.floor(px);
    const fy = Math.floor(py);
    const fz = Math.floor(pz);
    const tx = px - fx;
    const ty = py - fy;
    const tz = pz - fz;
    const c000 = this.ramp(fx, fy, fz, tx, ty, tz);
    const c100 = this.ramp(fx + 1, fy, fz, tx - 1, ty, tz);
    const c010 = this.ramp(fx, fy + 1, fz, tx, ty - 1, tz);
    const c110 = this.ramp(fx + 1, fy + 1, fz, tx - 1, ty - 1, tz);
    const c001 = this.ramp(fx, fy, fz + 1, tx, ty, tz - 1);
    const c101 = this.ramp(fx + 1, fy, fz + 1, tx - 1, ty, tz - 1);
    const c011 = this.ramp(fx, fy + 1, fz + 1, tx, ty - 1, tz - 1);
    const c111 = this.ramp(fx + 1, fy + 1, fz + 1, tx - 1, ty - 1, tz - 1);
    const ux = fade(tx);
    const uy = fade(ty);
    const uz = fade(tz);
    const a00 = c000 + ux * (c100 - c000);
    const a10 = c010 + ux * (c110 - c010);
    const a01 = c001 + ux * (c101 - c001);
    const a11 = c011 + ux * (c111 - c011);
    const b0 = a00 + uy * (a10 - a00);
    const b1 = a01 + uy * (a11 - a01);
    return b0 + uz * (b1 - b0);
  }

  /** Field value at a point, with its gradient (per voxel) written to `gradient`. */
  atWithGradient(x: number, y: number, z: number, gradient: Float64Array /* (3) */): number {
    const px = x * this.inverseCell + this.offset[0];
    const py = y * this.inverseCell + this.offset[1];
    const pz = z * this.inverseCell + this.offset[2];
    const fx = Math.floor(px);
    const fy = Math.floor(py);
    const fz = Math.floor(pz);
    const tx = px - fx;
    const ty = py - fy;
    const tz = pz - fz;
    const ux = fade(tx);
    const uy = fade(ty);
    const uz = fade(tz);
    const vx = 1 - ux;
    const vy = 1 - uy;
    const vz = 1 - uz;
    let value = 0;
    let gx = 0;
    let gy = 0;
    let gz = 0;
    // Value = Σ weight · ramp. Gradient by the product rule: Σ weight · ∇ramp (the corner's gradient vector)
    // plus Σ ∇weight · ramp, where only the fade of each axis contributes to that axis.
    for (let corner = 0; corner < 8; corner++) {
      const i = corner & 1;
      const j = (corner >> 1) & 1;
      const k = corner >> 2;
      const offset = this.latticeOffset(fx + i, fy + j, fz + k);
      const g = this.gradients;
      const ramp = g[offset]! * (tx - i) + g[offset + 1]! * (ty - j) + g[offset + 2]! * (tz - k);
      const wx = i === 1 ? ux : vx;
      const wy = j === 1 ? uy : vy;
      const wz = k === 1 ? uz : vz;
      const weight = wx * wy * wz;
      value += weight * ramp;
      gx += weight * g[offset]! + (i === 1 ? 1 : -1) * wy * wz * ramp * fadeSlope(tx);
      gy += weight * g[offset + 1]! + (j === 1 ? 1 : -1) * wx * wz * ramp * fadeSlope(ty);
      gz += weight * g[offset + 2]! + (k === 1 ? 1 : -1) * wx * wy * ramp * fadeSlope(tz);
    }
    gradient[0] = gx * this.inverseCell;
    gradient[1] = gy * this.inverseCell;
    gradient[2] = gz * this.inverseCell;
    return value;
  }

  /** Index of a lattice node's gradient in `gradients` (the lattice wraps around). */
  private latticeOffset(ix: number, iy: number, iz: number): number {
    return 3 * ((ix & LATTICE_MASK) + LATTICE * ((iy & LATTICE_MASK) + LATTICE * (iz & LATTICE_MASK)));
  }

  /** A corner's ramp: its gradient dotted with the offset from that corner. */
  private ramp(ix: number, iy: number, iz: number, dx: number, dy: number, dz: number): number {
    const offset = this.latticeOffset(ix, iy, iz);
    const g = this.gradients;
    return g[offset]! * dx + g[offset + 1]! * dy + g[offset + 2]! * dz;
  }
}

/**
 * Fills `out` with two independent standard normal deviates by Marsaglia's
 * polar method (Box–Muller without trigonometry).
 */
export function gaussianPair(rng: Rng, out: Float64Array /* (2) */): void {
  let u: number;
  let v: number;
  let radiusSquared: number;
  do {
    u = 2 * rng() - 1;
    v = 2 * rng() - 1;
    radiusSquared = u * u + v * v;
  } while (radiusSquared >= 1 || radiusSquared === 0);
  const factor = Math.sqrt((-2 * Math.log(radiusSquared)) / radiusSquared);
  out[0] = u * factor;
  out[1] = v * factor;
}

/** One standard normal deviate (the first of a polar-method pair). */
export function gaussian(rng: Rng): number {
  const pair = new Float64Array(2);
  gaussianPair(rng, pair);
  return pair[0]!;
}

/** Hermite smoothstep from 0 at `edge0` to 1 at `edge1`. */
export function smoothstep(edge0: number, edge1: number, value: number): number {
  const t = Math.min(1, Math.max(0, (value - edge0) / (edge1 - edge0)));
  return t * t * (3 - 2 * t);
}

export function square(value: number): number {
  return value * value;
}
