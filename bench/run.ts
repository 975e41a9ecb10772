// `npm run bench`: runs the benchmark sections and prints one Markdown table (progress goes to stderr).
//   --only NAME    run only the named section (repeatable, or comma-separated)
//   --quick        fewer repetitions and steps
//   --threads N    libtorch threads for our engine and the Python reference (default: libtorch's setting)
import os from 'node:os';
import { parseArgs } from 'node:util';
import { torch } from '../src/engine/index.ts';
import { engineSections } from './engine.ts';
import { findPythonTorch, type BenchContext, type Section } from './harness.ts';
import { inferenceSection } from './inference.ts';
import { modelSections } from './models.ts';
import { samMed3dSection } from './sam-med3d.ts';
import { smmlStepSection } from './smml-step.ts';
import { wholeVolumeSection } from './whole-volume.ts';
import { formatBenchTable, type BenchRow } from './table.ts';

const SECTIONS: Section[] = [...engineSections, ...modelSections, smmlStepSection, inferenceSection, wholeVolumeSection, samMed3dSection];

function usage(): string {
  const names = SECTIONS.map((s) => `  ${s.name.padEnd(10)} ${s.description}`).join('\n');
  return `usage: npm run bench -- [--only NAME]... [--quick] [--threads N]\nsections:\n${names}`;
}

function selectSections(only: string[]): Section[] {
  if (only.length === 0) return SECTIONS;
  const wanted = only.flatMap((o) => o.split(',')).map((o) => o.trim());
  const unknown = wanted.filter((name) => !SECTIONS.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`unknown section ${unknown.map((u) => `'${u}'`).join(', ')}\n${usage()}`);
  return SECTIONS.filter((s) => wanted.includes(s.name));
}

function parseThreads(value: string | undefined): number {
  if (value === undefined) return torch.getNumThreads();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--threads: expected a positive integer, got '${value}'`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string', multiple: true, default: [] },
      quick: { type: 'boolean', default: false },
      threads: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const sections = selectSections(values.only);
  const threads = parseThreads(values.threads);
  torch.setNumThreads(threads);
  const python = findPythonTorch();
  const ctx: BenchContext = {
    quick: values.quick,
    threads,
    python,
    log: (message) => console.error(`[bench] ${message}`),
  };

  const loadAtStart = os.loadavg()[0];
  console.log(`# smml benchmarks${values.quick ? ' (quick)' : ''}`);
  console.log(`- CPU: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} cores; libtorch threads: ${threads}`);
  console.log(`- ours: libtorch ${torch.version()} through the smml addon, Node ${process.versions.node}`);
  console.log(
    python
      ? `- PyTorch (Python): torch ${python.torchVersion} from ${python.executable}`
      : '- PyTorch (Python): comparison skipped, no Python interpreter with torch was found ' +
          '(install Debian\'s build with `sudo apt-get install -y python3-torch`, or point BENCH_PYTHON at an interpreter that has torch)',
  );
  console.log('- times are medians after warm-up; ratio = our time / Python time (below 1: ours is faster)');

  const rows: BenchRow[] = [];
  let failed = false;
  for (const section of sections) {
    ctx.log(`section ${section.name}: ${section.description}`);
    try {
      rows.push(...(await section.run(ctx)));
    } catch (error) {
      failed = true;
      ctx.log(`section ${section.name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      rows.push({ benchmark: `${section.name}: FAILED (see stderr)`, ours: '—' });
    }
  }
  console.log(
    `- load average (1 min) at start ${loadAtStart.toFixed(2)}, at end ${os.loadavg()[0].toFixed(2)}: ` +
      `well above ${threads} (our own threads) means other work shared the cores, see bench/README.md\n`,
  );
  console.log(formatBenchTable(rows));
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(2);
  },
);
