import { BatchWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER } from '../contracts';
import { BATCH_CONCURRENCY, BATCH_WRITE_MAX, chunk, type Key, type LedgerTable, mapLimit } from './table';

/**
 * Duplicate deliveries and the order of a finding's updates.
 *
 * Items:
 * - `FINDING#<findingArn>` / `<updatedAt>`: a finding delivery already triaged (TTL 90 days).
 * - `FINDING#<findingArn>` / `#NEWEST`: `newest`, the newest updatedAt (ISO-8601) of the finding
 *   triaged so far (TTL 90 days after it last moved). Written only forwards (conditional), so an
 *   update delivered after a newer one, in a later batch, is recognised as out of order.
 */

export interface FindingKey {
  readonly findingArn: string;
  /** As Inspector wrote it: the deduplication key. */
  readonly updatedAt: string;
  /**
   * The same instant as ISO-8601, when known: markSeen then moves the finding's newest-seen mark
   * forward to it.
   */
  readonly updatedAtIso?: string;
}

const SEEN_TTL_DAYS = 90;
/** The sort key of the newest-seen mark: no Inspector timestamp starts with '#'. */
const NEWEST_SK = '#NEWEST';

const findingId = (k: FindingKey): string => `${k.findingArn}\n${k.updatedAt}`;
const FINDING_PREFIX = LEDGER.findingKey('', '').pk;
const newestKey = (findingArn: string): Key => ({ pk: `${FINDING_PREFIX}${findingArn}`, sk: NEWEST_SK });

export class FindingDeliveries {
  constructor(private readonly table: LedgerTable) {}

  /** The keys not marked seen yet, in input order. Reads are strongly consistent. */
  async unseen<K extends FindingKey>(keys: readonly K[]): Promise<K[]> {
    return (await this.read(keys, [])).unseen;
  }

  /**
   * unseen() and newestSeen() in one read (one BatchGetItem per 100 keys): the keys not marked seen
   * yet, and the newest updatedAt seen of each of their findings that has one.
   */
  unseenAndNewest<K extends FindingKey>(
    keys: readonly K[],
  ): Promise<{ readonly unseen: K[]; readonly newest: ReadonlyMap<string, string> }> {
    return this.read(
      keys,
      keys.map((k) => k.findingArn),
    );
  }

  /** The newest updatedAt (ISO-8601) marked seen, for each of the findings that has one. */
  async newestSeen(findingArns: readonly string[]): Promise<ReadonlyMap<string, string>> {
    return (await this.read([], findingArns)).newest;
  }

  private async read<K extends FindingKey>(
    keys: readonly K[],
    findingArns: readonly string[],
  ): Promise<{ unseen: K[]; newest: ReadonlyMap<string, string> }> {
    // BatchGetItem rejects a request that names the same key twice.
    const unique = [...new Map(keys.map((k) => [findingId(k), k])).values()];
    const arns = [...new Set(findingArns)];
    const found = await this.table.batchGet(
      arns.length > 0 ? (keys.length > 0 ? 'unseenAndNewest' : 'newestSeen') : 'unseen',
      [...unique.map((k) => LEDGER.findingKey(k.findingArn, k.updatedAt)), ...arns.map(newestKey)],
      arns.length > 0 ? ['pk', 'sk', 'newest'] : ['pk', 'sk'],
    );
    const seen = new Set<string>();
    const newest = new Map<string, string>();
    for (const item of found) {
      if (item.sk !== NEWEST_SK) seen.add(`${item.pk}\n${item.sk}`);
      else if (typeof item.newest === 'string')
        newest.set((item.pk as string).slice(FINDING_PREFIX.length), item.newest);
    }
    const unseen = keys.filter((k) => {
      const key = LEDGER.findingKey(k.findingArn, k.updatedAt);
      return !seen.has(`${key.pk}\n${key.sk}`);
    });
    return { unseen, newest };
  }

  /**
   * Mark finding deliveries as triaged for 90 days. Idempotent: marking twice only refreshes the TTL.
   * Keys with `updatedAtIso` also move their finding's newest-seen mark forward (never back).
   */
  async markSeen(keys: readonly FindingKey[]): Promise<void> {
    const unique = [...new Map(keys.map((k) => [findingId(k), k])).values()];
    const seenAt = this.table.now();
    const expiresAt = this.table.ttl(SEEN_TTL_DAYS);
    await mapLimit(chunk(unique, BATCH_WRITE_MAX), BATCH_CONCURRENCY, async (part) => {
      type WriteRequest = { PutRequest: { Item: Record<string, unknown> } };
      let pending: WriteRequest[] = part.map((k) => ({
        PutRequest: {
          Item: {
            ...LEDGER.findingKey(k.findingArn, k.updatedAt),
            seenAt: seenAt.toISOString(),
            [LEDGER.ttlAttribute]: expiresAt,
          },
        },
      }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 0) await this.table.backoff(attempt, 'markSeen', pending.length);
        const out = await this.table.send('markSeen', () =>
          this.table.doc.send(new BatchWriteCommand({ RequestItems: { [this.table.tableName]: pending } })),
        );
        pending = (out.UnprocessedItems?.[this.table.tableName] ?? []) as WriteRequest[];
      }
    });
    const newest = new Map<string, string>();
    for (const k of unique) {
      if (k.updatedAtIso === undefined) continue;
      const known = newest.get(k.findingArn);
      if (known === undefined || k.updatedAtIso > known) newest.set(k.findingArn, k.updatedAtIso);
    }
    await mapLimit([...newest], BATCH_CONCURRENCY, ([findingArn, iso]) =>
      // A mark already at or past this instant stays: the condition failing is the expected no-op.
      this.table.conditional('markSeen', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: newestKey(findingArn),
            UpdateExpression: 'SET #newest = :iso, #seenAt = :seenAt, #ttl = :ttl',
            ConditionExpression: 'attribute_not_exists(#newest) OR #newest < :iso',
            ExpressionAttributeNames: {
              '#newest': 'newest',
              '#seenAt': 'seenAt',
              '#ttl': LEDGER.ttlAttribute,
            },
            ExpressionAttributeValues: { ':iso': iso, ':seenAt': seenAt.toISOString(), ':ttl': expiresAt },
          }),
        ),
      ),
    );
  }
}
