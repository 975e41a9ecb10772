/**
 * Healthy brain anatomy of the synthetic phantom, as partial-volume tissue
 * fractions per voxel: a skull-stripped cerebrum (deformed ellipsoid with
 * frontal narrowing and a flattened base), cerebellum and brainstem; a cortical
 * grey-matter ribbon folded by radial sulci, the interhemispheric and Sylvian
 * fissures, lateral and third ventricles with choroid plexus, and deep grey
 * nuclei (caudate, lentiform nucleus, thalamus) inside the white matter.
 *
 * Geometry lives in normalised cerebrum coordinates (u, v, w) = offset from the
 * cerebrum centre divided by its semi-axes, along (i → right, j → anterior,
 * k → superior), so the phantom scales with the volume size.
 */
import { uniform, type Rng } from '../random.ts';
import { GradientNoise, smoothstep, square } from './noise.ts';

/** Partial-volume tissue fractions of one voxel; inside the brain they sum to 1. */
export interface HealthyTissue {
  inBrain: boolean;
  csf: number;
  greyMatter: number;
  deepGreyMatter: number;
  whiteMatter: number;
  choroidPlexus: number;
}

export function emptyHealthyTissue(): HealthyTissue {
  return { inBrain: false, csf: 0, greyMatter: 0, deepGreyMatter: 0, whiteMatter: 0, choroidPlexus: 0 };
}

/** Where the healthy anatomy now at a voxel came from (a tumour's mass effect); writes that point to `out`. */
export interface Displacement {
  displacedSource(x: number, y: number, z: number, out: [number, number, number]): void;
}

/** An axis-aligned ellipsoid in normalised cerebrum coordinates. */
interface Ellipsoid {
  centre: readonly [number, number, number];
  semiAxes: readonly [number, number, number];
}

/** Deep grey nuclei of the left hemisphere (mirrored for the right): caudate head, lentiform nucleus, thalamus. */
const DEEP_NUCLEI: readonly Ellipsoid[] = [
  { centre: [0.16, 0.2, 0.04], semiAxes: [0.07, 0.13, 0.15] },
  { centre: [0.37, 0.04, -0.08], semiAxes: [0.09, 0.2, 0.16] },
  { centre: [0.11, -0.17, -0.07], semiAxes: [0.11, 0.17, 0.16] },
];

/** Region around the corpus callosum, septum and diencephalon where the two hemispheres are joined (no midline fissure). */
const CALLOSAL_CORE: Ellipsoid = { centre: [0, -0.03, -0.12], semiAxes: [0.3, 0.5, 0.37] };

/** Amplitude of the outline's random wobble, relative to the radius (the noise stays within ±1). */
const OUTLINE_WOBBLE = 0.15;

/** Largest sideways excursion of the interhemispheric fissure, voxels. */
const MIDLINE_WOBBLE = 3;

/** How much the sulcal pattern changes with depth (0: purely radial sheets, 1: isotropic noise). */
const SULCAL_DEPTH_DEPENDENCE = 0.6;

/** Depth of a point inside an axis-aligned ellipsoid (voxel units), along the ray from its centre (negative outside). */
function ellipsoidDepth(
  x: number,
  y: number,
  z: number,
  centre: readonly [number, number, number],
  semiAxes: readonly [number, number, number],
): number {
  const dx = x - centre[0];
  const dy = y - centre[1];
  const dz = z - centre[2];
  const u = dx / semiAxes[0];
  const v = dy / semiAxes[1];
  const w = dz / semiAxes[2];
  const rho = Math.sqrt(u * u + v * v + w * w);
  if (rho < 1e-9) return Math.min(semiAxes[0], semiAxes[1], semiAxes[2]);
  return ((1 - rho) * Math.sqrt(dx * dx + dy * dy + dz * dz)) / rho;
}

/** Normalised radius of a point relative to an ellipsoid (1 on its surface). */
function ellipsoidRadius(u: number, v: number, w: number, shape: Ellipsoid): number {
  return Math.sqrt(
    square((u - shape.centre[0]) / shape.semiAxes[0]) +
      square((v - shape.centre[1]) / shape.semiAxes[1]) +
      square((w - shape.centre[2]) / shape.semiAxes[2]),
  );
}

export class BrainAnatomy {
  /** Cerebrum centre, voxels. */
  readonly centre: readonly [number, number, number];
  /** Cerebrum semi-axes, voxels. */
  readonly semiAxes: readonly [number, number, number];
  /** Mean cerebrum semi-axis, voxels: the length unit that all anatomical sizes scale with. */
  readonly scale: number;

  private readonly cerebellumCentre: [number, number, number];
  private readonly cerebellumAxes: [number, number, number];
  private readonly brainstemCentre: [number, number, number];
  private readonly brainstemAxes: [number, number, number];
  private readonly csfWidth: number;
  private readonly greyThickness: number;
  private readonly sulcalDepth: number;
  private readonly sulcalCell: number;
  private readonly ventricleSize: number;
  private readonly outlineNoise: GradientNoise;
  private readonly sulcalNoise: GradientNoise;
  private readonly midlineNoise: GradientNoise;
  private readonly foliaNoise: GradientNoise;
  /** Scratch for the displaced point. */
  private readonly source: [number, number, number] = [0, 0, 0];
  /** Scratch for noise gradients. */
  private readonly gradient = new Float64Array(3);

  constructor(rng: Rng, shape: readonly [number, number, number]) {
    const [sizeX, sizeY, sizeZ] = shape;
    this.centre = [
      (sizeX - 1) / 2 + uniform(rng, -0.01, 0.01) * sizeX,
      (sizeY - 1) / 2 + uniform(rng, -0.01, 0.02) * sizeY,
      0.55 * (sizeZ - 1),
    ];
    this.semiAxes = [
      0.3 * sizeX * uniform(rng, 0.95, 1.04),
      0.385 * sizeY * uniform(rng, 0.95, 1.04),
      0.38 * sizeZ * uniform(rng, 0.96, 1.03),
    ];
    const [cx, cy, cz] = this.centre;
    const [ax, ay, az] = this.semiAxes;
    this.scale = (ax + ay + az) / 3;
    this.cerebellumCentre = [cx, cy - 0.56 * ay, cz - 0.92 * az];
    this.cerebellumAxes = [0.62 * ax, 0.34 * ay, 0.3 * az];
    this.brainstemCentre = [cx, cy - 0.14 * ay, cz - 0.8 * az];
    this.brainstemAxes = [0.16 * ax, 0.16 * ay, 0.6 * az];
    // Atrophy varies between patients: wider CSF spaces and larger ventricles in some.
    this.csfWidth = Math.max(0.3, this.scale * uniform(rng, 0.01, 0.025));
    this.greyThickness = Math.max(1, this.scale * uniform(rng, 0.05, 0.06));
    this.sulcalDepth = this.scale * uniform(rng, 0.16, 0.24);
    this.sulcalCell = this.scale * 0.3;
    this.ventricleSize = uniform(rng, 0.75, 1.35);
    this.outlineNoise = new GradientNoise(rng, this.scale);
    this.sulcalNoise = new GradientNoise(rng, this.sulcalCell);
    this.midlineNoise = new GradientNoise(rng, this.scale * 0.5);
    this.foliaNoise = new GradientNoise(rng, this.scale * 0.12);
  }

  /**
   * Depth below the cerebrum's outer surface, voxels (negative outside). The
   * outline is an ellipsoid narrowed frontally and raised under the frontal
   * lobes, with a smooth random wobble.
   */
  cerebrumDepth(x: number, y: number, z: number): number {
    const dx = x - this.centre[0];
    const dy = y - this.centre[1];
    const dz = z - this.centre[2];
    const v = dy / this.semiAxes[1];
    const u = (dx / this.semiAxes[0]) * (1 + 0.06 * Math.max(0, v));
    let w = dz / this.semiAxes[2];
    if (w < 0) w *= 1.1 + 0.35 * Math.max(0, v);
    // Halfway between an ellipse and a super-ellipse of exponent 3 in the axial plane: the cerebrum is boxier than an ellipsoid.
    const boxyRadius = Math.cbrt(Math.abs(u * u * u) + Math.abs(v * v * v));
    const axial = 0.5 * (u * u + v * v) + 0.5 * boxyRadius * boxyRadius;
    const rho = Math.sqrt(axial + w * w);
    const distance = Math.sqrt(dx * dx + dy * dy + dz * dz);
    if (rho < 1e-9) return this.scale;
    // Far outside, the wobble cannot bring the surface back; skip the noise (only the sign matters there).
    if (rho > 1 + OUTLINE_WOBBLE) return ((1 - rho) * distance) / rho;
    const wobble = OUTLINE_WOBBLE * this.outlineNoise.at(x, y, z);
    return ((1 + wobble - rho) * distance) / rho;
  }

  /** Depth inside the lateral or third ventricles, voxels (negative outside), at a point in voxel coordinates. */
  ventricleDepth(x: number, y: number, z: number): number {
    const [ax, ay, az] = this.semiAxes;
    const u = (x - this.centre[0]) / ax;
    const v = (y - this.centre[1]) / ay;
    const w = (z - this.centre[2]) / az;
    const size = this.ventricleSize;
    // Lateral ventricles: arched tubes from the frontal horn (v = 0.3) to the atrium (v = -0.46), the horns diverging at both ends, widening posteriorly.
    const along = Math.min(0.3, Math.max(-0.46, v));
    const arch = (along + 0.08) / 0.38;
    const centreU = (0.055 + 0.13 * Math.max(0, -along - 0.05) + 0.1 * Math.max(0, along - 0.12)) * Math.sqrt(size);
    const centreW = -0.04 + 0.12 * (1 - arch * arch);
    const halfU = (0.05 + 0.06 * Math.max(0, -along - 0.1)) * size;
    const halfW = (0.11 + 0.04 * Math.max(0, -along - 0.2)) * size;
    const beyondEnd = (v - along) / 0.07;
    const lateral = Math.sqrt(square((Math.abs(u) - centreU) / halfU) + square((w - centreW) / halfW) + square(beyondEnd));
    const lateralDepth = (1 - lateral) * Math.min(halfU * ax, halfW * az);
    // Third ventricle: a thin midline slit below the lateral ventricles (a super-ellipsoid, so it has flat walls).
    const third = Math.sqrt(
      Math.sqrt(square(square(u / (0.02 * size))) + square(square((v + 0.08) / 0.13)) + square(square((w + 0.2) / (0.15 * size)))),
    );
    const thirdDepth = (1 - third) * Math.max(0.6, 0.02 * size * ax);
    return Math.max(lateralDepth, thirdDepth);
  }

  /**
   * Tissue fractions at voxel (px, py, pz). The outer brain outline is taken at
   * p; the cerebrum's internal structures (ventricles, nuclei, fissures, sulci)
   * at the point q that `displacement` maps p to, which is how a tumour's mass
   * effect pushes them aside while the skull keeps the outline in place.
   */
  sample(px: number, py: number, pz: number, displacement: Displacement, out: HealthyTissue): void {
    out.csf = 0;
    out.greyMatter = 0;
    out.deepGreyMatter = 0;
    out.whiteMatter = 0;
    out.choroidPlexus = 0;
    const cerebellum = ellipsoidDepth(px, py, pz, this.cerebellumCentre, this.cerebellumAxes);
    const brainstem = ellipsoidDepth(px, py, pz, this.brainstemCentre, this.brainstemAxes);
    const cerebrum = Math.max(this.cerebrumDepth(px, py, pz), brainstem);
    out.inBrain = cerebrum > 0 || cerebellum > 0;
    if (!out.inBrain) return;
    if (cerebellum > 0) {
      this.sampleCerebellum(px, py, pz, cerebellum, out);
      return;
    }
    // The tentorium (between cerebrum and cerebellum) acts as one more outer surface.
    let outer = Math.min(cerebrum, -cerebellum);
    if (brainstem > 0 && brainstem >= cerebrum - 1e-9 && pz < this.centre[2] - 0.5 * this.semiAxes[2]) {
      this.sampleBrainstem(outer, out);
      return;
    }
    displacement.displacedSource(px, py, pz, this.source);
    const qx = this.source[0];
    const qy = this.source[1];
    const qz = this.source[2];
    const [ax, ay, az] = this.semiAxes;
    const u = (qx - this.centre[0]) / ax;
    const v = (qy - this.centre[1]) / ay;
    const w = (qz - this.centre[2]) / az;

    // Interhemispheric fissure: a wobbly midline sheet, absent where the hemispheres are joined.
    const fromMidline = Math.abs(qx - this.centre[0]);
    if (fromMidline - MIDLINE_WOBBLE < outer) {
      const midline = Math.abs(qx - this.centre[0] - MIDLINE_WOBBLE * this.midlineNoise.at(0, qy, qz));
      const joined = smoothstep(1.15, 0.85, ellipsoidRadius(u, v, w, CALLOSAL_CORE));
      outer = Math.min(outer, midline + joined * this.scale);
    }

    // Sylvian fissure: a finite, gently waving sheet from the lateral surface in towards the insula, rising
    // posteriorly at 45° and running obliquely (further back when deeper), over the middle third of the hemisphere.
    const sylvianMedial = Math.max(0, 0.6 - Math.abs(u)) * ax;
    const sylvianLevel = Math.max(0, Math.abs(w + 0.2) - 0.25) * az;
    if (sylvianMedial < outer && sylvianLevel < outer) {
      const wave = 2 * this.outlineNoise.at(2 * qx, 2 * qy, 2 * qz);
      const sylvianPlane = Math.abs((w + 0.12) * az + (v - 0.05) * ay + 0.5 * (Math.abs(u) - 0.8) * ax + wave) / Math.SQRT2;
      const sylvianEnds = Math.max(0, Math.abs(v - 0.03) - 0.3) * ay;
      const sylvian = Math.sqrt(square(sylvianPlane) + square(sylvianMedial) + square(sylvianEnds) + square(sylvianLevel));
      outer = Math.min(outer, sylvian);
    }

    // Sulci: zero sheets of a noise field that depends mainly on the direction from the centre, so they run radially.
    let cortical = outer;
    const sulcusReach = this.sulcalDepth + this.greyThickness + this.csfWidth + 1;
    if (outer < sulcusReach) {
      const sheetDistance = this.sulcusDistance(qx, qy, qz);
      const belowFundus = Math.max(0, outer - this.sulcalDepth);
      cortical = Math.min(outer, Math.sqrt(sheetDistance * sheetDistance + belowFundus * belowFundus));
    }
    this.corticalLayers(cortical, this.csfWidth, this.greyThickness, out);

    // Ventricles replace everything; the choroid plexus floats in the atria.
    const ventricle = smoothstep(-0.5, 0.5, this.ventricleDepth(qx, qy, qz));
    if (ventricle > 0) {
      const atrium = Math.sqrt(
        square((Math.abs(u) - 0.1 * Math.sqrt(this.ventricleSize)) / 0.05) + square((v + 0.38) / 0.07) + square((w - 0.01) / 0.06),
      );
      const plexus = ventricle * smoothstep(1.2, 0.8, atrium);
      const keep = 1 - ventricle;
      out.greyMatter *= keep;
      out.whiteMatter *= keep;
      out.csf = out.csf * keep + ventricle - plexus;
      out.choroidPlexus = plexus;
    }

    // Deep nuclei turn white matter into deep grey matter.
    const mirroredU = Math.abs(u);
    let nucleus = 0;
    for (const shape of DEEP_NUCLEI) {
      nucleus = Math.max(nucleus, smoothstep(1.15, 0.9, ellipsoidRadius(mirroredU, v, w, shape)));
    }
    out.deepGreyMatter = out.whiteMatter * nucleus;
    out.whiteMatter -= out.deepGreyMatter;
  }

  /**
   * Distance to the nearest sulcal sheet, voxels: first-order estimate |f| / |∇f|.
   * The sulcal field f is noise (two octaves, the finer one bends the sheets and
   * adds small sulci) evaluated at P = d · s(ρ), where d is the offset from the
   * cerebrum centre, ρ its normalised radius and s(ρ) = (1 + α(ρ − 1)) / ρ:
   * f depends mostly on the direction and a little (α) on the depth, so sulci are
   * radial sheets that curve slightly with depth.
   */
  private sulcusDistance(x: number, y: number, z: number): number {
    const [ax, ay, az] = this.semiAxes;
    const dx = x - this.centre[0];
    const dy = y - this.centre[1];
    const dz = z - this.centre[2];
    const u = dx / ax;
    const v = dy / ay;
    const w = dz / az;
    const rho = Math.max(1e-6, Math.sqrt(u * u + v * v + w * w));
    const s = (1 + SULCAL_DEPTH_DEPENDENCE * (rho - 1)) / rho;
    const px = dx * s;
    const py = dy * s;
    const pz = dz * s;
    const coarse = this.sulcalNoise.atWithGradient(px, py, pz, this.gradient);
    let hx = this.gradient[0]!;
    let hy = this.gradient[1]!;
    let hz = this.gradient[2]!;
    const fine = this.sulcalNoise.atWithGradient(2 * px + 97, 2 * py + 53, 2 * pz + 31, this.gradient);
    const field = coarse + 0.5 * fine;
    hx += this.gradient[0]!;
    hy += this.gradient[1]!;
    hz += this.gradient[2]!;
    // Chain rule through P: ∇f = s h + (d · h) ∇s, with ∇s = s'(ρ) ∇ρ, s'(ρ) = (α − 1) / ρ², ∇ρ = (u/ax, v/ay, w/az) / ρ.
    const along = dx * hx + dy * hy + dz * hz;
    const radialSlope = ((SULCAL_DEPTH_DEPENDENCE - 1) / (rho * rho * rho)) * along;
    const gx = s * hx + radialSlope * (u / ax);
    const gy = s * hy + radialSlope * (v / ay);
    const gz = s * hz + radialSlope * (w / az);
    return Math.abs(field) / Math.max(Math.sqrt(gx * gx + gy * gy + gz * gz), 1e-6);
  }

  /** CSF / grey / white fractions from the distance to the nearest CSF surface, with one-voxel partial-volume edges. */
  private corticalLayers(depth: number, csfWidth: number, greyThickness: number, out: HealthyTissue): void {
    const belowCsf = smoothstep(csfWidth - 0.5, csfWidth + 0.5, depth);
    const belowGrey = smoothstep(csfWidth + greyThickness - 0.5, csfWidth + greyThickness + 0.5, depth);
    out.csf = 1 - belowCsf;
    out.greyMatter = belowCsf - belowGrey;
    out.whiteMatter = belowGrey;
  }

  /** Cerebellum: thin folia (horizontal leaflets) of grey matter around a white-matter core. */
  private sampleCerebellum(x: number, y: number, z: number, depth: number, out: HealthyTissue): void {
    const cell = this.scale * 0.12;
    const field = this.foliaNoise.at(x * 0.3, y, z);
    const sheetDistance = (Math.abs(field) * cell) / 0.88;
    const coreDepth = 0.45 * this.cerebellumAxes[2];
    const cortical = Math.min(depth, Math.sqrt(square(sheetDistance) + square(Math.max(0, depth - coreDepth))));
    this.corticalLayers(cortical, 0.6 * this.csfWidth, 1.3 * this.greyThickness, out);
  }

  /** Brainstem: white-matter tracts mixed with grey nuclei, in a CSF cistern. */
  private sampleBrainstem(depth: number, out: HealthyTissue): void {
    this.corticalLayers(depth, this.csfWidth, 0, out);
    out.deepGreyMatter = 0.35 * out.whiteMatter;
    out.whiteMatter -= out.deepGreyMatter;
  }
}
