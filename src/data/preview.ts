/**
 * Quick-look PNG of one axial slice of a case: each image volume side by side
 * in grey levels, plus label volumes as colour overlays on the first image.
 */
import { PNG } from 'pngjs';
import { writeFileAtomic } from './files.ts';
import type { VoxelArray } from './voxel-array.ts';

export interface PreviewVolume {
  name: string;
  data: VoxelArray; /* (X, Y, Z), x fastest */
  shape: readonly number[]; /* [X, Y, Z] */
  /** 'label' draws BraTS labels (1 NCR/NET red, 2 oedema green, 4 ET yellow, others blue) over the first image. */
  kind?: 'image' | 'label';
}

/** Colour per BraTS label value; any other non-zero value is drawn blue. */
export const LABEL_COLOURS: ReadonlyMap<number, readonly [number, number, number]> = new Map([
  [1, [230, 40, 40]],
  [2, [40, 200, 60]],
  [3, [60, 120, 255]],
  [4, [255, 220, 0]],
]);
const OTHER_LABEL_COLOUR: readonly [number, number, number] = [60, 120, 255];
const LABEL_OPACITY = 0.55;
/** Gap between panels, pixels. */
export const PREVIEW_GAP = 4;

/** Value at a fraction of the sorted non-zero voxels of a slice (the background of skull-stripped images is 0). */
function percentile(sortedValues: Float64Array, fraction: number): number {
  if (sortedValues.length === 0) return 0;
  const index = Math.min(sortedValues.length - 1, Math.max(0, Math.round(fraction * (sortedValues.length - 1))));
  return sortedValues[index]!;
}

/** Slice with the most non-zero label voxels, or the middle slice when there is no label volume or it is empty. */
function defaultSlice(volumes: readonly PreviewVolume[], sizeZ: number): number {
  const label = volumes.find((volume) => volume.kind === 'label');
  if (!label) return Math.floor(sizeZ / 2);
  const [sizeX, sizeY] = label.shape as [number, number, number];
  const plane = sizeX * sizeY;
  let best = Math.floor(sizeZ / 2);
  let bestCount = 0;
  for (let z = 0; z < sizeZ; z++) {
    let count = 0;
    for (let i = z * plane; i < (z + 1) * plane; i++) if (label.data[i] !== 0) count++;
    if (count > bestCount) {
      bestCount = count;
      best = z;
    }
  }
  return best;
}

/** A rendered preview strip: panels of `panelWidth` × `panelHeight` pixels, `PREVIEW_GAP` apart. */
export interface SlicePreview {
  png: Buffer;
  panelWidth: number;
  panelHeight: number;
  /** Panel titles in drawing order: the image volumes' names, then the label volumes'. */
  panels: string[];
}

/**
 * Writes a PNG of axial slice `slice` (index along the third axis; default: the
 * slice with the most labelled voxels) of every volume, left to right in the
 * given order. Images are windowed to the 1st–99th percentile of the slice's
 * non-zero voxels. Panels show i to the right and j upwards (anterior up for
 * RAS-like volumes), each voxel as `zoom` × `zoom` pixels (default: enough for
 * panels about 240 pixels wide).
 */
export function writeSlicePreview(path: string, volumes: readonly PreviewVolume[], slice?: number, zoom?: number): void {
  writeFileAtomic(path, renderSlicePreview(path, volumes, slice, zoom).png);
}

/** The PNG `writeSlicePreview` writes, with its panel layout; `path` names the figure in errors. */
export function renderSlicePreview(path: string, volumes: readonly PreviewVolume[], slice?: number, zoom?: number): SlicePreview {
  if (volumes.length === 0) throw new Error(`${path}: no volumes to preview`);
  const shape = volumes[0]!.shape;
  if (shape.length < 3) throw new Error(`${path}: preview needs 3D volumes, got shape [${shape.join(', ')}]`);
  const [sizeX, sizeY, sizeZ] = shape as [number, number, number];
  for (const volume of volumes) {
    if (volume.shape.length < 3 || volume.shape[0] !== sizeX || volume.shape[1] !== sizeY || volume.shape[2] !== sizeZ) {
      throw new Error(`${path}: volume '${volume.name}' has shape [${volume.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    if (volume.data.length < sizeX * sizeY * sizeZ) throw new Error(`${path}: volume '${volume.name}' has too few voxels`);
  }
  const images = volumes.filter((volume) => volume.kind !== 'label');
  const labels = volumes.filter((volume) => volume.kind === 'label');
  if (labels.length > 0 && images.length === 0) throw new Error(`${path}: label overlays need at least one image volume`);
  const z = slice ?? defaultSlice(volumes, sizeZ);
  if (!Number.isInteger(z) || z < 0 || z >= sizeZ) throw new Error(`${path}: slice ${z} is outside 0..${sizeZ - 1}`);
  const scale = zoom ?? Math.max(1, Math.round(240 / Math.max(sizeX, sizeY)));
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`${path}: zoom must be a positive integer, got ${scale}`);

  const plane = sizeX * sizeY;
  const greySlice = (volume: PreviewVolume): Uint8Array => {
    const values = new Float64Array(plane);
    const nonZero: number[] = [];
    for (let i = 0; i < plane; i++) {
      const value = Number(volume.data[z * plane + i]);
      values[i] = value;
      if (value !== 0) nonZero.push(value);
    }
    const sorted = Float64Array.from(nonZero).sort();
    const low = percentile(sorted, 0.01);
    const high = percentile(sorted, 0.99);
    const range = high > low ? high - low : 1;
    const grey = new Uint8Array(plane);
    for (let i = 0; i < plane; i++) {
      grey[i] = values[i] === 0 ? 0 : Math.round(255 * Math.min(1, Math.max(0, (values[i]! - low) / range)));
    }
    return grey;
  };
  const panels: { grey: Uint8Array; label?: PreviewVolume }[] = images.map((volume) => ({ grey: greySlice(volume) }));
  const background = panels[0]!.grey;
  for (const label of labels) panels.push({ grey: background, label });

  const panelWidth = sizeX * scale;
  const panelHeight = sizeY * scale;
  const png = new PNG({ width: panels.length * panelWidth + (panels.length - 1) * PREVIEW_GAP, height: panelHeight });
  png.data.fill(0);
  for (let p = 0; p < panels.length; p++) {
    const { grey, label } = panels[p]!;
    for (let y = 0; y < sizeY; y++) {
      for (let x = 0; x < sizeX; x++) {
        const voxel = y * sizeX + x;
        let red = grey[voxel]!;
        let green = red;
        let blue = red;
        const value = label ? Number(label.data[z * plane + voxel]) : 0;
        if (value !== 0) {
          const colour = LABEL_COLOURS.get(value) ?? OTHER_LABEL_COLOUR;
          red = Math.round((1 - LABEL_OPACITY) * red + LABEL_OPACITY * colour[0]);
          green = Math.round((1 - LABEL_OPACITY) * green + LABEL_OPACITY * colour[1]);
          blue = Math.round((1 - LABEL_OPACITY) * blue + LABEL_OPACITY * colour[2]);
        }
        const row0 = (sizeY - 1 - y) * scale;
        const column0 = p * (panelWidth + PREVIEW_GAP) + x * scale;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) {
            const offset = 4 * ((row0 + dy) * png.width + column0 + dx);
            png.data[offset] = red;
            png.data[offset + 1] = green;
            png.data[offset + 2] = blue;
          }
        }
      }
    }
  }
  for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255;
  return { png: PNG.sync.write(png), panelWidth, panelHeight, panels: [...images, ...labels].map((volume) => volume.name) };
}
