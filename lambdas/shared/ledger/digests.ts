import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { Severity } from '../contracts';
import { TransientError } from '../errors';
import { BATCH_CONCURRENCY, type LedgerTable, mapLimit, sleep } from './table';

/**
 * Notify digests: the `notify` decisions of triage, gathered per service until the sweep sends them
 * as one message. Items: `DIGEST` / `<service key>` (or `DIGEST` / `ACCOUNT` for images no service
 * runs), one per scope, deleted once sent (a TTL of DIGEST_TTL_DAYS in case nothing ever sends it).
 *
 * An item stays small whatever arrives: the same CVE on the same image is folded into one entry
 * (counted), and past MAX_DIGEST_ENTRIES entries only a count of the rest is kept. Writes are
 * read-modify-write under a version number, so triage invocations and the sweep never lose each
 * other's changes.
 */

/** The scope of notify decisions for images no ECS service runs. Service keys always hold a `/`. */
export const ACCOUNT_SCOPE = 'ACCOUNT';
/** Entries one digest holds; beyond, only their number (`omitted`). */
export const MAX_DIGEST_ENTRIES = 50;
/** Characters of a reason kept per entry (reasons come from the policy and the account). */
export const MAX_NOTICE_REASON = 500;
const DIGEST_PK = 'DIGEST';
const DIGEST_TTL_DAYS = 30;
/**
 * Optimistic writes that lose a race read again after a jittered, growing pause, at most this many
 * times: enough for every triage invocation of a burst writing the same service's digest at once.
 */
const MAX_WRITE_ATTEMPTS = 30;
const MAX_RETRY_DELAY_MS = 250;

/** One notify decision, as triage records it. */
export interface Notice {
  /** The service the finding's image runs in; absent when no service runs it (the account's digest). */
  readonly serviceKey?: string;
  readonly cve: string;
  readonly severity: Severity;
  /** `<repository>@<digest>`, when the finding is on an image. */
  readonly image?: string;
  readonly reason: string;
}

/** Notices of one CVE on one image, folded. */
export interface DigestEntry {
  readonly cve: string;
  readonly severity: Severity;
  readonly image?: string;
  /** The latest reason given. */
  readonly reason: string;
  /** How many notify decisions were folded into this entry. */
  readonly count: number;
  readonly firstAt: string;
  readonly lastAt: string;
}

export interface Digest {
  /** A service key, or ACCOUNT_SCOPE. */
  readonly scope: string;
  /** When the oldest notice not yet sent was recorded. */
  readonly since: string;
  readonly entries: readonly DigestEntry[];
  /** Notices beyond MAX_DIGEST_ENTRIES: counted, not listed. */
  readonly omitted: number;
  /** Bumped by every write: the condition of the next one. */
  readonly version: number;
}

const entryKey = (e: Pick<DigestEntry, 'cve' | 'image'>): string => `${e.cve}\n${e.image ?? ''}`;

const toDigest = (item: Record<string, unknown>): Digest => ({
  scope: String(item.scope),
  since: String(item.since),
  entries: (item.entries as DigestEntry[] | undefined) ?? [],
  omitted: Number(item.omitted ?? 0),
  version: Number(item.version ?? 0),
});

/** Fold notices into a digest (or start one). Pure. */
export const foldNotices = (
  scope: string,
  current: Digest | undefined,
  notices: readonly Notice[],
  at: string,
): Digest => {
  const entries = new Map((current?.entries ?? []).map((e) => [entryKey(e), { ...e }]));
  let omitted = current?.omitted ?? 0;
  for (const n of notices) {
    const key = entryKey(n);
    const reason = n.reason.slice(0, MAX_NOTICE_REASON);
    const seen = entries.get(key);
    if (seen) {
      entries.set(key, { ...seen, severity: n.severity, reason, count: seen.count + 1, lastAt: at });
    } else if (entries.size < MAX_DIGEST_ENTRIES) {
      entries.set(key, {
        cve: n.cve,
        severity: n.severity,
        ...(n.image === undefined ? {} : { image: n.image }),
        reason,
        count: 1,
        firstAt: at,
        lastAt: at,
      });
    } else omitted++;
  }
  return {
    scope,
    since: current?.since ?? at,
    entries: [...entries.values()],
    omitted,
    version: (current?.version ?? 0) + 1,
  };
};

/**
 * What is left of `current` once `sent` went out: entries sent are taken off by their count (a notice
 * folded in after the send keeps its entry, counted from there), and so are the omitted ones.
 * Undefined when nothing is left. Pure.
 */
export const withoutSent = (current: Digest, sent: Digest, at: string): Digest | undefined => {
  const sentByKey = new Map(sent.entries.map((e) => [entryKey(e), e]));
  const entries = current.entries.flatMap((e): DigestEntry[] => {
    const was = sentByKey.get(entryKey(e));
    if (!was) return [e];
    const count = e.count - was.count;
    return count > 0 ? [{ ...e, count, firstAt: e.lastAt }] : [];
  });
  const omitted = Math.max(0, current.omitted - sent.omitted);
  if (entries.length === 0 && omitted === 0) return undefined;
  const since = entries.map((e) => e.firstAt).sort()[0] ?? at;
  return { scope: current.scope, since, entries, omitted, version: current.version + 1 };
};

export class Digests {
  constructor(private readonly table: LedgerTable) {}

  /** Record notify decisions into their scope's digest. Safe against concurrent writers. */
  async record(notices: readonly Notice[]): Promise<void> {
    const byScope = new Map<string, Notice[]>();
    for (const n of notices) {
      const scope = n.serviceKey ?? ACCOUNT_SCOPE;
      byScope.set(scope, [...(byScope.get(scope) ?? []), n]);
    }
    await mapLimit([...byScope], BATCH_CONCURRENCY, ([scope, list]) =>
      this.update('recordNotices', scope, (current) =>
        foldNotices(scope, current, list, this.table.now().toISOString()),
      ),
    );
  }

  /** Every digest with something to send, oldest first. */
  async pending(): Promise<Digest[]> {
    const items = await this.table.query('pendingDigests', DIGEST_PK);
    return items
      .map(toDigest)
      .sort((a, b) => a.since.localeCompare(b.since) || a.scope.localeCompare(b.scope));
  }

  /** Take what `sent` held out of its digest; notices recorded since it was read stay. */
  async clear(sent: Digest): Promise<void> {
    await this.update('clearDigest', sent.scope, (current) =>
      current ? withoutSent(current, sent, this.table.now().toISOString()) : undefined,
    );
  }

  /** Read, change, write under the version read: a lost race reads again. */
  private async update(
    op: string,
    scope: string,
    change: (current: Digest | undefined) => Digest | undefined,
  ): Promise<void> {
    const key = { pk: DIGEST_PK, sk: scope };
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      const item = await this.table.get(key, op);
      const current = item ? toDigest(item) : undefined;
      const next = change(current);
      const condition =
        current === undefined
          ? { ConditionExpression: 'attribute_not_exists(#pk)', ExpressionAttributeNames: { '#pk': 'pk' } }
          : {
              ConditionExpression: '#version = :version',
              ExpressionAttributeNames: { '#version': 'version' },
              ExpressionAttributeValues: { ':version': current.version },
            };
      if (next === undefined && current === undefined) return;
      const written = await this.table.conditional(op, () =>
        next === undefined
          ? this.table.doc.send(
              new DeleteCommand({ TableName: this.table.tableName, Key: key, ...condition }),
            )
          : this.table.doc.send(
              new PutCommand({
                TableName: this.table.tableName,
                Item: { ...key, ...next, expiresAt: this.table.ttl(DIGEST_TTL_DAYS) },
                ...condition,
              }),
            ),
      );
      if (written) return;
      await sleep(Math.random() * Math.min(MAX_RETRY_DELAY_MS, 10 * 2 ** attempt));
    }
    throw new TransientError(
      `ledger ${op}: the digest of ${scope} kept changing (${MAX_WRITE_ATTEMPTS} attempts); retry`,
    );
  }
}
