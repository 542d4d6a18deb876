/**
 * Notify digests as parts (dynalite): each triage invocation writes one small part per scope, billed
 * one write unit whatever the burst, no notice is lost to the size cap, and an old-layout digest
 * item a deployed table still holds is sent and cleared with the parts.
 */
import { DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { meterWrites } from '../../bench/amplification';
import { Ledger, type Notice } from '../../lambdas/shared/ledger';
import { MAX_DIGEST_ENTRIES, MAX_SHARED_PART_BYTES } from '../../lambdas/shared/ledger/digests';
import { noticeCount } from '../../lambdas/workflow/notify-digest';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const T0 = Date.parse('2024-09-04T17:00:00.000Z');
let dynamo: LocalDynamo;
let doc: DynamoDBDocumentClient;
let now = T0;
let ledger: Ledger;

beforeAll(async () => {
  dynamo = await startDynalite();
  doc = DynamoDBDocumentClient.from(dynamo.client);
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => new Date(now) });
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(async () => {
  now = T0;
  for (const d of await ledger.pendingDigests()) await ledger.clearDigest(d);
});

const notice = (cve: string, overrides: Partial<Notice> = {}): Notice => ({
  serviceKey: 'prod/checkout',
  cve,
  severity: 'MEDIUM',
  image: `payments/checkout@sha256:${'a'.repeat(64)}`,
  reason: `rule medium-notify: MEDIUM findings are reported, not remediated; ${'x'.repeat(400)}`,
  ...overrides,
});
const digestItems = async () =>
  (
    await doc.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': 'DIGEST' },
        ConsistentRead: true,
      }),
    )
  ).Items ?? [];

describe('digest parts', () => {
  it('bills one write unit per scope and invocation, whatever it records, and counts every notice', async () => {
    // Prepare: two invocations, each with 300 notices for one service (long reasons) and 5 for the account.
    const batch = (offset: number) => [
      ...Array.from({ length: 300 }, (_, i) =>
        notice(`CVE-2024-${offset + i}`, i % 7 === 0 ? { severity: 'HIGH' } : {}),
      ),
      ...Array.from({ length: 5 }, (_, i) => {
        const { serviceKey: _none, ...unrun } = notice(`CVE-2023-${offset + i}`);
        return unrun;
      }),
    ];
    const meter = meterWrites();

    // Act
    try {
      await ledger.recordNotices(batch(0));
      await ledger.recordNotices(batch(300));
    } finally {
      meter.stop();
    }
    const digests = await ledger.pendingDigests();

    // Assess
    expect(meter.units).toBe(4);
    expect(meter.maxItemBytes).toBeLessThanOrEqual(1024);
    expect(digests.map((d) => [d.scope, noticeCount(d)]).sort()).toEqual([
      ['ACCOUNT', 10],
      ['prod/checkout', 600],
    ]);
    const checkout = digests.find((d) => d.scope === 'prod/checkout');
    expect(checkout?.entries.length).toBeGreaterThan(0);
    expect(checkout?.entries.length).toBeLessThanOrEqual(MAX_DIGEST_ENTRIES);
    // Worst first: what a part lists is the HIGH ones.
    expect(checkout?.entries.every((e) => e.severity === 'HIGH')).toBe(true);
  });

  it('clears what it sent and keeps a part recorded after the read', async () => {
    // Prepare
    await ledger.recordNotices([notice('CVE-2024-1'), notice('CVE-2024-1')]);
    const [sent] = await ledger.pendingDigests();
    now = T0 + 60_000;
    await ledger.recordNotices([notice('CVE-2024-1'), notice('CVE-2024-2')]);

    // Act
    await ledger.clearDigest(sent as NonNullable<typeof sent>);

    // Assess
    const left = await ledger.pendingDigests();
    expect(left.map((d) => d.entries.map((e) => [e.cve, e.count]))).toEqual([
      [
        ['CVE-2024-1', 1],
        ['CVE-2024-2', 1],
      ],
    ]);
    expect(left[0]?.since).toBe(new Date(T0 + 60_000).toISOString());
    expect(await digestItems()).toHaveLength(1);
  });
});

describe('a part many services share (one image in a central registry, run in hundreds of services)', () => {
  const fleetKey = (i: number) => `2100000${String(i % 50).padStart(5, '0')}/eu-central-1/prod/checkout-${i}`;

  it('is written once for every service that gets the same notices, billed by its size, and loses no notice', async () => {
    // Prepare: 600 services run the image; 3 CVEs on it, plus one CVE only service 0 gets.
    const notices = [
      ...Array.from({ length: 600 }, (_, i) =>
        ['CVE-2024-1', 'CVE-2024-2', 'CVE-2024-3'].map((cve) =>
          notice(cve, { serviceKey: fleetKey(i), reason: 'rule medium-notify' }),
        ),
      ).flat(),
      notice('CVE-2024-4', { serviceKey: fleetKey(0), reason: 'rule medium-notify' }),
    ];
    const meter = meterWrites();

    // Act
    try {
      await ledger.recordNotices(notices);
    } finally {
      meter.stop();
    }
    const digests = await ledger.pendingDigests();

    // Assess: shared parts of bounded size and one own part: tens of write units, not 600.
    const items = await digestItems();
    expect(items.filter((i) => String(i.sk).startsWith('SHARED#')).length).toBeGreaterThan(1);
    expect(items.filter((i) => !String(i.sk).startsWith('SHARED#'))).toHaveLength(1);
    expect(meter.maxItemBytes).toBeLessThanOrEqual(MAX_SHARED_PART_BYTES + 1024);
    expect(meter.units).toBeLessThan(60);
    expect(digests).toHaveLength(600);
    expect(digests.reduce((n, d) => n + noticeCount(d), 0)).toBe(notices.length);
    const first = digests.find((d) => d.scope === fleetKey(0));
    expect(noticeCount(first as NonNullable<typeof first>)).toBe(4);
    expect(noticeCount(digests.find((d) => d.scope === fleetKey(599)) as NonNullable<typeof first>)).toBe(3);
  });

  it('stays for the services that have not sent it, and goes with the last of them', async () => {
    // Prepare: three services share a part; one of them also has an older part of its own.
    now = T0 - 3_600_000;
    await ledger.recordNotices([notice('CVE-2024-0', { serviceKey: fleetKey(1) })]);
    now = T0;
    await ledger.recordNotices([1, 2, 3].map((i) => notice('CVE-2024-1', { serviceKey: fleetKey(i) })));
    const all = await ledger.pendingDigests();
    const of = (i: number) => all.find((d) => d.scope === fleetKey(i)) as (typeof all)[number];

    // Act 1: service 1 is due first (its older part) and sent alone.
    await ledger.clearDigests([of(1)]);

    // Assess 1: the others still get the shared notice; service 1 has nothing left.
    const left = await ledger.pendingDigests();
    expect(left.map((d) => [d.scope, d.entries.map((e) => e.cve)])).toEqual([
      [fleetKey(2), ['CVE-2024-1']],
      [fleetKey(3), ['CVE-2024-1']],
    ]);

    // Act 2: the other two are sent in one sweep, and the same sweep runs twice (a retry).
    await ledger.clearDigests(left);
    await ledger.clearDigests(left);

    // Assess 2
    expect(await ledger.pendingDigests()).toEqual([]);
    expect(await digestItems()).toEqual([]);
  });
});

describe('a digest item of the layout before parts (upgrade with data in place)', () => {
  it('is merged with the parts, sent once and cleared', async () => {
    // Prepare: the old item, as the previous version wrote it, and a part recorded since.
    await doc.send(
      new PutCommand({
        TableName: dynamo.tableName,
        Item: {
          pk: 'DIGEST',
          sk: 'prod/checkout',
          scope: 'prod/checkout',
          since: '2024-09-04T16:00:00.000Z',
          entries: [
            {
              cve: 'CVE-2024-1',
              severity: 'MEDIUM',
              image: `payments/checkout@sha256:${'a'.repeat(64)}`,
              reason: 'old reason',
              count: 3,
              firstAt: '2024-09-04T16:00:00.000Z',
              lastAt: '2024-09-04T16:30:00.000Z',
            },
          ],
          omitted: 2,
          version: 7,
          expiresAt: Math.floor(T0 / 1000) + 86_400,
        },
      }),
    );
    await ledger.recordNotices([notice('CVE-2024-1'), notice('CVE-2024-9')]);

    // Act
    const [digest] = await ledger.pendingDigests();
    await ledger.clearDigest(digest as NonNullable<typeof digest>);

    // Assess
    expect(digest?.since).toBe('2024-09-04T16:00:00.000Z');
    expect(digest?.omitted).toBe(2);
    expect(digest?.entries.map((e) => [e.cve, e.count, e.firstAt])).toEqual([
      ['CVE-2024-1', 4, '2024-09-04T16:00:00.000Z'],
      ['CVE-2024-9', 1, new Date(T0).toISOString()],
    ]);
    expect(noticeCount(digest as NonNullable<typeof digest>)).toBe(7);
    expect(await digestItems()).toEqual([]);
  });
});
