/**
 * The developer loop: wall time of `npm test` and `npx cdk synth`, run as a developer runs them.
 * Reported, never asserted: the exit code is reported with the time, and a failing suite is a figure
 * like any other. `cdk synth` writes to a temporary directory, not the working tree's cdk.out.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ORIGINAL_ENV } from './original-env';

export interface DevLoopResult {
  readonly command: string;
  readonly wallMs: number;
  readonly exitCode: number;
  /** The last lines of the output when the command failed. */
  readonly tail?: string;
}

const ROOT = join(__dirname, '..');

const run = (display: string, command: string, args: readonly string[]): DevLoopResult => {
  const start = performance.now();
  const out = spawnSync(command, args, {
    cwd: ROOT,
    env: { ...ORIGINAL_ENV, AWS_EC2_METADATA_DISABLED: 'true' },
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const wallMs = performance.now() - start;
  const exitCode = out.status ?? 1;
  const text = `${out.stdout ?? ''}\n${out.stderr ?? ''}${out.error ? `\n${out.error.message}` : ''}`;
  const tail = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-8)
    .join('\n');
  return { command: display, wallMs, exitCode, ...(exitCode === 0 ? {} : { tail }) };
};

export const measureDevLoop = (): DevLoopResult[] => {
  const results = [run('npm test', 'npm', ['test'])];
  const out = mkdtempSync(join(tmpdir(), 'autopatch-synth-'));
  try {
    results.push(run('npx cdk synth', 'npx', ['cdk', 'synth', '--output', out]));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  return results;
};
