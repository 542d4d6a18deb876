/**
 * Requests queued behind a run have deadlines too: the sweep watches them (once per request and
 * state), and a pre-emption says what made the queued finding urgent (KEV, CRITICAL, or its
 * deadline), not always "CRITICAL, known exploit". Against dynalite, with the real ledger.
 *
 * The ledger decides urgency on the wall clock (ledger/requests.ts isUrgent), so times here are
 * relative to now.
 */
import { DescribeExecutionCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger } from '../../lambdas/shared/ledger';
import { METRIC_DIMENSIONS, METRICS } from '../../lambdas/shared/metrics';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { urgencyReasons, urgentFindingText } from '../../lambdas/shared/urgency';
import { DeadlineMarks, watchDeadline } from '../../lambdas/workflow/deadlines';
import { explain } from '../../lambdas/workflow/finish';
import { takeUrgentFindings, waitForWindow } from '../../lambdas/workflow/lock';
import { reconcile } from '../../lambdas/workflow/reconcile';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { digest, image, remediationRequest } from '../support/workflow-harness';

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const TOPIC = 'arn:aws:sns:eu-central-1:123456789012:autopatch';
const T0 = new Date(Math.floor(Date.now() / 1000) * 1000);
const hours = (n: number) => new Date(T0.getTime() + n * 3_600_000);

const sfn = mockClient(SFNClient);
const sns = mockClient(SNSClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let marks: DeadlineMarks;
let tables = 0;
let serial = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  const tableName = `queued-deadlines-${++tables}`;
  await dynamo.createTable(tableName);
  ledger = new Ledger({ client: dynamo.client, tableName, now: () => T0 });
  marks = new DeadlineMarks({ client: dynamo.client, tableName });
  sfn.on(DescribeExecutionCommand).callsFake(async (input: { executionArn: string }) => ({
    executionArn: input.executionArn,
    stateMachineArn: STATE_MACHINE,
    status: 'RUNNING',
    startDate: T0,
  }));
  sfn.on(SendTaskSuccessCommand).resolves({});
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  sfn.reset();
  sns.reset();
});

const fakeMetrics = () => {
  const data: Array<{ name: string; dimensions: Record<string, string> }> = [];
  const single = () => {
    const dims: Record<string, string> = {};
    return {
      addDimensions: (d: Record<string, string>) => Object.assign(dims, d),
      addMetric: (name: string) => data.push({ name, dimensions: dims }),
    };
  };
  return {
    data,
    metrics: {
      addMetric: (name: string) => data.push({ name, dimensions: {} }),
      singleMetric: single,
      publishStoredMetrics: () => undefined,
    } as unknown as Parameters<typeof watchDeadline>[0]['metrics'],
  };
};

const requestFor = (
  serviceKey: string,
  images: AffectedImage[],
  decision: RemediationRequest['decision'],
  at: number,
): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  const name = executionName(service, images, new Date(T0.getTime() + at * 1000));
  return {
    ...base,
    service,
    images,
    decision,
    executionName: name,
    remediationId: remediationId(serviceKey, name),
  };
};
const high = (cve: string, d = 'a1') => image({ imageDigest: digest(d), cves: [cve], severity: 'HIGH' });

/** A run that took the lock and sealed its findings: later requests queue behind it. */
const sealedRun = async (decision: RemediationRequest['decision']) => {
  const serviceKey = `prod/queued-${++serial}`;
  const run = requestFor(serviceKey, [high('CVE-2024-0001')], decision, 0);
  await ledger.claim(run);
  await ledger.markStarted(serviceKey, run.executionName, `arn:exec:${run.executionName}`);
  await ledger.acquire(serviceKey, run.executionName);
  await ledger.seal(serviceKey, run.executionName);
  return { serviceKey, run };
};

const sweep = (now: Date, metrics: ReturnType<typeof fakeMetrics>['metrics']) =>
  reconcile(
    {
      ledger,
      sfn: new SFNClient({}),
      stateMachineArn: STATE_MACHINE,
      watchDeadline: (remediation, at) =>
        watchDeadline({ marks, metrics, sns: new SNSClient({}), topicArn: TOPIC }, remediation, at),
    },
    now,
  );

describe('the sweep watches the deadlines of queued requests', () => {
  it('reports a queued request approaching once and missed once, however many sweeps see it', async () => {
    // Prepare: a run without a deadline; behind it, a HIGH request due in 30 hours.
    const { run, serviceKey } = await sealedRun({ action: 'remediate', reason: 'policy' });
    const queued = requestFor(
      serviceKey,
      [high('CVE-2024-0002', 'b2')],
      { action: 'remediate', reason: 'policy', deadline: hours(30).toISOString() },
      1,
    );
    expect((await ledger.claim(queued)).kind).toBe('queued');
    const { data, metrics } = fakeMetrics();

    // Act: sweeps before, at and after each change, two of them at once.
    const far = await sweep(hours(1), metrics);
    const near = await Promise.all([sweep(hours(7), metrics), sweep(hours(7), metrics)]);
    const again = await sweep(hours(8), metrics);
    const past = await sweep(hours(31), metrics);
    const after = await sweep(hours(32), metrics);

    // Assess: once per state, for the queued request only (the run has no deadline).
    expect(far.deadlines).toEqual([]);
    expect(near.flatMap((s) => s.deadlines ?? [])).toEqual([
      { executionName: queued.executionName, state: 'approaching', queued: true },
    ]);
    expect(again.deadlines).toEqual([]);
    expect(past.deadlines).toEqual([{ executionName: queued.executionName, state: 'missed', queued: true }]);
    expect(after.deadlines).toEqual([]);
    expect(data).toEqual([
      { name: METRICS.deadlineApproaching, dimensions: { [METRIC_DIMENSIONS.severity]: 'HIGH' } },
      { name: METRICS.deadlineMissed, dimensions: { [METRIC_DIMENSIONS.severity]: 'HIGH' } },
    ]);
    const published = sns.commandCalls(PublishCommand).map((c) => c.args[0].input);
    expect(published).toHaveLength(1);
    expect(published[0]?.Message).toContain(
      `Execution: ${queued.executionName} (queued behind ${run.executionName}: it starts when that run ends)`,
    );
  });

  it('a queued request that later runs under its own name is not reported again', async () => {
    // Prepare: the queued request's missed deadline was reported while it waited.
    const { serviceKey } = await sealedRun({ action: 'remediate', reason: 'policy' });
    const queued = requestFor(
      serviceKey,
      [high('CVE-2024-0003', 'c3')],
      { action: 'remediate', reason: 'policy', deadline: hours(2).toISOString() },
      1,
    );
    await ledger.claim(queued);
    const { data, metrics } = fakeMetrics();
    await sweep(hours(3), metrics);
    expect(data.map((d) => d.name)).toEqual([METRICS.deadlineMissed]);

    // Act: the same request, now in flight (the name it was queued with).
    const state = await watchDeadline(
      { marks, metrics, sns: new SNSClient({}), topicArn: TOPIC },
      { executionName: queued.executionName, status: 'RUNNING', request: queued },
      hours(4),
    );

    // Assess
    expect(state).toBeUndefined();
    expect(data).toHaveLength(1);
  });
});

describe('pre-emption says what made the queued finding urgent', () => {
  const inWindow = () => ({
    action: 'remediate' as const,
    reason: 'HIGH: next window',
    notBefore: hours(24 * 5).toISOString(),
  });

  it('urgencyReasons: KEV, CRITICAL, a deadline within 48 hours (or passed); nothing for what is not urgent', () => {
    const base = remediationRequest();
    const r = (images: AffectedImage[], decision: RemediationRequest['decision']) => ({
      ...base,
      images,
      decision,
    });
    const remediate = { action: 'remediate' as const, reason: 'policy' };
    expect(urgencyReasons(r([high('CVE-1')], { ...remediate, knownExploited: true }), T0)).toEqual([
      'known exploited, in CISA KEV',
    ]);
    expect(urgencyReasons(r([image({ severity: 'CRITICAL' })], remediate), T0)).toEqual(['CRITICAL']);
    expect(
      urgencyReasons(r([high('CVE-1')], { ...remediate, deadline: hours(10).toISOString() }), T0),
    ).toEqual([`deadline ${hours(10).toISOString()}, 10 h away`]);
    expect(
      urgencyReasons(r([high('CVE-1')], { ...remediate, deadline: hours(-1).toISOString() }), T0),
    ).toEqual([`deadline ${hours(-1).toISOString()} passed`]);
    expect(
      urgencyReasons(r([high('CVE-1')], { ...remediate, deadline: hours(72).toISOString() }), T0),
    ).toEqual([]);
    expect(
      urgencyReasons(
        r([image({ severity: 'CRITICAL' })], { action: 'approve', reason: 'ask', knownExploited: true }),
        T0,
      ),
    ).toEqual([]);
    expect(urgentFindingText([], T0)).toBe('An urgent finding');
  });

  it('a request urgent by its deadline: the sweep, the window step and the run say "deadline", not "known exploit"', async () => {
    // Prepare: a run waiting for its window, its wait token stored; a HIGH request due in 10 hours queues.
    const { run, serviceKey } = await sealedRun(inWindow());
    await ledger.putTaskToken(run.executionName, 'window', 'token-window', serviceKey);
    const due = hours(10).toISOString();
    const queued = requestFor(
      serviceKey,
      [high('CVE-2024-0004', 'd4')],
      { action: 'remediate', reason: 'policy', deadline: due },
      1,
    );
    expect((await ledger.claim(queued)).kind).toBe('queued');
    expect((await ledger.getInFlight(serviceKey))?.queuedUrgent).toBe(true);
    const expected = `An urgent finding (deadline ${due}, 10 h away) is queued behind this remediation: it deploys now.`;

    // Act: the sweep ends the window wait; the window step, had it looked first, says the same.
    await sweep(T0, fakeMetrics().metrics);
    const resumed: string[] = [];
    const step = await waitForWindow(
      {
        ledger,
        resume: async (_token, result) => {
          resumed.push(result.reason);
          return true;
        },
      },
      {
        step: 'wait-for-window',
        serviceKey,
        executionName: run.executionName,
        taskToken: 'token-window-2',
        notBefore: run.decision.notBefore as string,
      },
      T0,
    );
    const taken = await takeUrgentFindings(
      ledger,
      { step: 'take-urgent', serviceKey, executionName: run.executionName, state: run },
      T0,
    );

    // Assess
    const answers = sfn
      .commandCalls(SendTaskSuccessCommand)
      .map((c) => JSON.parse(c.args[0].input.output as string));
    expect(answers).toEqual([{ preempted: true, reason: expected }]);
    expect(step.reason).toBe(expected);
    expect(resumed).toEqual([expected]);
    expect(taken.preemption.reason).toBe(
      `Pre-empted its maintenance window for 1 queued request(s) with an urgent finding (deadline ${due}, 10 h away): deploying now.`,
    );
    for (const text of [expected, taken.preemption.reason]) expect(text).not.toContain('known exploit');
  });

  it('an approval wait pre-empted for a KEV finding: the Superseded reason names KEV, not CRITICAL', () => {
    const state = {
      ...remediationRequest(),
      approval: {
        approved: false,
        preempted: true,
        reason:
          'An urgent finding (known exploited, in CISA KEV) is queued behind this remediation: it runs first.',
      },
    };
    const { reason } = explain({
      outcome: 'Superseded',
      state,
      executionName: 'e',
      executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:e`,
      stateMachineArn: STATE_MACHINE,
      startedAt: T0.toISOString(),
    });
    expect(reason).toMatch(
      /^An urgent finding \(known exploited, in CISA KEV\) for prod\/.+ pre-empted this remediation/,
    );
    expect(reason).not.toContain('CRITICAL');
  });
});
