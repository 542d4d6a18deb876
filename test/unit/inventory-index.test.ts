import { BatchGetImageCommand, ECRClient } from '@aws-sdk/client-ecr';
import { DescribeServicesCommand, DescribeTaskDefinitionCommand, ECSClient } from '@aws-sdk/client-ecs';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { handleBatch } from '../../lambdas/inventory/handler';
import { InventoryIndexReader, imagePk, placePk } from '../../lambdas/inventory/index-store';
import { InventoryIndexWriter } from '../../lambdas/inventory/index-writer';
import { Indexer, parseServiceEvent } from '../../lambdas/inventory/indexer';
import type { Place } from '../../lambdas/shared/accounts';
import { LedgerTable } from '../../lambdas/shared/ledger/table';
import { type ImageRef, InventoryResolver } from '../../lambdas/triage/inventory';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import {
  ACCOUNT,
  clusterArn,
  type FakeAccount,
  installFakeEcs,
  REGION,
  taskDefArn,
} from '../support/fake-ecs';

const HOME: Place = { account: ACCOUNT, region: REGION };
const REGISTRY = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;
const API = `${REGISTRY}/payments/api`;
const API_V2 = `${REGISTRY}/payments/api-v2`;
const ENVOY = `${REGISTRY}/platform/envoy`;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const OLD = digest('a');
const NEW = digest('b');
const ENVOY_DIGEST = digest('e');
const ENABLED = { autopatch: 'enabled' };
const DISCOVER = { key: 'autopatch', value: 'enabled' } as const;
const T0 = new Date('2026-12-02T12:00:00Z');

const ecs = mockClient(ECSClient);
let dynamo: LocalDynamo;
let serial = 0;
let tableName: string;
let clock: Date;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  // A table per test: every test starts with an empty index.
  tableName = `inventory-${++serial}`;
  await dynamo.createTable(tableName);
  clock = T0;
});
afterEach(() => {
  ecs.reset();
});

const imageRef = (repositoryUri: string, imageDigest: string, imageTags: string[] = []): ImageRef => ({
  registry: ACCOUNT,
  repository: repositoryUri.slice(REGISTRY.length + 1),
  repositoryUri,
  imageDigest,
  imageTags,
});

/** Two clusters, three services: api (by digest) with an envoy sidecar (by tag), worker, untagged. */
const account = (): FakeAccount => ({
  clusters: ['prod', 'staging'],
  services: [
    { cluster: 'prod', name: 'api', taskDefinition: taskDefArn('api', 1), tags: ENABLED },
    { cluster: 'prod', name: 'worker', taskDefinition: taskDefArn('worker', 1), tags: ENABLED },
    { cluster: 'staging', name: 'untagged', taskDefinition: taskDefArn('api', 1) },
  ],
  taskDefinitions: {
    [taskDefArn('api', 1)]: [
      { name: 'app', image: `${API}@${OLD}` },
      { name: 'envoy', image: `${ENVOY}:v1.30` },
    ],
    [taskDefArn('api', 2)]: [{ name: 'app', image: `${API_V2}@${NEW}` }],
    [taskDefArn('worker', 1)]: [{ name: 'worker', image: `${API}@${OLD}` }],
  },
});

const writer = () => new InventoryIndexWriter({ client: dynamo.client, tableName, now: () => clock });
const indexer = () =>
  new Indexer({ writer: writer(), ecsFor: (place) => new ECSClient({ region: place.region }) });
const reader = () => new InventoryIndexReader({ client: dynamo.client, tableName });
const resolver = (
  options: {
    targets?: Array<{ cluster: string; service: string; tags?: Record<string, string> }>;
    discover?: boolean;
  } = {},
) =>
  new InventoryResolver({
    ecs: new ECSClient({ region: REGION }),
    ...(options.discover === false ? {} : { discoverByTag: DISCOVER }),
    targets: options.targets ?? [],
    now: () => clock,
    index: { reader: reader(), home: HOME },
  });
const ecsCalls = () => ecs.calls().length;

const table = () => new LedgerTable({ client: dynamo.client, tableName });
/** The live IMAGE# items of a repository (tombstones of removed entries left out). */
const imageItems = async (repositoryUri: string) =>
  (await table().query('test', imagePk(repositoryUri))).filter((i) => i.kind === 'inventory-image');

/** An ECS Deployment State Change event for a service, as EventBridge puts it in the queue. */
const deploymentEvent = (service: string, cluster = 'prod', overrides: Record<string, unknown> = {}) =>
  JSON.stringify({
    version: '0',
    id: `e-${service}`,
    'detail-type': 'ECS Deployment State Change',
    source: 'aws.ecs',
    account: ACCOUNT,
    time: T0.toISOString(),
    region: REGION,
    resources: [`arn:aws:ecs:${REGION}:${ACCOUNT}:service/${cluster}/${service}`],
    detail: { eventType: 'INFO', eventName: 'SERVICE_DEPLOYMENT_COMPLETED', deploymentId: 'ecs-svc/1' },
    ...overrides,
  });

const sqs = (...bodies: string[]): SQSEvent => ({
  Records: bodies.map((body, i) => ({
    messageId: `m${i}`,
    receiptHandle: `r${i}`,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: '0',
      SenderId: 'x',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-central-1:123456789012:q',
    awsRegion: REGION,
  })),
});
const logger = { info: jest.fn(), warn: jest.fn(), error: jest.fn() };

describe('reconcile and lookup', () => {
  it('builds the index and the watermark; triage then resolves with zero ECS calls', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    const result = await indexer().reconcile(HOME);
    ecs.resetHistory();
    const r = resolver();

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));
    const sidecar = await r.servicesForImage(imageRef(ENVOY, ENVOY_DIGEST, ['v1.30']));

    // Assess
    expect(result).toMatchObject({ services: 3, written: 3, removed: 0 });
    expect(uses.map((u) => u.service.key)).toEqual(['prod/api', 'prod/worker']);
    expect(uses[0]).toMatchObject({
      containers: ['app'],
      taskDefinitionArn: taskDefArn('api', 1),
      tags: ENABLED,
    });
    expect(sidecar.map((u) => u.service.key)).toEqual(['prod/api']);
    expect(r.source).toBe('index');
    expect(ecsCalls()).toBe(0);
    // One read of the whole index, whatever the repositories: generation, places, watermarks,
    // records, manifests.
    expect(r.apiCalls).toBe(5);
  });

  it('keeps the whole index across lookups and batches while its generation stays', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    await indexer().reconcile(HOME);
    const r = resolver();

    // Act
    for (let i = 0; i < 50; i++) await r.servicesForImage(imageRef(API, OLD));
    clock = new Date(T0.getTime() + 61_000);
    r.startBatch();
    await r.servicesForImage(imageRef(API, OLD));
    await r.servicesForImage(imageRef(ENVOY, ENVOY_DIGEST, ['v1.30']));

    // Assess: the whole index once, then one generation check for the second batch.
    expect(r.apiCalls).toBe(6);
  });

  it('never matches a service by the image it ran before it moved, from the next batch on', async () => {
    // Arrange: a warm resolver holds the whole index; then prod/api moves to another image.
    const fake = account();
    installFakeEcs(ecs, fake);
    const ix = indexer();
    await ix.reconcile(HOME);
    const r = resolver();
    r.startBatch();
    const before = await r.servicesForImage(imageRef(API, OLD));
    fake.services[0] = {
      ...(fake.services[0] as (typeof fake.services)[number]),
      taskDefinition: taskDefArn('api', 2),
    };
    await handleBatch(sqs(deploymentEvent('api')), { indexer: ix, logger });

    // Act
    r.startBatch();
    const old = await r.servicesForImage(imageRef(API, OLD));
    const moved = await r.servicesForImage(imageRef(API_V2, NEW));

    // Assess
    expect(before.map((u) => u.service.key)).toEqual(['prod/api', 'prod/worker']);
    expect(old.map((u) => u.service.key)).toEqual(['prod/worker']);
    expect(moved.map((u) => [u.service.key, u.taskDefinitionArn])).toEqual([
      ['prod/api', taskDefArn('api', 2)],
    ]);
  });

  it('Queries per repository while a watermark has no records (an index from before the upgrade)', async () => {
    // Arrange: the watermark as the previous version wrote it (no `records`).
    installFakeEcs(ecs, account());
    await indexer().reconcile(HOME);
    await table().doc.send(
      new PutCommand({
        TableName: tableName,
        Item: { pk: placePk(HOME), sk: 'WATERMARK', reconciledAt: T0.toISOString(), services: 3 },
      }),
    );
    const r = resolver();

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess: the snapshot (no records), the watermark, one Query of the repository.
    expect(uses.map((u) => u.service.key)).toEqual(['prod/api', 'prod/worker']);
    expect(r.source).toBe('index');
    expect(r.apiCalls).toBe(4 + 1 + 1);
  });

  it('maps a platform digest to the services that run its image index without reading ECR', async () => {
    // Arrange: prod/api and prod/worker pin OLD, a two-platform image index; the indexer reads it once.
    const amd = digest('1');
    const arm = digest('2');
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: amd,
          size: 1,
          platform: { architecture: 'amd64', os: 'linux' },
        },
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: arm,
          size: 1,
          platform: { architecture: 'arm64', os: 'linux' },
        },
      ],
    });
    const ecr = mockClient(ECRClient);
    ecr.on(BatchGetImageCommand).callsFake((input: { imageIds: Array<{ imageDigest: string }> }) => ({
      images: input.imageIds.map((id) => ({
        imageId: id,
        imageManifest:
          id.imageDigest === OLD
            ? manifest
            : '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}',
        imageManifestMediaType:
          id.imageDigest === OLD
            ? 'application/vnd.oci.image.index.v1+json'
            : 'application/vnd.oci.image.manifest.v1+json',
      })),
    }));
    installFakeEcs(ecs, account());
    const ix = new Indexer({
      writer: writer(),
      ecsFor: (place) => new ECSClient({ region: place.region }),
      ecrFor: (place) => new ECRClient({ region: place.region }),
    });
    await ix.reconcile(HOME);
    const indexerReads = ecr.commandCalls(BatchGetImageCommand).length;
    ecr.resetHistory();
    const r = new InventoryResolver({
      ecs: new ECSClient({ region: REGION }),
      ecr: new ECRClient({ region: REGION }),
      discoverByTag: DISCOVER,
      now: () => clock,
      index: { reader: reader(), home: HOME },
    });

    // Act
    const uses = await r.servicesForImage(imageRef(API, arm));

    // Assess
    expect(indexerReads).toBeGreaterThan(0);
    expect(uses.map((u) => [u.service.key, u.index?.digest])).toEqual([
      ['prod/api', OLD],
      ['prod/worker', OLD],
    ]);
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
    ecr.restore();
  });

  it('applies eligibility at lookup: discovery tag, and explicit targets with their tags merged', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    await indexer().reconcile(HOME);

    // Act
    const targeted = await resolver({
      discover: false,
      targets: [{ cluster: 'staging', service: 'untagged', tags: { team: 'payments' } }],
    }).servicesForImage(imageRef(API, OLD));
    const both = await resolver({
      targets: [{ cluster: clusterArn('staging'), service: 'untagged' }],
    }).servicesForImage(imageRef(API, OLD));

    // Assess
    expect(targeted.map((u) => [u.service.key, u.tags])).toEqual([
      ['staging/untagged', { team: 'payments' }],
    ]);
    expect(both.map((u) => u.service.key)).toEqual(['prod/api', 'prod/worker', 'staging/untagged']);
  });

  it('scans ECS as before while the index has no watermark for the place', async () => {
    // Arrange: events indexed a service, but no reconcile has completed.
    installFakeEcs(ecs, account());
    await handleBatch(sqs(deploymentEvent('api')), { indexer: indexer(), logger });
    ecs.resetHistory();
    const r = resolver();

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses.map((u) => u.service.key)).toEqual(['prod/api', 'prod/worker']);
    expect(r.source).toBe('scan');
    expect(ecsCalls()).toBeGreaterThan(0);
  });

  it('does not trust a watermark older than a day: it scans', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    await indexer().reconcile(HOME);
    clock = new Date(T0.getTime() + 25 * 3_600_000);
    ecs.resetHistory();
    const r = resolver();

    // Act
    await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(r.source).toBe('scan');
  });

  it('removes a deleted service at the next reconcile', async () => {
    // Arrange
    const fake = account();
    installFakeEcs(ecs, fake);
    await indexer().reconcile(HOME);
    fake.services.splice(1, 1); // prod/worker deleted

    // Act
    const result = await indexer().reconcile(HOME);
    const uses = await resolver().servicesForImage(imageRef(API, OLD));

    // Assess
    expect(result).toMatchObject({ services: 2, removed: 1, unchanged: 2, written: 0 });
    expect(uses.map((u) => u.service.key)).toEqual(['prod/api']);
    const services = await writer().services(HOME);
    expect(services.map((s) => s.serviceName).sort()).toEqual(['api', 'untagged']);
  });

  it('writes nothing for services that did not change', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    await indexer().reconcile(HOME);

    // Act
    const again = await indexer().reconcile(HOME);

    // Assess
    expect(again).toMatchObject({ services: 3, written: 0, unchanged: 3, removed: 0 });
  });
});

describe('events', () => {
  it('re-describes only the named service: one DescribeServices, one DescribeTaskDefinition', async () => {
    // Arrange
    installFakeEcs(ecs, account());

    // Act
    const report = await handleBatch(sqs(deploymentEvent('api'), deploymentEvent('api')), {
      indexer: indexer(),
      logger,
    });

    // Assess: two events for one service, one description.
    expect(report.response.batchItemFailures).toEqual([]);
    expect(report.refreshed).toBe(1);
    expect(ecs.commandCalls(DescribeServicesCommand)).toHaveLength(1);
    expect(ecs.commandCalls(DescribeTaskDefinitionCommand)).toHaveLength(1);
    expect(ecsCalls()).toBe(2);
  });

  it('removes the stale entries when a service moves to a new image', async () => {
    // Arrange
    const fake = account();
    installFakeEcs(ecs, fake);
    const ix = indexer();
    await ix.reconcile(HOME);
    fake.services[0] = {
      ...(fake.services[0] as (typeof fake.services)[number]),
      taskDefinition: taskDefArn('api', 2),
    };

    // Act
    await handleBatch(sqs(deploymentEvent('api')), { indexer: ix, logger });
    const r = resolver();
    const old = await r.servicesForImage(imageRef(API, OLD));
    const now = await r.servicesForImage(imageRef(API_V2, NEW));

    // Assess
    expect(old.map((u) => u.service.key)).toEqual(['prod/worker']);
    expect(now.map((u) => [u.service.key, u.taskDefinitionArn])).toEqual([
      ['prod/api', taskDefArn('api', 2)],
    ]);
    // The staging service still runs the old revision with the sidecar.
    expect((await imageItems(ENVOY)).map((i) => i.serviceName)).toEqual(['untagged']);
    const [entry] = (await writer().services(HOME)).filter((s) => s.serviceName === 'api');
    expect(entry?.repositories).toEqual([API_V2.toLowerCase()]);
  });

  it('removes a service an event says is gone', async () => {
    // Arrange
    const fake = account();
    installFakeEcs(ecs, fake);
    await indexer().reconcile(HOME);
    fake.services.splice(0, 1);

    // Act
    await handleBatch(sqs(deploymentEvent('api')), { indexer: indexer(), logger });

    // Assess
    expect((await imageItems(API)).map((i) => i.serviceName)).toEqual(['worker', 'untagged']);
    expect((await imageItems(ENVOY)).map((i) => i.serviceName)).toEqual(['untagged']);
    expect((await writer().services(HOME)).map((s) => s.serviceName).sort()).toEqual(['untagged', 'worker']);
  });

  it('reaches another account through its own client and records the place for the reconcile', async () => {
    // Arrange
    const spoke: Place = { account: '210987654321', region: 'us-east-1' };
    const spokeCluster = `arn:aws:ecs:${spoke.region}:${spoke.account}:cluster/prod`;
    installFakeEcs(ecs, account());
    ecs.on(DescribeServicesCommand, { cluster: spokeCluster }).resolves({
      services: [
        {
          serviceName: 'api',
          clusterArn: spokeCluster,
          status: 'ACTIVE',
          taskDefinition: taskDefArn('api', 1),
          tags: [{ key: 'autopatch', value: 'enabled' }],
        },
      ],
    });
    const asked: Place[] = [];
    const ix = new Indexer({
      writer: writer(),
      ecsFor: (place) => {
        asked.push(place);
        return new ECSClient({ region: place.region });
      },
    });
    const body = deploymentEvent('api', 'prod', {
      account: spoke.account,
      region: spoke.region,
      resources: [`arn:aws:ecs:${spoke.region}:${spoke.account}:service/prod/api`],
    });

    // Act
    await handleBatch(sqs(body), { indexer: ix, logger });

    // Assess
    expect(asked).toEqual([spoke]);
    expect(await writer().places()).toEqual([spoke]);
    expect((await table().query('test', placePk(spoke))).map((i) => i.serviceName)).toEqual(['api']);
    expect((await imageItems(API)).map((i) => [i.account, i.region, i.clusterArn])).toEqual([
      [spoke.account, spoke.region, spokeCluster],
    ]);
  });

  it.each([
    ['not JSON', '{', 'event is not JSON'],
    ['another source', JSON.stringify({ source: 'aws.ec2' }), 'source is "aws.ec2"'],
    [
      'a bad account',
      deploymentEvent('api', 'prod', { account: '12' }),
      'account is not a 12-digit account id',
    ],
    [
      "another account's service",
      deploymentEvent('api', 'prod', {
        resources: ['arn:aws:ecs:eu-central-1:999999999999:service/prod/api'],
      }),
      'service ARN is in 999999999999/eu-central-1',
    ],
    [
      'a malformed service ARN',
      deploymentEvent('api', 'prod', {
        resources: ['arn:aws:ecs:eu-central-1:123456789012:service/prod/a b'],
      }),
      'service ARN is malformed',
    ],
    ['no resources', deploymentEvent('api', 'prod', { resources: [] }), 'resources must name the service'],
    [
      'an unknown detail-type',
      deploymentEvent('api', 'prod', { 'detail-type': 'ECS Task State Change' }),
      'is not indexed',
    ],
    [
      'an old-format ARN without clusterArn',
      deploymentEvent('api', 'prod', { resources: ['arn:aws:ecs:eu-central-1:123456789012:service/api'] }),
      'service ARN without cluster',
    ],
    [
      'a detail that is no object',
      deploymentEvent('api', 'prod', { detail: 'x' }),
      'detail is not an object',
    ],
  ])('rejects %s with a reason, and the batch goes on', async (_name, body, reason) => {
    // Arrange
    installFakeEcs(ecs, account());

    // Act
    const report = await handleBatch(sqs(body, deploymentEvent('worker')), { indexer: indexer(), logger });

    // Assess
    expect(report.rejected).toEqual([{ messageId: 'm0', reason: expect.stringContaining(reason) }]);
    expect(report.refreshed).toBe(1);
    expect(report.response.batchItemFailures).toEqual([]);
  });

  it('reads CloudTrail ECS calls: the service of a TagResource, nothing for a failed call', () => {
    // Arrange
    const trail = (detail: Record<string, unknown>) => ({
      source: 'aws.ecs',
      'detail-type': 'AWS API Call via CloudTrail',
      account: ACCOUNT,
      region: REGION,
      detail: { eventSource: 'ecs.amazonaws.com', ...detail },
    });

    // Act
    const tagged = parseServiceEvent(
      trail({
        eventName: 'TagResource',
        requestParameters: { resourceArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:service/prod/api` },
      }),
    );
    const failed = parseServiceEvent(trail({ eventName: 'UpdateService', errorCode: 'AccessDenied' }));
    const registered = parseServiceEvent(trail({ eventName: 'RegisterTaskDefinition' }));

    // Assess
    expect(tagged).toEqual({
      ok: true,
      event: {
        place: HOME,
        clusterArn: clusterArn('prod'),
        serviceName: 'api',
        trigger: 'AWS API Call via CloudTrail TagResource',
      },
    });
    expect(failed.ok).toBe('ignored');
    expect(registered).toEqual({ ok: false, reason: expect.stringContaining('is not indexed') });
  });

  it('retries only the messages of a service ECS throttled', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    ecs
      .on(DescribeServicesCommand, { cluster: clusterArn('prod'), services: ['worker'] })
      .rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $retryable: {} }));

    // Act
    const report = await handleBatch(sqs(deploymentEvent('api'), deploymentEvent('worker')), {
      indexer: indexer(),
      logger,
    });

    // Assess
    expect(report.response.batchItemFailures).toEqual([{ itemIdentifier: 'm1' }]);
    expect(report.refreshed).toBe(1);
  });
});

describe('concurrent writers', () => {
  it('leave no entry behind that the service no longer has', async () => {
    // Arrange: two writers rewrite one service at once, to two different images.
    const w = writer();
    const record = (image: string) => ({
      service: { clusterArn: clusterArn('prod'), serviceName: 'api', key: 'prod/api' },
      taskDefinitionArn: taskDefArn('api', 9),
      tags: ENABLED,
      deploymentController: 'ECS',
      containers: [{ name: 'app', image }],
      running: [],
    });

    // Act
    await Promise.all([
      w.writeService(HOME, clusterArn('prod'), 'api', record(`${API}@${OLD}`)),
      w.writeService(HOME, clusterArn('prod'), 'api', record(`${API_V2}@${NEW}`)),
    ]);

    // Assess: exactly one image holds the service, the one its entry names.
    const [entry] = await w.services(HOME);
    const holders = [...(await imageItems(API)), ...(await imageItems(API_V2))];
    expect(holders).toHaveLength(1);
    expect(entry?.repositories).toEqual([String(holders[0]?.pk).slice('IMAGE#'.length)]);
  });
});

describe('reconcile schedule', () => {
  it('walks the places that are due, oldest first, and skips fresh ones', async () => {
    // Arrange
    installFakeEcs(ecs, account());
    const spoke: Place = { account: '210987654321', region: 'us-east-1' };
    const ix = indexer();
    await ix.reconcile(HOME);
    await writer().notePlace(spoke);

    // Act
    const result = await ix.reconcileDue({
      places: [HOME],
      intervalMs: 6 * 3_600_000,
      now: () => clock,
      timeLeftMs: () => 600_000,
    });

    // Assess
    expect(result.reconciled.map((r) => r.place)).toEqual([spoke]);
    expect(result.skipped).toBe(1);
    expect(result.failed).toEqual([]);
  });
});
