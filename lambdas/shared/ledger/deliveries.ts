import { BatchWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER } from '../contracts';
import { BATCH_CONCURRENCY, BATCH_WRITE_MAX, chunk, type Key, type LedgerTable, mapLimit } from './table';

/**
 * Duplicate deliveries and the order of a finding's updates.
 *
 * Items:
 * - `FINDING#<findingArn>` / `#NEWEST`: `newest`, the newest updatedAt (ISO-8601) of the finding
 *   triaged so far, and `raw`, that update's updatedAt as Inspector wrote it (TTL 90 days after it
 *   last moved). Written only forwards, by one conditional UpdateItem per finding (one write unit:
 *   the item is a few hundred bytes whatever happens to the finding). It answers both questions:
 *   - a delivery of the newest update triaged (same `raw`, or the same instant written differently)
 *     is a duplicate;
 *   - a delivery of an older update is out of order (triage ignores it, see FindingVersions).
 *   Every update that was ever triaged is at or before `newest`, so no delivery of one is triaged
 *   again, and no per-update item is needed.
 * - `FINDING#<findingArn>` / `<updatedAt>`: a finding delivery already triaged (TTL 90 days), the
 *   layout before `raw` existed. Still written for a key without its ISO time (nothing to order it
 *   by), and still read, so marks a deployed table holds from before the upgrade keep deduplicating
 *   until they expire. An old `#NEWEST` item (no `raw`) reads as before: its instant counts.
 */

export interface FindingKey {
  readonly findingArn: string;
  /** As Inspector wrote it: the deduplication key. */
  readonly updatedAt: string;
  /**
   * The same instant as ISO-8601, when known: markSeen then moves the finding's newest-seen mark
   * forward to it (one write for the finding), and unseen recognises the instant written otherwise.
   */
  readonly updatedAtIso?: string;
}

const SEEN_TTL_DAYS = 90;
/** The sort key of the newest-seen mark: no Inspector timestamp starts with '#'. */
const NEWEST_SK = '#NEWEST';

const findingId = (k: FindingKey): string => `${k.findingArn}\n${k.updatedAt}`;
const FINDING_PREFIX = LEDGER.findingKey('', '').pk;
const newestKey = (findingArn: string): Key => ({ pk: `${FINDING_PREFIX}${findingArn}`, sk: NEWEST_SK });

/** What the `#NEWEST` item of a finding says. */
interface NewestMark {
  readonly newest: string;
  /** Absent on items written before the upgrade. */
  readonly raw?: string;
}

export class FindingDeliveries {
  constructor(private readonly table: LedgerTable) {}

  /** The keys not marked seen yet, in input order. Reads are strongly consistent. */
  async unseen<K extends FindingKey>(keys: readonly K[]): Promise<K[]> {
    return (await this.read(keys, true)).unseen;
  }

  /**
   * unseen() and newestSeen() in one read (one BatchGetItem per 100 keys): the keys not marked seen
   * yet, and the newest updatedAt seen of each of their findings that has one.
   */
  async unseenAndNewest<K extends FindingKey>(
    keys: readonly K[],
  ): Promise<{ readonly unseen: K[]; readonly newest: ReadonlyMap<string, string> }> {
    const { unseen, marks } = await this.read(keys, true);
    return { unseen, newest: new Map([...marks].map(([arn, m]) => [arn, m.newest])) };
  }

  /** The newest updatedAt (ISO-8601) marked seen, for each of the findings that has one. */
  async newestSeen(findingArns: readonly string[]): Promise<ReadonlyMap<string, string>> {
    const keys = findingArns.map((findingArn) => ({ findingArn, updatedAt: NEWEST_SK }));
    const { marks } = await this.read(keys, false);
    return new Map([...marks].map(([arn, m]) => [arn, m.newest]));
  }

  private async read<K extends FindingKey>(
    keys: readonly K[],
    deliveries: boolean,
  ): Promise<{ unseen: K[]; marks: ReadonlyMap<string, NewestMark> }> {
    // BatchGetItem rejects a request that names the same key twice.
    const unique = deliveries ? [...new Map(keys.map((k) => [findingId(k), k])).values()] : [];
    const arns = [...new Set(keys.map((k) => k.findingArn))];
    if (unique.length === 0 && arns.length === 0) return { unseen: [], marks: new Map() };
    const found = await this.table.batchGet(
      deliveries ? 'unseenAndNewest' : 'newestSeen',
      [...unique.map((k) => LEDGER.findingKey(k.findingArn, k.updatedAt)), ...arns.map(newestKey)],
      ['pk', 'sk', 'newest', 'raw'],
    );
    const legacy = new Set<string>();
    const marks = new Map<string, NewestMark>();
    for (const item of found) {
      if (item.sk !== NEWEST_SK) legacy.add(`${item.pk}\n${item.sk}`);
      else if (typeof item.newest === 'string')
        marks.set((item.pk as string).slice(FINDING_PREFIX.length), {
          newest: item.newest,
          ...(typeof item.raw === 'string' ? { raw: item.raw } : {}),
        });
    }
    const unseen = keys.filter((k) => {
      const key = LEDGER.findingKey(k.findingArn, k.updatedAt);
      if (legacy.has(`${key.pk}\n${key.sk}`)) return false;
      const mark = marks.get(k.findingArn);
      if (!mark) return true;
      return !(mark.raw === k.updatedAt || (k.updatedAtIso !== undefined && k.updatedAtIso === mark.newest));
    });
    return { unseen, marks };
  }

  /**
   * Mark finding deliveries as triaged for 90 days. Idempotent: marking twice changes nothing.
   * A key with `updatedAtIso` moves its finding's newest-seen mark forward (never back): one
   * conditional write per finding, whatever the number of its keys. A key without it is marked by
   * its own item (the layout from before the newest-seen mark).
   */
  async markSeen(keys: readonly FindingKey[]): Promise<void> {
    const unique = [...new Map(keys.map((k) => [findingId(k), k])).values()];
    const seenAt = this.table.now().toISOString();
    const expiresAt = this.table.ttl(SEEN_TTL_DAYS);
    const unordered = unique.filter((k) => k.updatedAtIso === undefined);
    await mapLimit(chunk(unordered, BATCH_WRITE_MAX), BATCH_CONCURRENCY, async (part) => {
      type WriteRequest = { PutRequest: { Item: Record<string, unknown> } };
      let pending: WriteRequest[] = part.map((k) => ({
        PutRequest: {
          Item: {
            ...LEDGER.findingKey(k.findingArn, k.updatedAt),
            seenAt,
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
    const newest = new Map<string, { iso: string; raw: string }>();
    for (const k of unique) {
      if (k.updatedAtIso === undefined) continue;
      const known = newest.get(k.findingArn);
      if (known === undefined || k.updatedAtIso > known.iso)
        newest.set(k.findingArn, { iso: k.updatedAtIso, raw: k.updatedAt });
    }
    await mapLimit([...newest], BATCH_CONCURRENCY, ([findingArn, { iso, raw }]) =>
      // A mark already past this instant stays: the condition failing is the expected no-op (that
      // update is older than one triaged, so any delivery of it is out of order). At the same
      // instant, the mark stays too: the instant is what makes a delivery a duplicate.
      this.table.conditional('markSeen', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: newestKey(findingArn),
            UpdateExpression: 'SET #newest = :iso, #raw = :raw, #seenAt = :seenAt, #ttl = :ttl',
            ConditionExpression: 'attribute_not_exists(#newest) OR #newest < :iso',
            ExpressionAttributeNames: {
              '#newest': 'newest',
              '#raw': 'raw',
              '#seenAt': 'seenAt',
              '#ttl': LEDGER.ttlAttribute,
            },
            ExpressionAttributeValues: { ':iso': iso, ':raw': raw, ':seenAt': seenAt, ':ttl': expiresAt },
          }),
        ),
      ),
    );
  }
}
