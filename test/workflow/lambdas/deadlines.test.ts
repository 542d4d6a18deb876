/**
 * The sweep's deadline watch, against a local DynamoDB (dynalite): each in-flight remediation's
 * deadline is reported once per state (approaching, then missed), however many sweeps see it, with a
 * metric per severity and, when missed, a notification.
 */
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import type { RemediationRequest } from '../../../lambdas/shared/contracts';
import { Ledger } from '../../../lambdas/shared/ledger';
import { METRIC_DIMENSIONS, METRICS } from '../../../lambdas/shared/metrics';
import { DeadlineMarks, deadlineState, watchDeadline } from '../../../lambdas/workflow/deadlines';
import { reconcile } from '../../../lambdas/workflow/reconcile';
import { type LocalDynamo, startDynalite } from '../../../local/dynalite';
import { image, remediationRequest } from '../../support/workflow-harness';

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const TOPIC = 'arn:aws:sns:eu-central-1:123456789012:autopatch';
const T0 = new Date('2024-09-04T17:00:00.000Z');
const hours = (n: number) => new Date(T0.getTime() + n * 3_600_000);

const sfn = mockClient(SFNClient);
const sns = mockClient(SNSClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let marks: DeadlineMarks;
let tables = 0;

/** Records what Powertools Metrics would have written. */
const fakeMetrics = () => {
  const data: Array<{ name: string; value: number; dimensions: Record<string, string> }> = [];
  const single = () => {
    const dims: Record<string, string> = {};
    return {
      addDimensions: (d: Record<string, string>) => Object.assign(dims, d),
      addMetric: (name: string, _unit: string, value: number) => data.push({ name, value, dimensions: dims }),
    };
  };
  return {
    data,
    metrics: {
      addMetric: (name: string, _unit: string, value: number) => data.push({ name, value, dimensions: {} }),
      singleMetric: single,
      publishStoredMetrics: () => undefined,
    } as unknown as Parameters<typeof watchDeadline>[0]['metrics'],
  };
};

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  const tableName = `deadlines-${++tables}`;
  await dynamo.createTable(tableName);
  ledger = new Ledger({ client: dynamo.client, tableName, now: () => T0 });
  marks = new DeadlineMarks({ client: dynamo.client, tableName });
  sfn.on(DescribeExecutionCommand).callsFake(async (input: { executionArn: string }) => ({
    executionArn: input.executionArn,
    stateMachineArn: STATE_MACHINE,
    status: 'RUNNING',
    startDate: T0,
  }));
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});
afterEach(() => {
  sfn.reset();
  sns.reset();
});

const running = async (deadline: string | undefined, severity: 'CRITICAL' | 'HIGH' = 'HIGH') => {
  const base = remediationRequest();
  const request: RemediationRequest = {
    ...base,
    images: [image({ severity })],
    decision: { action: 'remediate', reason: 'policy', ...(deadline ? { deadline } : {}) },
  };
  const arn = `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${request.executionName}`;
  await ledger.claim(request);
  await ledger.markStarted(request.service.key, request.executionName, arn);
  return request;
};

const sweep = async (now: Date, metrics: ReturnType<typeof fakeMetrics>['metrics']) =>
  reconcile(
    {
      ledger,
      sfn: new SFNClient({}),
      stateMachineArn: STATE_MACHINE,
      watchDeadline: (lock, at) =>
        watchDeadline({ marks, metrics, sns: new SNSClient({}), topicArn: TOPIC }, lock, at),
    },
    now,
  );

describe('deadlineState', () => {
  it.each<[string | undefined, Date, string | undefined]>([
    [undefined, T0, undefined],
    ['2024-09-06T17:00:00.000Z', T0, undefined],
    ['2024-09-05T17:00:00.000Z', T0, 'approaching'],
    ['2024-09-04T17:00:00.000Z', T0, 'missed'],
    ['not a date', T0, undefined],
  ])('%s at %s → %s', (deadline, now, state) => {
    expect(deadlineState(deadline, now)).toBe(state);
  });
});

describe('the sweep watches deadlines', () => {
  it('reports approaching once, then missed once, with a metric per severity and one notification', async () => {
    // Prepare: due in 30 hours.
    const request = await running(hours(30).toISOString(), 'CRITICAL');
    const { data, metrics } = fakeMetrics();

    // Act: sweeps before, at, and after each change, two of them at once.
    const far = await sweep(hours(1), metrics);
    const near = await Promise.all([sweep(hours(7), metrics), sweep(hours(7), metrics)]);
    await sweep(hours(8), metrics);
    const past = await sweep(hours(31), metrics);
    await sweep(hours(32), metrics);

    // Assess
    expect(far.deadlines).toEqual([]);
    expect(near.flatMap((s) => s.deadlines ?? [])).toEqual([
      { executionName: request.executionName, state: 'approaching' },
    ]);
    expect(past.deadlines).toEqual([{ executionName: request.executionName, state: 'missed' }]);
    expect(data).toEqual([
      {
        name: METRICS.deadlineApproaching,
        value: 1,
        dimensions: { [METRIC_DIMENSIONS.severity]: 'CRITICAL' },
      },
      { name: METRICS.deadlineMissed, value: 1, dimensions: { [METRIC_DIMENSIONS.severity]: 'CRITICAL' } },
    ]);
    const published = sns.commandCalls(PublishCommand).map((c) => c.args[0].input);
    expect(published).toHaveLength(1);
    expect(published[0]?.Subject).toBe(
      `[Autopatch] Deadline missed: CRITICAL CVE-2024-6387 on ${request.service.key}`,
    );
    expect(published[0]?.Message).toContain(`Deadline: ${hours(30).toISOString()}`);
    expect(published[0]?.MessageAttributes?.kind?.StringValue).toBe('deadline-missed');
  });

  it('reports a deadline first seen already past as missed only', async () => {
    // Prepare
    await running(hours(-1).toISOString());
    const { data, metrics } = fakeMetrics();

    // Act
    await sweep(T0, metrics);
    await sweep(hours(1), metrics);

    // Assess
    expect(data.map((d) => d.name)).toEqual([METRICS.deadlineMissed]);
    expect(sns.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it('says nothing about a request without a deadline (as before deadlines)', async () => {
    // Prepare
    await running(undefined);
    const { data, metrics } = fakeMetrics();

    // Act
    const summary = await sweep(hours(1000), metrics);

    // Assess
    expect(summary.deadlines).toEqual([]);
    expect(data).toEqual([]);
    expect(sns.commandCalls(PublishCommand)).toHaveLength(0);
  });

  it('reports a failed notification in the sweep errors, not repeated each minute (the mark is written first)', async () => {
    // Prepare: the state is marked before the notification, so a failed Publish is not repeated
    // every minute; the failure is in the sweep's errors (and the metric already counted it).
    await running(hours(-1).toISOString());
    sns
      .on(PublishCommand)
      .rejects(Object.assign(new Error('denied'), { name: 'AuthorizationErrorException' }));
    const { metrics } = fakeMetrics();

    // Act
    const summary = await sweep(T0, metrics);

    // Assess
    expect(summary.errors).toEqual([
      expect.objectContaining({ error: expect.stringContaining('watching the deadline') }),
    ]);
  });
});
