import { randomUUID } from 'node:crypto';
import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { SEVERITIES, type Severity } from '../contracts';
import { TransientError } from '../errors';
import { BATCH_CONCURRENCY, type LedgerTable, mapLimit, sleep } from './table';

/**
 * Notify digests: the `notify` decisions of triage, gathered per service until the sweep sends them
 * as one message.
 *
 * Items (partition `DIGEST`, TTL of DIGEST_TTL_DAYS in case nothing ever sends them):
 * - `DIGEST` / `<scope>#<recordedAt>#<id>`: a part, what one triage invocation recorded for one scope
 *   (a service key, or ACCOUNT_SCOPE for images no service runs). Written once, by a PutItem of a new
 *   key (no read, no condition: triage invocations never contend for a digest), and never changed:
 *   the sweep deletes the parts it sent. A part holds at most MAX_PART_BYTES (one write unit): the
 *   invocation's notices folded (same CVE on the same image counted once), worst severity first, as
 *   many as fit; the others are counted (`omitted`), never lost.
 * - `DIGEST` / `SHARED#<recordedAt>#<id>`: a part several scopes share, written instead of one part
 *   per scope when one invocation records the very same notices for all of them (an image in a
 *   central registry runs in hundreds of services: one part names them all, billed by its size, not
 *   one write unit per service). Its `scopes` (a string set, at most MAX_SHARED_PART_BYTES of them per
 *   part) are the scopes that have not sent it yet: the sweep takes out those it sent, and deletes
 *   the part once none is left.
 * - `DIGEST` / `<scope>`: the layout before parts, one read-modify-write item per scope that grew with
 *   the burst (up to MAX_DIGEST_ENTRIES entries with their reasons, tens of KB, billed per KB at every
 *   write). No longer written; one a deployed table still holds is read, sent and cleared as before.
 *
 * The sweep reads the partition, folds each scope's parts (and old item) into one Digest of at most
 * MAX_DIGEST_ENTRIES entries, and clears exactly what it read: parts recorded after the read stay for
 * the next period.
 */

/** The scope of notify decisions for images no ECS service runs. Service keys always hold a `/`. */
export const ACCOUNT_SCOPE = 'ACCOUNT';
/** Entries one digest holds; beyond, only their number (`omitted`). */
export const MAX_DIGEST_ENTRIES = 50;
/** Characters of a reason kept per entry (reasons come from the policy and the account). */
export const MAX_NOTICE_REASON = 500;
const DIGEST_PK = 'DIGEST';
/**
 * Largest part written, in bytes as estimated here (its JSON, which is never smaller than DynamoDB's
 * size of the item): one write unit is 1 KB.
 */
export const MAX_PART_BYTES = 1_000;
/** Sort-key prefix of a part several scopes share (no scope starts with it: see ACCOUNT_SCOPE). */
export const SHARED_PART_PREFIX = 'SHARED#';
/**
 * Largest shared part, in bytes as estimated here: the scopes of one group are split across as many
 * parts as needed. No item grows with the burst or the fleet beyond it.
 */
export const MAX_SHARED_PART_BYTES = 16_000;
/** Characters of a reason a part keeps (parts are small; the triage log has every reason in full). */
export const MAX_PART_REASON = 160;
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
  /** Bumped by every write of an old-layout item: the condition of the next one (0 for parts only). */
  readonly version: number;
  /** What the digest was read from (the sweep clears exactly these). Absent on a digest not read from the ledger. */
  readonly source?: {
    /** Sort keys of the parts folded in. */
    readonly parts: readonly string[];
    /** Of those, the parts several scopes share, with every scope that had not sent them when read. */
    readonly shared?: ReadonlyArray<{ readonly sk: string; readonly scopes: readonly string[] }>;
    /** The old-layout item, as read, when there was one. */
    readonly item?: Digest;
  };
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

/** The size a part is held to (see MAX_PART_BYTES). */
const partBytes = (item: Record<string, unknown>): number => Buffer.byteLength(JSON.stringify(item), 'utf8');

const rank = (severity: Severity): number => SEVERITIES.indexOf(severity);

/**
 * The part one invocation writes for one scope: its notices folded, worst first, as many entries as
 * fit in MAX_PART_BYTES with `key`; the rest counted in `omitted`. Pure.
 */
export const partOf = (
  key: { readonly pk: string; readonly sk: string },
  scope: string,
  notices: readonly Notice[],
  at: string,
  expiresAt: number,
): Record<string, unknown> => {
  const folded = foldNotices(scope, undefined, notices, at);
  const sorted = [...folded.entries]
    .map((e) => ({ ...e, reason: e.reason.slice(0, MAX_PART_REASON) }))
    .sort((a, b) => rank(a.severity) - rank(b.severity) || b.count - a.count);
  const entries: DigestEntry[] = [];
  let omitted = folded.omitted;
  const item = (list: DigestEntry[], rest: number) => ({
    ...key,
    kind: 'digest-part',
    scope,
    since: at,
    entries: list,
    omitted: rest,
    expiresAt,
  });
  for (const [i, e] of sorted.entries()) {
    const rest = sorted.slice(i + 1).reduce((n, x) => n + x.count, omitted);
    if (partBytes(item([...entries, e], rest)) <= MAX_PART_BYTES) entries.push(e);
    else {
      // A reason cut shorter may still fit; otherwise the entry is counted, not listed.
      const short = { ...e, reason: e.reason.slice(0, 40) };
      if (partBytes(item([...entries, short], rest)) <= MAX_PART_BYTES) entries.push(short);
      else omitted += e.count;
    }
  }
  return item(entries, omitted);
};

/** Merge a scope's old item and parts (oldest first) into one digest of at most MAX_DIGEST_ENTRIES entries. Pure. */
export const mergeDigest = (
  scope: string,
  item: Digest | undefined,
  parts: ReadonlyArray<{ readonly sk: string; readonly digest: Digest; readonly scopes?: readonly string[] }>,
): Digest => {
  const entries = new Map<string, DigestEntry>();
  let omitted = 0;
  let since: string | undefined;
  for (const d of [...(item ? [item] : []), ...parts.map((p) => p.digest)]) {
    omitted += d.omitted;
    if (since === undefined || d.since < since) since = d.since;
    for (const e of d.entries) {
      const key = entryKey(e);
      const seen = entries.get(key);
      if (seen) {
        const later = e.lastAt >= seen.lastAt ? e : seen;
        entries.set(key, {
          ...later,
          count: seen.count + e.count,
          firstAt: [e.firstAt, seen.firstAt].sort()[0] as string,
          lastAt: later.lastAt,
        });
      } else if (entries.size < MAX_DIGEST_ENTRIES) entries.set(key, e);
      else omitted += e.count;
    }
  }
  return {
    scope,
    since: since ?? '',
    entries: [...entries.values()],
    omitted,
    version: item?.version ?? 0,
    source: {
      parts: parts.map((p) => p.sk),
      ...(parts.some((p) => p.scopes)
        ? { shared: parts.flatMap((p) => (p.scopes ? [{ sk: p.sk, scopes: p.scopes }] : [])) }
        : {}),
      ...(item ? { item } : {}),
    },
  };
};

export class Digests {
  constructor(private readonly table: LedgerTable) {}

  /**
   * Record notify decisions: one new part per scope, or one part for every scope that gets the very
   * same notices (PutItems of new keys, no read, no condition). Safe against concurrent writers: no
   * two write the same item.
   */
  async record(notices: readonly Notice[]): Promise<void> {
    const byScope = new Map<string, Notice[]>();
    for (const n of notices) {
      const scope = n.serviceKey ?? ACCOUNT_SCOPE;
      byScope.set(scope, [...(byScope.get(scope) ?? []), n]);
    }
    const at = this.table.now().toISOString();
    const expiresAt = this.table.ttl(DIGEST_TTL_DAYS);
    const key = (prefix: string) => ({ pk: DIGEST_PK, sk: `${prefix}#${at}#${randomUUID().slice(0, 8)}` });
    // Scopes whose part would say the same (the same notices, folded and cut the same way) share one.
    const groups = new Map<string, { readonly scopes: string[]; readonly notices: readonly Notice[] }>();
    for (const [scope, list] of byScope) {
      const { pk: _pk, sk: _sk, scope: _scope, ...content } = partOf({ pk: '', sk: '' }, '', list, at, 0);
      const same = JSON.stringify(content);
      const group = groups.get(same);
      if (group) group.scopes.push(scope);
      else groups.set(same, { scopes: [scope], notices: list });
    }
    const items = [...groups.values()].flatMap(({ scopes, notices: list }) => {
      const [only] = scopes;
      if (scopes.length === 1 && only !== undefined)
        return [partOf(key(only), only, byScope.get(only) ?? list, at, expiresAt)];
      const { scope: _scope, ...content } = partOf(key('SHARED'), '', list, at, expiresAt);
      return chunkScopes(scopes, Buffer.byteLength(JSON.stringify(content), 'utf8')).map((chunk) => ({
        ...content,
        ...key('SHARED'),
        kind: 'digest-shared',
        scopes: new Set(chunk),
      }));
    });
    await mapLimit(items, BATCH_CONCURRENCY, (item) =>
      this.table.send('recordNotices', () =>
        this.table.doc.send(new PutCommand({ TableName: this.table.tableName, Item: item })),
      ),
    );
  }

  /** Every digest with something to send, oldest first. */
  async pending(): Promise<Digest[]> {
    const items = await this.table.query('pendingDigests', DIGEST_PK);
    type Part = { sk: string; digest: Digest; scopes?: readonly string[] };
    const byScope = new Map<string, { item?: Digest; parts: Part[] }>();
    const of = (scope: string) => {
      let found = byScope.get(scope);
      if (!found) {
        found = { parts: [] };
        byScope.set(scope, found);
      }
      return found;
    };
    for (const item of items) {
      const sk = String(item.sk);
      if (sk.startsWith(SHARED_PART_PREFIX)) {
        const scopes = [...((item.scopes as Iterable<string> | undefined) ?? [])].map(String).sort();
        for (const scope of scopes)
          of(scope).parts.push({ sk, digest: toDigest({ ...item, scope }), scopes });
        continue;
      }
      const cut = sk.indexOf('#');
      // Scopes never hold '#' (service keys are names and '/', or ACCOUNT_SCOPE).
      if (cut < 0) of(sk).item = toDigest(item);
      else of(sk.slice(0, cut)).parts.push({ sk, digest: toDigest({ ...item, scope: sk.slice(0, cut) }) });
    }
    return [...byScope]
      .map(([scope, { item, parts }]) =>
        mergeDigest(
          scope,
          item,
          // Oldest first, whichever layout (a scope's own parts and shared ones sort apart by key).
          parts.sort((a, b) => a.digest.since.localeCompare(b.digest.since) || a.sk.localeCompare(b.sk)),
        ),
      )
      .filter((d) => d.entries.length > 0 || d.omitted > 0)
      .sort((a, b) => a.since.localeCompare(b.since) || a.scope.localeCompare(b.scope));
  }

  /** Take what `sent` held out of the ledger; notices recorded since it was read stay. */
  async clear(sent: Digest): Promise<void> {
    await this.clearAll([sent]);
  }

  /**
   * Take what every digest of `sent` held out of the ledger at once: a part several of them share is
   * deleted with one write when all of its scopes were sent, or loses the scopes sent (one write)
   * and stays for the others.
   */
  async clearAll(sent: readonly Digest[]): Promise<void> {
    const own: Array<{ pk: string; sk: string }> = [];
    const shared = new Map<string, { readonly scopes: readonly string[]; readonly sent: Set<string> }>();
    for (const digest of sent) {
      // A digest built by hand (no source): the old item of its scope, as before parts existed.
      const source = digest.source ?? { parts: [], item: digest };
      const sharedScopes = new Map((source.shared ?? []).map((p) => [p.sk, p.scopes]));
      for (const sk of source.parts) {
        const scopes = sharedScopes.get(sk);
        if (!scopes) {
          own.push({ pk: DIGEST_PK, sk });
          continue;
        }
        const part = shared.get(sk) ?? { scopes, sent: new Set<string>() };
        part.sent.add(digest.scope);
        shared.set(sk, part);
      }
    }
    if (own.length > 0) await this.table.batchDelete('clearDigest', own);
    await mapLimit([...shared], BATCH_CONCURRENCY, ([sk, part]) =>
      part.scopes.every((s) => part.sent.has(s))
        ? this.table.batchDelete('clearDigest', [{ pk: DIGEST_PK, sk }])
        : this.unshare(sk, [...part.sent]),
    );
    for (const digest of sent) {
      const item = (digest.source ?? { parts: [], item: digest }).item;
      if (item)
        await this.update('clearDigest', digest.scope, (current) =>
          current ? withoutSent(current, item, this.table.now().toISOString()) : undefined,
        );
    }
  }

  /** Take `scopes` out of a shared part; the write that leaves none deletes it. */
  private async unshare(sk: string, scopes: readonly string[]): Promise<void> {
    const key = { pk: DIGEST_PK, sk };
    let left: Record<string, unknown> | undefined;
    const written = await this.table.conditional('clearDigest', async () => {
      const out = await this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: key,
          UpdateExpression: 'DELETE #scopes :sent',
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { '#scopes': 'scopes', '#pk': 'pk' },
          ExpressionAttributeValues: { ':sent': new Set(scopes) },
          ReturnValues: 'ALL_NEW',
        }),
      );
      left = out.Attributes;
    });
    // Gone already (another sweep sent the rest), or some scope has yet to send it.
    if (!written || (left?.scopes as Set<string> | undefined)?.size) return;
    await this.table.conditional('clearDigest', () =>
      this.table.doc.send(
        new DeleteCommand({
          TableName: this.table.tableName,
          Key: key,
          ConditionExpression: 'attribute_not_exists(#scopes)',
          ExpressionAttributeNames: { '#scopes': 'scopes' },
        }),
      ),
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

/** Scopes split so that each shared part (`base` bytes without them) stays within MAX_SHARED_PART_BYTES. */
const chunkScopes = (scopes: readonly string[], base: number): string[][] => {
  const chunks: string[][] = [];
  let chunk: string[] = [];
  let bytes = base;
  for (const scope of [...scopes].sort()) {
    const size = Buffer.byteLength(scope, 'utf8') + 3;
    if (chunk.length > 0 && bytes + size > MAX_SHARED_PART_BYTES) {
      chunks.push(chunk);
      chunk = [];
      bytes = base;
    }
    chunk.push(scope);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
};
