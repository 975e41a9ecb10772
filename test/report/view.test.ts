// `smml view`: serves only what it was given, on 127.0.0.1, and finds a folder's report page.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { startViewServer } from '../../src/cli/view.ts';
import { writeVolume } from '../../src/data/volume.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smml-view-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Status and body of a GET of the raw path (sent as written: no client-side normalisation of `..`). */
function get(base: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    http
      .get({ hostname, port, path: rawPath }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      })
      .on('error', reject);
  });
}

describe('smml view', () => {
  it('serves the files under the folder and nothing outside it', async () => {
    const served = path.join(dir, 'demo');
    fs.mkdirSync(path.join(served, 'report'), { recursive: true });
    fs.writeFileSync(path.join(served, 'report', 'index.html'), '<p>report</p>');
    fs.writeFileSync(path.join(served, 'report', 'loss.png'), 'png bytes');
    fs.writeFileSync(path.join(dir, 'secret.txt'), 'outside');
    fs.symlinkSync(path.join(dir, 'secret.txt'), path.join(served, 'report', 'link.txt'));
    const server = await startViewServer([served]);
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/report\/index\.html$/);
      assert.deepEqual(await get(server.url, '/report/index.html'), { status: 200, body: '<p>report</p>' });
      assert.equal((await get(server.url, '/report/loss.png')).body, 'png bytes');
      for (const outside of ['/../secret.txt', '/report/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/report/link.txt', '/report/missing.png', '/report']) {
        assert.equal((await get(server.url, outside)).status, 404, outside);
      }
    } finally {
      await server.close();
    }
  });

  it('NIfTI files: a page with the viewer, exactly those files, and --port', async () => {
    const image = path.join(dir, 'flair.nii.gz');
    const labels = path.join(dir, 'seg.nii.gz');
    writeVolume(image, Float32Array.from({ length: 64 }, (_, i) => i * 0.5), [4, 4, 4]);
    writeVolume(labels, Uint8Array.from({ length: 64 }, (_, i) => (i % 3 === 0 ? 2 : 0)), [4, 4, 4]);
    fs.writeFileSync(path.join(dir, 'other.nii.gz'), 'not served');
    const probe = await startViewServer([image]);
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const server = await startViewServer([image, labels], port);
    try {
      assert.equal(new URL(server.url).port, String(port));
      const page = await get(server.url, '/index.html');
      assert.equal(page.status, 200);
      const manifest = JSON.parse(/<script type="application\/json" id="viewer-manifest">(.*?)<\/script>/s.exec(page.body)![1]!);
      // The float image is a background, the label map an overlay.
      assert.deepEqual(manifest.cases[0].images.map((v: { name: string }) => v.name), ['flair.nii.gz']);
      assert.deepEqual(manifest.cases[0].overlays.map((v: { name: string }) => v.name), ['seg.nii.gz']);
      assert.equal((await get(server.url, `/${manifest.cases[0].overlays[0].url}`)).body.length, fs.readFileSync(labels).length);
      assert.equal((await get(server.url, '/viewer.js')).status, 200);
      assert.equal((await get(server.url, '/other.nii.gz')).status, 404);
      assert.equal((await get(server.url, '/files/0/other.nii.gz')).status, 404);
      await assert.rejects(startViewServer([image], port), /port \d+ is in use/);
    } finally {
      await server.close();
    }
  });

  it('says what is wrong with what it was given', async () => {
    await assert.rejects(startViewServer([path.join(dir, 'nothing')]), /nothing: no such file or folder/);
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    await assert.rejects(startViewServer([empty]), /empty: no report to show \(looked for index\.html, report\/index\.html/);
    const text = path.join(dir, 'notes.txt');
    fs.writeFileSync(text, '');
    await assert.rejects(startViewServer([text]), /notes\.txt: smml view takes one folder, or NIfTI files/);
    const labels = path.join(dir, 'only-labels.nii.gz');
    writeVolume(labels, new Uint8Array(8), [2, 2, 2]);
    await assert.rejects(startViewServer([labels]), /only label maps given/);
  });
});
