/**
 * `npm run faults [-- --report-only] [--jobs 2] [--filter <text>] [--json] [--timeout-seconds 120]`:
 * the fault matrix. A clean run of the base scenario lists the AWS calls Autopatch makes; every call ×
 * {throttling, 5xx, access denied} × {once, persistent, outage} × {first call, a middle call} then runs
 * in child processes (`--jobs` at a time) and is checked against the invariants. Prints each violation,
 * then `N ok, M bad` with the violations by kind.
 *
 * Exit codes: 0 no case broke an invariant (or --report-only); 1 some did; 2 bad usage.
 */
import { type ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SCENARIO } from '../cli';
import { loadScenario, ScenarioError } from '../scenario';
import { formatDuration } from '../time';
import { VIOLATION_KINDS, type ViolationKind } from './invariants';
import { buildMatrix, type CaseResult, type FaultCase } from './matrix';
import type { WorkRequest } from './worker';

export const FAULTS_USAGE = `usage: npm run faults [-- [<scenario.json>] [--report-only] [--jobs <n>] [--filter <text>] [--json] [--timeout-seconds <n>]]

  <scenario.json>       the base scenario (default ${path.relative(process.cwd(), DEFAULT_SCENARIO)})
  --report-only         exit 0 even when cases break invariants
  --jobs <n>            runs at a time, each in its own child process (default 2)
  --filter <text>       only the cases whose id contains the text, e.g. "ecs:UpdateService" or "persistent"
  --json                print one JSON document with every case's result
  --timeout-seconds <n> a case that takes longer (wall clock) is stopped and counted bad (default 120)
`;

export interface FaultsIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const WORKER = path.join(__dirname, 'worker.ts');

type Reply = { ready: true } | { ok: true; result: CaseResult } | { ok: false; error: string };

/** One child process that runs cases one after the other; restarted when a case overruns. */
class Worker {
  private child: ChildProcess | undefined;
  private ready: Promise<void> | undefined;

  private start(): Promise<void> {
    const child = fork(WORKER, [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.child = child;
    this.ready = new Promise((resolve, reject) => {
      const onReady = (m: Reply) => {
        if ('ready' in m) {
          child.off('message', onReady);
          resolve();
        }
      };
      child.on('message', onReady);
      child.once('exit', (code) => reject(new Error(`the worker exited (${code}) before it was ready`)));
    });
    return this.ready;
  }

  async run(request: WorkRequest, timeoutMs: number): Promise<Reply> {
    if (!this.child || this.child.exitCode !== null) await this.start();
    else await this.ready;
    const child = this.child as ChildProcess;
    return new Promise<Reply>((resolve) => {
      const done = (reply: Reply) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(reply);
      };
      const onMessage = (m: Reply) => {
        if (!('ready' in m)) done(m);
      };
      const onExit = (code: number | null) => done({ ok: false, error: `the worker exited (${code})` });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        this.child = undefined;
        done({ ok: false, error: `did not finish within ${Math.round(timeoutMs / 1000)} s (wall clock)` });
      }, timeoutMs);
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send(request);
    });
  }

  stop(): void {
    this.child?.kill();
    this.child = undefined;
  }
}

export interface MatrixSummary {
  readonly cases: number;
  readonly ok: number;
  readonly bad: number;
  readonly byKind: Readonly<Record<string, number>>;
  readonly wallMs: number;
  readonly results: ReadonlyArray<CaseResult & { readonly error?: string }>;
}

/** Run `cases` on `jobs` workers; `onResult` hears each as it finishes. */
export const runMatrix = async (
  scenario: string,
  cases: ReadonlyArray<FaultCase | undefined>,
  options: { jobs: number; timeoutMs: number; onResult?: (r: CaseResult & { error?: string }) => void },
): Promise<Array<CaseResult & { error?: string }>> => {
  const results: Array<CaseResult & { error?: string }> = new Array(cases.length);
  const workers = Array.from({ length: Math.max(1, options.jobs) }, () => new Worker());
  let next = 0;
  try {
    await Promise.all(
      workers.map(async (w) => {
        while (next < cases.length) {
          const i = next++;
          const c = cases[i];
          const reply = await w.run({ scenario, ...(c ? { case: c } : {}) }, options.timeoutMs);
          const result: CaseResult & { error?: string } =
            'result' in reply
              ? reply.result
              : {
                  id: c?.id ?? 'clean run',
                  violations: [{ kind: 'world-error', text: 'error' in reply ? reply.error : 'no reply' }],
                  outcomes: {},
                  injected: 0,
                  wallMs: options.timeoutMs,
                  apiCalls: {},
                  ...('error' in reply ? { error: reply.error } : {}),
                };
          results[i] = result;
          options.onResult?.(result);
        }
      }),
    );
  } finally {
    for (const w of workers) w.stop();
  }
  return results;
};

export const summarize = (
  results: ReadonlyArray<CaseResult & { error?: string }>,
  wallMs: number,
): MatrixSummary => {
  const byKind: Record<string, number> = {};
  for (const r of results)
    for (const kind of new Set(r.violations.map((v) => v.kind))) byKind[kind] = (byKind[kind] ?? 0) + 1;
  const bad = results.filter((r) => r.violations.length > 0).length;
  return { cases: results.length, ok: results.length - bad, bad, byKind, wallMs, results };
};

export const mainFaults = async (argv: readonly string[], io: FaultsIo): Promise<number> => {
  let values: {
    'report-only'?: boolean;
    jobs?: string;
    filter?: string;
    json?: boolean;
    'timeout-seconds'?: string;
    help?: boolean;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: {
        'report-only': { type: 'boolean' },
        jobs: { type: 'string' },
        filter: { type: 'string' },
        json: { type: 'boolean' },
        'timeout-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    io.err(`faults: ${(error as Error).message}\n${FAULTS_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(FAULTS_USAGE);
    return 0;
  }
  const jobs = Number(values.jobs ?? 2);
  const timeoutSeconds = Number(values['timeout-seconds'] ?? 120);
  if (
    !Number.isInteger(jobs) ||
    jobs < 1 ||
    !Number.isFinite(timeoutSeconds) ||
    timeoutSeconds <= 0 ||
    positionals.length > 1
  ) {
    io.err(`faults: bad arguments\n${FAULTS_USAGE}`);
    return 2;
  }
  const scenario = path.resolve(positionals[0] ?? DEFAULT_SCENARIO);
  try {
    loadScenario(scenario);
  } catch (error) {
    if (!(error instanceof ScenarioError)) throw error;
    io.err(`${error.message}\n`);
    return 2;
  }

  const started = Date.now();
  const [clean] = await runMatrix(scenario, [undefined], { jobs: 1, timeoutMs: timeoutSeconds * 1000 });
  const apiCalls = clean?.apiCalls ?? {};
  if (!clean || clean.violations.length > 0) {
    io.err(
      `faults: the clean run of the base scenario already breaks invariants:\n${(clean?.violations ?? [])
        .map((v) => `  ${v.kind}: ${v.text}`)
        .join('\n')}\n`,
    );
    return values['report-only'] ? 0 : 1;
  }
  const cases = buildMatrix(apiCalls).filter(
    (c) => values.filter === undefined || c.id.includes(values.filter),
  );
  const operations = new Set(cases.map((c) => `${c.service}:${c.operation}`)).size;
  if (!values.json)
    io.out(
      `fault matrix: ${cases.length} cases (${operations} operations from a clean run of ${path.basename(scenario)}), ${jobs} at a time\n`,
    );
  let done = 0;
  const results = await runMatrix(scenario, cases, {
    jobs,
    timeoutMs: timeoutSeconds * 1000,
    onResult: (r) => {
      done += 1;
      if (values.json) return;
      const outcomes = Object.entries(r.outcomes)
        .map(([k, v]) => `${k} ${v.join('→')}`)
        .join('; ');
      io.out(
        `${r.violations.length === 0 ? 'ok ' : 'BAD'} [${done}/${cases.length}] ${r.id} (${outcomes || 'no execution'}; ${r.injected} failed call(s); ${formatDuration(r.wallMs)})\n`,
      );
      for (const v of r.violations) io.out(`      ${v.kind}: ${v.text}\n`);
    },
  });
  const summary = summarize(results, Date.now() - started);
  if (values.json) io.out(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    const kinds = VIOLATION_KINDS.filter((k: ViolationKind) => summary.byKind[k])
      .map((k) => `${k} ${summary.byKind[k]}`)
      .join(', ');
    io.out(
      `\n${summary.ok} ok, ${summary.bad} bad${kinds ? ` (cases with: ${kinds})` : ''} in ${formatDuration(summary.wallMs)}\n`,
    );
  }
  return summary.bad > 0 && !values['report-only'] ? 1 : 0;
};
