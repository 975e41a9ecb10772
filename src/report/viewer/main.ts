/// <reference lib="dom" />
// The report's 3D viewer, run in the browser (bundled with Niivue by ./bundle.ts): a case's sequences with the
// ground truth and any subset's prediction laid over them, in axial, coronal, sagittal, all three with a 3D
// rendering, or 3D alone. The page states its readiness in `data-viewer` on the viewer element ("loading",
// "ready", "error: …") and the overlay shown in `data-overlay`, so that a browser test can wait on them.
import { Niivue, SLICE_TYPE, SHOW_RENDER } from '@niivue/niivue';
import { MANIFEST_ELEMENT_ID, VIEWER_ELEMENT_ID, type ViewerCase, type ViewerLabel, type ViewerManifest } from './manifest.ts';

const VIEWS: { name: string; type: SLICE_TYPE }[] = [
  { name: 'axial', type: SLICE_TYPE.AXIAL },
  { name: 'coronal', type: SLICE_TYPE.CORONAL },
  { name: 'sagittal', type: SLICE_TYPE.SAGITTAL },
  { name: 'all planes + 3D', type: SLICE_TYPE.MULTIPLANAR },
  { name: '3D', type: SLICE_TYPE.RENDER },
];

function element<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Niivue's label colour map: label value → colour, background transparent. */
function labelColormap(labels: readonly ViewerLabel[]) {
  const entries = [{ value: 0, name: 'background', colour: [0, 0, 0] as const, alpha: 0 }, ...labels.map((label) => ({ ...label, alpha: 255 }))];
  return {
    R: entries.map((entry) => entry.colour[0]),
    G: entries.map((entry) => entry.colour[1]),
    B: entries.map((entry) => entry.colour[2]),
    A: entries.map((entry) => entry.alpha),
    I: entries.map((entry) => entry.value),
    labels: entries.map((entry) => entry.name),
  };
}

function diceText(dice: Record<string, number> | undefined): string {
  if (!dice) return '';
  return Object.entries(dice)
    .map(([region, value]) => `${region} ${value.toFixed(1)}`)
    .join(' · ');
}

async function start(root: HTMLElement, manifest: ViewerManifest): Promise<void> {
  const state = { caseIndex: 0, imageIndex: 0, overlayIndex: manifest.cases[0]!.overlays.length - 1, truth: false, opacity: 0.6 };

  const controls = element('div', { class: 'viewer-controls' });
  const caseSelect = element('select', { 'aria-label': 'case', id: 'viewer-case' });
  manifest.cases.forEach((entry, index) => caseSelect.append(element('option', { value: String(index) }, entry.id)));
  const imageSelect = element('select', { 'aria-label': 'sequence', id: 'viewer-image' });
  const viewSelect = element('select', { 'aria-label': 'view', id: 'viewer-view' });
  VIEWS.forEach((view, index) => viewSelect.append(element('option', { value: String(index) }, view.name)));
  viewSelect.value = String(VIEWS.findIndex((view) => view.type === SLICE_TYPE.MULTIPLANAR));
  const truthBox = element('input', { type: 'checkbox', id: 'viewer-truth' });
  const opacity = element('input', { type: 'range', min: '0', max: '1', step: '0.05', value: String(state.opacity), id: 'viewer-opacity' });
  const label = (text: string, control: HTMLElement) => {
    const wrapper = element('label', {}, `${text} `);
    wrapper.append(control);
    return wrapper;
  };
  controls.append(label('case', caseSelect), label('sequence', imageSelect), label('view', viewSelect), label('ground truth', truthBox), label('overlay opacity', opacity));

  const legend = element('div', { class: 'viewer-legend' });
  for (const entry of manifest.labels) {
    const swatch = element('span', { class: 'swatch', style: `background: rgb(${entry.colour.join(',')})` });
    const item = element('span', { class: 'legend-item' });
    item.append(swatch, document.createTextNode(entry.name));
    legend.append(item);
  }

  const picker = element('fieldset', { class: 'viewer-picker', id: 'viewer-overlays' });
  const canvasBox = element('div', { class: 'viewer-canvas' });
  const canvas = element('canvas', { id: 'viewer-canvas' });
  canvasBox.append(canvas);
  const body = element('div', { class: 'viewer-body' });
  body.append(canvasBox, picker);
  root.replaceChildren(controls, legend, body);

  const nv = new Niivue({
    backColor: [0, 0, 0, 1],
    crosshairColor: [0.2, 0.8, 1, 0.6],
    crosshairWidth: 0.5,
    show3Dcrosshair: true,
    isColorbar: false,
    logLevel: 'error',
    dragAndDropEnabled: false,
  });
  await nv.attachToCanvas(canvas);
  // Nearest-neighbour sampling: label maps keep their edges and voxels show as what they are.
  nv.setInterpolation(true);
  nv.opts.multiplanarShowRender = SHOW_RENDER.ALWAYS;
  const colormap = labelColormap(manifest.labels);

  const current = (): ViewerCase => manifest.cases[state.caseIndex]!;

  const fillCaseControls = () => {
    const entry = current();
    imageSelect.replaceChildren(...entry.images.map((image, index) => element('option', { value: String(index) }, image.name)));
    state.imageIndex = Math.min(state.imageIndex, entry.images.length - 1);
    imageSelect.value = String(state.imageIndex);
    truthBox.disabled = !entry.truth;
    picker.replaceChildren(element('legend', {}, manifest.overlayTitle));
    entry.overlays.forEach((overlay, index) => {
      const radio = element('input', { type: 'radio', name: 'viewer-overlay', value: String(index), id: `viewer-overlay-${index}` });
      radio.checked = index === state.overlayIndex;
      radio.addEventListener('change', () => {
        state.overlayIndex = index;
        void show();
      });
      const row = element('label', { class: 'overlay-row', for: radio.id });
      row.append(radio, element('span', { class: 'overlay-name' }, overlay.name), element('span', { class: 'overlay-dice' }, diceText(overlay.dice)));
      picker.append(row);
    });
  };

  let loads = 0;
  /** The crosshair moves to a case's focus when the case is first shown, and stays where the user puts it after. */
  let shownCase = -1;
  const show = async () => {
    const caseChanged = shownCase !== state.caseIndex;
    shownCase = state.caseIndex;
    const entry = current();
    const overlay = entry.overlays[state.overlayIndex];
    const load = ++loads;
    root.dataset.viewer = 'loading';
    const volumes = [{ url: entry.images[state.imageIndex]!.url, colormap: 'gray' }];
    const labelled: number[] = [];
    if (state.truth && entry.truth) {
      labelled.push(volumes.length);
      volumes.push({ url: entry.truth.url, colormap: 'gray' });
    }
    if (overlay) {
      labelled.push(volumes.length);
      volumes.push({ url: overlay.url, colormap: 'gray' });
    }
    await nv.loadVolumes(volumes);
    if (load !== loads) return;
    for (const index of labelled) {
      nv.volumes[index]!.setColormapLabel(colormap);
      nv.volumes[index]!.opacity = state.opacity;
    }
    nv.updateGLVolume();
    if (caseChanged && entry.focus) {
      nv.scene.crosshairPos = [...entry.focus];
      nv.drawScene();
    }
    root.dataset.overlay = overlay?.name ?? '';
    root.dataset.viewer = 'ready';
  };

  caseSelect.addEventListener('change', () => {
    state.caseIndex = Number(caseSelect.value);
    state.overlayIndex = Math.min(state.overlayIndex, current().overlays.length - 1);
    fillCaseControls();
    void show();
  });
  imageSelect.addEventListener('change', () => {
    state.imageIndex = Number(imageSelect.value);
    void show();
  });
  truthBox.addEventListener('change', () => {
    state.truth = truthBox.checked;
    void show();
  });
  viewSelect.addEventListener('change', () => nv.setSliceType(VIEWS[Number(viewSelect.value)]!.type));
  opacity.addEventListener('input', () => {
    state.opacity = Number(opacity.value);
    for (let index = 1; index < nv.volumes.length; index++) nv.volumes[index]!.opacity = state.opacity;
    nv.updateGLVolume();
  });

  nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
  fillCaseControls();
  await show();
}

function fail(root: HTMLElement, message: string): void {
  root.dataset.viewer = `error: ${message}`;
  root.replaceChildren(element('p', { class: 'viewer-message' }, message));
}

const root = document.getElementById(VIEWER_ELEMENT_ID);
const manifestText = document.getElementById(MANIFEST_ELEMENT_ID)?.textContent;
if (root && manifestText) {
  const manifest = JSON.parse(manifestText) as ViewerManifest;
  if (location.protocol === 'file:') {
    // Browsers refuse to read neighbouring files from a page opened from disk.
    fail(root, 'The 3D viewer reads the volumes over HTTP: open this report with `smml view <folder>`.');
  } else if (manifest.cases.length === 0) {
    fail(root, 'No volumes to show.');
  } else {
    start(root, manifest).catch((error: unknown) => fail(root, `The viewer could not start: ${(error as Error).message}`));
  }
}
