// The report in a real browser: Debian's chromium driven by playwright-core loads a tiny run's report through
// `smml view` (a child process, as a user runs it) and checks the viewer draws, the subset picker changes the
// overlay, the charts carry axis titles and nothing logs an error. Screenshots go to runs/browser-test/.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { evaluateRun } from '../../src/cli/evaluate.ts';
import { readVolume } from '../../src/data/volume.ts';
import { tempDir, tinyDataset, tinyModel, writeRunFolder } from '../inference/helpers.ts';

const REPOSITORY = fileURLToPath(new URL('../..', import.meta.url));
const SCREENSHOTS = path.join(REPOSITORY, 'runs', 'browser-test');
const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
const chromiumPath = process.env.CHROMIUM_PATH ?? CHROMIUM_CANDIDATES.find((candidate) => fs.existsSync(candidate));
const skip = chromiumPath
  ? false
  : 'chromium not found (looked for CHROMIUM_PATH and ' + CHROMIUM_CANDIDATES.join(', ') + '): install it with `apt-get install chromium` (scripts/setup.sh does so when run as root)';
if (skip) console.log(`browser tests skipped: ${skip}`);

const dir = tempDir();
let server: ChildProcessWithoutNullStreams | undefined;
let browser: Browser | undefined;
let url = '';
let runDir = '';

/** Fraction of pixels that are not near-black, and the standard deviation of their brightness. */
function pixelStatistics(png: PNG): { lit: number; sd: number } {
  let lit = 0;
  let sum = 0;
  let squares = 0;
  const pixels = png.width * png.height;
  for (let i = 0; i < png.data.length; i += 4) {
    const brightness = (png.data[i]! + png.data[i + 1]! + png.data[i + 2]!) / 3;
    if (brightness > 20) lit++;
    sum += brightness;
    squares += brightness * brightness;
  }
  const mean = sum / pixels;
  return { lit: lit / pixels, sd: Math.sqrt(squares / pixels - mean * mean) };
}

function differingPixels(a: PNG, b: PNG): number {
  assert.deepEqual([a.width, a.height], [b.width, b.height]);
  let count = 0;
  for (let i = 0; i < a.data.length; i += 4) {
    if (Math.abs(a.data[i]! - b.data[i]!) + Math.abs(a.data[i + 1]! - b.data[i + 1]!) + Math.abs(a.data[i + 2]! - b.data[i + 2]!) > 30) count++;
  }
  return count;
}

async function canvasShot(page: Page, name: string): Promise<PNG> {
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.locator('#viewer-canvas').screenshot({ path: file });
  return PNG.sync.read(fs.readFileSync(file));
}

/** Opens the report page, collecting console errors and uncaught exceptions; waits until the viewer is ready. */
async function openReport(errors: string[]): Promise<Page> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page: ${error.message}`));
  await page.goto(url);
  await page.waitForSelector('#viewer[data-viewer="ready"], #viewer[data-viewer^="error"]', { timeout: 60_000 });
  assert.equal(await page.getAttribute('#viewer', 'data-viewer'), 'ready');
  return page;
}

async function showOverlay(page: Page, index: number): Promise<void> {
  await page.locator(`#viewer-overlay-${index}`).check();
  await page.waitForSelector('#viewer[data-viewer="ready"]');
  // Niivue draws on the next animation frames after the volumes are loaded.
  await page.waitForTimeout(300);
}

describe('report in chromium', { skip }, () => {
  before(async () => {
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    const { root, ids } = tinyDataset(dir, 2);
    runDir = path.join(dir, 'run');
    writeRunFolder(runDir, tinyModel(), { root, test: ids });
    const log = console.error;
    console.error = () => {};
    try {
      await evaluateRun({ model: runDir, split: 'test', weighting: 'uniform', overlap: 0.5, device: 'cpu' });
    } finally {
      console.error = log;
    }
    server = spawn(process.execPath, ['--import', 'tsx', path.join(REPOSITORY, 'src', 'cli', 'main.ts'), 'view', runDir], { cwd: REPOSITORY });
    const lines = readline.createInterface({ input: server.stdout });
    url = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      server!.once('exit', (code) => reject(new Error(`smml view exited with ${code}`)));
    });
    browser = await chromium.launch({
      executablePath: chromiumPath,
      // WebGL 2 without a GPU: Chromium's software rasteriser.
      args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
    });
  });

  after(async () => {
    await browser?.close();
    if (server && server.exitCode === null) server.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('smml view prints the URL of the run\'s report first', () => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/evaluation\/report\/index\.html$/);
  });

  it('the viewer draws the case, and picking another subset changes the overlay', async () => {
    const errors: string[] = [];
    const page = await openReport(errors);
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'viewer-page.png'), fullPage: false });
    const first = await canvasShot(page, 'viewer-all-four');
    const statistics = pixelStatistics(first);
    // The multiplanar view shows three slices and a 3D rendering of a 32-voxel brain on black.
    assert.ok(statistics.lit > 0.05 && statistics.sd > 10, `blank canvas: ${JSON.stringify(statistics)}`);

    // The subset whose prediction differs most from all four sequences' (counted in the files) must look different.
    const caseDir = path.join(runDir, 'evaluation', 'report', 'volumes');
    const [caseId] = fs.readdirSync(caseDir).sort();
    const overlays = await page.locator('.overlay-name').allTextContents();
    assert.equal(overlays.length, 15);
    const file = (name: string) => path.join(caseDir, caseId!, `prediction-${name.toLowerCase().split('+').join('-')}.nii.gz`);
    const allFour = readVolume(file(overlays[14]!)).data;
    const differences = overlays.map((name) => {
      const data = readVolume(file(name)).data;
      let count = 0;
      for (let i = 0; i < data.length; i++) if (data[i] !== allFour[i]) count++;
      return count;
    });
    const other = differences.indexOf(Math.max(...differences));
    assert.ok(differences[other]! > 0, 'every subset predicts the same labels; nothing to compare');
    assert.equal(await page.getAttribute('#viewer', 'data-overlay'), overlays[14]);
    await showOverlay(page, other);
    assert.equal(await page.getAttribute('#viewer', 'data-overlay'), overlays[other]);
    const second = await canvasShot(page, 'viewer-other-subset');
    assert.ok(differingPixels(first, second) > 50, `subset ${overlays[other]} drew the same picture`);

    // Opacity 0 hides the overlay: the picture is the plain sequence, unlike either overlay.
    await page.locator('#viewer-opacity').fill('0');
    await page.waitForTimeout(300);
    const hidden = await canvasShot(page, 'viewer-no-overlay');
    assert.ok(differingPixels(second, hidden) > 50, 'the opacity slider changed nothing');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('every chart has titled axes, and the page logs no error', async () => {
    const errors: string[] = [];
    const page = await openReport(errors);
    const charts = await page.locator('figure svg.marks').count();
    assert.equal(charts, 3, 'Dice and HD95 heat maps and the per-case Dice');
    const titles = await page.locator('figure svg.marks').evaluateAll((svgs) =>
      svgs.map((svg) => Array.from(svg.querySelectorAll('.role-axis-title text'), (text) => text.textContent)),
    );
    for (const axisTitles of titles) assert.ok(axisTitles.length >= 1, JSON.stringify(titles));
    assert.ok(titles.flat().includes('Dice (%)'));
    assert.ok(titles.flat().includes('available sequences'));
    await page.locator('#dice-heatmap').screenshot({ path: path.join(SCREENSHOTS, 'dice-heatmap.png') });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('opened from disk, the page shows its charts and says the viewer needs smml view', async () => {
    const page = await browser!.newPage();
    await page.goto(pathToFileURL(path.join(runDir, 'evaluation', 'report', 'index.html')).href);
    await page.waitForSelector('#viewer[data-viewer^="error"]');
    assert.match((await page.locator('#viewer').textContent()) ?? '', /open this report with `smml view <folder>`/);
    assert.equal(await page.locator('figure svg.marks').count(), 3);
    await page.close();
  });

  it('Ctrl-C stops smml view', async () => {
    const exited = new Promise<number | null>((resolve) => server!.once('exit', resolve));
    server!.kill('SIGINT');
    assert.equal(await exited, 0);
  });
});
