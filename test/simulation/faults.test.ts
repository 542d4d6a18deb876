import * as path from 'node:path';
import { checkInvariants, type ViolationKind } from '../../simulation/faults/invariants';
import { buildMatrix, caseScenario, type FaultCase, runCase } from '../../simulation/faults/matrix';
import { errorOfKind, resolveError, SERVICE_ERRORS } from '../../simulation/model/catalog';
import { ScriptedFaults } from '../../simulation/model/faults';
import type { SimulationReport } from '../../simulation/report';
import { runScenario } from '../../simulation/runner';
import { loadScenario } from '../../simulation/scenario';

const HAPPY_PATH = path.join(__dirname, '../../simulation/scenarios/happy-path.json');
const kinds = (report: SimulationReport, faultCleared = true): ViolationKind[] =>
  [...new Set(checkInvariants(report, { faultCleared }).map((v) => v.kind))].sort();

describe('error catalog', () => {
  it.each([
    ['ecs', 'server', 'ServerException'],
    ['cloudwatch', 'throttling', 'Throttling'],
    ['cloudwatch', 'server', 'InternalServiceFault'],
    ['sns', 'throttling', 'ThrottledException'],
    ['sns', 'server', 'InternalErrorException'],
    ['codebuild', 'server', 'InternalFailure'],
    ['inspector2', 'server', 'InternalServerException'],
    ['dynamodb', 'server', 'InternalServerError'],
  ] as const)('%s answers %s with %s', (service, kind, name) => {
    expect(errorOfKind(service, kind)).toBe(name);
  });

  it('keeps the generic names scenarios wrote, as the service’s own error of that kind', () => {
    expect(resolveError('ecs', 'InternalServerError')?.name).toBe('ServerException');
    expect(resolveError('inspector2', 'InternalServerError')).toMatchObject({
      name: 'InternalServerException',
      status: 500,
    });
    expect(resolveError('sns', 'Throttled')?.name).toBe('ThrottledException');
    expect(resolveError('dynamodb', 'ProvisionedThroughputExceededException')?.throttling).toBe(true);
    expect(resolveError('codebuild', 'ServiceUnavailable')?.status).toBe(503);
    expect(resolveError('ecs', 'InternalServiceFault')).toBeUndefined();
    expect(Object.keys(SERVICE_ERRORS.sfn.server)).toContain('ServiceUnavailable');
  });
});

describe('scripted faults', () => {
  const fails = (f: ScriptedFaults, at: number) => {
    jest.setSystemTime(at);
    try {
      f.check('ecs', 'UpdateService');
      return false;
    } catch {
      return true;
    }
  };
  beforeEach(() => jest.useFakeTimers({ now: 0 }));
  afterEach(() => jest.useRealTimers());
  const base = {
    service: 'ecs' as const,
    operation: 'UpdateService',
    error: 'throttling',
    times: 1,
    after: 1,
  };

  it('fails a number of calls after some succeed', () => {
    const f = new ScriptedFaults([{ ...base, times: 2 }], 0);
    expect([1, 2, 3, 4].map((t) => fails(f, t))).toEqual([false, true, true, false]);
    expect(f.cleared()).toBe(true);
  });

  it('fails every call once persistent, and never clears', () => {
    const f = new ScriptedFaults([{ ...base, persistent: true }], 0);
    expect([1, 2, 3, 4].map((t) => fails(f, t))).toEqual([false, true, true, true]);
    expect(f.cleared()).toBe(false);
  });

  it('fails every call during an outage, then recovers', () => {
    const f = new ScriptedFaults([{ ...base, outage: '10m' }], 0);
    expect([0, 60_000, 659_000, 660_000, 700_000].map((t) => fails(f, t))).toEqual([
      false,
      true,
      true,
      false,
      false,
    ]);
    expect(f.cleared(700_000)).toBe(true);
    expect(f.clearedAt()).toBe(660_000);
  });

  it('is failing for now only between its first failure and the end of an outage (the sweep keeps firing meanwhile)', () => {
    const f = new ScriptedFaults([{ ...base, outage: '10m' }], 0);
    expect(f.failingForNow(0)).toBe(false); // not fired yet: nothing to wait for
    fails(f, 0);
    fails(f, 60_000);
    expect(f.failingForNow(60_000)).toBe(true);
    expect(f.failingForNow(659_000)).toBe(true);
    expect(f.failingForNow(660_000)).toBe(false);
    const persistent = new ScriptedFaults([{ ...base, persistent: true }], 0);
    fails(persistent, 0);
    fails(persistent, 1);
    // Never clears: the run is judged without waiting for it (the horizon ends it).
    expect(persistent.failingForNow(1)).toBe(false);
  });

  it('counts only the calls inside its window', () => {
    const f = new ScriptedFaults([{ ...base, after: 0, persistent: true, from: '1m', until: '2m' }], 0);
    expect([30_000, 60_000, 90_000, 120_000].map((t) => fails(f, t))).toEqual([false, true, true, false]);
  });
});

describe('fault matrix', () => {
  let clean: SimulationReport;
  beforeAll(async () => {
    clean = await runScenario(caseScenario(loadScenario(HAPPY_PATH), undefined));
  });

  it('lists every AWS call of a clean run, three kinds × three modes, at the first and a middle call', () => {
    const cases = buildMatrix(clean.apiCalls);
    const calls = Object.keys(clean.apiCalls);
    expect(new Set(cases.map((c) => `${c.service}:${c.operation}`))).toEqual(new Set(calls));
    expect(cases.filter((c) => c.id.startsWith('ecs:UpdateService ')).map((c) => c.id)).toHaveLength(9);
    const middle = cases.find((c) => c.id === 'inspector2:ListCoverage server outage middle') as FaultCase;
    expect(middle).toMatchObject({
      error: 'InternalServerException',
      after: Math.floor((clean.apiCalls['inspector2:ListCoverage'] ?? 0) / 2),
    });
  });

  it('passes a clean run', () => {
    expect(checkInvariants(clean, { faultCleared: true })).toEqual([]);
  });

  it('catches planted violations', () => {
    const [execution] = clean.executions;
    const service = clean.world?.services['prod/checkout'];
    if (!execution || !service || !clean.world) throw new Error('the clean run has no execution');

    // An execution left running; a Patched outcome while the service runs the original image.
    const running = { ...clean, executions: [{ ...execution, status: 'RUNNING' }] };
    expect(kinds(running)).toEqual(['execution-left-running']);
    const untruthful: SimulationReport = {
      ...clean,
      world: {
        ...clean.world,
        services: { 'prod/checkout': { ...service, digests: service.originalDigests, patched: false } },
      },
    };
    expect(kinds(untruthful)).toEqual(['service-not-on-good-revision', 'untruthful-outcome']);

    // A lock left after the fault cleared (not while it lasts); an outcome nobody heard of.
    const locked = { ...clean, world: { ...clean.world, locks: 1 } };
    expect(kinds(locked)).toEqual(['lock-left']);
    expect(kinds(locked, false)).toEqual([]);
    expect(kinds({ ...clean, notifications: [], outcomeEvents: [] })).toEqual(['unannounced-outcome']);
    expect(kinds({ ...clean, findings: {} })).toEqual(['finding-lost']);
  });

  it('runs a case and checks it', async () => {
    const result = await runCase(loadScenario(HAPPY_PATH), {
      id: 'ecs:UpdateService throttling once first',
      service: 'ecs',
      operation: 'UpdateService',
      kind: 'throttling',
      error: 'ThrottlingException',
      mode: 'once',
      position: 'first',
      after: 0,
    });
    expect(result).toMatchObject({ violations: [], injected: 1, outcomes: { 'prod/checkout': ['Patched'] } });
  });
});
