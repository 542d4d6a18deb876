import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { coveredFindings } from '../../lambdas/shared/contracts';
import { Ledger, MAX_REQUEST_BYTES } from '../../lambdas/shared/ledger';
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
