/**
 * A glioma for the synthetic phantom: an irregular core (a few merged, randomly
 * oriented ellipsoids deformed by a smooth noise field) with a necrotic centre
 * and an enhancing rim with gaps (high grade), or a non-enhancing core with at
 * most tiny enhancing spots (low grade); oedema around it that reaches far into
 * white matter and hardly into cortex or CSF; and a mass effect that pushes the
 * surrounding anatomy away.
 */
import { uniform, type Rng } from '../random.ts';
import type { BrainAnatomy, Displacement, HealthyTissue } from './anatomy.ts';
import { GradientNoise, gaussian, smoothstep } from './noise.ts';

export type TumourGrade = 'high' | 'low';

/**
 * Share of a data set's cases that are low grade (no or only tiny enhancing tumour): one in five, about the BraTS 2015
 * mix of HGG and LGG (220 and 54). A fixed share rather than a per-case draw, so that a small data set cannot end up
 * with none (docs/learning.md, "Representative data").
 */
export const LOW_GRADE_SHARE = 0.2;

/** Grade of case `index` (0-based) of a data set: every case where the running count of LOW_GRADE_SHARE × cases steps up. */
export function gradeOfCase(index: number): TumourGrade {
  return Math.floor((index + 1) * LOW_GRADE_SHARE) > Math.floor(index * LOW_GRADE_SHARE) ? 'low' : 'high';
}

/** Tumour compartments in one voxel. */
export interface TumourSample {
  /** Fraction of the voxel occupied by tumour core (necrosis + enhancing + non-enhancing). */
  core: number;
  /** Shares of the core; they sum to 1. */
  necrosis: number;
  enhancing: number;
  nonEnhancing: number;
  /** Fraction of the voxel's parenchyma (grey and white matter) that is oedematous. */
  edema: number;
  /** 1 at the core boundary, falling to 0 at the oedema front: oedema is most intense next to the core. */
  edemaProximity: number;
}

export function emptyTumourSample(): TumourSample {
  return { core: 0, necrosis: 0, enhancing: 0, nonEnhancing: 0, edema: 0, edemaProximity: 0 };
}

/** One lobe of the core: an ellipsoid with arbitrary orientation. */
interface Lobe {
  centre: [number, number, number];
  /** Rows are the unit principal axes. */
  axes: [number, number, number][];
  radii: [number, number, number];
}

/** A uniformly random rotation, as the rows of a matrix, from a normalised Gaussian quaternion. */
function randomAxes(rng: Rng): [number, number, number][] {
  let [a, b, c, d] = [gaussian(rng), gaussian(rng), gaussian(rng), gaussian(rng)];
  const norm = Math.hypot(a, b, c, d) || 1;
  [a, b, c, d] = [a / norm, b / norm, c / norm, d / norm];
  return [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
  ];
}

/** Depth of a point inside a lobe, voxels along the ray from its centre (negative outside). */
function lobeDepth(lobe: Lobe, x: number, y: number, z: number): number {
  const dx = x - lobe.centre[0];
  const dy = y - lobe.centre[1];
  const dz = z - lobe.centre[2];
  let rhoSquared = 0;
  for (let axis = 0; axis < 3; axis++) {
    const row = lobe.axes[axis]!;
    const along = (row[0] * dx + row[1] * dy + row[2] * dz) / lobe.radii[axis]!;
    rhoSquared += along * along;
  }
  const rho = Math.sqrt(rhoSquared);
  const distance = Math.sqrt(dx * dx + dy * dy + dz * dz);
  if (rho < 1e-9) return Math.min(...lobe.radii);
  return ((1 - rho) * distance) / rho;
}

export class TumourModel implements Displacement {
  readonly grade: TumourGrade;
  /** Centre of the main lobe, voxels. */
  readonly centre: readonly [number, number, number];
  /** Typical core radius, voxels. */
  readonly coreRadius: number;
  private readonly lobes: Lobe[];
  private readonly deformation: GradientNoise;
  private readonly rimNoise: GradientNoise;
  private readonly enhancementNoise: GradientNoise;
  private readonly edemaNoise: GradientNoise;
  /** Thickness of the viable rim around the necrotic centre, voxels; Infinity for no necrosis. */
  private readonly rimThickness: number;
  /** Enhancement where the enhancement noise exceeds this; Infinity for none. */
  private readonly enhancementThreshold: number;
  private readonly edemaReach: number;
  /** Cube of the radius of the sphere whose volume the tumour pushes aside, voxels³. */
  private readonly massVolume: number;
  /** Midline position (voxels along i) and the tumour's side of it (±1). */
  private readonly midlineX: number;
  private readonly side: number;
  /** Half-size of the cube around `centre` outside which the tumour has no effect except the mass effect. */
  private readonly reach: number;

  constructor(rng: Rng, anatomy: BrainAnatomy, grade: TumourGrade) {
    this.grade = grade;
    const low = this.grade === 'low';
    const scale = anatomy.scale;
    this.coreRadius = Math.max(2.5, scale * (low ? uniform(rng, 0.2, 0.42) : uniform(rng, 0.17, 0.4)));
    this.centre = placeTumour(rng, anatomy, this.coreRadius);
    this.midlineX = anatomy.centre[0];
    this.side = this.centre[0] >= this.midlineX ? 1 : -1;
    const radius = this.coreRadius;

    this.lobes = [{ centre: [...this.centre], axes: randomAxes(rng), radii: [0, 1, 2].map(() => radius * uniform(rng, 0.65, 1)) as Lobe['radii'] }];
    const extraLobes = 1 + Math.floor(rng() * 3);
    let extent = radius;
    for (let i = 0; i < extraLobes; i++) {
      const direction = randomAxes(rng)[0]!;
      const offset = radius * uniform(rng, 0.3, 0.75);
      const radii = [0, 1, 2].map(() => radius * uniform(rng, 0.35, 0.7)) as Lobe['radii'];
      this.lobes.push({
        centre: [0, 1, 2].map((axis) => this.centre[axis]! + offset * direction[axis]!) as Lobe['centre'],
        axes: randomAxes(rng),
        radii,
      });
      extent = Math.max(extent, offset + Math.max(...radii));
    }
    this.deformation = new GradientNoise(rng, radius * 0.8);
    this.rimNoise = new GradientNoise(rng, radius * 0.5);
    this.enhancementNoise = new GradientNoise(rng, radius * 0.45);
    this.edemaNoise = new GradientNoise(rng, Math.max(3, radius * 0.9));

    if (low) {
      this.rimThickness = Infinity;
      this.enhancementThreshold = rng() < 0.5 ? Infinity : uniform(rng, 0.3, 0.4);
      this.edemaReach = 1 + radius * uniform(rng, 0.15, 0.5);
      this.massVolume = (radius * uniform(rng, 0.3, 0.6)) ** 3;
    } else {
      // About one high-grade tumour in eight is solidly enhancing, without a necrotic centre.
      const solid = rng() < 0.12;
      this.rimThickness = solid ? Infinity : Math.max(1.2, radius * uniform(rng, 0.15, 0.35));
      this.enhancementThreshold = uniform(rng, -0.3, 0);
      this.edemaReach = 1.5 + radius * uniform(rng, 0.5, 1.5);
      this.massVolume = (radius * uniform(rng, 0.45, 0.8)) ** 3;
    }
    this.reach = extent + 0.5 * radius + 1.6 * this.edemaReach + 3;
  }

  /**
   * Where the healthy anatomy now at (x, y, z) came from before the tumour
   * grew: displacement that makes room for a sphere of volume (4π/3)·massVolume,
   * preserving volume outside it (r_before³ = r_now³ − R³) and so fading
   * with distance.
   */
  displacedSource(x: number, y: number, z: number, out: [number, number, number]): void {
    const dx = x - this.centre[0];
    const dy = y - this.centre[1];
    const dz = z - this.centre[2];
    const distance = Math.sqrt(dx * dx + dy * dy + dz * dz);
    const inner = distance * distance * distance - this.massVolume;
    const shrink = distance < 1e-9 || inner <= 0 ? 0 : Math.cbrt(inner) / distance;
    out[0] = this.centre[0] + dx * shrink;
    out[1] = this.centre[1] + dy * shrink;
    out[2] = this.centre[2] + dz * shrink;
  }

  /** Tumour compartments at voxel (x, y, z), given the healthy tissue there (oedema follows white matter). */
  sample(x: number, y: number, z: number, healthy: HealthyTissue, out: TumourSample): void {
    out.core = 0;
    out.necrosis = 0;
    out.enhancing = 0;
    out.nonEnhancing = 0;
    out.edema = 0;
    out.edemaProximity = 0;
    if (
      Math.abs(x - this.centre[0]) > this.reach ||
      Math.abs(y - this.centre[1]) > this.reach ||
      Math.abs(z - this.centre[2]) > this.reach
    ) {
      return;
    }
    let depth = -Infinity;
    for (const lobe of this.lobes) depth = Math.max(depth, lobeDepth(lobe, x, y, z));
    depth += 0.6 * this.coreRadius * this.deformation.at(x, y, z);

    out.core = smoothstep(-0.5, 0.5, depth);
    if (out.core > 0) {
      if (this.rimThickness !== Infinity) {
        const rim = Math.max(0.6, this.rimThickness * (1 + 1.5 * this.rimNoise.at(x, y, z)));
        out.necrosis = smoothstep(rim - 0.6, rim + 0.6, depth);
      }
      const enhancing = this.enhancementThreshold === Infinity
        ? 0
        : smoothstep(this.enhancementThreshold - 0.04, this.enhancementThreshold + 0.04, this.enhancementNoise.at(x, y, z));
      out.enhancing = (1 - out.necrosis) * enhancing;
      out.nonEnhancing = 1 - out.necrosis - out.enhancing;
    }
    if (out.core < 1) {
      // Oedema spreads along white-matter tracts; cortex and deep nuclei resist it, CSF spaces stop it.
      // The falx keeps it mostly on its own side of the midline (only the corpus callosum connects the hemispheres).
      const ownSide = 0.2 + 0.8 * smoothstep(-2, 2, (x - this.midlineX) * this.side);
      const permeability = (healthy.whiteMatter + 0.6 * healthy.deepGreyMatter + 0.2 * healthy.greyMatter) * ownSide;
      const localReach = this.edemaReach * permeability * Math.max(0, 1 + 1.2 * this.edemaNoise.at(x, y, z));
      out.edema = smoothstep(-localReach - 1, -localReach + 1, depth);
      out.edemaProximity = Math.min(1, Math.max(0, 1 + depth / this.edemaReach));
    }
  }
}

/**
 * A core centre inside the cerebrum: either hemisphere, superficial or deep,
 * not in a ventricle and far enough from the surface that most of the core
 * lies inside the brain.
 */
function placeTumour(rng: Rng, anatomy: BrainAnatomy, coreRadius: number): [number, number, number] {
  const [cx, cy, cz] = anatomy.centre;
  const [ax, ay, az] = anatomy.semiAxes;
  for (let attempt = 0; attempt < 100; attempt++) {
    const side = rng() < 0.5 ? -1 : 1;
    const candidate: [number, number, number] = [
      cx + side * uniform(rng, 0.15, 0.7) * ax,
      cy + uniform(rng, -0.7, 0.75) * ay,
      cz + uniform(rng, -0.35, 0.6) * az,
    ];
    const clearOfSurface = anatomy.cerebrumDepth(...candidate) > 0.6 * coreRadius + 1;
    const clearOfVentricles = anatomy.ventricleDepth(...candidate) < -0.5 * coreRadius;
    if (clearOfSurface && clearOfVentricles) return candidate;
  }
  // Deep right frontal white matter: clear of the ventricles and the surface in every phantom.
  return [cx + 0.35 * ax, cy + 0.1 * ay, cz + 0.1 * az];
}
