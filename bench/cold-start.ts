/**
 * Cold start of every Lambda: the bundle as NodejsFunction builds it (esbuild, minified, CommonJS,
 * SDK bundled, external source map), its size raw and gzipped, and the time to `require` it in a
 * fresh Node process started with the functions' NODE_OPTIONS (--enable-source-maps), as a ratio to
 * a floor handler that only loads the Step Functions client (bench/floor-handler.ts), bundled and
 * loaded the same way. Runs are interleaved across bundles so that the machine's noise hits all alike.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildSync } from 'esbuild';
import { median } from './stats';

export interface ColdStartRow {
  readonly lambda: string;
  readonly bytes: number;
  readonly gzipBytes: number;
  /** Median wall ms of `require(bundle)` in a fresh Node process (process start-up not included). */
  readonly loadMs: number;
  /** loadMs divided by the floor handler's loadMs, measured in the same run. */
  readonly ratioToFloor: number;
  /** Why the bundle could not be built or loaded, if it could not. */
  readonly error?: string;
}

const ROOT = join(__dirname, '..');
export const FLOOR = 'floor (SFN client only)';
export const TRIAGE = 'triage/handler';

const HANDLER = /export const handler\b|export async function handler\b/;

/** Every Lambda entry point: the floor, the triage handler and each workflow handler. */
export const lambdaEntries = (): Array<{ name: string; entry: string; target: string }> => {
  const workflowDir = join(ROOT, 'lambdas', 'workflow', 'handlers');
  const workflow = readdirSync(workflowDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join(workflowDir, f))
    .filter((f) => HANDLER.test(readFileSync(f, 'utf8')))
    // lib/workflow.ts: NODEJS_22_X, target node22.
    .map((entry) => ({ name: `workflow/${basename(entry, '.ts')}`, entry, target: 'node22' }));
  return [
    // lib/triage-function.ts: NODEJS_24_X (NodejsFunction's default target follows the runtime).
    { name: FLOOR, entry: join(ROOT, 'bench', 'floor-handler.ts'), target: 'node24' },
    { name: TRIAGE, entry: join(ROOT, 'lambdas', 'triage', 'handler.ts'), target: 'node24' },
    ...workflow,
  ];
};

/** Environment variables the handlers require at module load (their `requireEnv([...])` names), faked. */
const handlerEnvironment = (entries: ReadonlyArray<{ entry: string }>): Record<string, string> => {
  const names = new Set<string>(['LEDGER_TABLE', 'TOPIC_ARN', 'STATE_MACHINE_ARN']);
  for (const { entry } of entries) {
    const text = readFileSync(entry, 'utf8');
    for (const call of text.matchAll(/requireEnv\(\s*\[([^\]]*)\]/g)) {
      for (const name of (call[1] ?? '').matchAll(/['"]([A-Z0-9_]+)['"]/g)) names.add(name[1] as string);
    }
  }
  return Object.fromEntries([...names].map((n) => [n, `bench-${n.toLowerCase()}`]));
};

/** Bundle the way NodejsFunction does (minified, CommonJS, SDK bundled, source map) so sizes match the deployment. */
const bundle = (entry: string, target: string, outdir: string): string => {
  const outfile = join(outdir, `${basename(entry, '.ts')}-${Math.random().toString(36).slice(2)}.js`);
  buildSync({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    sourcemap: true,
    platform: 'node',
    target,
    format: 'cjs',
    outfile,
    logLevel: 'silent',
  });
  return outfile;
};

/** Time `require(file)` in fresh processes, interleaved with the others to share the machine's noise. */
const loadTimes = (files: ReadonlyArray<string | undefined>, runs: number, env: NodeJS.ProcessEnv) => {
  const script =
    'const t=process.hrtime.bigint();require(process.argv[1]);process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6))';
  const times = files.map(() => [] as number[]);
  const errors = files.map(() => undefined as string | undefined);
  for (let r = 0; r < runs; r++) {
    files.forEach((file, i) => {
      if (!file || errors[i]) return;
      try {
        const out = execFileSync(process.execPath, ['--enable-source-maps', '-e', script, file], {
          env,
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        times[i]?.push(Number(out));
      } catch (error) {
        const stderr = String((error as { stderr?: unknown }).stderr ?? '');
        errors[i] = (stderr.split('\n').find((l) => /Error/.test(l)) ?? (error as Error).message).trim();
      }
    });
  }
  return { times, errors };
};

export const measureColdStart = (runs = 15): ColdStartRow[] => {
  const dir = mkdtempSync(join(tmpdir(), 'autopatch-bench-'));
  try {
    const entries = lambdaEntries();
    const files = entries.map((e) => {
      try {
        return { file: bundle(e.entry, e.target, dir) };
      } catch (error) {
        return { error: `bundling failed: ${(error as Error).message.split('\n')[0]}` };
      }
    });
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      AWS_REGION: 'eu-central-1',
      AWS_ACCESS_KEY_ID: 'BENCH',
      AWS_SECRET_ACCESS_KEY: 'BENCH',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      AUTOPATCH_CONFIG: JSON.stringify({ policy: {} }),
      ...handlerEnvironment(entries),
    };
    const { times, errors } = loadTimes(
      files.map((f) => f.file),
      runs,
      env,
    );
    const medians = times.map((t) => median(t));
    const floor = medians[0] as number;
    return entries.map((e, i) => {
      const file = files[i]?.file;
      const error = files[i]?.error ?? errors[i];
      const raw = file ? readFileSync(file) : Buffer.alloc(0);
      return {
        lambda: e.name,
        bytes: file ? statSync(file).size : 0,
        gzipBytes: file ? gzipSync(raw).length : 0,
        loadMs: medians[i] as number,
        ratioToFloor: (medians[i] as number) / floor,
        ...(error ? { error } : {}),
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};
