import { DeleteItemCommand, GetItemCommand, QueryCommand as RawQueryCommand } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  DynamoDBDocumentClient,
  GetCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { AutopatchError, TransientError } from '../../lambdas/shared/errors';
import { Ledger, MAX_LOCK_BYTES, MAX_REQUEST_BYTES, type OutcomeRecord } from '../../lambdas/shared/ledger';
import { requestTextOf } from '../../lambdas/shared/ledger/contributions';
import { executionName, mergeImages, remediationId } from '../../lambdas/shared/remediation';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const T0 = new Date('2024-09-04T16:55:38Z');
let dynamo: LocalDynamo;
let clock: Date;
let ledger: Ledger;
let serial = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});

afterAll(async () => {
  await dynamo.stop();
});

beforeEach(() => {
  clock = T0;
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => clock });
});

/** A service key no other test uses: every test shares the one table. */
const freshService = (): string => `prod/svc-${++serial}`;

const image = (
  digest: string,
  findings: ReadonlyArray<[cve: string, findingArn: string]>,
): AffectedImage => ({
  repository: 'payments/api',
  registry: '123456789012',
  repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/payments/api',
  imageDigest: digest,
  imageTags: ['v1'],
  containers: ['app'],
  packageManagers: ['OS'],
  cves: [...new Set(findings.map(([cve]) => cve))].sort(),
  severity: 'HIGH',
  findingArns: findings.map(([, arn]) => arn).sort(),
  rebuild: { mode: 'patch-os' },
});

const makeRequest = (
  serviceKey: string,
  images: AffectedImage[],
  opts: { at?: Date; action?: 'remediate' | 'approve'; requestedAt?: string } = {},
): RemediationRequest => {
  const [cluster, serviceName] = serviceKey.split('/') as [string, string];
  const name = executionName({ serviceName, key: serviceKey }, images, opts.at ?? clock);
  return {
    remediationId: remediationId(serviceKey, name),
    executionName: name,
    service: {
      clusterArn: `arn:aws:ecs:eu-central-1:123456789012:cluster/${cluster}`,
      serviceName,
      key: serviceKey,
    },
    images,
    decision: { action: opts.action ?? 'remediate', reason: 'HIGH with a fix available' },
    target: {
      alarmNames: [],
      bakeTimeMinutes: 60,
      deploymentTimeoutSeconds: 7_200,
      rescanTimeoutSeconds: 3_600,
      approvalTimeoutSeconds: 86_400,
    },
    findingsCount: images.reduce((n, i) => n + i.findingArns.length, 0),
    requestedAt: opts.requestedAt ?? clock.toISOString(),
  };
};

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;
const requestA = (svc: string) => makeRequest(svc, [image(DIGEST_A, [['CVE-2024-0001', 'arn:finding/1']])]);
const requestB = (svc: string) => makeRequest(svc, [image(DIGEST_A, [['CVE-2024-0002', 'arn:finding/2']])]);
const requestC = (svc: string) => makeRequest(svc, [image(DIGEST_B, [['CVE-2024-0003', 'arn:finding/3']])]);

const rawLock = async (serviceKey: string) => {
  const out = await dynamo.client.send(
    new GetItemCommand({
      TableName: dynamo.tableName,
      Key: { pk: { S: `SERVICE#${serviceKey}` }, sk: { S: 'LOCK' } },
      ConsistentRead: true,
    }),
  );
  return out.Item ? unmarshall(out.Item) : undefined;
};

/**
 * The requests queued behind a service's lock, as stored (one JSON entry each): its QUEUE items
 * (those the lock took already left out) and, for a lock of the previous layout, its queue map.
 */
const queueOf = async (serviceKey: string): Promise<string[]> => {
  const lock = await rawLock(serviceKey);
  const took = new Set((lock?.took ?? []) as string[]);
  const out = await dynamo.client.send(
    new RawQueryCommand({
      TableName: dynamo.tableName,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :queue)',
      ExpressionAttributeValues: { ':pk': { S: `SERVICE#${serviceKey}` }, ':queue': { S: 'QUEUE#' } },
      ConsistentRead: true,
    }),
  );
  const items = (out.Items ?? []).map((i) => unmarshall(i)).filter((i) => !took.has(i.id as string));
  return [
    ...Object.values((lock?.queue ?? {}) as Record<string, string>),
    ...items.map((i) => requestTextOf(i.request) as string),
  ];
};

/** claim → StartExecution (not called here) → markStarted → acquire: a remediation started. */
const started = async (request: RemediationRequest): Promise<void> => {
  expect(await ledger.claim(request)).toEqual({ kind: 'claimed' });
  await ledger.markStarted(request.service.key, request.executionName, `arn:exec:${request.executionName}`);
  expect(await ledger.acquire(request.service.key, request.executionName)).toBe('acquired');
};

/** …and took the findings gathered meanwhile (seal): a remediation running, later requests queue. */
const running = async (request: RemediationRequest): Promise<void> => {
  await started(request);
  await ledger.seal(request.service.key, request.executionName);
};

describe('duplicate deliveries (unseen / markSeen)', () => {
  const keys = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      findingArn: `arn:finding/${prefix}-${i}`,
      updatedAt: '2024-09-04T16:55:38Z',
    }));

  it('reports every key as unseen until it is marked, then only the unmarked ones, in input order', async () => {
    // Prepare: more keys than one BatchGetItem (100) and one BatchWriteItem (25) can carry.
    const all = keys('order', 230);
    const marked = all.filter((_, i) => i % 3 === 0);

    // Act
    const before = await ledger.unseen(all);
    await ledger.markSeen(marked);
    const after = await ledger.unseen(all);

    // Assess
    expect(before).toEqual(all);
    expect(after).toEqual(all.filter((_, i) => i % 3 !== 0));
  });

  it('treats a new updatedAt of the same finding as a new delivery', async () => {
    // Prepare
    const first = { findingArn: 'arn:finding/updated', updatedAt: 'Wed Sep 04 16:55:38.411 UTC 2024' };
    const update = { ...first, updatedAt: 'Thu Sep 05 09:00:00.000 UTC 2024' };
    await ledger.markSeen([first]);

    // Act
    const unseen = await ledger.unseen([first, update]);

    // Assess
    expect(unseen).toEqual([update]);
  });

  it('accepts duplicate keys in one call and marking twice is harmless', async () => {
    // Prepare: BatchGetItem / BatchWriteItem reject a request that names a key twice.
    const [k] = keys('dup', 1) as [{ findingArn: string; updatedAt: string }];

    // Act
    const unseenTwice = await ledger.unseen([k, k]);
    await ledger.markSeen([k, k]);
    await ledger.markSeen([k]);
    const afterwards = await ledger.unseen([k, k]);

    // Assess
    expect(unseenTwice).toEqual([k, k]);
    expect(afterwards).toEqual([]);
  });

  it('stores the marker with a 90-day TTL', async () => {
    // Prepare
    const k = { findingArn: 'arn:finding/ttl', updatedAt: 'Dec 3, 2021, 6:02:30 PM' };

    // Act
    await ledger.markSeen([k]);

    // Assess
    const out = await dynamo.client.send(
      new GetItemCommand({
        TableName: dynamo.tableName,
        Key: { pk: { S: `FINDING#${k.findingArn}` }, sk: { S: k.updatedAt } },
      }),
    );
    expect(out.Item?.expiresAt?.N).toBe(String(T0.getTime() / 1000 + 90 * 86_400));
  });

  it('does nothing for an empty list', async () => {
    // Act / Assess
    await expect(ledger.unseen([])).resolves.toEqual([]);
    await expect(ledger.markSeen([])).resolves.toBeUndefined();
  });
});

describe('claim', () => {
  it('claims an idle service and stores the request as STARTING', async () => {
    // Prepare
    const svc = freshService();
    const request = requestA(svc);

    // Act
    const result = await ledger.claim(request);

    // Assess
    expect(result).toEqual({ kind: 'claimed' });
    expect(await ledger.getInFlight(svc)).toEqual({
      executionName: request.executionName,
      status: 'STARTING',
      request,
      claimedAt: T0.toISOString(),
      queued: 0,
      queuedUrgent: false,
    });
  });

  it('gives exactly one of many concurrent claims the service; the others resume that claim', async () => {
    // Prepare: distinct requests (different findings) for the same service, all at once.
    const svc = freshService();
    const requests = Array.from({ length: 8 }, (_, i) =>
      makeRequest(svc, [image(DIGEST_A, [[`CVE-2024-10${i}`, `arn:finding/c${i}`]])]),
    );

    // Act
    const results = await Promise.all(requests.map((r) => ledger.claim(r)));

    // Assess
    const claimed = results.flatMap((r, i) =>
      r.kind === 'claimed' ? [requests[i] as RemediationRequest] : [],
    );
    expect(claimed).toHaveLength(1);
    const winner = claimed[0] as RemediationRequest;
    for (const r of results.filter((r) => r.kind !== 'claimed')) {
      expect(r).toEqual({ kind: 'resume', request: winner });
    }
    expect((await ledger.getInFlight(svc))?.executionName).toBe(winner.executionName);
  });

  it('resumes a claim whose start was never confirmed (crash between claim and markStarted)', async () => {
    // Prepare: attempt 1 claimed and crashed before markStarted.
    const svc = freshService();
    const first = requestA(svc);
    await ledger.claim(first);
    const later = requestB(svc);

    // Act: the redelivered batch claims again, and a later batch brings another finding.
    const retried = await ledger.claim(first);
    const other = await ledger.claim(later);

    // Assess: both are told to (re)start the stored request under its original name.
    expect(retried).toEqual({ kind: 'resume', request: first });
    expect(other).toEqual({ kind: 'resume', request: first });
    expect((await ledger.getInFlight(svc))?.status).toBe('STARTING');
  });

  it('merges a request into a started remediation that has not taken its findings yet, once', async () => {
    // Prepare
    const svc = freshService();
    const first = requestA(svc);
    await started(first);
    const later = requestC(svc);

    // Act
    const results = [await ledger.claim(later), await ledger.claim(later), await ledger.claim(later)];
    const { request: gathered } = await ledger.seal(svc, first.executionName);

    // Assess: one run carries both images; nothing queued; the run keeps its name.
    for (const r of results) expect(r).toEqual({ kind: 'merged', inFlight: first.executionName });
    expect((await rawLock(svc))?.merged).toBeUndefined(); // the copies for an unsealed end are gone
    expect(gathered.executionName).toBe(first.executionName);
    expect(gathered.images.map((i) => i.imageDigest)).toEqual([DIGEST_A, DIGEST_B]);
    expect(gathered.findingsCount).toBe(2);
    expect((await rawLock(svc))?.queued).toBeUndefined();
  });

  it('queues a request behind a remediation that took its findings, once, however often it is claimed', async () => {
    // Prepare
    const svc = freshService();
    const first = requestA(svc);
    await running(first);
    const later = requestB(svc);

    // Act
    const results = [await ledger.claim(later), await ledger.claim(later), await ledger.claim(later)];

    // Assess
    for (const r of results) expect(r).toEqual({ kind: 'queued', inFlight: first.executionName });
    expect(await queueOf(svc)).toEqual([JSON.stringify(later)]);
    expect((await ledger.seal(svc, first.executionName)).request.images).toEqual(first.images);
  });

  it('merges a request that needs approval into a gathering run, which then asks for approval', async () => {
    // Prepare
    const svc = freshService();
    const first = requestA(svc);
    await started(first);
    const needsApproval = makeRequest(svc, [image(DIGEST_B, [['CVE-2024-0009', 'arn:finding/9']])], {
      action: 'approve',
    });

    // Act
    const result = await ledger.claim(needsApproval);

    // Assess
    expect(result).toEqual({ kind: 'merged', inFlight: first.executionName });
    const { request } = await ledger.seal(svc, first.executionName);
    expect(request.decision.action).toBe('approve');
    expect(request.images.map((i) => i.imageDigest)).toEqual([DIGEST_A, DIGEST_B]);
  });

  it('runs what was merged next when the remediation ends before it took its findings', async () => {
    // Prepare: B merges into A while A gathers; A is then stopped (or fails) before sealing.
    const svc = freshService();
    const a = requestA(svc);
    await started(a);
    const b = requestC(svc);
    expect((await ledger.claim(b)).kind).toBe('merged');

    // Act
    const { next } = await ledger.release(svc, a.executionName);

    // Assess: B is not lost; A's own findings (reported as failed) are not re-run.
    expect(next?.images).toEqual(b.images);
    expect(await ledger.getInFlight(svc)).toMatchObject({
      executionName: next?.executionName,
      status: 'STARTING',
    });
  });

  it('merges every one of many concurrent requests into an unsealed remediation, none lost', async () => {
    // Prepare
    const svc = freshService();
    const first = requestA(svc);
    await started(first);
    const requests = Array.from({ length: 6 }, (_, i) =>
      makeRequest(svc, [image(DIGEST_B, [[`CVE-2024-30${i}`, `arn:finding/m${i}`]])]),
    );

    // Act
    const results = await Promise.all(requests.map((r) => ledger.claim(r)));
    const { request: gathered } = await ledger.seal(svc, first.executionName);

    // Assess
    expect(results.every((r) => r.kind === 'merged')).toBe(true);
    expect(gathered.images.flatMap((i) => i.findingArns).sort()).toEqual(
      ['arn:finding/1', ...requests.map((_, i) => `arn:finding/m${i}`)].sort(),
    );
  });

  it('while findings still arrive, leaves the lock open when asked to seal only once the burst is quiet', async () => {
    // Prepare: a request merges at T0 + 2 min.
    const svc = freshService();
    const first = requestA(svc);
    await started(first);
    clock = new Date(T0.getTime() + 120_000);
    expect((await ledger.claim(requestC(svc))).kind).toBe('merged');

    // Act: quiet since T0 + 1 min? No (merged after). Since T0 + 3 min? Yes.
    const early = await ledger.seal(svc, first.executionName, new Date(T0.getTime() + 60_000));
    const stillOpen = await ledger.claim(
      makeRequest(svc, [image(DIGEST_B, [['CVE-2024-0010', 'arn:finding/10']])]),
    );
    const late = await ledger.seal(svc, first.executionName, new Date(T0.getTime() + 180_000));
    const repeated = await ledger.seal(svc, first.executionName, new Date(T0.getTime() + 60_000));

    // Assess
    expect(early.sealed).toBe(false);
    expect(early.request.images.map((i) => i.imageDigest)).toEqual([DIGEST_A, DIGEST_B]);
    expect(stillOpen.kind).toBe('merged');
    expect(late.sealed).toBe(true);
    expect(late.request.images.flatMap((i) => i.findingArns).sort()).toEqual(
      ['arn:finding/1', 'arn:finding/10', 'arn:finding/3'].sort(),
    );
    expect(repeated.sealed).toBe(true); // sealed stays sealed
    expect((await ledger.claim(requestB(svc))).kind).toBe('queued');
  });

  it('refuses to seal a lock the execution does not hold', async () => {
    // Prepare
    const svc = freshService();
    await started(requestA(svc));

    // Act / Assess
    await expect(ledger.seal(svc, 'someone-else')).rejects.toMatchObject({ name: 'LockNotHeldError' });
    await expect(ledger.seal(freshService(), 'nobody')).rejects.toMatchObject({ name: 'LockNotHeldError' });
    await expect(ledger.seal(svc, 'someone-else', new Date())).rejects.toMatchObject({
      name: 'LockNotHeldError',
    });
  });

  it('does not queue a request whose findings are already in flight or queued', async () => {
    // Prepare: a redelivery whose markSeen was lost arrives later, under a new execution name.
    const svc = freshService();
    const first = requestA(svc);
    await running(first);
    const queued = requestC(svc);
    await ledger.claim(queued);
    clock = new Date(T0.getTime() + 60_000);
    const sameAsFirst = requestA(svc);
    const sameAsQueued = requestC(svc);
    expect(sameAsFirst.executionName).not.toBe(first.executionName);

    // Act
    const r1 = await ledger.claim(sameAsFirst);
    const r2 = await ledger.claim(sameAsQueued);

    // Assess
    expect(r1).toEqual({ kind: 'queued', inFlight: first.executionName });
    expect(r2).toEqual({ kind: 'queued', inFlight: first.executionName });
    expect(await queueOf(svc)).toEqual([JSON.stringify(queued)]);
  });

  it('does not queue the in-flight request itself when its claim is repeated after the start', async () => {
    // Prepare
    const svc = freshService();
    const first = requestA(svc);
    await running(first);

    // Act
    const again = await ledger.claim(first);

    // Assess
    expect(again).toEqual({ kind: 'queued', inFlight: first.executionName });
    expect(await ledger.getInFlight(svc)).toMatchObject({ status: 'RUNNING', queued: 0 });
  });

  it('queues every one of many concurrent requests behind a running remediation, none lost', async () => {
    // Prepare
    const svc = freshService();
    await running(requestA(svc));
    const requests = Array.from({ length: 6 }, (_, i) =>
      makeRequest(svc, [image(DIGEST_B, [[`CVE-2024-20${i}`, `arn:finding/q${i}`]])]),
    );

    // Act
    const results = await Promise.all(requests.map((r) => ledger.claim(r)));

    // Assess: every request has its own entry in the queue, none overwrote another.
    expect(results.every((r) => r.kind === 'queued')).toBe(true);
    const queued = (await queueOf(svc)).map((j) => JSON.parse(j) as RemediationRequest);
    expect(queued.map((r) => r.executionName).sort()).toEqual(requests.map((r) => r.executionName).sort());
    expect(queued.flatMap((r) => r.images.flatMap((i) => i.cves)).sort()).toEqual(
      requests.map((_, i) => `CVE-2024-20${i}`).sort(),
    );
  });
});

describe('size limits', () => {
  /** A request of about `kb` KB as JSON: many findings of one image. */
  const bulky = (svc: string, tag: string, kb: number) => {
    const finding = (i: number): [string, string] => [
      `CVE-2024-${tag}${i}`,
      `arn:aws:inspector2:eu-central-1:123456789012:finding/${tag}-${i}`,
    ];
    const one = JSON.stringify(finding(0)).length + 1;
    const findings = Array.from({ length: Math.ceil((kb * 1024) / one) }, (_, i) => finding(i));
    const request = makeRequest(svc, [image(`sha256:${tag.repeat(64)}`, findings)]);
    expect(Math.abs(JSON.stringify(request).length / 1024 - kb)).toBeLessThan(kb * 0.1 + 2);
    return request;
  };

  it('queues instead of merging what would make one execution too large, and starts the queue in chunks', async () => {
    // Prepare: a 20 KB run is gathering; 20 KB more still fits in one execution, 30 KB more does not.
    const svc = freshService();
    const first = bulky(svc, 'a', 20);
    await started(first);

    // Act
    const second = await ledger.claim(bulky(svc, 'b', 20));
    const third = await ledger.claim(bulky(svc, 'c', 30));
    const fourth = await ledger.claim(bulky(svc, 'd', 30));
    const queuedEntries = (await queueOf(svc)).length;
    await ledger.seal(svc, first.executionName);
    const { next } = await ledger.release(svc, first.executionName);

    // Assess: c and d queued apart (together they would be too large); each run stays under the limit.
    expect([second.kind, third.kind, fourth.kind]).toEqual(['merged', 'queued', 'queued']);
    expect(queuedEntries).toBe(2);
    expect(JSON.stringify(next).length).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    expect(next?.images.map((i) => i.imageDigest[7])).toEqual(['c']);
    const afterNext = await ledger.getInFlight(svc);
    expect(afterNext?.queued).toBe(1);
  });

  it('keeps the lock item small however many requests queue behind a long wait, every finding kept', async () => {
    // Prepare
    const svc = freshService();
    await running(requestA(svc));
    const before = JSON.stringify(await rawLock(svc)).length;

    // Act: 200 small requests arrive while the run is sealed (say, waiting days for its window).
    for (let i = 0; i < 200; i++) {
      const r = makeRequest(svc, [image(DIGEST_B, [[`CVE-2025-${1000 + i}`, `arn:finding/w${i}`]])]);
      expect((await ledger.claim(r)).kind).toBe('queued');
    }

    // Assess: each waits in its own item; the lock item did not grow; the next run takes them all.
    expect(JSON.stringify(await rawLock(svc)).length).toBeLessThanOrEqual(before + 64);
    expect((await ledger.getInFlight(svc))?.queued).toBe(200);
    const queued = (await queueOf(svc)).map((j) => JSON.parse(j) as RemediationRequest);
    expect(new Set(queued.flatMap((r) => r.images.flatMap((i) => i.cves))).size).toBe(200);
    const { next } = await ledger.release(svc, requestA(svc).executionName);
    expect(new Set(next?.images.flatMap((i) => i.cves)).size).toBe(200);
    expect(await queueOf(svc)).toEqual([]);
  });

  it('queues large requests without filling the lock item; a redelivery of one it carries is not written twice', async () => {
    // Prepare: a sealed run; 40 KB requests queue apart (two would not fit in one execution).
    const svc = freshService();
    const first = bulky(svc, 'a', 40);
    await running(first);
    const accepted: RemediationRequest[] = [];
    for (const tag of ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k']) {
      const r = bulky(svc, tag, 40);
      expect((await ledger.claim(r)).kind).toBe('queued');
      accepted.push(r);
    }

    // Act
    const again = await ledger.claim(accepted[0] as RemediationRequest);

    // Assess: the lock item holds the run's own request only; ten entries, one per request.
    expect(again).toMatchObject({ kind: 'queued' });
    expect(JSON.stringify(await rawLock(svc)).length).toBeLessThan(
      JSON.stringify(JSON.stringify(first)).length + 1_000,
    );
    expect(JSON.stringify(await rawLock(svc)).length).toBeLessThan(MAX_LOCK_BYTES);
    expect(await queueOf(svc)).toHaveLength(10);
  });
});

describe('markStarted', () => {
  it('moves STARTING to STARTED with the execution ARN, and repeating it changes nothing', async () => {
    // Prepare
    const svc = freshService();
    const request = requestA(svc);
    await ledger.claim(request);

    // Act
    await ledger.markStarted(svc, request.executionName, 'arn:exec:1');
    const once = await ledger.getInFlight(svc);
    await ledger.markStarted(svc, request.executionName, 'arn:exec:1');

    // Assess
    expect(once).toMatchObject({ status: 'STARTED', executionArn: 'arn:exec:1' });
    expect(await ledger.getInFlight(svc)).toEqual(once);
  });

  it('does not move a lock the execution already acquired back to STARTED', async () => {
    // Prepare: the execution's first state ran before triage confirmed the start.
    const svc = freshService();
    const request = requestA(svc);
    await ledger.claim(request);
    await ledger.acquire(svc, request.executionName);

    // Act
    await ledger.markStarted(svc, request.executionName, 'arn:exec:2');

    // Assess
    expect(await ledger.getInFlight(svc)).toMatchObject({ status: 'RUNNING', executionArn: 'arn:exec:2' });
  });

  it('leaves a lock held by another execution alone, and does not create one', async () => {
    // Prepare
    const svc = freshService();
    const holder = requestA(svc);
    await ledger.claim(holder);
    const idle = freshService();

    // Act
    await ledger.markStarted(svc, 'someone-else', 'arn:exec:x');
    await ledger.markStarted(idle, 'someone-else', 'arn:exec:x');

    // Assess
    expect(await ledger.getInFlight(svc)).toMatchObject({
      executionName: holder.executionName,
      status: 'STARTING',
    });
    expect(await ledger.getInFlight(idle)).toBeUndefined();
  });
});

describe('acquire', () => {
  it('acquires the lock it was claimed for → RUNNING; twice is fine and keeps the first lockedAt', async () => {
    // Prepare
    const svc = freshService();
    const request = requestA(svc);
    await ledger.claim(request);
    await ledger.markStarted(svc, request.executionName, 'arn:exec:1');

    // Act
    const first = await ledger.acquire(svc, request.executionName);
    clock = new Date(T0.getTime() + 5_000);
    const second = await ledger.acquire(svc, request.executionName);

    // Assess
    expect([first, second]).toEqual(['acquired', 'acquired']);
    expect(await ledger.getInFlight(svc)).toMatchObject({ status: 'RUNNING', lockedAt: T0.toISOString() });
  });

  it('is superseded when another execution holds the lock, or none does', async () => {
    // Prepare
    const svc = freshService();
    const holder = requestA(svc);
    await running(holder);

    // Act
    const other = await ledger.acquire(svc, 'not-the-holder');
    const idle = await ledger.acquire(freshService(), 'not-the-holder');

    // Assess
    expect(other).toBe('superseded');
    expect(idle).toBe('superseded');
    expect(await ledger.getInFlight(svc)).toMatchObject({ executionName: holder.executionName, queued: 0 });
  });

  it('with its request: queues it behind the holder when superseded, and takes an idle service', async () => {
    // Prepare: executions started outside triage (a console re-run).
    const busy = freshService();
    await running(requestA(busy));
    const rerunBusy = requestC(busy);
    const idle = freshService();
    const rerunIdle = requestC(idle);

    // Act
    const superseded = await ledger.acquire(busy, rerunBusy.executionName, rerunBusy);
    const acquired = await ledger.acquire(idle, rerunIdle.executionName, rerunIdle);

    // Assess
    expect(superseded).toBe('superseded');
    expect(await queueOf(busy)).toEqual([JSON.stringify(rerunBusy)]);
    expect(acquired).toBe('acquired');
    expect(await ledger.getInFlight(idle)).toMatchObject({
      executionName: rerunIdle.executionName,
      status: 'RUNNING',
    });
  });
});

describe('release', () => {
  it('deletes the lock when nothing was queued; a repeat and a stranger get {}', async () => {
    // Prepare
    const svc = freshService();
    const request = requestA(svc);
    await running(request);

    // Act
    const stranger = await ledger.release(svc, 'someone-else');
    const lockAfterStranger = await ledger.getInFlight(svc);
    const first = await ledger.release(svc, request.executionName);
    const repeat = await ledger.release(svc, request.executionName);

    // Assess
    expect(stranger).toEqual({});
    expect(lockAfterStranger?.executionName).toBe(request.executionName);
    expect(first).toEqual({});
    expect(repeat).toEqual({});
    expect(await ledger.getInFlight(svc)).toBeUndefined();
  });

  it('runs the whole cycle: claim, queue, release → one merged next, resumed by the next claim, released', async () => {
    // Prepare: A runs; B (same image, another CVE) and C (another image) queue behind it.
    const svc = freshService();
    const a = requestA(svc);
    await running(a);
    clock = new Date(T0.getTime() + 60_000);
    const b = requestB(svc);
    clock = new Date(T0.getTime() + 120_000);
    const c = makeRequest(svc, [image(DIGEST_B, [['CVE-2024-0003', 'arn:finding/3']])], {
      action: 'approve',
    });
    expect(await ledger.claim(b)).toEqual({ kind: 'queued', inFlight: a.executionName });
    expect(await ledger.claim(c)).toEqual({ kind: 'queued', inFlight: a.executionName });
    clock = new Date(T0.getTime() + 3_600_000);

    // Act
    const { next } = await ledger.release(svc, a.executionName);
    const repeated = await ledger.release(svc, a.executionName);
    const nextClaim = await ledger.claim(requestA(svc)); // a finding for the service arrives meanwhile

    // Assess: one request carrying B and C under a fresh name, held as a STARTING claim.
    expect(next).toBeDefined();
    const n = next as RemediationRequest;
    expect(n.executionName).toBe(executionName(b.service, mergeImages(b.images, c.images), clock));
    expect(n.executionName).not.toBe(b.executionName);
    expect(n.executionName).toMatch(/-2cves-aaaaaaaax2-/);
    expect(n.executionName).toMatch(/-20240904T175538Z$/);
    expect(n.remediationId).toBe(remediationId(svc, n.executionName));
    expect(n.images.map((i) => i.imageDigest)).toEqual([DIGEST_A, DIGEST_B]);
    expect(n.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-0002', 'CVE-2024-0003']);
    expect(n.findingsCount).toBe(2);
    expect(n.requestedAt).toBe(b.requestedAt);
    expect(n.decision.action).toBe('approve');
    expect(repeated).toEqual({ next: n });
    expect(nextClaim).toEqual({ kind: 'resume', request: n });
    expect(await ledger.getInFlight(svc)).toMatchObject({
      executionName: n.executionName,
      status: 'STARTING',
      queued: 0,
    });

    // Act: the next remediation starts, runs and finishes.
    await ledger.markStarted(svc, n.executionName, 'arn:exec:next');
    const afterStart = await ledger.release(svc, a.executionName);
    expect(await ledger.acquire(svc, n.executionName)).toBe('acquired');
    const last = await ledger.release(svc, n.executionName);

    // Assess
    expect(afterStart).toEqual({});
    expect(last).toEqual({});
    expect(await ledger.getInFlight(svc)).toBeUndefined();
  });

  it('does not lose a request queued while the release is in progress', async () => {
    // Prepare
    const svc = freshService();
    const a = requestA(svc);
    await running(a);
    const b = requestB(svc);

    // Act: the claim and the release race.
    const [claim, released] = await Promise.all([ledger.claim(b), ledger.release(svc, a.executionName)]);

    // Assess: either B was queued and became next, or it claimed the idle service itself.
    if (claim.kind === 'queued') expect(released.next?.images).toEqual(b.images);
    else expect(claim).toEqual({ kind: 'claimed' });
    const inFlight = await ledger.getInFlight(svc);
    expect(inFlight?.request.images).toEqual(b.images);
  });
});

describe('task tokens', () => {
  it('stores, reads, replaces and deletes a token', async () => {
    // Prepare
    const name = `exec-${++serial}`;
    const svc = freshService();

    // Act
    const missing = await ledger.getTaskToken(name, 'approval');
    await ledger.putTaskToken(name, 'approval', 'token-1', svc);
    await ledger.putTaskToken(name, 'watch', 'token-w', svc);
    const stored = await ledger.getTaskToken(name, 'approval');
    await ledger.putTaskToken(name, 'approval', 'token-2', svc);
    const replaced = await ledger.getTaskToken(name, 'approval');
    await ledger.deleteTaskToken(name, 'approval');
    await ledger.deleteTaskToken(name, 'approval');
    const deleted = await ledger.getTaskToken(name, 'approval');

    // Assess
    expect(missing).toBeUndefined();
    expect(stored).toEqual({ token: 'token-1', serviceKey: svc });
    expect(replaced).toEqual({ token: 'token-2', serviceKey: svc });
    expect(deleted).toBeUndefined();
    expect(await ledger.getTaskToken(name, 'watch')).toEqual({ token: 'token-w', serviceKey: svc });
  });

  it('keeps a token 30 days: its TTL is set, and an expired one not yet swept is not returned', async () => {
    // Prepare
    const name = `exec-${++serial}`;
    await ledger.putTaskToken(name, 'approval', 'token', freshService());

    // Act
    const raw = await dynamo.client.send(
      new GetItemCommand({
        TableName: dynamo.tableName,
        Key: { pk: { S: `TOKEN#${name}` }, sk: { S: 'approval' } },
      }),
    );
    clock = new Date(T0.getTime() + 30 * 86_400_000 + 1_000);
    const expired = await ledger.getTaskToken(name, 'approval');

    // Assess
    expect(raw.Item?.expiresAt?.N).toBe(String(T0.getTime() / 1000 + 30 * 86_400));
    expect(expired).toBeUndefined();
  });

  it("refuses to overwrite another service's token", async () => {
    // Prepare
    const name = `exec-${++serial}`;
    await ledger.putTaskToken(name, 'watch', 'token', 'prod/one');

    // Act
    const attempt = ledger.putTaskToken(name, 'watch', 'other', 'prod/two');

    // Assess
    await expect(attempt).rejects.toThrow(AutopatchError);
    expect(await ledger.getTaskToken(name, 'watch')).toEqual({ token: 'token', serviceKey: 'prod/one' });
  });
});

describe('history', () => {
  const outcome = (serviceKey: string, id: string, finishedAt: string): OutcomeRecord => ({
    serviceKey,
    remediationId: id,
    executionName: `svc-${id}`,
    outcome: 'Patched',
    reason: 'rescan clean, bake passed',
    images: [
      { repository: 'payments/api', oldDigest: DIGEST_A, newDigest: DIGEST_B, cves: ['CVE-2024-0001'] },
    ],
    cvesClosed: ['CVE-2024-0001'],
    oldTaskDefinition: 'arn:td/api:1',
    newTaskDefinition: 'arn:td/api:2',
    startedAt: '2024-09-01T00:00:00.000Z',
    finishedAt,
    timings: { rebuildSeconds: 120 },
  });

  it('returns records newest first, limited, and only for the service', async () => {
    // Prepare: written out of order; another service's record and the lock share the partition scheme.
    const svc = freshService();
    await running(requestA(svc));
    const old = outcome(svc, 'r-old', '2024-09-01T10:00:00.000Z');
    const newest = outcome(svc, 'r-new', '2024-09-03T10:00:00.000Z');
    const middle = outcome(svc, 'r-mid', '2024-09-02T10:00:00.000Z');
    for (const r of [old, newest, middle]) await ledger.recordOutcome(r);
    await ledger.recordOutcome(outcome(freshService(), 'r-other', '2024-09-04T10:00:00.000Z'));

    // Act
    const all = await ledger.history(svc);
    const two = await ledger.history(svc, 2);

    // Assess
    expect(all).toEqual([newest, middle, old]);
    expect(two.map((r) => r.remediationId)).toEqual(['r-new', 'r-mid']);
  });

  it('overwrites a record written twice (a retried task) instead of duplicating it', async () => {
    // Prepare
    const svc = freshService();
    const record = outcome(svc, 'r-retry', '2024-09-03T10:00:00.000Z');

    // Act
    await ledger.recordOutcome(record);
    await ledger.recordOutcome({ ...record, reason: 'second attempt' });

    // Assess
    const items = await dynamo.client.send(
      new RawQueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: `SERVICE#${svc}` } },
      }),
    );
    expect(items.Count).toBe(1);
    expect((await ledger.history(svc))[0]?.reason).toBe('second attempt');
  });

  it('rejects a finishedAt that is not a time (it could not be ordered)', async () => {
    // Act
    const attempt = ledger.recordOutcome(outcome(freshService(), 'r-bad', 'yesterday'));

    // Assess
    await expect(attempt).rejects.toThrow(/finishedAt/);
  });
});

describe('errors', () => {
  it('reports a missing table as a non-transient error that keeps its cause', async () => {
    // Prepare
    const broken = new Ledger({ client: dynamo.client, tableName: 'no-such-table' });

    // Act
    const error = await broken.getInFlight('prod/x').catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(AutopatchError);
    expect(error).not.toBeInstanceOf(TransientError);
    expect((error as Error).message).toMatch(/no-such-table/);
    expect(((error as Error).cause as Error).name).toBe('ResourceNotFoundException');
  });

  it('still works after the lock item is deleted by hand (the runbook fix for a stale lock)', async () => {
    // Prepare
    const svc = freshService();
    await running(requestA(svc));
    await dynamo.client.send(
      new DeleteItemCommand({
        TableName: dynamo.tableName,
        Key: { pk: { S: `SERVICE#${svc}` }, sk: { S: 'LOCK' } },
      }),
    );

    // Act
    const result = await ledger.claim(requestC(svc));

    // Assess
    expect(result).toEqual({ kind: 'claimed' });
  });

  describe('with a mocked DynamoDB', () => {
    const mockDocumentClient = () => mockClient(DynamoDBDocumentClient);
    let ddb: ReturnType<typeof mockDocumentClient>;
    const fast = () =>
      new Ledger({ client: dynamo.client, tableName: 'mocked', batchRetry: { attempts: 3, baseDelayMs: 1 } });

    beforeEach(() => {
      ddb = mockDocumentClient();
    });

    afterEach(() => {
      ddb.restore();
    });

    it('wraps throttling in TransientError with the SDK error as cause', async () => {
      // Prepare
      const throttled = Object.assign(new Error('Rate exceeded'), {
        name: 'ProvisionedThroughputExceededException',
      });
      ddb.on(GetCommand).rejects(throttled);

      // Act
      const error = await fast()
        .getInFlight('prod/x')
        .catch((e: unknown) => e);

      // Assess
      expect(error).toBeInstanceOf(TransientError);
      expect((error as Error).cause).toBe(throttled);
    });

    it('retries the keys BatchGetItem left unprocessed', async () => {
      // Prepare
      const k1 = { findingArn: 'arn:finding/u1', updatedAt: 't' };
      const k2 = { findingArn: 'arn:finding/u2', updatedAt: 't' };
      ddb
        .on(BatchGetCommand)
        .resolvesOnce({
          Responses: { mocked: [] },
          UnprocessedKeys: { mocked: { Keys: [{ pk: 'FINDING#arn:finding/u2', sk: 't' }] } },
        })
        .resolvesOnce({ Responses: { mocked: [{ pk: 'FINDING#arn:finding/u2', sk: 't' }] } });

      // Act
      const unseen = await fast().unseen([k1, k2]);

      // Assess
      expect(unseen).toEqual([k1]);
      const calls = ddb.commandCalls(BatchGetCommand);
      expect(calls).toHaveLength(2);
      expect(calls[1]?.args[0].input.RequestItems?.mocked?.Keys).toEqual([
        { pk: 'FINDING#arn:finding/u2', sk: 't' },
      ]);
    });

    it('retries unprocessed writes and gives up with a TransientError when they never go through', async () => {
      // Prepare
      const pending = { PutRequest: { Item: { pk: 'FINDING#arn:finding/w', sk: 't' } } };
      ddb.on(BatchWriteCommand).resolves({ UnprocessedItems: { mocked: [pending] } });

      // Act
      const error = await fast()
        .markSeen([{ findingArn: 'arn:finding/w', updatedAt: 't' }])
        .catch((e: unknown) => e);

      // Assess
      expect(error).toBeInstanceOf(TransientError);
      expect(ddb.commandCalls(BatchWriteCommand)).toHaveLength(3);
    });
  });
});
