/**
 * The fault matrix: every AWS operation Autopatch calls × {throttling, 5xx, access denied} × {once,
 * persistent, an outage that recovers} × {the first call, a middle call}, each run on the virtual
 * clock and checked against the invariants. The operations come from a clean run of the base scenario
 * (the model records every call), so a call Autopatch starts making is in the matrix at once.
 */
import {
  errorOfKind,
  FAULT_KINDS,
  type FaultKind,
  LAMBDA_INVOKE_ERRORS,
  SERVICES,
  type ServiceName,
} from '../model/catalog';
import type { SimulationReport } from '../report';
import { runScenario } from '../runner';
import type { FaultSpec, Scenario } from '../scenario';
import { checkInvariants, type Violation } from './invariants';

export const MODES = ['once', 'persistent', 'outage'] as const;
export type FaultMode = (typeof MODES)[number];
export type Position = 'first' | 'middle';

/** How long an outage lasts from its first failed call: longer than any SDK or state Retry backs off. */
export const OUTAGE = '20m';
/** Each run stops this long after the start (virtual): hours after any outage, long before 30 days. */
export const HORIZON = '2d';

export interface FaultCase {
  /** "ecs:UpdateService throttling once first". */
  readonly id: string;
  readonly service: ServiceName | 'lambda';
  readonly operation: string;
  readonly kind: FaultKind;
  /** The service's own name for that error (ECS ServerException, CloudWatch Throttling…). */
  readonly error: string;
  readonly mode: FaultMode;
  readonly position: Position;
  /** Calls that succeed before the first failure. */
  readonly after: number;
}

export interface CaseResult {
  readonly id: string;
  readonly violations: readonly Violation[];
  /** Per service key: the outcome of each execution, in order. */
  readonly outcomes: Readonly<Record<string, readonly string[]>>;
  readonly injected: number;
  readonly wallMs: number;
  /** The calls the run made, "<service>:<Operation>" → count (the clean run's list the matrix). */
  readonly apiCalls: Readonly<Record<string, number>>;
}

const isService = (s: string): s is ServiceName | 'lambda' =>
  s === 'lambda' || (SERVICES as readonly string[]).includes(s);

/**
 * The cases for the calls a clean run made ("<service>:<Operation>" → count), lambda:Invoke (the
 * state machine invoking its functions) included.
 */
export const buildMatrix = (apiCalls: Readonly<Record<string, number>>): FaultCase[] => {
  const cases: FaultCase[] = [];
  for (const [call, count] of Object.entries(apiCalls).sort(([a], [b]) => a.localeCompare(b))) {
    const [service, operation] = call.split(':') as [string, string];
    if (!isService(service) || count < 1) continue;
    const positions: Array<[Position, number]> = [['first', 0]];
    if (count >= 2) positions.push(['middle', Math.floor(count / 2)]);
    for (const kind of FAULT_KINDS) {
      for (const mode of MODES) {
        for (const [position, after] of positions) {
          cases.push({
            id: `${service}:${operation} ${kind} ${mode} ${position}`,
            service,
            operation,
            kind,
            error: service === 'lambda' ? LAMBDA_INVOKE_ERRORS[kind].name : errorOfKind(service, kind),
            mode,
            position,
            after,
          });
        }
      }
    }
  }
  return cases;
};

export const faultOf = (c: FaultCase): FaultSpec => ({
  service: c.service,
  operation: c.operation,
  error: c.error,
  after: c.after,
  times: 1,
  ...(c.mode === 'persistent' ? { persistent: true } : {}),
  ...(c.mode === 'outage' ? { outage: OUTAGE } : {}),
});

/** The base scenario with one fault, no expectations of its own, and a bounded horizon. */
export const caseScenario = (base: Scenario, c: FaultCase | undefined): Scenario => {
  const { expect: _ignored, ...rest } = base;
  return {
    ...rest,
    name: base.name,
    faults: [...base.faults, ...(c ? [faultOf(c)] : [])],
    until: HORIZON,
  };
};

export const outcomesOf = (report: SimulationReport): Record<string, string[]> => {
  const out: Record<string, string[]> = {};
  for (const e of report.executions) {
    const key = e.service ?? '(none)';
    out[key] = [...(out[key] ?? []), e.outcome ?? e.status];
  }
  return out;
};

/** Run one case and check the invariants on how it ended. */
export const runCase = async (base: Scenario, c: FaultCase | undefined): Promise<CaseResult> => {
  const report = await runScenario(caseScenario(base, c));
  const violations = checkInvariants(report, { faultCleared: report.world?.faultsCleared ?? false });
  return {
    id: c?.id ?? 'clean run',
    violations,
    outcomes: outcomesOf(report),
    injected: report.world?.faultsInjected ?? 0,
    wallMs: report.wallMs,
    apiCalls: report.apiCalls,
  };
};
