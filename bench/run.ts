/**
 * `npm run bench`: every measurement in turn, into one BenchReport. A measurement that fails is
 * recorded as an error and the others still run.
 */
import { execFileSync } from 'node:child_process';
import { cpus, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { renderStack } from '../simulation/stack';
import { type AmplificationResult, measureAmplification } from './amplification';
import { type BurstSimulationResult, measureBurstSimulation } from './burst-simulation';
import { type ColdStartRow, measureColdStart } from './cold-start';
import {
  type ContentionResult,
  measureContention,
  measureOrderContention,
  type OrderContentionResult,
} from './contention';
import { type DevLoopResult, measureDevLoop } from './dev-loop';
import { ACCOUNT_ID, generateFleet, REGION } from './fleet';
import { type FleetBurstResult, measureFleetBurst } from './fleet-burst';
import { type InventoryBenchResult, measureInventory } from './inventory';
import { type BenchReport, checkGoals, type ThroughputFigures } from './report';
import { measureWorkflow, type WorkflowRun } from './workflow';

export const SECTIONS = [
  'cold-start',
  'throughput',
  'amplification',
  'end-to-end',
  'workflow',
  'contention',
  'dev-loop',
  'inventory',
  'fleet',
] as const;
export type Section = (typeof SECTIONS)[number];
/** What runs without --only: the fleet burst takes many minutes on its own, so it is asked for by name. */
export const DEFAULT_SECTIONS: readonly Section[] = SECTIONS.filter((s) => s !== 'fleet');

export interface BenchOptions {
  readonly command: string;
  readonly sizes: readonly number[];
  readonly bakeTimes: readonly number[];
  readonly sections: ReadonlySet<Section>;
  /** Timed rounds per throughput measurement. */
  readonly rounds: number;
  /** Fresh processes per bundle for the cold start. */
  readonly coldStartRuns: number;
  /** How long the end-to-end burst takes Inspector to raise, as a scenario duration. */
  readonly spread: string;
  /** Findings of the fleet burst (1,000 services in 50 accounts, over two simulated hours). */
  readonly fleetSize?: number;
}

const ROOT = join(__dirname, '..');
const THROUGHPUT_CHILD = join(__dirname, 'throughput-child.ts');

/** One throughput measurement in a fresh process, so that its peak memory is its own. */
const throughputInChild = (size: number, batchSize: number, rounds: number): ThroughputFigures => {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', THROUGHPUT_CHILD, JSON.stringify({ size, batchSize, rounds })],
    { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return JSON.parse(out) as ThroughputFigures;
};

const commit = (): string | undefined => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
};

export const runBench = async (options: BenchOptions, log: (line: string) => void): Promise<BenchReport> => {
  const startedAt = new Date();
  const start = performance.now();
  const errors: string[] = [];
  const skipped: string[] = [];
  const wanted = (s: Section) => options.sections.has(s);
  const attempt = async <T>(what: string, work: () => Promise<T> | T): Promise<T | undefined> => {
    log(`${what}…`);
    const t = performance.now();
    try {
      const value = await work();
      log(`${what}: done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      return value;
    } catch (error) {
      const e = error as Error & { stderr?: unknown };
      const detail =
        typeof e.stderr === 'string' && e.stderr.trim()
          ? e.stderr.trim().split('\n').slice(-3).join(' ')
          : e.message;
      errors.push(`${what}: ${e.name}: ${detail}`);
      log(`${what}: FAILED (${detail})`);
      return undefined;
    }
  };

  // The intake settings the deployment has: batch size and the event source's maximum concurrency.
  const stack = await renderStack(ACCOUNT_ID, REGION);
  const { batchSize, maxConcurrency: concurrency } = stack.intake;
  const fleet = generateFleet();

  const coldStart: ColdStartRow[] = [];
  if (wanted('cold-start')) {
    coldStart.push(...((await attempt('cold start', () => measureColdStart(options.coldStartRuns))) ?? []));
  } else skipped.push('cold start');

  const throughput: ThroughputFigures[] = [];
  const amplification: AmplificationResult[] = [];
  const endToEnd: BurstSimulationResult[] = [];
  for (const size of options.sizes) {
    if (wanted('throughput')) {
      const r = await attempt(`throughput, ${size} findings`, () =>
        throughputInChild(size, batchSize, options.rounds),
      );
      if (r) throughput.push(r);
    }
    if (wanted('amplification')) {
      const r = await attempt(`amplification (triage), ${size} findings`, () =>
        measureAmplification({ size, batchSize, concurrency, fleet }),
      );
      if (r) amplification.push(r);
    }
    if (wanted('end-to-end')) {
      const r = await attempt(`amplification (end to end), ${size} findings`, () =>
        measureBurstSimulation({ size, spread: options.spread, fleet }),
      );
      if (r) endToEnd.push(r);
    }
  }
  for (const s of ['throughput', 'amplification', 'end-to-end'] as const) if (!wanted(s)) skipped.push(s);

  const workflow: WorkflowRun[] = [];
  if (wanted('workflow')) {
    workflow.push(...((await attempt('workflow', () => measureWorkflow(options.bakeTimes))) ?? []));
  } else skipped.push('workflow');

  const contention: ContentionResult[] = [];
  const orderContention: OrderContentionResult[] = [];
  if (wanted('contention')) {
    contention.push(
      ...((await attempt('lock contention, 100 concurrent findings', () => measureContention(100))) ?? []),
    );
    orderContention.push(
      ...((await attempt('claim order, 5 invocations × 20 services', () =>
        measureOrderContention({ invocations: 5, services: 20 }),
      )) ?? []),
    );
  } else skipped.push('contention');

  const devLoop: DevLoopResult[] = [];
  if (wanted('dev-loop')) {
    devLoop.push(
      ...((await attempt('developer loop (npm test, npx cdk synth)', () => measureDevLoop())) ?? []),
    );
  } else skipped.push('developer loop (--skip-dev-loop)');

  let inventory: InventoryBenchResult | undefined;
  if (wanted('inventory')) {
    inventory = await attempt('inventory: scanning resolver vs index, 10/100/1,000 services', () =>
      measureInventory({ batchSize, concurrency }),
    );
  } else skipped.push('inventory');

  let fleetBurst: FleetBurstResult | undefined;
  if (wanted('fleet')) {
    const size = options.fleetSize ?? 100_000;
    fleetBurst = await attempt(
      `fleet burst: 1,000 services in 50 accounts, ${size} findings over two simulated hours`,
      () => measureFleetBurst({ size, batchSize, concurrency }),
    );
  } else skipped.push('fleet burst (--only fleet)');

  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const hash = commit();
  const report: Omit<BenchReport, 'goals'> = {
    meta: {
      command: options.command,
      startedAt: startedAt.toISOString(),
      durationMs: performance.now() - start,
      node: process.version,
      os: `${platform()} ${release()}`,
      cpu,
      cores: cpus().length,
      memoryGb: Math.round(totalmem() / 1024 ** 3),
      ...(hash ? { commit: hash } : {}),
      sizes: [...options.sizes],
      bakeTimes: [...options.bakeTimes],
      batchSize,
      concurrency,
    },
    throughput,
    amplification,
    endToEnd,
    coldStart,
    workflow,
    contention,
    orderContention,
    devLoop,
    ...(inventory ? { inventory } : {}),
    ...(fleetBurst ? { fleetBurst } : {}),
    skipped,
    errors,
  };
  return { ...report, goals: checkGoals(report) };
};
