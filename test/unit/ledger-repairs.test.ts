/**
 * The ledger against what goes wrong over time (dynalite): updates of a finding delivered out of
 * order across batches (the newest-seen mark), and a LOCK item that cannot be read (a poisoned lock).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger, type PoisonedLock } from '../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const T0 = new Date('2024-09-04T16:55:38Z');
let dynamo: LocalDynamo;
let doc: DynamoDBDocumentClient;
let ledger: Ledger;
let poisoned: PoisonedLock[];
let serial = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
  doc = DynamoDBDocumentClient.from(dynamo.client);
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(() => {
  poisoned = [];
  ledger = new Ledger({
    client: dynamo.client,
    tableName: dynamo.tableName,
    now: () => T0,
    onPoisonedLock: (p) => poisoned.push(p),
  });
});

const freshService = (): string => `prod/repair-${++serial}`;
const lockKey = (serviceKey: string) => ({ pk: `SERVICE#${serviceKey}`, sk: 'LOCK' });
const item = async (key: { pk: string; sk: string }) =>
  (await doc.send(new GetCommand({ TableName: dynamo.tableName, Key: key, ConsistentRead: true }))).Item;
const putRaw = (value: Record<string, unknown>) =>
  doc.send(new PutCommand({ TableName: dynamo.tableName, Item: value }));

const request = (
  serviceKey: string,
  cve: string,
  digest = `sha256:${'a'.repeat(64)}`,
): RemediationRequest => {
  const [cluster, serviceName] = serviceKey.split('/') as [string, string];
  const images: AffectedImage[] = [
    {
      repository: 'payments/api',
      registry: '123456789012',
      repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/payments/api',
      imageDigest: digest,
      imageTags: ['v1'],
      containers: ['app'],
      packageManagers: ['OS'],
      cves: [cve],
      severity: 'HIGH',
      findingArns: [`arn:finding/${cve}`],
      rebuild: { mode: 'patch-os' },
    },
  ];
  const name = executionName({ serviceName, key: serviceKey }, images, T0);
  return {
    remediationId: remediationId(serviceKey, name),
    executionName: name,
    service: {
      clusterArn: `arn:aws:ecs:eu-central-1:123456789012:cluster/${cluster}`,
      serviceName,
      key: serviceKey,
    },
    images,
    decision: { action: 'remediate', reason: 'HIGH with a fix available' },
    target: {
      alarmNames: [],
      bakeTimeMinutes: 60,
      deploymentTimeoutSeconds: 7_200,
      rescanTimeoutSeconds: 3_600,
      approvalTimeoutSeconds: 86_400,
    },
    findingsCount: 1,
    requestedAt: T0.toISOString(),
  };
};

/** A lock as a healthy claim writes it, with `patch` applied on top (to corrupt it). */
const lockItem = (serviceKey: string, patch: Record<string, unknown> = {}) => {
  const held = request(serviceKey, 'CVE-2024-0001');
  return {
    ...lockKey(serviceKey),
    executionName: held.executionName,
    remediationId: held.remediationId,
    status: 'RUNNING',
    request: JSON.stringify(held),
    claimedAt: T0.toISOString(),
    version: 3,
    merges: {},
    queue: {},
    entryBytes: 0,
    ...patch,
  };
};

describe('the newest update seen of a finding (newestSeen)', () => {
  const arn = 'arn:aws:inspector2:eu-central-1:123456789012:finding/ordered';

  it('remembers the newest updatedAt marked, and never moves it back', async () => {
    // Act: the CLOSED update (newer) is marked first, the older ACTIVE one after it.
    await ledger.markSeen([
      { findingArn: arn, updatedAt: 'closed-raw', updatedAtIso: '2024-09-05T10:00:00.000Z' },
    ]);
    await ledger.markSeen([
      { findingArn: arn, updatedAt: 'active-raw', updatedAtIso: '2024-09-04T10:00:00.000Z' },
    ]);

    // Assess
    expect(await ledger.newestSeen([arn, 'arn:never-seen'])).toEqual(
      new Map([[arn, '2024-09-05T10:00:00.000Z']]),
    );
    await ledger.markSeen([
      { findingArn: arn, updatedAt: 'later-raw', updatedAtIso: '2024-09-06T10:00:00.000Z' },
    ]);
    expect((await ledger.newestSeen([arn])).get(arn)).toBe('2024-09-06T10:00:00.000Z');
  });

  it('answers which deliveries are new and the newest update of their findings in one read', async () => {
    // Prepare
    const one = `${arn}-one-read`;
    await ledger.markSeen([
      { findingArn: one, updatedAt: 'closed-raw', updatedAtIso: '2024-09-05T10:00:00.000Z' },
    ]);

    // Act
    const keys = [
      { findingArn: one, updatedAt: 'closed-raw' },
      { findingArn: one, updatedAt: 'active-raw' },
      { findingArn: `${one}-new`, updatedAt: 'x' },
    ];
    const read = await ledger.unseenAndNewest(keys);

    // Assess
    expect(read.unseen).toEqual([keys[1], keys[2]]);
    expect(read.newest).toEqual(new Map([[one, '2024-09-05T10:00:00.000Z']]));
  });

  it('settles concurrent marks of one finding on the newest', async () => {
    // Prepare
    const concurrent = `${arn}-concurrent`;
    const times = Array.from({ length: 12 }, (_, i) => `2024-09-0${1 + (i % 9)}T0${i % 10}:00:00.000Z`);

    // Act
    await Promise.all(
      times.map((iso, i) =>
        ledger.markSeen([{ findingArn: concurrent, updatedAt: `raw-${i}`, updatedAtIso: iso }]),
      ),
    );

    // Assess
    expect((await ledger.newestSeen([concurrent])).get(concurrent)).toBe([...times].sort().at(-1));
  });

  it('keeps the duplicate-delivery markers as they were stored, and writes no mark without an ISO time', async () => {
    // Prepare
    const plain = `${arn}-plain`;

    // Act
    await ledger.markSeen([{ findingArn: plain, updatedAt: 'Wed Sep 04 16:55:38.411 UTC 2024' }]);

    // Assess: the delivery marker has the same attributes as before the mark existed.
    const out = await doc.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `FINDING#${plain}` },
      }),
    );
    expect(out.Items).toEqual([
      {
        pk: `FINDING#${plain}`,
        sk: 'Wed Sep 04 16:55:38.411 UTC 2024',
        seenAt: T0.toISOString(),
        expiresAt: Math.floor(T0.getTime() / 1000) + 90 * 86_400,
      },
    ]);
    expect(await ledger.newestSeen([plain])).toEqual(new Map());
    expect(
      await ledger.unseen([{ findingArn: plain, updatedAt: 'Wed Sep 04 16:55:38.411 UTC 2024' }]),
    ).toEqual([]);
  });
});

describe('a poisoned lock', () => {
  it.each([
    [
      'a request that is not JSON',
      { request: '{"remediationId": "r-1", "images": [' },
      /request is not JSON/,
    ],
    [
      'a request that is not a request',
      { request: JSON.stringify({ hello: 'world' }) },
      /request has no executionName/,
    ],
    ['an unknown status', { status: 'SLEEPING' }, /status "SLEEPING" is not a lock status/],
  ])(
    'with %s is reported, kept aside and removed, and the next finding claims the service',
    async (_what, patch, reason) => {
      // Prepare
      const svc = freshService();
      const corrupt = lockItem(svc, patch);
      await putRaw(corrupt);

      // Act
      const claim = await ledger.claim(request(svc, 'CVE-2024-0002'));

      // Assess
      expect(claim).toEqual({ kind: 'claimed' });
      expect(poisoned).toEqual([
        expect.objectContaining({
          serviceKey: svc,
          reason: expect.stringMatching(reason),
          action: 'lock-removed',
          executionName: corrupt.executionName,
        }),
      ]);
      expect(poisoned[0]?.rawBytes).toBeGreaterThan(100);
      const [record] = await ledger.poisonedLocks(svc);
      expect(record).toMatchObject({ reason: poisoned[0]?.reason, action: 'lock-removed', foundBy: 'claim' });
      expect(JSON.parse(record?.raw as string)).toMatchObject({
        request: corrupt.request,
        status: corrupt.status,
      });
      expect((await item(lockKey(svc)))?.executionName).toBe(request(svc, 'CVE-2024-0002').executionName);
    },
  );

  it('with one unreadable queued entry loses only that entry; the queue behind the run is kept', async () => {
    // Prepare: a running lock with a good queued request and a corrupt one.
    const svc = freshService();
    const good = request(svc, 'CVE-2024-0003', `sha256:${'b'.repeat(64)}`);
    const held = lockItem(svc, {
      sealed: true,
      queue: { [good.executionName]: JSON.stringify(good), 'broken-entry': 'not json at all' },
      entryBytes: JSON.stringify(good).length + 15,
    });
    await putRaw(held);

    // Act
    const { next } = await ledger.release(svc, held.executionName);

    // Assess
    expect(poisoned).toEqual([
      expect.objectContaining({
        action: 'entry-removed',
        reason: expect.stringContaining('queue entry broken-entry'),
      }),
    ]);
    expect(next?.images.map((i) => i.cves)).toEqual([['CVE-2024-0003']]);
    expect((await item(lockKey(svc)))?.status).toBe('STARTING');
  });

  it('is not removed when a concurrent writer replaced it after it was read', async () => {
    // Prepare: the corrupt lock, and a client that lets a healthy writer replace it just before our delete.
    const svc = freshService();
    await putRaw(lockItem(svc, { request: 'garbage' }));
    const healthy = lockItem(svc, { executionName: 'someone-else', status: 'RUNNING' });
    const racing = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' },
    });
    let replaced = false;
    racing.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'DeleteItemCommand' && !replaced) {
          replaced = true;
          await putRaw(healthy);
        }
        return next(args);
      },
      { step: 'initialize', name: 'concurrent-writer' },
    );
    const racingLedger = new Ledger({
      client: racing,
      tableName: dynamo.tableName,
      now: () => T0,
      onPoisonedLock: (p) => poisoned.push(p),
    });

    // Act
    const inFlight = await racingLedger.getInFlight(svc);

    // Assess: the concurrent writer's lock stands, and nothing was reported as taken away.
    expect(replaced).toBe(true);
    expect(inFlight?.executionName).toBe('someone-else');
    expect((await item(lockKey(svc)))?.executionName).toBe('someone-else');
    expect(poisoned).toEqual([]);
    racing.destroy();
  });

  it('no longer blocks the sweep: the reconciler lists no lock for it and the holder releases nothing', async () => {
    // Prepare
    const svc = freshService();
    const corrupt = lockItem(svc, { version: 'three' });
    await putRaw(corrupt);
    await putRaw({ pk: 'LOCKS', sk: svc, token: corrupt.executionName, at: T0.toISOString() });

    // Act
    const locks = await ledger.locks();
    const released = await ledger.release(svc, corrupt.executionName);

    // Assess
    expect(locks.map((l) => l.serviceKey)).not.toContain(svc);
    expect(released).toEqual({});
    expect(await item(lockKey(svc))).toBeUndefined();
    expect(poisoned.map((p) => p.reason)).toEqual(['the lock has no numeric version']);
  });
});
