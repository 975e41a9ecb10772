// Bundles the viewer (./main.ts with Niivue from node_modules) into one browser script with esbuild, so reports
// carry their viewer and fetch nothing at run time.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const ENTRY = fileURLToPath(new URL('./main.ts', import.meta.url));

let cached: Promise<string> | undefined;

/** The viewer as one minified classic script (a module script would not load from a page opened from disk); built once per process. */
export function viewerBundle(): Promise<string> {
  cached ??= build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
  }).then((result) => result.outputFiles[0]!.text);
  return cached;
}
