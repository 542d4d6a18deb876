import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildSync } from 'esbuild';

export interface ColdStartRow {
  readonly lambda: string;
  readonly bytes: number;
  readonly gzipBytes: number;
  /** Median wall time to require the bundle in a fresh Node process, minus an empty process. */
  readonly loadMs: number;
  /** loadMs divided by the floor handler's loadMs, measured in the same run. */
  readonly ratioToFloor: number;
}

const ROOT = join(__dirname, '..');

/** Every Lambda entry point: the triage handler, each workflow handler, and the floor. */
export const lambdaEntries = (): Array<{ name: string; entry: string }> => {
  const workflowDir = join(ROOT, 'lambdas', 'workflow');
  const workflow = readdirSync(workflowDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(workflowDir, f))
    .filter((f) => /export const handler\b|export async function handler\b/.test(readFileSync(f, 'utf8')))
    .map((entry) => ({ name: `workflow/${basename(entry, '.ts')}`, entry }));
  return [
    { name: 'floor (SFN client only)', entry: join(ROOT, 'bench', 'floor-handler.ts') },
    { name: 'triage/handler', entry: join(ROOT, 'lambdas', 'triage', 'handler.ts') },
    ...workflow,
  ];
};

/** Bundle the way NodejsFunction does (minified, CommonJS, SDK bundled) so sizes match the deployment. */
const bundle = (entry: string, outdir: string): string => {
  const outfile = join(outdir, `${basename(entry, '.ts')}-${Math.random().toString(36).slice(2)}.js`);
  buildSync({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    outfile,
    logLevel: 'error',
  });
  return outfile;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** Time `require(file)` in fresh processes, interleaved with the others to share the machine's noise. */
const loadTimes = (files: string[], runs: number): number[][] => {
  const script =
    'const t=process.hrtime.bigint();require(process.argv[1]);process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6))';
  const env = {
    ...process.env,
    AWS_REGION: 'eu-central-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  const times = files.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    files.forEach((file, i) => {
      const out = execFileSync(process.execPath, ['-e', script, file], { env, encoding: 'utf8' });
      times[i]?.push(Number(out));
    });
  }
  return times;
};

export const measureColdStart = (runs = 15): ColdStartRow[] => {
  const dir = mkdtempSync(join(tmpdir(), 'autopatch-bench-'));
  const entries = lambdaEntries();
  const files = entries.map((e) => bundle(e.entry, dir));
  const times = loadTimes(files, runs).map(median);
  const floor = times[0] as number;
  return entries.map((e, i) => {
    const bytes = statSync(files[i] as string).size;
    return {
      lambda: e.name,
      bytes,
      gzipBytes: gzipSync(readFileSync(files[i] as string)).length,
      loadMs: times[i] as number,
      ratioToFloor: (times[i] as number) / floor,
    };
  });
};
