/**
 * Smooth random fields for the synthetic phantom: seeded 3D gradient noise on a
 * periodic lattice, evaluated point by point so that callers only pay for the
 * voxels they need.
 */

import type { Rng } from '../random.ts';

/** Lattice size per axis; coordinates wrap around it, so fields are periodic with this period (in lattice cells). */
const LATTICE = 32;
const LATTICE_MASK = LATTICE - 1;

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
    const x0 = fx & LATTICE_MASK;
    const y0 = fy & LATTICE_MASK;
    const z0 = fz & LATTICE_MASK;
    const x1 = (x0 + 1) & LATTICE_MASK;
    const y1 = (y0 + 1) & LATTICE_MASK;
    const z1 = (z0 + 1) & LATTICE_MASK;
    const ux = fade(tx);
    const uy = fade(ty);
    const uz = fade(tz);
    const c000 = this.corner(x0, y0, z0, tx, ty, tz);
    const c100 = this.corner(x1, y0, z0, tx - 1, ty, tz);
    const c010 = this.corner(x0, y1, z0, tx, ty - 1, tz);
    const c110 = this.corner(x1, y1, z0, tx - 1, ty - 1, tz);
    const c001 = this.corner(x0, y0, z1, tx, ty, tz - 1);
    const c101 = this.corner(x1, y0, z1, tx - 1, ty, tz - 1);
    const c011 = this.corner(x0, y1, z1, tx, ty - 1, tz - 1);
    const c111 = this.corner(x1, y1, z1, tx - 1, ty - 1, tz - 1);
    const a00 = c000 + ux * (c100 - c000);
    const a10 = c010 + ux * (c110 - c010);
    const a01 = c001 + ux * (c101 - c001);
    const a11 = c011 + ux * (c111 - c011);
    const b0 = a00 + uy * (a10 - a00);
    const b1 = a01 + uy * (a11 - a01);
    return b0 + uz * (b1 - b0);
  }

  /** Contribution of one lattice corner: its gradient dotted with the offset from that corner. */
  private corner(ix: number, iy: number, iz: number, dx: number, dy: number, dz: number): number {
    const k = 3 * (ix + LATTICE * (iy + LATTICE * iz));
    const g = this.gradients;
    return g[k]! * dx + g[k + 1]! * dy + g[k + 2]! * dz;
  }
}

/** Standard normal deviate by the Box–Muller transform (one of the pair; simple and deterministic). */
export function gaussian(rng: Rng): number {
  const u = 1 - rng(); // (0, 1], keeps the logarithm finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Hermite smoothstep from 0 at `edge0` to 1 at `edge1`. */
export function smoothstep(edge0: number, edge1: number, value: number): number {
  const t = Math.min(1, Math.max(0, (value - edge0) / (edge1 - edge0)));
  return t * t * (3 - 2 * t);
}
