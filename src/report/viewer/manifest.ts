// What the report page tells its 3D viewer: the cases, their volumes (URLs relative to the page) and the label
// colours. Written by Node into the page as JSON, read by the browser bundle; shared by both sides.

/** One label value of the segmentations, its name and colour. */
export interface ViewerLabel {
  value: number;
  name: string;
  /** [r, g, b], 0–255. */
  colour: [number, number, number];
}

export interface ViewerVolume {
  name: string;
  url: string;
}

/** A segmentation that can be laid over the case: a subset's prediction (with that case's Dice) or a given file. */
export interface ViewerOverlay extends ViewerVolume {
  /** Dice (%) of this overlay on this case per region, when it was scored against a ground truth. */
  dice?: Record<string, number>;
}

export interface ViewerCase {
  id: string;
  /** Grey-level volumes (the sequences), one shown at a time as the background. */
  images: ViewerVolume[];
  /** Ground-truth segmentation, when there is one. */
  truth?: ViewerVolume;
  overlays: ViewerOverlay[];
  /** Where the crosshair starts, as fractions (0–1) of the grid along i, j, k: the tumour's centre when known. */
  focus?: [number, number, number];
}

export interface ViewerManifest {
  /** What the overlays are, e.g. "prediction from the subset". */
  overlayTitle: string;
  labels: ViewerLabel[];
  cases: ViewerCase[];
}

/** Id of the `<script type="application/json">` element that carries the manifest. */
export const MANIFEST_ELEMENT_ID = 'viewer-manifest';
/** Id of the element the viewer builds itself in. */
export const VIEWER_ELEMENT_ID = 'viewer';
