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
import { GradientNoise, smoothstep } from './noise.ts';

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

/** An axis-aligned ellipsoid in normalised cerebrum coordinates. */
interface Ellipsoid {
  centre: readonly [number, number, number];
  semiAxes: readonly [number, number, number];
}

/** Deep grey nuclei of the left hemisphere (mirrored for the right): caudate head, lentiform nucleus, thalamus. */
const DEEP_NUCLEI: readonly Ellipsoid[] = [
  { centre: [0.16, 0.2, 0.06], semiAxes: [0.06, 0.14, 0.12] },
  { centre: [0.34, 0.04, -0.06], semiAxes: [0.07, 0.2, 0.13] },
  { centre: [0.1, -0.16, -0.08], semiAxes: [0.09, 0.16, 0.13] },
];

/** Region around the corpus callosum, septum and diencephalon where the two hemispheres are joined (no midline fissure). */
const CALLOSAL_CORE: Ellipsoid = { centre: [0, -0.03, -0.12], semiAxes: [0.3, 0.5, 0.37] };

/** Exponent of the cerebrum's axial cross-section (2 would be an ellipse). */
const AXIAL_EXPONENT = 2.5;

/** Depth of a point inside an ellipsoid, in voxels along the ray from its centre (negative outside). */
function ellipsoidDepth(dx: number, dy: number, dz: number, ax: number, ay: number, az: number): number {
  const rho = Math.sqrt((dx / ax) ** 2 + (dy / ay) ** 2 + (dz / az) ** 2);
  if (rho < 1e-9) return Math.min(ax, ay, az);
  return ((1 - rho) * Math.sqrt(dx * dx + dy * dy + dz * dz)) / rho;
}

/** Normalised radius of a point relative to an ellipsoid (1 on its surface). */
function ellipsoidRadius(u: number, v: number, w: number, shape: Ellipsoid): number {
  return Math.sqrt(
    ((u - shape.centre[0]) / shape.semiAxes[0]) ** 2 +
      ((v - shape.centre[1]) / shape.semiAxes[1]) ** 2 +
      ((w - shape.centre[2]) / shape.semiAxes[2]) ** 2,
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
    this.csfWidth = Math.max(0.4, this.scale * uniform(rng, 0.015, 0.03));
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
    // A super-ellipse in the axial plane: the cerebrum is boxier than an ellipsoid.
    const axial = Math.pow(Math.abs(u) ** AXIAL_EXPONENT + Math.abs(v) ** AXIAL_EXPONENT, 2 / AXIAL_EXPONENT);
    const rho = Math.sqrt(axial + w * w);
    const distance = Math.sqrt(dx * dx + dy * dy + dz * dz);
    const wobble = 0.15 * this.outlineNoise.at(x, y, z);
    if (rho < 1e-9) return this.scale;
    return ((1 + wobble - rho) * distance) / rho;
  }

  /** Depth inside the lateral or third ventricles, voxels (negative outside), at a point in voxel coordinates. */
  ventricleDepth(x: number, y: number, z: number): number {
    const [ax, ay, az] = this.semiAxes;
    const u = (x - this.centre[0]) / ax;
    const v = (y - this.centre[1]) / ay;
    const w = (z - this.centre[2]) / az;
    const size = this.ventricleSize;
    // Lateral ventricles: arched tubes from the frontal horn (v = 0.3) to the atrium (v = -0.46), diverging and widening posteriorly.
    const along = Math.min(0.3, Math.max(-0.46, v));
    const arch = (along + 0.08) / 0.38;
    const centreU = (0.055 + 0.13 * Math.max(0, -along - 0.05)) * Math.sqrt(size);
    const centreW = -0.04 + 0.12 * (1 - arch * arch);
    const halfU = (0.05 + 0.06 * Math.max(0, -along - 0.1)) * size;
    const halfW = (0.11 + 0.04 * Math.max(0, -along - 0.2)) * size;
    const beyondEnd = (v - along) / 0.07;
    const lateral = Math.sqrt(((Math.abs(u) - centreU) / halfU) ** 2 + ((w - centreW) / halfW) ** 2 + beyondEnd ** 2);
    const lateralDepth = (1 - lateral) * Math.min(halfU * ax, halfW * az);
    // Third ventricle: a thin midline slit below the lateral ventricles (a super-ellipsoid, so it has flat walls).
    const third = Math.pow(
      (u / (0.02 * size)) ** 4 + ((v + 0.08) / 0.13) ** 4 + ((w + 0.2) / (0.15 * size)) ** 4,
      0.25,
    );
    const thirdDepth = (1 - third) * Math.max(0.6, 0.02 * size * ax);
    return Math.max(lateralDepth, thirdDepth);
  }

  /**
   * Tissue fractions at voxel (px, py, pz). The outer brain outline is taken at
   * p; internal structures (ventricles, nuclei, fissures, sulci) at the
   * displaced point q, which is how a tumour's mass effect pushes them aside
   * while the skull keeps the outline in place.
   */
  sample(px: number, py: number, pz: number, qx: number, qy: number, qz: number, out: HealthyTissue): void {
    out.csf = 0;
    out.greyMatter = 0;
    out.deepGreyMatter = 0;
    out.whiteMatter = 0;
    out.choroidPlexus = 0;
    const [cbx, cby, cbz] = this.cerebellumCentre;
    const [bsx, bsy, bsz] = this.brainstemCentre;
    const cerebellum = ellipsoidDepth(px - cbx, py - cby, pz - cbz, ...this.cerebellumAxes);
    const brainstem = ellipsoidDepth(px - bsx, py - bsy, pz - bsz, ...this.brainstemAxes);
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
    const [ax, ay, az] = this.semiAxes;
    const u = (qx - this.centre[0]) / ax;
    const v = (qy - this.centre[1]) / ay;
    const w = (qz - this.centre[2]) / az;

    // Interhemispheric fissure: a wobbly midline sheet, absent where the hemispheres are joined.
    const midline = Math.abs(qx - this.centre[0] - 3 * this.midlineNoise.at(0, qy, qz));
    const joined = smoothstep(1.15, 0.85, ellipsoidRadius(u, v, w, CALLOSAL_CORE));
    outer = Math.min(outer, midline + joined * this.scale);

    // Sylvian fissure: a finite sheet entering from the lateral surface towards the insula, rising posteriorly at 45°.
    const sylvianPlane = Math.abs((w + 0.12) * az + (v - 0.05) * ay) / Math.SQRT2;
    const sylvian = Math.hypot(
      sylvianPlane,
      Math.max(0, 0.55 - Math.abs(u)) * ax,
      Math.max(0, Math.abs(v - 0.03) - 0.3) * ay,
      Math.max(0, Math.abs(w + 0.2) - 0.25) * az,
    );
    outer = Math.min(outer, sylvian);

    // Sulci: zero sheets of a noise field that depends mainly on the direction from the centre, so they run radially.
    let cortical = outer;
    const sulcusReach = this.sulcalDepth + this.greyThickness + this.csfWidth + 1;
    if (outer < sulcusReach) {
      const sheetDistance = this.sulcusDistance(qx, qy, qz);
      cortical = Math.min(outer, Math.hypot(sheetDistance, Math.max(0, outer - this.sulcalDepth)));
    }
    this.corticalLayers(cortical, this.csfWidth, this.greyThickness, out);

    // Ventricles replace everything; the choroid plexus floats in the atria.
    const ventricle = smoothstep(-0.5, 0.5, this.ventricleDepth(qx, qy, qz));
    if (ventricle > 0) {
      const atrium = Math.hypot((Math.abs(u) - 0.1 * Math.sqrt(this.ventricleSize)) / 0.05, (v + 0.38) / 0.07, (w - 0.01) / 0.06);
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

  /** The sulcal field at a voxel-space point: noise evaluated on the cerebrum outline along the ray from its centre. */
  private sulcalField(x: number, y: number, z: number): number {
    const [ax, ay, az] = this.semiAxes;
    const u = (x - this.centre[0]) / ax;
    const v = (y - this.centre[1]) / ay;
    const w = (z - this.centre[2]) / az;
    const rho = Math.sqrt(u * u + v * v + w * w);
    // Mostly the direction, a little the depth, so sulci are radial sheets that curve slightly with depth.
    const radial = rho < 1e-9 ? 0 : (1 + 0.6 * (rho - 1)) / rho;
    const x0 = u * radial * ax;
    const y0 = v * radial * ay;
    const z0 = w * radial * az;
    // A finer octave bends the sheets and adds small sulci.
    return this.sulcalNoise.at(x0, y0, z0) + 0.5 * this.sulcalNoise.at(2 * x0 + 97, 2 * y0 + 53, 2 * z0 + 31);
  }

  /** Distance to the nearest sulcal sheet, voxels: first-order estimate |f| / |∇f| from forward differences. */
  private sulcusDistance(x: number, y: number, z: number): number {
    const step = 0.5;
    const field = this.sulcalField(x, y, z);
    const gradientX = (this.sulcalField(x + step, y, z) - field) / step;
    const gradientY = (this.sulcalField(x, y + step, z) - field) / step;
    const gradientZ = (this.sulcalField(x, y, z + step) - field) / step;
    const gradient = Math.sqrt(gradientX * gradientX + gradientY * gradientY + gradientZ * gradientZ);
    return Math.abs(field) / Math.max(gradient, 1e-6);
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
    const cortical = Math.min(depth, Math.hypot(sheetDistance, Math.max(0, depth - coreDepth)));
    this.corticalLayers(cortical, 0.6 * this.csfWidth, 1.3 * this.greyThickness, out);
  }

  /** Brainstem: white-matter tracts mixed with grey nuclei, in a CSF cistern. */
  private sampleBrainstem(depth: number, out: HealthyTissue): void {
    this.corticalLayers(depth, this.csfWidth, 0, out);
    out.deepGreyMatter = 0.35 * out.whiteMatter;
    out.whiteMatter -= out.deepGreyMatter;
  }
}
