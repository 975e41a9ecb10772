/**
 * `smml view <run|report|nifti…>`: serves a report folder (with its 3D viewer) or NIfTI files on 127.0.0.1 and
 * prints the URL on the first line of stdout. Only files under the given folder (or exactly the given files)
 * are served; any other request gets 404. Ctrl-C stops the server.
 */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { filesPage } from '../report/files-page.ts';
import { VIEWER_SCRIPT } from '../report/html.ts';
import { REPORT_PAGE } from '../report/report.ts';
import { viewerBundle } from '../report/viewer/bundle.ts';
import { nonNegativeInteger } from './arguments.ts';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
};
// .nii.gz is sent as the bytes it is (no Content-Encoding): Niivue decompresses it itself.
const contentType = (file: string) => CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';

/** Where a folder's report page is: the folder's own, a demo's report/, a run's evaluation/report/. */
const PAGE_CANDIDATES = [REPORT_PAGE, `report/${REPORT_PAGE}`, `evaluation/report/${REPORT_PAGE}`];

/** How a request path maps to what is served: a file under the root, or content made in memory. */
interface Site {
  /** URL path of the page to open. */
  page: string;
  /** A file or content for a decoded URL path, undefined when the path is not served. */
  resolve(urlPath: string): Promise<{ file: string } | { content: string | Buffer; type: string } | undefined>;
}

/** `file` when it lies under `root` once symbolic links are followed, else undefined. */
function insideRoot(root: string, file: string): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    return undefined;
  }
  const relative = path.relative(root, real);
  if (relative.startsWith('..') || path.isAbsolute(relative)) return undefined;
  return fs.statSync(real).isFile() ? real : undefined;
}

function folderSite(folder: string): Site {
  const root = fs.realpathSync(folder);
  const page = PAGE_CANDIDATES.find((candidate) => fs.existsSync(path.join(root, candidate)));
  if (!page) {
    throw new Error(`${folder}: no report to show (looked for ${PAGE_CANDIDATES.join(', ')}; \`smml evaluate\` or the demo writes one)`);
  }
  return {
    page: `/${page}`,
    resolve: async (urlPath) => {
      const file = insideRoot(root, path.join(root, urlPath));
      return file ? { file } : undefined;
    },
  };
}

function filesSite(files: readonly string[]): Site {
  const served = files.map((file, index) => ({ file: path.resolve(file), url: `files/${index}/${encodeURIComponent(path.basename(file))}` }));
  const page = filesPage(served);
  const byUrl = new Map(served.map((entry) => [`/${decodeURIComponent(entry.url)}`, entry.file]));
  return {
    page: `/${REPORT_PAGE}`,
    resolve: async (urlPath) => {
      if (urlPath === `/${REPORT_PAGE}`) return { content: page, type: CONTENT_TYPES['.html']! };
      if (urlPath === `/${VIEWER_SCRIPT}`) return { content: await viewerBundle(), type: CONTENT_TYPES['.js']! };
      const file = byUrl.get(urlPath);
      return file ? { file } : undefined;
    },
  };
}

const NIFTI = /\.nii(\.gz)?$/i;

/** The site for the command's targets: one folder, or NIfTI files. */
export function siteFor(targets: readonly string[]): Site {
  if (targets.length === 0) throw new Error('smml view: name a run or report folder, or NIfTI files');
  for (const target of targets) if (!fs.existsSync(target)) throw new Error(`${target}: no such file or folder`);
  if (targets.length === 1 && fs.statSync(targets[0]!).isDirectory()) return folderSite(targets[0]!);
  const other = targets.find((target) => !NIFTI.test(target) || !fs.statSync(target).isFile());
  if (other) throw new Error(`${other}: smml view takes one folder, or NIfTI files (.nii, .nii.gz)`);
  return filesSite(targets);
}

export interface ViewServer {
  /** The page's URL. */
  url: string;
  close(): Promise<void>;
}

/** Serves `targets` on 127.0.0.1 at `port` (0: a free port). */
export async function startViewServer(targets: readonly string[], port = 0): Promise<ViewServer> {
  const site = siteFor(targets);
  const server = http.createServer((request, response) => {
    const notFound = () => {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('not found\n');
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' });
      response.end();
      return;
    }
    let urlPath: string;
    try {
      urlPath = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    } catch {
      notFound();
      return;
    }
    if (urlPath === '/') {
      response.writeHead(302, { location: site.page });
      response.end();
      return;
    }
    site
      .resolve(urlPath)
      .then((found) => {
        if (!found) return notFound();
        if ('content' in found) {
          response.writeHead(200, { 'content-type': found.type, 'cache-control': 'no-store' });
          response.end(request.method === 'HEAD' ? undefined : found.content);
          return;
        }
        const size = fs.statSync(found.file).size;
        response.writeHead(200, { 'content-type': contentType(found.file), 'content-length': size, 'cache-control': 'no-store' });
        if (request.method === 'HEAD') return response.end();
        fs.createReadStream(found.file).pipe(response);
      })
      .catch((error: unknown) => {
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        response.end(`${(error as Error).message}\n`);
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`smml view: port ${port} is in use; pick another with --port or leave it out for a free one`) : error),
    );
    server.listen(port, '127.0.0.1', resolve);
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}${site.page}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function registerViewCommand(program: Command): void {
  program
    .command('view')
    .description('serve a report (demo, run or evaluation folder) with its 3D viewer, or NIfTI files, on 127.0.0.1; prints the URL first')
    .argument('<targets...>', 'a run, demo or report folder, or NIfTI files (images and label maps)')
    .option('--port <n>', 'port to listen on (default: a free one)', nonNegativeInteger, 0)
    .action(async (targets: string[], options: { port: number }) => {
      const server = await startViewServer(targets, options.port);
      console.log(server.url);
      console.error('serving on 127.0.0.1 only; Ctrl-C stops');
      process.once('SIGINT', () => {
        void server.close().then(() => process.exit(0));
      });
    });
}
