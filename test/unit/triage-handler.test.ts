/**
 * The triage Lambda's batch handler, end to end within the function: SQS records → parse → policy →
 * ECS inventory (aws-sdk-client-mock) → aggregation → ledger (dynalite) → StartExecution (mocked).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { triageRuntimeConfigSchema } from '../../lambdas/shared/config';
import type { RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger } from '../../lambdas/shared/ledger';
import { createHandler, type TriageEnvironment } from '../../lambdas/triage/handler';
import { DEFAULT_POLICY, parsePolicy } from '../../lambdas/triage/policy';
import { startDynalite } from '../../local/dynalite';
import { ACCOUNT, installFakeEcs, REGION, taskDefArn } from '../support/fake-ecs';

const REGISTRY = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const APP = digest('a');
const SIDECAR = digest('e');
const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:Autopatch-Remediation`;

const FIXTURE = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'events', 'finding-ecr-ubuntu-2024.json'), 'utf8'),
) as { detail: Record<string, unknown> };

/** A documented Inspector finding event, rewritten for one image and CVE. */
const findingEvent = (
  id: string,
  repository: string,
  imageDigest: string,
  cve: string,
  severity = 'HIGH',
) => {
  const event = structuredClone(FIXTURE) as { id: string; detail: Record<string, unknown> };
  const detail = event.detail as {
    findingArn: string;
    severity: string;
    packageVulnerabilityDetails: { vulnerabilityId: string };
    resources: Array<{
      details: { awsEcrContainerImage: Record<string, unknown>; image: Record<string, unknown> };
    }>;
  };
  event.id = `event-${id}`;
  detail.findingArn = `arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/${id}`;
  detail.severity = severity;
  detail.packageVulnerabilityDetails.vulnerabilityId = cve;
  const [resource] = detail.resources;
  for (const shape of [resource?.details.awsEcrContainerImage, resource?.details.image]) {
    if (!shape) continue;
    shape.repositoryName = repository;
    if ('imageHash' in shape) shape.imageHash = imageDigest;
    if ('imageDigest' in shape) shape.imageDigest = imageDigest;
  }
  return event;
};

const record = (messageId: string, body: unknown): SQSRecord =>
  ({
    messageId,
    receiptHandle: `rh-${messageId}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: {},
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:autopatch-intake`,
    awsRegion: REGION,
  }) as unknown as SQSRecord;

const batch = (...records: SQSRecord[]): SQSEvent => ({ Records: records });

const ecs = mockClient(ECSClient);
const sfn = mockClient(SFNClient);
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let table = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(() => {
  ecs.reset();
  sfn.reset();
});

/** One execution environment of the triage function, on a fresh ledger table per test. */
const environment = async () => {
  const tableName = `ledger-${++table}`;
  await dynamo.createTable(tableName);
  installFakeEcs(ecs, {
    clusters: ['prod'],
    services: [
      {
        cluster: 'prod',
        name: 'checkout',
        taskDefinition: taskDefArn('checkout', 7),
        tags: { 'autopatch:enabled': 'true' },
      },
    ],
    taskDefinitions: {
      [taskDefArn('checkout', 7)]: [
        { name: 'app', image: `${REGISTRY}/shop/checkout@${APP}` },
        { name: 'envoy', image: `${REGISTRY}/platform/envoy@${SIDECAR}` },
      ],
    },
  });
  const env: TriageEnvironment = {
    config: triageRuntimeConfigSchema.parse({
      policy: DEFAULT_POLICY,
      discoverByTag: { key: 'autopatch:enabled', value: 'true' },
    }),
    policy: parsePolicy(DEFAULT_POLICY),
    tableName,
    stateMachineArn: STATE_MACHINE_ARN,
  };
  const handler = () =>
    createHandler(
      env,
      {
        ecs: new ECSClient({ region: REGION }),
        sfn: new SFNClient({ region: REGION }),
        dynamodb: dynamo.client,
      },
      { logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Autopatch' }) },
    );
  const ledger = Object.assign(new Ledger({ client: dynamo.client, tableName }), {
    /** What a crash between claim and StartExecution leaves behind. */
    resetToStarting: async (serviceKey: string) => {
      await dynamo.client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: { pk: { S: `SERVICE#${serviceKey}` }, sk: { S: 'LOCK' } },
          UpdateExpression: 'SET #status = :starting REMOVE executionArn',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':starting': { S: 'STARTING' } },
        }),
      );
    },
  });
  return { handler, ledger };
};

const started = () =>
  sfn.commandCalls(StartExecutionCommand).map((c) => {
    const input = c.args[0].input;
    return { name: input.name, request: JSON.parse(input.input ?? '{}') as RemediationRequest };
  });

describe('triage batch handler', () => {
  it('records notify decisions in the digest of the service that runs the image, or the account’s, starting nothing', async () => {
    // Prepare: MEDIUM findings (the default policy notifies) on the service's image and on one nothing runs.
    const { handler, ledger } = await environment();

    // Act
    const response = await handler()(
      batch(
        record('m1', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-1001', 'MEDIUM')),
        record('m2', findingEvent('f2', 'shop/checkout', APP, 'CVE-2024-1002', 'MEDIUM')),
        record('m3', findingEvent('f3', 'shop/checkout', digest('0'), 'CVE-2024-1003', 'MEDIUM')),
      ),
    );

    // Assess
    expect(response.batchItemFailures).toEqual([]);
    expect(started()).toEqual([]);
    const digests = await ledger.pendingDigests();
    expect(
      digests.map((d) => [d.scope, d.entries.map((e) => `${e.cve} ${e.severity} ${e.image}`).sort()]).sort(),
    ).toEqual([
      ['ACCOUNT', [`CVE-2024-1003 MEDIUM shop/checkout@${digest('0')}`]],
      [
        'prod/checkout',
        [`CVE-2024-1001 MEDIUM shop/checkout@${APP}`, `CVE-2024-1002 MEDIUM shop/checkout@${APP}`],
      ],
    ]);
  });

  it('retries the messages whose notify decisions could not be recorded, and does not mark them seen', async () => {
    // Prepare
    const { handler, ledger } = await environment();
    const failing = jest
      .spyOn(Ledger.prototype, 'recordNotices')
      .mockRejectedValueOnce(Object.assign(new Error('Throughput exceeds'), { name: 'TransientError' }));
    const event = findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-1001', 'MEDIUM');

    // Act
    const first = await handler()(batch(record('m1', event)));
    failing.mockRestore();
    const redelivered = await handler()(batch(record('m1', event)));

    // Assess
    expect(first.batchItemFailures).toEqual([{ itemIdentifier: 'm1' }]);
    expect(redelivered.batchItemFailures).toEqual([]);
    expect((await ledger.pendingDigests()).map((d) => d.entries.map((e) => [e.cve, e.count]))).toEqual([
      [['CVE-2024-1001', 1]],
    ]);
  });

  it('folds a batch into one remediation per service, and drops poison records without retrying them', async () => {
    // Prepare: two images of one service, a malformed finding, a foreign event and a body that is not JSON.
    const { handler } = await environment();
    sfn.on(StartExecutionCommand).callsFake((input) => ({
      executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}`,
    }));
    const malformed = findingEvent('bad', 'shop/checkout', APP, 'CVE-2024-0001');
    (malformed.detail as { severity: string }).severity = 'URGENT';

    // Act
    const response = await handler()(
      batch(
        record('m1', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119')),
        record('m2', findingEvent('f2', 'platform/envoy', SIDECAR, 'CVE-2024-45490', 'CRITICAL')),
        record('m3', malformed),
        record('m4', {
          source: 'aws.ec2',
          'detail-type': 'EC2 Instance State-change Notification',
          detail: {},
        }),
        record('m5', '{not json'),
      ),
    );

    // Assess
    expect(response.batchItemFailures).toEqual([]);
    const runs = started();
    expect(runs).toHaveLength(1);
    expect(runs[0]?.request.service.key).toBe('prod/checkout');
    expect(runs[0]?.request.images.map((i) => [i.repository, i.cves])).toEqual(
      expect.arrayContaining([
        ['shop/checkout', ['CVE-2024-6119']],
        ['platform/envoy', ['CVE-2024-45490']],
      ]),
    );
    expect(runs[0]?.name).toMatch(/^checkout-2cves-/);
  });

  it('reports the messages of a throttled StartExecution as batch item failures; the redelivery starts it once', async () => {
    // Prepare
    const { handler } = await environment();
    const throttled = Object.assign(new Error('Rate exceeded'), {
      name: 'ThrottlingException',
      $metadata: { httpStatusCode: 400 },
    });
    sfn
      .on(StartExecutionCommand)
      .rejectsOnce(throttled)
      .callsFake((input) => ({ executionArn: `arn:exec:${input.name}` }));
    const event = batch(
      record('m1', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119')),
      record('m2', findingEvent('f2', 'platform/envoy', SIDECAR, 'CVE-2024-45490')),
    );
    const fn = handler();

    // Act: the first delivery fails transiently (the SDK's own retries are part of the mock's answer).
    const first = await fn(event);
    const second = await fn(event);
    const third = await fn(event); // a duplicate delivery after success

    // Assess
    expect(first.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['m1', 'm2']);
    expect(second.batchItemFailures).toEqual([]);
    expect(third.batchItemFailures).toEqual([]);
    const names = started().map((r) => r.name);
    expect(new Set(names).size).toBe(1); // the same deterministic name every time
    expect(names).toHaveLength(2); // the throttled try, then one start; nothing for the duplicate
  });

  it('starts exactly one execution when two environments triage findings of the same service at once', async () => {
    // Prepare: two warm environments, each with its own batch for prod/checkout.
    const { handler, ledger } = await environment();
    sfn.on(StartExecutionCommand).callsFake(async (input) => {
      await new Promise((resolve) => setTimeout(resolve, 5)); // let the other claim race
      return { executionArn: `arn:exec:${input.name}` };
    });
    const [a, b] = [handler(), handler()];

    // Act
    const [ra, rb] = await Promise.all([
      a(batch(record('a1', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119')))),
      b(batch(record('b1', findingEvent('f2', 'platform/envoy', SIDECAR, 'CVE-2024-45490')))),
    ]);

    // Assess: one start; the other batch merged into it (or resumed the same claim), nothing lost.
    expect([...ra.batchItemFailures, ...rb.batchItemFailures]).toEqual([]);
    expect(new Set(started().map((r) => r.name)).size).toBe(1);
    const inFlight = await ledger.getInFlight('prod/checkout');
    expect(inFlight?.request.images.map((i) => i.repository).sort()).toEqual([
      'platform/envoy',
      'shop/checkout',
    ]);
  });

  it('finishes a claim an earlier invocation left unstarted, then merges its own findings into that run', async () => {
    // Prepare: an invocation claimed prod/checkout for f1 and died before StartExecution.
    const { handler, ledger } = await environment();
    sfn.on(StartExecutionCommand).callsFake((input) => ({ executionArn: `arn:exec:${input.name}` }));
    const crashed = await handler()(
      batch(record('m0', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119'))),
    );
    expect(crashed.batchItemFailures).toEqual([]);
    const [earlier] = started();
    sfn.resetHistory();
    await ledger.resetToStarting('prod/checkout');

    // Act: the next batch carries another image of the same service.
    const response = await handler()(
      batch(record('m1', findingEvent('f2', 'platform/envoy', SIDECAR, 'CVE-2024-45490'))),
    );

    // Assess: the stored request was started again under its own name; f2 joined it.
    expect(response.batchItemFailures).toEqual([]);
    expect(started().map((r) => r.name)).toEqual([earlier?.name]);
    const inFlight = await ledger.getInFlight('prod/checkout');
    expect(inFlight?.executionName).toBe(earlier?.name);
    expect(inFlight?.request.images.map((i) => i.repository).sort()).toEqual([
      'platform/envoy',
      'shop/checkout',
    ]);
  });

  it('treats ExecutionAlreadyExists for its own name as the execution it wanted', async () => {
    const { handler } = await environment();
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }));
    const response = await handler()(
      batch(record('m1', findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119'))),
    );
    expect(response.batchItemFailures).toEqual([]);
    expect(started()).toHaveLength(1);
  });

  it('ignores an ACTIVE update older than the CLOSED one a previous batch triaged, and logs why', async () => {
    // Prepare: Inspector closed the finding; its earlier ACTIVE update arrives late, in a later batch.
    const { handler, ledger } = await environment();
    sfn.on(StartExecutionCommand).callsFake((input) => ({
      executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}`,
    }));
    const closed = findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119');
    Object.assign(closed.detail, { status: 'CLOSED', updatedAt: 'Thu Sep 05 09:00:00.000 UTC 2024' });
    const active = findingEvent('f1', 'shop/checkout', APP, 'CVE-2024-6119');
    Object.assign(active.detail, { status: 'ACTIVE', updatedAt: 'Wed Sep 04 16:55:38.411 UTC 2024' });
    const info = jest.spyOn(Logger.prototype, 'info');

    // Act
    const first = await handler()(batch(record('m1', closed)));
    const second = await handler()(batch(record('m2', active)));

    // Assess
    expect([first.batchItemFailures, second.batchItemFailures]).toEqual([[], []]);
    expect(started()).toEqual([]);
    expect(await ledger.newestSeen([closed.detail.findingArn as string])).toEqual(
      new Map([[closed.detail.findingArn as string, '2024-09-05T09:00:00.000Z']]),
    );
    expect(info).toHaveBeenCalledWith(
      'Decision',
      expect.objectContaining({
        messageId: 'm2',
        action: 'ignore',
        reason: expect.stringMatching(
          /^out-of-order update: .* is older than its update of 2024-09-05T09:00:00.000Z already triaged$/,
        ),
      }),
    );
    info.mockRestore();
  });
});
