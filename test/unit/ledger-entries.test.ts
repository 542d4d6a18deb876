import { PutItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { meterWrites } from '../../bench/amplification';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { coveredFindings } from '../../lambdas/shared/contracts';
import { Ledger, MAX_REQUEST_BYTES } from '../../lambdas/shared/ledger';
import { requestTextOf } from '../../lambdas/shared/ledger/contributions';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { digest, image, remediationRequest } from '../support/workflow-harness';

/** Merge and queue entries: the seal's fold, its overflow, and locks written by the previous format. */

let dynamo: LocalDynamo;
let ledger: Ledger;
let serial = 0;
const T0 = new Date('2024-09-04T17:00:00Z');

beforeAll(async () => {
  dynamo = await startDynalite();
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => T0 });
});
afterAll(async () => {
  await dynamo.stop();
});

const requestOf = (serviceKey: string, images: AffectedImage[], at = T0): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  const name = executionName(service, images, at);
  return {
    ...base,
    service,
    images,
    executionName: name,
    remediationId: remediationId(serviceKey, name),
    requestedAt: at.toISOString(),
  };
};

/** One image with `n` CVEs named by `tag` (about 20 bytes of JSON each). */
const many = (tag: string, n: number, d = digest('a1')): AffectedImage =>
  image({
    imageDigest: d,
    cves: Array.from({ length: n }, (_, i) => `CVE-2024-${tag}${String(i).padStart(5, '0')}`),
  });

const started = async (request: RemediationRequest) => {
  await ledger.claim(request);
  await ledger.markStarted(request.service.key, request.executionName, `arn:exec:${request.executionName}`);
  await ledger.acquire(request.service.key, request.executionName);
};

describe('merge entries', () => {
  it('are folded into the run at the seal; what would not fit one execution runs next', async () => {
    // Prepare: three merges of ~20 KB into a small run: two fit one execution, the third does not.
    const svc = `prod/fold-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const merges = ['1', '2', '3'].map((tag, i) =>
      requestOf(svc, [many(tag, 900)], new Date(T0.getTime() + (i + 1) * 1000)),
    );
    // Each is checked against what the run has gathered, so claim them all at once (a burst).
    const results = await Promise.all(merges.map((m) => ledger.claim(m)));

    // Act
    const sealed = await ledger.seal(svc, first.executionName);
    const again = await ledger.seal(svc, first.executionName);
    const { next } = await ledger.release(svc, first.executionName);

    // Assess
    expect(results.every((r) => r.kind === 'merged')).toBe(true);
    expect(JSON.stringify(sealed.request).length).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    expect(sealed.request.executionName).toBe(first.executionName);
    expect(again.request).toEqual(sealed.request);
    const taken = new Set(coveredFindings(sealed.request.images));
    const later = new Set(coveredFindings(next?.images ?? []));
    for (const m of merges)
      for (const pair of coveredFindings(m.images)) expect(taken.has(pair) !== later.has(pair)).toBe(true);
    expect(later.size).toBeGreaterThan(0);
  });

  it('run next when the run ends before it took them', async () => {
    const svc = `prod/fold-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const merged = requestOf(svc, [many('9', 3)]);
    expect((await ledger.claim(merged)).kind).toBe('merged');

    const { next } = await ledger.release(svc, first.executionName);

    expect(new Set(coveredFindings(next?.images ?? []))).toEqual(new Set(coveredFindings(merged.images)));
  });
});

describe('a lock written before the entry maps', () => {
  it('takes new merges and queued requests and keeps the old ones', async () => {
    // Prepare: the previous format: a merged copy and a queued list, no maps.
    const svc = `prod/legacy-${++serial}`;
    const first = requestOf(svc, [image()]);
    const oldQueued = requestOf(svc, [many('7', 2, digest('b2'))]);
    await dynamo.client.send(
      new PutItemCommand({
        TableName: dynamo.tableName,
        Item: marshall({
          pk: `SERVICE#${svc}`,
          sk: 'LOCK',
          executionName: first.executionName,
          remediationId: first.remediationId,
          status: 'RUNNING',
          request: JSON.stringify(first),
          claimedAt: T0.toISOString(),
          version: 3,
          sealed: true,
          queued: [JSON.stringify(oldQueued)],
          queuedNames: new Set([oldQueued.executionName]),
        }),
      }),
    );
    const newer = requestOf(svc, [many('8', 2, digest('c3'))]);

    // Act
    const claimed = await ledger.claim(newer);
    const repeated = await ledger.claim(oldQueued);
    const { next } = await ledger.release(svc, first.executionName);

    // Assess
    expect(claimed.kind).toBe('queued');
    expect(repeated.kind).toBe('queued');
    expect(new Set(coveredFindings(next?.images ?? []))).toEqual(
      new Set([...coveredFindings(oldQueued.images), ...coveredFindings(newer.images)]),
    );
  });
});

describe('an urgent request queued with others', () => {
  it('runs next without waiting for the approval another queued request needs', async () => {
    // Prepare: behind a sealed run, a HIGH that needs approval, then a CRITICAL with the exploit override.
    const svc = `prod/urgent-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    await ledger.seal(svc, first.executionName);
    const approval = {
      ...requestOf(svc, [many('4', 1, digest('b2'))], new Date(T0.getTime() + 1000)),
      decision: { action: 'approve' as const, reason: 'HIGH: approve first' },
    };
    const critical = {
      ...requestOf(
        svc,
        [{ ...many('5', 1, digest('c3')), severity: 'CRITICAL' as const }],
        new Date(T0.getTime() + 2000),
      ),
      decision: { action: 'remediate' as const, reason: 'CRITICAL with a known exploit' },
    };
    await ledger.claim(approval);
    await ledger.claim(critical);

    // Act
    const { next } = await ledger.release(svc, first.executionName);
    await ledger.markStarted(svc, next?.executionName as string, 'arn:exec:next');
    await ledger.acquire(svc, next?.executionName as string);
    const { next: after } = await ledger.release(svc, next?.executionName as string);

    // Assess
    expect(next?.decision.action).toBe('remediate');
    expect(new Set(coveredFindings(next?.images ?? []))).toEqual(new Set(coveredFindings(critical.images)));
    expect(after?.decision.action).toBe('approve');
    expect(new Set(coveredFindings(after?.images ?? []))).toEqual(new Set(coveredFindings(approval.images)));
  });
});

describe('contribution items', () => {
  const lockBytes = async (svc: string): Promise<number> => {
    const out = await dynamo.client.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: `SERVICE#${svc}` } },
        ConsistentRead: true,
      }),
    );
    // Binary attributes (a contribution's compressed request) count their bytes.
    const bytes = (_: string, v: unknown) => (v instanceof Uint8Array ? 'x'.repeat(v.length) : v);
    return Math.max(0, ...(out.Items ?? []).map((i) => JSON.stringify(unmarshall(i), bytes).length));
  };
  const items = async (svc: string, prefix: string) =>
    (
      (
        await dynamo.client.send(
          new QueryCommand({
            TableName: dynamo.tableName,
            KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
            ExpressionAttributeValues: { ':pk': { S: `SERVICE#${svc}` }, ':prefix': { S: prefix } },
            ConsistentRead: true,
          }),
        )
      ).Items ?? []
    ).map((i) => unmarshall(i));

  it('keep every item of the service small after 500 merges into one run; the seal takes them all', async () => {
    // Prepare: a run gathering; 500 one-finding requests merge into it (a burst on one service).
    const svc = `prod/burst-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const before = await lockBytes(svc);
    const burst = Array.from({ length: 500 }, (_, i) =>
      requestOf(svc, [many(`9${String(i).padStart(4, '0')}`, 1, digest('b2'))]),
    );

    // Act
    for (let i = 0; i < burst.length; i += 50)
      await Promise.all(burst.slice(i, i + 50).map((r) => ledger.claim(r)));
    const largest = await lockBytes(svc);
    const sealed = await ledger.seal(svc, first.executionName);
    const { next } = await ledger.release(svc, first.executionName);

    // Assess: no item grew with the burst; every finding is in the run or the next one.
    expect(largest).toBeLessThan(before + 2_000);
    expect(largest).toBeLessThan(4_096);
    const found = new Set([
      ...coveredFindings(sealed.request.images),
      ...coveredFindings(next?.images ?? []),
    ]);
    const more = await ledger.getInFlight(svc);
    expect(JSON.stringify(sealed.request).length).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    const queuedLater = (await items(svc, 'QUEUE#')).flatMap((i) =>
      coveredFindings((JSON.parse(requestTextOf(i.request) as string) as RemediationRequest).images),
    );
    for (const pair of queuedLater) found.add(pair);
    for (const r of burst) for (const pair of coveredFindings(r.images)) expect(found.has(pair)).toBe(true);
    expect(more?.queued ?? 0).toBe(queuedLater.length > 0 ? (await items(svc, 'QUEUE#')).length : 0);
    expect(await items(svc, 'MERGE#')).toEqual([]);
  }, 120_000);

  it('are not written twice when a batch is delivered again (same findings, new execution name)', async () => {
    // Prepare
    const svc = `prod/redelivery-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const merged = requestOf(svc, [many('61', 2, digest('b2'))]);
    const again = requestOf(svc, [many('61', 2, digest('b2'))], new Date(T0.getTime() + 60_000));
    expect(again.executionName).not.toBe(merged.executionName);

    // Act
    const results = [await ledger.claim(merged), await ledger.claim(again), await ledger.claim(merged)];
    await ledger.seal(svc, first.executionName);
    const queued = requestOf(svc, [many('62', 2, digest('c3'))]);
    const queuedResults = [
      await ledger.claim(queued),
      await ledger.claim({ ...queued, executionName: 'x-again' }),
    ];

    // Assess
    expect(results.map((r) => r.kind)).toEqual(['merged', 'merged', 'merged']);
    expect(queuedResults.map((r) => r.kind)).toEqual(['queued', 'queued']);
    expect(await items(svc, 'QUEUE#')).toHaveLength(1);
    expect((await ledger.getInFlight(svc))?.queued).toBe(1);
  });

  it('write only what the run does not carry yet', async () => {
    const svc = `prod/dedupe-${++serial}`;
    const first = requestOf(svc, [many('63', 2, digest('a1'))]);
    await started(first);
    const overlapping = requestOf(svc, [many('63', 3, digest('a1'))]);

    await ledger.claim(overlapping);

    const [merge] = await items(svc, 'MERGE#');
    const written = JSON.parse(requestTextOf(merge?.request) as string) as RemediationRequest;
    expect(coveredFindings(written.images)).toEqual(coveredFindings([many('63', 3, digest('a1'))]).slice(2));
    const sealed = await ledger.seal(svc, first.executionName);
    expect(new Set(coveredFindings(sealed.request.images))).toEqual(
      new Set(coveredFindings(overlapping.images)),
    );
  });

  it('lose nothing when 20 invocations merge into one run at once', async () => {
    // Prepare
    const svc = `prod/concurrent-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const requests = Array.from({ length: 20 }, (_, i) => requestOf(svc, [many(`7${i}`, 3, digest('b2'))]));

    // Act
    const results = await Promise.all(requests.map((r) => ledger.claim(r)));
    const inFlight = await ledger.getInFlight(svc);
    const sealed = await ledger.seal(svc, first.executionName);

    // Assess: every one merged in one round, none overwrote another.
    expect(results.every((r) => r.kind === 'merged')).toBe(true);
    const taken = new Set(coveredFindings(sealed.request.images));
    for (const r of requests)
      for (const pair of coveredFindings(r.images)) expect(taken.has(pair)).toBe(true);
    expect(new Set(coveredFindings(inFlight?.request.images ?? []))).toEqual(taken);
  });

  it('lose nothing when 20 invocations queue behind a sealed run at once, and the release takes them all', async () => {
    const svc = `prod/concurrent-q-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    await ledger.seal(svc, first.executionName);
    const requests = Array.from({ length: 20 }, (_, i) => requestOf(svc, [many(`8${i}`, 3, digest('c3'))]));

    const results = await Promise.all(requests.map((r) => ledger.claim(r)));
    const { next } = await ledger.release(svc, first.executionName);

    expect(results.every((r) => r.kind === 'queued')).toBe(true);
    const later = new Set(coveredFindings(next?.images ?? []));
    for (const r of requests)
      for (const pair of coveredFindings(r.images)) expect(later.has(pair)).toBe(true);
    expect(await items(svc, 'QUEUE#')).toEqual([]);
  });
});

describe('contribution items as stored (compressed request)', () => {
  it('bill one write unit for a one-finding merge that would cost two as JSON', async () => {
    // Prepare: a run gathering, and a one-finding request of a service in another account.
    const svc = `210000000037/eu-central-1/batch/backfill-${++serial}`;
    await started(requestOf(svc, [image()]));
    const request = requestOf(svc, [many('55', 1, digest('d4'))]);
    expect(Buffer.byteLength(JSON.stringify(request), 'utf8')).toBeGreaterThan(1_024);
    const meter = meterWrites();

    // Act
    try {
      expect((await ledger.claim(request)).kind).toBe('merged');
    } finally {
      meter.stop();
    }

    // Assess
    expect(meter.byKind['SERVICE/MERGE#']).toBe(1);
  });

  it('are read whether written compressed or as the JSON string of before; bytes that do not decompress are taken away', async () => {
    // Prepare: a gathering run; one merge written the old way (JSON string), one corrupt, one new.
    const svc = `prod/layouts-${++serial}`;
    const first = requestOf(svc, [image()]);
    await started(first);
    const old = requestOf(svc, [many('61', 2, digest('e5'))]);
    const put = (sk: string, request: unknown) =>
      dynamo.client.send(
        new PutItemCommand({
          TableName: dynamo.tableName,
          Item: marshall({ pk: `SERVICE#${svc}`, sk, id: sk.slice(-6), request, at: T0.toISOString() }),
        }),
      );
    await put(`MERGE#${first.executionName}#old001`, JSON.stringify(old));
    await put(`MERGE#${first.executionName}#bad001`, new Uint8Array([1, 2, 3, 4]));
    const fresh = requestOf(svc, [many('62', 2, digest('f6'))]);
    await ledger.claim(fresh);

    // Act
    const sealed = await ledger.seal(svc, first.executionName);

    // Assess: both readable merges are in the run; the corrupt one is gone, reported as poisoned.
    const taken = new Set(coveredFindings(sealed.request.images));
    for (const pair of [...coveredFindings(old.images), ...coveredFindings(fresh.images)])
      expect(taken.has(pair)).toBe(true);
    const left = await dynamo.client.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: `SERVICE#${svc}` } },
        ConsistentRead: true,
      }),
    );
    const sks = (left.Items ?? []).map((i) => unmarshall(i).sk as string);
    expect(sks.filter((sk) => sk.startsWith('MERGE#'))).toEqual([]);
    expect(sks.some((sk) => sk.startsWith('POISONED#'))).toBe(true);
  });
});

describe('a lock of the previous layout (merges and queue maps in the LOCK item)', () => {
  it('is read and folded: its merges by the seal, its queue by the release, with new items alongside', async () => {
    // Prepare: written by hand as the previous version wrote it: a gathering run with one merge
    // entry and one queued entry in its maps (a stack upgraded with this run in flight).
    const svc = `prod/upgrade-${++serial}`;
    const first = requestOf(svc, [image()]);
    const oldMerge = requestOf(svc, [many('51', 2, digest('b2'))]);
    const oldQueued = requestOf(svc, [many('52', 2, digest('c3'))]);
    await dynamo.client.send(
      new PutItemCommand({
        TableName: dynamo.tableName,
        Item: marshall({
          pk: `SERVICE#${svc}`,
          sk: 'LOCK',
          executionName: first.executionName,
          remediationId: first.remediationId,
          status: 'RUNNING',
          request: JSON.stringify(first),
          claimedAt: T0.toISOString(),
          version: 7,
          merges: { [oldMerge.executionName]: JSON.stringify(oldMerge) },
          queue: { [oldQueued.executionName]: JSON.stringify(oldQueued) },
          entryBytes: JSON.stringify(oldMerge).length + JSON.stringify(oldQueued).length,
          mergedAt: T0.toISOString(),
        }),
      }),
    );
    const newMerge = requestOf(svc, [many('53', 2, digest('d4'))]);

    // Act
    const inFlightBefore = await ledger.getInFlight(svc);
    const merged = await ledger.claim(newMerge);
    const sealed = await ledger.seal(svc, first.executionName);
    const newQueued = requestOf(svc, [many('54', 2, digest('e5'))]);
    const queued = await ledger.claim(newQueued);
    const { next } = await ledger.release(svc, first.executionName);

    // Assess
    expect(inFlightBefore).toMatchObject({ queued: 1 });
    expect(new Set(coveredFindings(inFlightBefore?.request.images ?? []))).toEqual(
      new Set([...coveredFindings(first.images), ...coveredFindings(oldMerge.images)]),
    );
    expect(merged.kind).toBe('merged');
    expect(queued.kind).toBe('queued');
    expect(new Set(coveredFindings(sealed.request.images))).toEqual(
      new Set([
        ...coveredFindings(first.images),
        ...coveredFindings(oldMerge.images),
        ...coveredFindings(newMerge.images),
      ]),
    );
    expect(new Set(coveredFindings(next?.images ?? []))).toEqual(
      new Set([...coveredFindings(oldQueued.images), ...coveredFindings(newQueued.images)]),
    );
    const lock = await dynamo.client.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk AND sk = :lock',
        ExpressionAttributeValues: { ':pk': { S: `SERVICE#${svc}` }, ':lock': { S: 'LOCK' } },
        ConsistentRead: true,
      }),
    );
    const stored = unmarshall(lock.Items?.[0] ?? {});
    expect(stored.merges).toBeUndefined();
    expect(stored.queue).toBeUndefined();
  });

  it('run by the release when the run ended before it sealed: the old merges run next', async () => {
    const svc = `prod/upgrade-${++serial}`;
    const first = requestOf(svc, [image()]);
    const oldMerge = requestOf(svc, [many('55', 2, digest('b2'))]);
    await dynamo.client.send(
      new PutItemCommand({
        TableName: dynamo.tableName,
        Item: marshall({
          pk: `SERVICE#${svc}`,
          sk: 'LOCK',
          executionName: first.executionName,
          remediationId: first.remediationId,
          status: 'RUNNING',
          request: JSON.stringify(first),
          claimedAt: T0.toISOString(),
          version: 2,
          merges: { [oldMerge.executionName]: JSON.stringify(oldMerge) },
          queue: {},
          entryBytes: JSON.stringify(oldMerge).length,
        }),
      }),
    );
    const newMerge = requestOf(svc, [many('56', 2, digest('c3'))]);
    expect((await ledger.claim(newMerge)).kind).toBe('merged');

    const { next } = await ledger.release(svc, first.executionName);

    expect(new Set(coveredFindings(next?.images ?? []))).toEqual(
      new Set([...coveredFindings(oldMerge.images), ...coveredFindings(newMerge.images)]),
    );
  });
});
