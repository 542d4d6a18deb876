/**
 * Delivery marks in one item per finding (dynalite): what they promise (a duplicate is recognised, an
 * older update never passes for a newer one), what they cost (one write unit per finding, metered as
 * DynamoDB bills it), and marks an earlier version left in a deployed table (read as before).
 */
import { DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { meterWrites } from '../../bench/amplification';
import { Ledger } from '../../lambdas/shared/ledger';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const T0 = new Date('2024-09-04T16:55:38Z');
const TTL = Math.floor(T0.getTime() / 1000) + 90 * 86_400;
let dynamo: LocalDynamo;
let doc: DynamoDBDocumentClient;
let ledger: Ledger;
let serial = 0;
const arn = () => `arn:aws:inspector2:eu-central-1:123456789012:finding/deliveries-${++serial}`;

beforeAll(async () => {
  dynamo = await startDynalite();
  doc = DynamoDBDocumentClient.from(dynamo.client);
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => T0 });
});
afterAll(async () => {
  await dynamo.stop();
});

const itemsOf = async (findingArn: string) =>
  (
    await doc.send(
      new QueryCommand({
        TableName: dynamo.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `FINDING#${findingArn}` },
        ConsistentRead: true,
      }),
    )
  ).Items ?? [];

describe('delivery marks, one item per finding', () => {
  it('recognises the newest update however it is written, and orders an older one behind it', async () => {
    // Prepare
    const a = arn();
    await ledger.markSeen([
      {
        findingArn: a,
        updatedAt: 'Thu Sep 05 10:00:00.000 UTC 2024',
        updatedAtIso: '2024-09-05T10:00:00.000Z',
      },
    ]);

    // Act
    const same = {
      findingArn: a,
      updatedAt: 'Thu Sep 05 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-05T10:00:00.000Z',
    };
    const rewritten = {
      findingArn: a,
      updatedAt: '2024-09-05T10:00:00Z',
      updatedAtIso: '2024-09-05T10:00:00.000Z',
    };
    const older = {
      findingArn: a,
      updatedAt: 'Wed Sep 04 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-04T10:00:00.000Z',
    };
    const newer = {
      findingArn: a,
      updatedAt: 'Fri Sep 06 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-06T10:00:00.000Z',
    };
    const read = await ledger.unseenAndNewest([same, rewritten, older, newer]);

    // Assess: the older one is not a duplicate, but the newest seen says it is out of order.
    expect(read.unseen).toEqual([older, newer]);
    expect(read.newest).toEqual(new Map([[a, '2024-09-05T10:00:00.000Z']]));
  });

  it('writes one small item per finding, whatever the number of its updates marked', async () => {
    // Prepare
    const a = arn();
    const updates = Array.from({ length: 5 }, (_, i) => ({
      findingArn: a,
      updatedAt: `raw-${i}`,
      updatedAtIso: `2024-09-0${i + 1}T00:00:00.000Z`,
    }));

    // Act
    await ledger.markSeen(updates.slice(0, 3));
    await ledger.markSeen(updates.slice(3));
    await ledger.markSeen(updates.slice(0, 2)); // older, marked late: the mark does not move back

    // Assess
    expect(await itemsOf(a)).toEqual([
      {
        pk: `FINDING#${a}`,
        sk: '#NEWEST',
        newest: '2024-09-05T00:00:00.000Z',
        raw: 'raw-4',
        seenAt: T0.toISOString(),
        expiresAt: TTL,
      },
    ]);
    expect(await ledger.unseen(updates)).toEqual([updates[0], updates[1], updates[2], updates[3]]);
    expect((await ledger.newestSeen([a])).get(a)).toBe('2024-09-05T00:00:00.000Z');
  });

  it('costs one write unit per finding (metered from item sizes, failed conditions included)', async () => {
    // Prepare: 30 findings, each marked once, then 10 of them again with an older update.
    const keys = Array.from({ length: 30 }, () => ({
      findingArn: arn(),
      updatedAt: 'Thu Sep 05 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-05T10:00:00.000Z',
    }));
    const late = keys.slice(0, 10).map((k) => ({
      ...k,
      updatedAt: 'Wed Sep 04 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-04T10:00:00.000Z',
    }));
    const meter = meterWrites();

    // Act
    try {
      await ledger.markSeen(keys);
      await ledger.markSeen(late);
    } finally {
      meter.stop();
    }

    // Assess: the late marks' conditions fail, and are billed all the same.
    expect(meter.conditionFailures).toBe(10);
    expect(meter.units).toBe(40);
    expect(meter.maxItemBytes).toBeLessThan(1024);
  });
});

describe('marks an earlier version left in the table (upgrade with data in place)', () => {
  const put = (item: Record<string, unknown>) =>
    doc.send(new PutCommand({ TableName: dynamo.tableName, Item: item }));

  it('still recognises old per-update marks and old newest-seen marks without the raw time', async () => {
    // Prepare: what the version before wrote for two updates of one finding, and a mark-only finding.
    const a = arn();
    const b = arn();
    await put({ pk: `FINDING#${a}`, sk: 'Wed Sep 04 10:00:00.000 UTC 2024', seenAt: 'x', expiresAt: TTL });
    await put({ pk: `FINDING#${a}`, sk: 'Thu Sep 05 10:00:00.000 UTC 2024', seenAt: 'x', expiresAt: TTL });
    await put({
      pk: `FINDING#${a}`,
      sk: '#NEWEST',
      newest: '2024-09-05T10:00:00.000Z',
      seenAt: 'x',
      expiresAt: TTL,
    });
    await put({ pk: `FINDING#${b}`, sk: 'Dec 3, 2021, 6:02:30 PM', seenAt: 'x', expiresAt: TTL });
    const oldA = {
      findingArn: a,
      updatedAt: 'Wed Sep 04 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-04T10:00:00.000Z',
    };
    const newestA = {
      findingArn: a,
      updatedAt: 'Thu Sep 05 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-05T10:00:00.000Z',
    };
    const newestRewritten = { ...newestA, updatedAt: '2024-09-05T10:00:00Z' };
    const nextA = {
      findingArn: a,
      updatedAt: 'Fri Sep 06 10:00:00.000 UTC 2024',
      updatedAtIso: '2024-09-06T10:00:00.000Z',
    };
    const onlyB = {
      findingArn: b,
      updatedAt: 'Dec 3, 2021, 6:02:30 PM',
      updatedAtIso: '2021-12-03T18:02:30.000Z',
    };

    // Act
    const before = await ledger.unseenAndNewest([oldA, newestA, newestRewritten, nextA, onlyB]);
    await ledger.markSeen([nextA]);
    const after = await ledger.unseenAndNewest([oldA, newestA, nextA, onlyB]);

    // Assess
    expect(before.unseen).toEqual([nextA]);
    expect(before.newest).toEqual(new Map([[a, '2024-09-05T10:00:00.000Z']]));
    expect(after.unseen).toEqual([]);
    expect(after.newest).toEqual(new Map([[a, '2024-09-06T10:00:00.000Z']]));
    expect((await itemsOf(a)).find((i) => i.sk === '#NEWEST')).toMatchObject({
      newest: '2024-09-06T10:00:00.000Z',
      raw: 'Fri Sep 06 10:00:00.000 UTC 2024',
    });
  });
});
