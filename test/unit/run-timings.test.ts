import { runTimings } from '../../lambdas/workflow/finish';
import { buildTime, type PatchedImage, type WorkflowState } from '../../lambdas/workflow/state';
import { readBuild } from '../../lambdas/workflow/verify-rescan';
import { historyMetrics, type ReportRecord } from '../../report/metrics';
import { remediationRequest } from '../support/workflow-harness';

/** What the history record gets from the workflow state for time to verification and cost per rollout. */

const image = (over: Partial<PatchedImage> = {}): PatchedImage => ({
  repository: 'checkout',
  registry: '123456789012',
  repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/checkout',
  containers: ['app'],
  cves: ['CVE-2024-6119'],
  severity: 'HIGH',
  oldDigest: `sha256:${'a'.repeat(64)}`,
  newDigest: `sha256:${'b'.repeat(64)}`,
  targetTag: 'autopatch-x',
  cvesClosed: ['CVE-2024-6119'],
  ...over,
});

const plannedBuilds = (n: number) =>
  ({ builds: Array.from({ length: n }, () => ({})) }) as unknown as NonNullable<WorkflowState['plan']>;

const stateWith = (over: Partial<WorkflowState>): WorkflowState => ({ ...remediationRequest(), ...over });

describe('build times as Step Functions hands them over', () => {
  it('reads epoch milliseconds, epoch seconds and ISO-8601; nothing else', () => {
    expect(buildTime(1_767_225_600_000)).toBe('2026-01-01T00:00:00.000Z');
    expect(buildTime(1_767_225_600.5)).toBe('2026-01-01T00:00:00.500Z');
    expect(buildTime('2026-01-01T00:00:00Z')).toBe('2026-01-01T00:00:00.000Z');
    for (const bad of [undefined, null, 'soon', -1, Number.NaN, {}]) expect(buildTime(bad)).toBeUndefined();
  });

  it('readBuild keeps the build start and end (PascalCase or camelCase)', () => {
    expect(readBuild({ Id: 'p:1', StartTime: 1_767_225_600_000, EndTime: 1_767_225_900_000 })).toMatchObject({
      id: 'p:1',
      startedAt: '2026-01-01T00:00:00.000Z',
      endedAt: '2026-01-01T00:05:00.000Z',
    });
    expect(readBuild({ startTime: '2026-01-01T00:00:00Z' })).toEqual({
      startedAt: '2026-01-01T00:00:00.000Z',
    });
  });
});

describe('runTimings', () => {
  it('one image: its build time, billed minutes, and push → verdict', () => {
    // Build 00:00:00 → 00:04:10 (250 s, billed 5 min); pushed 00:04:05; verified 00:09:05 (300 s).
    const state = stateWith({
      plan: plannedBuilds(1),
      patched: [
        image({
          timing: {
            buildStartedAt: '2026-01-01T00:00:00Z',
            buildEndedAt: '2026-01-01T00:04:10Z',
            pushedAt: '2026-01-01T00:04:05Z',
            verifiedAt: '2026-01-01T00:09:05Z',
          },
        }),
      ],
    });
    expect(runTimings(state)).toEqual({
      buildSeconds: 250,
      buildMinutes: 5,
      builds: 1,
      buildsPlanned: 1,
      verificationSeconds: 300,
    });
  });

  it('an image index: every platform build counts, verification is the slowest platform', () => {
    const platform = (arch: string, start: string, end: string, verified: string) => ({
      architecture: arch,
      os: 'linux',
      oldDigest: `sha256:${'c'.repeat(64)}`,
      newDigest: `sha256:${'d'.repeat(64)}`,
      timing: { buildStartedAt: start, buildEndedAt: end, pushedAt: end, verifiedAt: verified },
    });
    const state = stateWith({
      plan: plannedBuilds(2),
      patched: [
        image({
          platforms: [
            // 61 s (billed 2 min), verified 120 s after its push.
            platform('amd64', '2026-01-01T00:00:00Z', '2026-01-01T00:01:01Z', '2026-01-01T00:03:01Z'),
            // 600 s (billed 10 min), verified 30 s after its push.
            platform('arm64', '2026-01-01T00:00:00Z', '2026-01-01T00:10:00Z', '2026-01-01T00:10:30Z'),
          ],
        }),
      ],
    });
    expect(runTimings(state)).toEqual({
      buildSeconds: 661,
      buildMinutes: 12,
      builds: 2,
      buildsPlanned: 2,
      verificationSeconds: 120,
    });
  });

  it('a failed build is timed from its Cause (the build as JSON); no verification', () => {
    const state = stateWith({
      plan: plannedBuilds(2),
      error: {
        Error: 'BuildFailed',
        Cause: JSON.stringify({
          Build: {
            Id: 'p:9',
            BuildStatus: 'FAILED',
            StartTime: 1_767_225_600_000,
            EndTime: 1_767_225_720_000,
          },
        }),
      },
    });
    // 120 s, billed 2 min; the other planned build's time was not kept.
    expect(runTimings(state)).toEqual({ buildSeconds: 120, buildMinutes: 2, builds: 1, buildsPlanned: 2 });
  });

  it('no build: zeros, which are measurements (not "not recorded")', () => {
    expect(runTimings(stateWith({}))).toEqual({
      buildSeconds: 0,
      buildMinutes: 0,
      builds: 0,
      buildsPlanned: 0,
    });
  });

  it('an image verified by a version without timings: no verification figure, the build untimed', () => {
    const state = stateWith({ plan: plannedBuilds(1), patched: [image()] });
    expect(runTimings(state)).toEqual({ buildSeconds: 0, buildMinutes: 0, builds: 0, buildsPlanned: 1 });
  });

  it('a state it does not expect (platforms not a list) records what it can instead of failing the finish', () => {
    const odd = stateWith({
      plan: plannedBuilds(2),
      patched: [{ ...image(), platforms: 2 } as unknown as PatchedImage],
    });
    expect(runTimings(odd)).toEqual({ buildSeconds: 0, buildMinutes: 0, builds: 0, buildsPlanned: 2 });
  });

  it('what it records is what the report computes time to verification and cost from', () => {
    // Prepare: a Patched run with the one-image timings above, as finish writes its record.
    const state = stateWith({
      plan: plannedBuilds(1),
      patched: [
        image({
          timing: {
            buildStartedAt: '2026-01-01T00:00:00Z',
            buildEndedAt: '2026-01-01T00:04:10Z',
            pushedAt: '2026-01-01T00:04:05Z',
            verifiedAt: '2026-01-01T00:09:05Z',
          },
        }),
      ],
    });
    const record = {
      serviceKey: 'prod/checkout',
      remediationId: 'r1',
      executionName: 'e1',
      outcome: 'Patched',
      reason: 'test',
      images: [{ repository: 'checkout', oldDigest: 'sha256:old', newDigest: 'sha256:new', cves: [] }],
      cvesClosed: [],
      oldTaskDefinition: 'arn:aws:ecs:eu-central-1:123456789012:task-definition/checkout:1',
      startedAt: '2026-01-01T00:00:00Z',
      finishedAt: '2026-01-01T00:30:00Z',
      timings: { totalSeconds: 1800, ...runTimings(state) },
    } as ReportRecord;

    // Act
    const m = historyMetrics([record], 30);

    // Assess: 300 s; 5 min × $0.01 + the estimated 31 transitions and 11 invocations.
    expect(m.timeToVerification).toMatchObject({ status: 'ok', value: 300 });
    expect(m.costPerRollout).toMatchObject({ status: 'ok', cost: { buildMinutes: 5, listPrices: true } });
    if (m.costPerRollout.status === 'ok')
      expect(m.costPerRollout.value).toBeCloseTo(
        0.05 + 31 * 0.000025 + 11 * (0.0000002 + 0.25 * 0.0000166667),
        10,
      );
  });
});
