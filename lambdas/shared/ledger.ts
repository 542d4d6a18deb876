import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { coveredFindings, LEDGER, type Outcome, type RemediationRequest } from './contracts';
import { AutopatchError, isTransient, LockNotHeldError, TransientError } from './errors';
import { mergeRequests, executionName as nameExecution, remediationId } from './remediation';

/**
 * The ledger: Autopatch's memory in one DynamoDB table (`pk`, `sk`, TTL attribute `expiresAt`).
 *
 * Items:
 * - `FINDING#<findingArn>` / `<updatedAt>`: a finding delivery already triaged (TTL 90 days).
 * - `SERVICE#<cluster>/<service>` / `LOCK`: the one remediation in flight for a service, with the
 *   requests queued behind it. Absent when the service is idle.
 * - `SERVICE#<cluster>/<service>` / `REMEDIATION#<remediationId>`: one history record per finished
 *   remediation (no TTL: it is the audit trail).
 * - `TOKEN#<executionName>` / `approval|watch`: the task token a paused execution waits on (TTL 30 days).
 * - `SERVICE#<cluster>/<service>` / `HOLD#<cve>`: a churn hold (see Hold), until lifted.
 * - `LOCKS` / `<cluster>/<service>`: the lock index, one pointer per service with a lock, written
 *   before the lock; the reconciler lists locks through it and removes pointers whose lock is gone.
 * - `OUTBOX` / `<serviceKey>#<remediationId>`: an outcome recorded and not yet announced.
 *
 * Requests that join a run in flight are entries of the LOCK item's `merges` (before it sealed) and
 * `queue` (after) maps, one per request, each written without a version check: any number of
 * concurrent claims for one service succeed in one round. The seal folds `merges` into the run's
 * request; the release folds `queue` into the next run.
 *
 * The lock moves through STARTING (claimed by triage, StartExecution not yet confirmed) → STARTED
 * (StartExecution confirmed) → RUNNING (the execution's first state acquired it) → released (deleted,
 * or replaced by a STARTING claim for the requests queued meanwhile). Every transition is a conditional
 * write; the ones that depend on what was read (queueing, releasing) are also conditional on a
 * `version` counter, so a concurrent writer makes them re-read instead of losing an update.
 * dynalite (the local test server) has no TransactWriteItems, and nothing here needs one: each
 * transition touches one item.
 */

export type ClaimResult =
  /**
   * The caller owns the service now: StartExecution with the request's name, then markStarted.
   * `request` is set when held findings were taken out of it: start that one.
   */
  | { readonly kind: 'claimed'; readonly request?: RemediationRequest }
  /** An earlier claim never confirmed its start: StartExecution with this (stored) request, then markStarted. */
  | { readonly kind: 'resume'; readonly request: RemediationRequest }
  /** A remediation is in flight (`inFlight` is its execution name); the request waits for it, or it already covers it. */
  | { readonly kind: 'queued'; readonly inFlight: string }
  /** The remediation in flight (`inFlight`) has not sealed its findings yet: the request was folded into it. */
  | { readonly kind: 'merged'; readonly inFlight: string }
  /** Every (digest, CVE) of the request is under a churn hold: nothing to do until it is lifted. */
  | { readonly kind: 'held'; readonly holds: readonly Hold[] };

export type LockStatus = 'STARTING' | 'STARTED' | 'RUNNING';

export interface InFlight {
  readonly executionName: string;
  readonly status: LockStatus;
  readonly request: RemediationRequest;
  readonly claimedAt: string;
  /** Set once StartExecution is confirmed (markStarted). */
  readonly executionArn?: string;
  /** Set once the execution acquired the lock. */
  readonly lockedAt?: string;
  /** How many requests wait behind this one; they run as one merged remediation after it. */
  readonly queued: number;
}

/**
 * A churn hold: after a remediation of (service, CVE) ended RolledBack, PatchIneffective or
 * BuildFailed, later findings of that CVE on the same image digests (and, when known, the same fixed
 * version) are not remediated again until a new image or a new fix appears, or someone releases it
 * (`npm run release-hold`).
 */
export interface Hold {
  readonly serviceKey: string;
  readonly cve: string;
  /** Image digests the failed remediation(s) worked on: findings on other digests pass. */
  readonly digests: readonly string[];
  /** The fixed version the failed fix targeted, when known: a finding with another one passes. */
  readonly fixedInVersion?: string;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly executionName: string;
  readonly heldAt: string;
}

/** What a hold was placed for: one CVE on some digests. */
export interface HoldRequest {
  readonly cve: string;
  readonly digests: readonly string[];
  readonly fixedInVersion?: string;
}

/**
 * The request without its held (digest, CVE) pairs, and the pairs that were held. Pure. `request`
 * is undefined when nothing is left; its identity (name, id) is kept otherwise.
 */
export const withoutHeld = (
  request: RemediationRequest,
  holds: readonly Hold[],
): {
  readonly request?: RemediationRequest;
  readonly held: ReadonlyArray<{ readonly digest: string; readonly cve: string; readonly hold: Hold }>;
} => {
  if (holds.length === 0) return { request, held: [] };
  const byCve = new Map(holds.map((h) => [h.cve, h]));
  const held: Array<{ digest: string; cve: string; hold: Hold }> = [];
  const images = request.images.flatMap((image) => {
    const cves = image.cves.filter((cve) => {
      const hold = byCve.get(cve);
      if (!hold?.digests.includes(image.imageDigest)) return true;
      const fixedIn = image.fixedInVersions?.[cve];
      if (hold.fixedInVersion !== undefined && fixedIn !== undefined && fixedIn !== hold.fixedInVersion)
        return true; // a newer fix than the one that failed
      held.push({ digest: image.imageDigest, cve, hold });
      return false;
    });
    return cves.length === 0 ? [] : [{ ...image, cves }];
  });
  if (held.length === 0) return { request, held: [] };
  if (images.length === 0) return { held };
  return {
    request: { ...request, images, findingsCount: new Set(coveredFindings(images)).size },
    held,
  };
};

export interface FindingKey {
  readonly findingArn: string;
  readonly updatedAt: string;
}

export type TaskTokenPurpose = 'approval' | 'watch';

export interface OutcomeRecord {
  readonly serviceKey: string;
  readonly remediationId: string;
  readonly executionName: string;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly images: ReadonlyArray<{
    readonly repository: string;
    readonly oldDigest: string;
    readonly newDigest?: string;
    readonly cves: readonly string[];
  }>;
  readonly cvesClosed: readonly string[];
  readonly oldTaskDefinition?: string;
  readonly newTaskDefinition?: string;
  readonly startedAt: string;
  /** ISO-8601; history() orders by it, newest first. */
  readonly finishedAt: string;
  readonly timings?: Readonly<Record<string, number>>;
}

export interface LedgerOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** @default () => new Date() */
  readonly now?: () => Date;
  /**
   * Retries of unprocessed batch items (BatchGetItem / BatchWriteItem under throttling), with
   * exponential backoff and full jitter.
   * @default { attempts: 8, baseDelayMs: 50, maxDelayMs: 2000 }
   */
  readonly batchRetry?: {
    readonly attempts?: number;
    readonly baseDelayMs?: number;
    readonly maxDelayMs?: number;
  };
  /**
   * Lock transitions that lose a race (another writer changed the lock between our read and our
   * write) read again after a jittered, exponentially growing pause, until `budgetMs` has passed
   * (or the caller's own deadline, whichever is first). A burst of findings for one service is
   * settled inside the invocation instead of by SQS redelivery.
   * @default { budgetMs: 30000, baseDelayMs: 10, maxDelayMs: 400 }
   */
  /**
   * How long claims reuse a service's churn holds as this instance last read them (wall-clock).
   * A hold placed by another process is seen by claims at most this late; releases always read.
   * @default 30000
   */
  readonly holdsCacheMs?: number;
  readonly contention?: {
    readonly budgetMs?: number;
    readonly baseDelayMs?: number;
    readonly maxDelayMs?: number;
  };
}

/** Per call: an absolute deadline (epoch ms, e.g. from the Lambda's remaining time) for the contention loop. */
export interface ContentionOptions {
  readonly deadlineMs?: number;
}

const DAY_SECONDS = 86_400;
const SEEN_TTL_DAYS = 90;
const TOKEN_TTL_DAYS = 30;
const BATCH_GET_MAX = 100;
const BATCH_WRITE_MAX = 25;
const BATCH_CONCURRENCY = 4;
/** Optimistic-concurrency rounds before a lock transition gives up, whatever time is left (each round is one read + one write). */
const CONTENTION_MAX_ATTEMPTS = 500;
/** Entries in a lock's merges or queue map from which a writer folds them together (see compact). */
const COMPACT_AT = 16;
const HISTORY_PREFIX = 'REMEDIATION#';
const HOLD_PREFIX = 'HOLD#';
/** Digests one hold remembers: beyond, a new failure on yet another digest is not held (it is rare). */
const MAX_HOLD_DIGESTS = 50;
/** The lock index: one pointer per locked service (`LOCKS` / `<serviceKey>`), so the reconciler need not scan. */
const LOCK_INDEX_PK = 'LOCKS';
/** Outcomes recorded and not yet announced (`OUTBOX` / `<serviceKey>#<remediationId>`). */
const OUTBOX_PK = 'OUTBOX';
const outboxKey = (serviceKey: string, remediationId: string): Key => ({
  pk: OUTBOX_PK,
  sk: `${serviceKey}#${remediationId}`,
});
/** A history item as the OutcomeRecord it was written from (the ledger's own bookkeeping removed). */
const toRecord = (item: Record<string, unknown>): OutcomeRecord => {
  const {
    pk: _pk,
    sk: _sk,
    recordedAt: _recordedAt,
    announced: _announced,
    announcedAt: _announcedAt,
    ...record
  } = item;
  return record as unknown as OutcomeRecord;
};
/**
 * Largest request one execution carries, as JSON. It is the execution's input, and its state holds
 * the images about three times over by the end of the builds (the request, the build plan, the
 * patched images); Step Functions caps both at 256 KiB. Beyond this, requests queue (or stay
 * queued) for the next run instead of merging into this one.
 */
export const MAX_REQUEST_BYTES = 48 * 1024;
/** Largest LOCK item (request, merged and queued requests). DynamoDB caps an item at 400 KB. */
export const MAX_LOCK_BYTES = 350 * 1024;

/** What the LOCK item holds, as the document client reads it. */
interface LockItem {
  readonly pk: string;
  readonly sk: string;
  readonly executionName: string;
  readonly remediationId: string;
  readonly status: LockStatus;
  /** The RemediationRequest as JSON: stored whole so a resumed start sends exactly the same input. */
  readonly request: string;
  readonly claimedAt: string;
  readonly version: number;
  readonly executionArn?: string;
  readonly startedAt?: string;
  readonly lockedAt?: string;
  /**
   * Requests merged into this run before it sealed, by execution name, as JSON. Each writer sets
   * its own entry, conditional only on the holder and on the lock being unsealed, so concurrent
   * merges never conflict; the seal folds them into `request`.
   */
  readonly merges?: Record<string, string>;
  /** Requests queued behind this run, by execution name, as JSON: the same conflict-free writes. */
  readonly queue?: Record<string, string>;
  /** Bytes of the `merges` and `queue` entries (ADDed by each writer, bounds the item). */
  readonly entryBytes?: number;
  /** Before the entry maps: queued requests as JSON, oldest first (read for locks written by older versions). */
  readonly queued?: string[];
  /** Before the entry maps: execution names of `queued`. */
  readonly queuedNames?: Set<string>;
  /** Before the entry maps: the requests merged into `request`, folded, as JSON. */
  readonly merged?: string;
  /** The execution whose release created this claim: a repeated release returns the same next request. */
  readonly releasedBy?: string;
  /** Set when the execution took its findings (seal): later requests queue instead of merging. */
  readonly sealed?: boolean;
  /** When a request was last merged into this one (the gathering waits until the burst is quiet). */
  readonly mergedAt?: string;
}

type Key = { pk: string; sk: string };

const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

const mapLimit = async <T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> => {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const isConditionFailure = (error: unknown): boolean =>
  error instanceof Error && error.name === 'ConditionalCheckFailedException';

const findingId = (k: FindingKey): string => `${k.findingArn}\n${k.updatedAt}`;

/** The bytes of requests a LOCK item holds. */
const lockBytes = (lock: LockItem): number =>
  [lock.request, lock.merged ?? '', ...(lock.queued ?? [])].reduce((n, json) => n + json.length, 0) +
  (lock.entryBytes ?? 0);

/**
 * A request that must not wait: remediate now (no approval, no maintenance window: the CRITICAL
 * known-exploit override) with a CRITICAL image.
 */
export const isUrgent = (request: RemediationRequest): boolean =>
  request.decision.action === 'remediate' &&
  request.decision.notBefore === undefined &&
  request.images.some((i) => i.severity === 'CRITICAL');

/** Urgent requests first (each group keeps its order): the next run is built around them. */
const urgentFirst = (requests: readonly RemediationRequest[]): RemediationRequest[] => [
  ...requests.filter(isUrgent),
  ...requests.filter((r) => !isUrgent(r)),
];

/** Entries of a merges/queue map, oldest request first (map order is DynamoDB's, not time's). */
const entriesOf = (map: Readonly<Record<string, string>> | undefined): RemediationRequest[] =>
  Object.values(map ?? {})
    .map((json) => JSON.parse(json) as RemediationRequest)
    .sort(
      (a, b) => a.requestedAt.localeCompare(b.requestedAt) || a.executionName.localeCompare(b.executionName),
    );

/**
 * Fold `more` into `base` (which keeps its identity) while the result stays within
 * MAX_REQUEST_BYTES; what does not fit is returned as `left`, in order.
 */
const foldWithin = (
  base: RemediationRequest,
  more: readonly RemediationRequest[],
): { folded: RemediationRequest; left: RemediationRequest[] } => {
  let folded = base;
  let taken = 0;
  for (const request of more) {
    const candidate = mergeRequests(folded, request);
    if (JSON.stringify(candidate).length > MAX_REQUEST_BYTES) break;
    folded = candidate;
    taken++;
  }
  return { folded, left: more.slice(taken) };
};

/** (digest, CVE) pairs a request carries: two requests with the same pairs remediate the same thing. */
const coverage = (request: RemediationRequest): string[] => coveredFindings(request.images);

export class Ledger {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;
  private readonly retry: { attempts: number; baseDelayMs: number; maxDelayMs: number };
  private readonly contentionPolicy: { budgetMs: number; baseDelayMs: number; maxDelayMs: number };
  private readonly holdsCacheMs: number;
  private readonly holdsCache = new Map<string, { at: number; holds: Hold[] }>();

  constructor(options: LedgerOptions) {
    // Created once: the document client shares the injected client's connection pool and middleware.
    this.doc = DynamoDBDocumentClient.from(options.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
    this.tableName = options.tableName;
    this.now = options.now ?? (() => new Date());
    this.retry = {
      attempts: options.batchRetry?.attempts ?? 8,
      baseDelayMs: options.batchRetry?.baseDelayMs ?? 50,
      maxDelayMs: options.batchRetry?.maxDelayMs ?? 2_000,
    };
    this.holdsCacheMs = options.holdsCacheMs ?? 30_000;
    this.contentionPolicy = {
      budgetMs: options.contention?.budgetMs ?? 30_000,
      baseDelayMs: options.contention?.baseDelayMs ?? 10,
      maxDelayMs: options.contention?.maxDelayMs ?? 400,
    };
  }

  // ---------------------------------------------------------------- duplicate deliveries

  /** The keys not marked seen yet, in input order. Reads are strongly consistent. */
  async unseen<K extends FindingKey>(keys: readonly K[]): Promise<K[]> {
    // BatchGetItem rejects a request that names the same key twice.
    const unique = [...new Map(keys.map((k) => [findingId(k), k])).values()];
    const seen = new Set<string>();
    await mapLimit(chunk(unique, BATCH_GET_MAX), BATCH_CONCURRENCY, async (part) => {
      let pending: Key[] = part.map((k) => LEDGER.findingKey(k.findingArn, k.updatedAt));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 0) await this.backoff(attempt, 'unseen', pending.length);
        const out = await this.send('unseen', () =>
          this.doc.send(
            new BatchGetCommand({
              RequestItems: {
                [this.tableName]: {
                  Keys: pending,
                  ConsistentRead: true,
                  ProjectionExpression: '#pk, #sk',
                  ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
                },
              },
            }),
          ),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) seen.add(`${item.pk}\n${item.sk}`);
        pending = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
      }
    });
    return keys.filter((k) => {
      const key = LEDGER.findingKey(k.findingArn, k.updatedAt);
      return !seen.has(`${key.pk}\n${key.sk}`);
    });
  }

  /** Mark finding deliveries as triaged for 90 days. Idempotent: marking twice only refreshes the TTL. */
  async markSeen(keys: readonly FindingKey[]): Promise<void> {
    const unique = [...new Map(keys.map((k) => [findingId(k), k])).values()];
    const seenAt = this.now();
    const expiresAt = this.ttl(SEEN_TTL_DAYS);
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
        if (attempt > 0) await this.backoff(attempt, 'markSeen', pending.length);
        const out = await this.send('markSeen', () =>
          this.doc.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } })),
        );
        pending = (out.UnprocessedItems?.[this.tableName] ?? []) as WriteRequest[];
      }
    });
  }

  // ---------------------------------------------------------------- the per-service lock

  /**
   * Claim the service for a remediation, or queue the request behind the one in flight.
   * Safe to repeat: the same request claimed twice resumes its own claim; queued twice, it is queued once;
   * a request whose findings the in-flight or queued remediations already carry is not queued again.
   */
  async claim(wanted: RemediationRequest, options: ContentionOptions = {}): Promise<ClaimResult> {
    const key = LEDGER.serviceKey(wanted.service.key);
    // Churn holds first: a rolled-back or ineffective fix is not retried on every finding update.
    const { request, held } = withoutHeld(wanted, await this.holds(wanted.service.key));
    if (!request) return { kind: 'held', holds: [...new Set(held.map((h) => h.hold))] };
    const race = this.race('claim', request.service.key, options);
    while (await race.next()) {
      // Read first: in a burst the lock usually exists, and the read is what every path below needs
      // (two calls per busy service instead of a failed write, a read and a write).
      const lock = await this.readLock(key, 'claim');
      if (!lock) {
        await this.pointAt(request.service.key, request.executionName, 'claim');
        const claimed = await this.conditional('claim', () =>
          this.doc.send(
            new PutCommand({
              TableName: this.tableName,
              Item: this.newLock(key, request, 'STARTING', 0),
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          ),
        );
        if (claimed) return held.length > 0 ? { kind: 'claimed', request } : { kind: 'claimed' };
        continue; // claimed by someone else between our read and our write: read again
      }
      // A claim whose start was never confirmed: whoever comes next finishes it, with the stored
      // input and name, so StartExecution stays idempotent.
      if (lock.status === 'STARTING') return { kind: 'resume', request: this.parse(lock.request) };
      // Already carried (a redelivery, or the same request claimed again): nothing to write.
      if (this.carries(lock, request)) {
        return { kind: lock.sealed ? 'queued' : 'merged', inFlight: lock.executionName };
      }
      const adding = JSON.stringify(request).length;
      const room = MAX_LOCK_BYTES - lockBytes(lock);
      if (adding > room) {
        // The batch items are retried (and dead-lettered, alarmed, after the queue's receive limit).
        throw new TransientError(
          `the lock of ${request.service.key} holds ${lockBytes(lock)} bytes of requests already; ` +
            `this one (${adding} bytes) is retried once the remediation in flight has released it`,
        );
      }
      // Unsealed: merge (what does not fit one execution is queued by the seal). Sealed: queue.
      const into =
        lock.sealed || JSON.stringify(mergeRequests(this.gathered(lock), request)).length > MAX_REQUEST_BYTES
          ? 'queue'
          : 'merges';
      if (await this.addEntry(key, lock, request, into, 'claim')) {
        return { kind: into === 'merges' ? 'merged' : 'queued', inFlight: lock.executionName };
      }
    }
    throw race.lost();
  }

  /** StartExecution is confirmed: STARTING → STARTED. A no-op when the lock has moved on. */
  async markStarted(serviceKey: string, executionName: string, executionArn: string): Promise<void> {
    const key = LEDGER.serviceKey(serviceKey);
    const values = { ':name': executionName, ':arn': executionArn, ':now': this.now().toISOString() };
    const started = await this.conditional('markStarted', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: 'SET #status = :started, #arn = :arn, #startedAt = :now',
          ConditionExpression: '#name = :name AND #status = :starting',
          ExpressionAttributeNames: {
            '#status': 'status',
            '#arn': 'executionArn',
            '#startedAt': 'startedAt',
            '#name': 'executionName',
          },
          ExpressionAttributeValues: { ...values, ':started': 'STARTED', ':starting': 'STARTING' },
        }),
      ),
    );
    if (started) return;
    // The execution may have acquired the lock (RUNNING) before triage got here: record the ARN
    // without moving the status back. If the lock is gone or someone else's, there is nothing to mark.
    await this.conditional('markStarted', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: 'SET #arn = :arn, #startedAt = if_not_exists(#startedAt, :now)',
          ConditionExpression: '#name = :name',
          ExpressionAttributeNames: {
            '#arn': 'executionArn',
            '#startedAt': 'startedAt',
            '#name': 'executionName',
          },
          ExpressionAttributeValues: values,
        }),
      ),
    );
  }

  /**
   * The workflow's first state: take the lock if it is this execution's → RUNNING. Idempotent.
   *
   * With `request` (the execution's input), an execution that holds no lock is also handled the way
   * the runbook promises: when the service is idle (a remediation re-run from the console after the
   * original finished) it takes the lock; when another remediation holds it, the request is queued
   * behind that one before 'superseded' is returned. Without `request`, anything but holding the lock
   * is 'superseded'.
   */
  async acquire(
    serviceKey: string,
    executionName: string,
    request?: RemediationRequest,
  ): Promise<'acquired' | 'superseded'> {
    const key = LEDGER.serviceKey(serviceKey);
    const race = this.race('acquire', serviceKey);
    while (await race.next()) {
      const now = this.now().toISOString();
      const acquired = await this.conditional('acquire', () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: key,
            UpdateExpression: 'SET #status = :running, #lockedAt = if_not_exists(#lockedAt, :now)',
            ConditionExpression: '#name = :name',
            ExpressionAttributeNames: {
              '#status': 'status',
              '#lockedAt': 'lockedAt',
              '#name': 'executionName',
            },
            ExpressionAttributeValues: { ':running': 'RUNNING', ':now': now, ':name': executionName },
          }),
        ),
      );
      if (acquired) return 'acquired';
      if (!request) return 'superseded';
      const lock = await this.readLock(key, 'acquire');
      if (!lock) {
        await this.pointAt(serviceKey, executionName, 'acquire');
        const taken = await this.conditional('acquire', () =>
          this.doc.send(
            new PutCommand({
              TableName: this.tableName,
              Item: { ...this.newLock(key, { ...request, executionName }, 'RUNNING', 0), lockedAt: now },
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          ),
        );
        if (taken) return 'acquired';
        continue;
      }
      if (lock.executionName === executionName) continue; // claimed for us between the two writes
      if (this.carries(lock, request) || (await this.addEntry(key, lock, request, 'queue', 'acquire')))
        return 'superseded';
    }
    throw race.lost();
  }

  /** The remediation in flight for a service, if any. */
  async getInFlight(serviceKey: string): Promise<InFlight | undefined> {
    const lock = await this.readLock(LEDGER.serviceKey(serviceKey), 'getInFlight');
    if (!lock) return undefined;
    return {
      executionName: lock.executionName,
      status: lock.status,
      // As gathered so far: what the run takes if it seals now.
      request: this.gathered(lock),
      claimedAt: lock.claimedAt,
      ...(lock.executionArn ? { executionArn: lock.executionArn } : {}),
      ...(lock.lockedAt ? { lockedAt: lock.lockedAt } : {}),
      queued: (lock.queued?.length ?? 0) + Object.keys(lock.queue ?? {}).length,
    };
  }

  /**
   * The execution takes the findings gathered so far: from now on, later requests queue behind it
   * instead of merging into it. Returns the request as merged until now. Idempotent.
   *
   * With `quietSince`, it seals only if no request was merged after that time (the burst has gone
   * quiet); otherwise it leaves the lock open and returns `sealed: false`, so the caller waits again.
   */
  async seal(
    serviceKey: string,
    executionName: string,
    quietSince?: Date,
  ): Promise<{ readonly sealed: boolean; readonly request: RemediationRequest; readonly mergedAt?: string }> {
    const key = LEDGER.serviceKey(serviceKey);
    const notHeld = `${executionName} does not hold the lock of ${serviceKey}`;
    const quiet = quietSince !== undefined;
    let out: { Attributes?: Record<string, unknown> };
    try {
      // First close the lock to merges: from this write on, merge entries are frozen (their writes
      // are conditional on the lock being unsealed), so folding them below races nobody.
      out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: 'SET #sealed = :true, #version = #version + :inc',
          ConditionExpression: quiet
            ? '#name = :name AND (attribute_not_exists(#mergedAt) OR #mergedAt <= :since OR attribute_exists(#sealed))'
            : '#name = :name',
          ExpressionAttributeNames: {
            '#sealed': 'sealed',
            '#version': 'version',
            '#name': 'executionName',
            ...(quiet ? { '#mergedAt': 'mergedAt' } : {}),
          },
          ExpressionAttributeValues: {
            ':true': true,
            ':inc': 1,
            ':name': executionName,
            ...(quiet ? { ':since': quietSince.toISOString() } : {}),
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw this.wrap('seal', error);
      const lock = quiet ? await this.readLock(key, 'seal') : undefined;
      if (lock?.executionName !== executionName) throw new LockNotHeldError(notHeld, { cause: error });
      return {
        sealed: false,
        request: this.gathered(lock),
        ...(lock.mergedAt ? { mergedAt: lock.mergedAt } : {}),
      };
    }
    const lock = out.Attributes as LockItem | undefined;
    if (!lock) throw new LockNotHeldError(notHeld);
    return { sealed: true, request: await this.foldMerges(key, lock) };
  }

  /**
   * The sealed run takes its merge entries: folded into `request` as far as one execution carries,
   * the rest moved to the queue. Idempotent (a retried seal finds the entries gone and the request
   * folded). Old-format locks carry their merges in `request` already (`merged` is only a copy).
   */
  private async foldMerges(key: Key, lock: LockItem): Promise<RemediationRequest> {
    const current = this.parse(lock.request);
    const merges = Object.entries(lock.merges ?? {});
    if (merges.length === 0 && lock.merged === undefined) return current;
    const { folded, left } = foldWithin(current, entriesOf(lock.merges));
    const request: RemediationRequest = { ...folded, executionName: current.executionName };
    const removedBytes = merges.reduce((n, [, json]) => n + json.length, 0);
    const leftJson = left.map((r) => [r.executionName, JSON.stringify(r)] as const);
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const sets = leftJson.map(([name, json], i) => {
      names[`#q${i}`] = name;
      values[`:q${i}`] = json;
      return `#queue.#q${i} = :q${i}`;
    });
    const folding = await this.conditional('seal', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: `SET ${['#request = :request', ...sets].join(', ')} REMOVE #merges, #merged ADD #bytes :delta, #version :inc`,
          // Not on the version: requests queued meanwhile do not change what this run takes.
          ConditionExpression: '#name = :name AND (attribute_exists(#merges) OR attribute_exists(#merged))',
          ExpressionAttributeNames: {
            '#request': 'request',
            '#merges': 'merges',
            '#merged': 'merged',
            '#bytes': 'entryBytes',
            '#version': 'version',
            '#name': 'executionName',
            ...(sets.length > 0 ? { '#queue': 'queue' } : {}),
            ...names,
          },
          ExpressionAttributeValues: {
            ':request': JSON.stringify(request),
            ':delta': leftJson.reduce((n, [, json]) => n + json.length, 0) - removedBytes,
            ':inc': 1,
            ':name': lock.executionName,
            ...values,
          },
        }),
      ),
    );
    if (folding) return request;
    // A concurrent retry of this step folded them first: the stored request is the folded one.
    const again = await this.readLock(key, 'seal');
    if (!again || again.executionName !== lock.executionName) {
      throw new LockNotHeldError(`${lock.executionName} does not hold the lock any more`);
    }
    return this.parse(again.request);
  }

  /**
   * Let go of the service. If requests were queued meanwhile, they become ONE next remediation: the
   * lock is replaced, in the same write, by a STARTING claim for it, and it is returned for the caller
   * to start (if the caller crashes first, the next claim for the service resumes it). Returns {} when
   * this execution does not hold the lock. Idempotent: a repeated release returns the same `next`
   * until it is started.
   */
  async release(serviceKey: string, executionName: string): Promise<{ next?: RemediationRequest }> {
    const key = LEDGER.serviceKey(serviceKey);
    const race = this.race('release', serviceKey);
    while (await race.next()) {
      const lock = await this.readLock(key, 'release');
      if (!lock) return {};
      if (lock.executionName !== executionName) {
        return lock.releasedBy === executionName && lock.status === 'STARTING'
          ? { next: this.parse(lock.request) }
          : {};
      }
      const guard = {
        ConditionExpression: '#name = :name AND #version = :version',
        ExpressionAttributeNames: { '#name': 'executionName', '#version': 'version' },
        ExpressionAttributeValues: { ':name': executionName, ':version': lock.version },
      };
      // Requests merged into a remediation that ended before it took them (failed or stopped while
      // gathering) were never worked on: they run next, ahead of the ones queued behind it.
      const queued = [
        ...(lock.sealed ? [] : entriesOf(lock.merges)),
        ...(lock.sealed || !lock.merged ? [] : [lock.merged]).map((json) => this.parse(json)),
        ...(lock.queued ?? []).map((json) => this.parse(json)),
        ...entriesOf(lock.queue),
      ];
      const holds = queued.length > 0 ? await this.holds(serviceKey, { fresh: true }) : [];
      const [first, ...more] = urgentFirst(
        queued.flatMap((r) => {
          const kept = withoutHeld(r, holds).request;
          return kept ? [kept] : [];
        }),
      );
      if (!first) {
        const deleted = await this.conditional('release', () =>
          this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: key, ...guard })),
        );
        if (deleted) return {};
        continue;
      }
      // The first queued request is the base (it keeps the earliest requestedAt); the merge gets a
      // fresh name because it is a new execution, and names are unique for 90 days. What would make
      // it too large for one execution stays queued behind it.
      // An urgent request does not wait for an approval another one needs: those run after it.
      const approvals = isUrgent(first) ? more.filter((r) => r.decision.action === 'approve') : [];
      const { folded: merged, left: overflow } = foldWithin(
        first,
        more.filter((r) => !approvals.includes(r)),
      );
      const left = [...overflow, ...approvals];
      const name = nameExecution(merged.service, merged.images, this.now());
      const next: RemediationRequest = {
        ...merged,
        executionName: name,
        remediationId: remediationId(serviceKey, name),
      };
      const replaced = await this.conditional('release', () =>
        this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: {
              ...this.newLock(key, next, 'STARTING', lock.version + 1),
              releasedBy: executionName,
              queue: Object.fromEntries(left.map((r) => [r.executionName, JSON.stringify(r)])),
              entryBytes: left.reduce((n, r) => n + JSON.stringify(r).length, 0),
            },
            ...guard,
          }),
        ),
      );
      if (replaced) return { next };
    }
    throw race.lost();
  }

  // ---------------------------------------------------------------- churn holds

  /**
   * The service's churn holds (one Query; none is the usual case). Claims reuse what this instance
   * read within `holdsCacheMs` (a warm triage Lambda in a burst asks once, not once per batch);
   * `fresh` reads anyway. hold() and clearHolds() on this instance forget the cached copy.
   */
  async holds(serviceKey: string, options: { readonly fresh?: boolean } = {}): Promise<Hold[]> {
    const cached = this.holdsCache.get(serviceKey);
    if (!options.fresh && cached && Date.now() - cached.at < this.holdsCacheMs) return cached.holds;
    const holds = await this.readHolds(serviceKey);
    if (this.holdsCacheMs > 0) this.holdsCache.set(serviceKey, { at: Date.now(), holds });
    return holds;
  }

  private async readHolds(serviceKey: string): Promise<Hold[]> {
    const items: Hold[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.send('holds', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
            ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
            ExpressionAttributeValues: { ':pk': LEDGER.serviceKey(serviceKey).pk, ':prefix': HOLD_PREFIX },
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      for (const item of out.Items ?? []) {
        const { pk: _pk, sk: _sk, digests, ...hold } = item;
        items.push({
          ...(hold as Omit<Hold, 'digests'>),
          digests: [...((digests as Set<string>) ?? [])].sort(),
        });
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  /**
   * Hold (service, CVE) pairs after a remediation failed to fix them for good. A CVE held already
   * gains the new digests (at most MAX_HOLD_DIGESTS) and the latest reason. Idempotent.
   */
  async hold(
    serviceKey: string,
    requests: readonly HoldRequest[],
    why: { readonly outcome: Outcome; readonly reason: string; readonly executionName: string },
  ): Promise<void> {
    const heldAt = this.now().toISOString();
    this.holdsCache.delete(serviceKey);
    await mapLimit(requests, BATCH_CONCURRENCY, async (h) => {
      const digests = h.digests.slice(0, MAX_HOLD_DIGESTS);
      if (digests.length === 0) return;
      await this.send('hold', () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { pk: LEDGER.serviceKey(serviceKey).pk, sk: `${HOLD_PREFIX}${h.cve}` },
            UpdateExpression: `SET #serviceKey = :serviceKey, #cve = :cve, #outcome = :outcome, #reason = :reason, #executionName = :executionName, #heldAt = :heldAt${h.fixedInVersion === undefined ? ' REMOVE #fixedIn' : ', #fixedIn = :fixedIn'} ADD #digests :digests`,
            ExpressionAttributeNames: {
              '#serviceKey': 'serviceKey',
              '#cve': 'cve',
              '#outcome': 'outcome',
              '#reason': 'reason',
              '#executionName': 'executionName',
              '#heldAt': 'heldAt',
              '#fixedIn': 'fixedInVersion',
              '#digests': 'digests',
            },
            ExpressionAttributeValues: {
              ':serviceKey': serviceKey,
              ':cve': h.cve,
              ':outcome': why.outcome,
              ':reason': why.reason.slice(0, 2_000),
              ':executionName': why.executionName,
              ':heldAt': heldAt,
              ':digests': new Set(digests),
              ...(h.fixedInVersion === undefined ? {} : { ':fixedIn': h.fixedInVersion }),
            },
          }),
        ),
      );
    });
  }

  /** Lift the service's holds (all, or those of the given CVEs). Returns the holds lifted. */
  async clearHolds(serviceKey: string, cves?: readonly string[]): Promise<Hold[]> {
    this.holdsCache.delete(serviceKey);
    const holds = (await this.holds(serviceKey, { fresh: true })).filter(
      (h) => cves === undefined || cves.includes(h.cve),
    );
    this.holdsCache.delete(serviceKey);
    await mapLimit(holds, BATCH_CONCURRENCY, (h) =>
      this.send('clearHolds', () =>
        this.doc.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { pk: LEDGER.serviceKey(serviceKey).pk, sk: `${HOLD_PREFIX}${h.cve}` },
          }),
        ),
      ),
    );
    return holds;
  }

  // ---------------------------------------------------------------- task tokens

  /** Store the token a paused execution waits on. A new wait replaces the previous token of the same purpose. */
  async putTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
    token: string,
    serviceKey: string,
  ): Promise<void> {
    const ok = await this.conditional('putTaskToken', () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...this.tokenKey(executionName, purpose),
            token,
            serviceKey,
            createdAt: this.now().toISOString(),
            [LEDGER.ttlAttribute]: this.ttl(TOKEN_TTL_DAYS),
          },
          // Execution names embed the service, so a clash means a bug somewhere: refuse to cross wires.
          ConditionExpression: 'attribute_not_exists(pk) OR serviceKey = :serviceKey',
          ExpressionAttributeValues: { ':serviceKey': serviceKey },
        }),
      ),
    );
    if (!ok) {
      throw new AutopatchError(
        `ledger putTaskToken: a ${purpose} token for ${executionName} already belongs to another service than ${serviceKey}`,
      );
    }
  }

  /** The stored token, unless it expired (DynamoDB deletes expired items only eventually). */
  async getTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
  ): Promise<{ token: string; serviceKey: string } | undefined> {
    const out = await this.send('getTaskToken', () =>
      this.doc.send(
        new GetCommand({
          TableName: this.tableName,
          Key: this.tokenKey(executionName, purpose),
          ConsistentRead: true,
        }),
      ),
    );
    const item = out.Item as { token: string; serviceKey: string; expiresAt?: number } | undefined;
    if (!item) return undefined;
    if (item.expiresAt !== undefined && item.expiresAt * 1000 <= this.now().getTime()) return undefined;
    return { token: item.token, serviceKey: item.serviceKey };
  }

  /** Idempotent. */
  async deleteTaskToken(executionName: string, purpose: TaskTokenPurpose): Promise<void> {
    await this.send('deleteTaskToken', () =>
      this.doc.send(
        new DeleteCommand({ TableName: this.tableName, Key: this.tokenKey(executionName, purpose) }),
      ),
    );
  }

  // ---------------------------------------------------------------- history

  /** Write the history record of a finished remediation. Idempotent: a retry overwrites it with the same content. */
  async recordOutcome(record: OutcomeRecord): Promise<void> {
    if (Number.isNaN(Date.parse(record.finishedAt))) {
      throw new AutopatchError(`ledger recordOutcome: finishedAt "${record.finishedAt}" is not a time`);
    }
    await this.send('recordOutcome', () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...LEDGER.remediationKey(record.serviceKey, record.remediationId),
            ...record,
            recordedAt: this.now().toISOString(),
            announced: false,
          },
        }),
      ),
    );
    // The outbox entry stays until markAnnounced: the reconciler re-sends what is left in it.
    await this.send('recordOutcome', () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...outboxKey(record.serviceKey, record.remediationId),
            serviceKey: record.serviceKey,
            remediationId: record.remediationId,
            finishedAt: record.finishedAt,
          },
        }),
      ),
    );
  }

  /** The outcome was published (EventBridge and SNS): mark the history record and clear its outbox entry. Idempotent. */
  async markAnnounced(serviceKey: string, remediationId: string): Promise<void> {
    await this.conditional('markAnnounced', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: LEDGER.remediationKey(serviceKey, remediationId),
          UpdateExpression: 'SET #announced = :true, #announcedAt = if_not_exists(#announcedAt, :now)',
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { '#announced': 'announced', '#announcedAt': 'announcedAt', '#pk': 'pk' },
          ExpressionAttributeValues: { ':true': true, ':now': this.now().toISOString() },
        }),
      ),
    );
    await this.send('markAnnounced', () =>
      this.doc.send(
        new DeleteCommand({ TableName: this.tableName, Key: outboxKey(serviceKey, remediationId) }),
      ),
    );
  }

  /**
   * Outcomes recorded but not announced, that finished before `finishedBefore` (give a finish in
   * progress time to announce its own). Outbox entries whose record says it was announced after all
   * are cleared on the way.
   */
  async unannounced(finishedBefore: Date): Promise<OutcomeRecord[]> {
    const entries = await this.queryAll('unannounced', OUTBOX_PK);
    const out: OutcomeRecord[] = [];
    for (const entry of entries) {
      const { serviceKey, remediationId, finishedAt } = entry as {
        serviceKey: string;
        remediationId: string;
        finishedAt: string;
      };
      if (!(Date.parse(finishedAt) < finishedBefore.getTime())) continue;
      const item = await this.getOutcomeItem(serviceKey, remediationId);
      if (!item || item.announced === true) {
        await this.send('unannounced', () =>
          this.doc.send(
            new DeleteCommand({ TableName: this.tableName, Key: outboxKey(serviceKey, remediationId) }),
          ),
        );
        continue;
      }
      out.push(toRecord(item));
    }
    return out;
  }

  /** One history record, if it was written. */
  async getOutcome(serviceKey: string, remediationId: string): Promise<OutcomeRecord | undefined> {
    const item = await this.getOutcomeItem(serviceKey, remediationId);
    return item ? toRecord(item) : undefined;
  }

  private async getOutcomeItem(
    serviceKey: string,
    remediationId: string,
  ): Promise<Record<string, unknown> | undefined> {
    const out = await this.send('getOutcome', () =>
      this.doc.send(
        new GetCommand({
          TableName: this.tableName,
          Key: LEDGER.remediationKey(serviceKey, remediationId),
          ConsistentRead: true,
        }),
      ),
    );
    return out.Item;
  }

  /** Every item of one partition (the lock index, the outbox: a few items each). */
  private async queryAll(op: string, pk: string): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.send(op, () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk' },
            ExpressionAttributeValues: { ':pk': pk },
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      items.push(...(out.Items ?? []));
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  // ---------------------------------------------------------------- the lock index

  /**
   * Every service lock, as getInFlight reads it, for the reconciler. The index has one pointer per
   * service that was ever locked, written before each lock is created; pointers whose lock is gone
   * are removed here (conditional on the pointer not having been written again meanwhile, so a claim
   * racing this never loses its pointer).
   */
  async locks(): Promise<Array<InFlight & { readonly serviceKey: string }>> {
    const pointers = await this.queryAll('locks', LOCK_INDEX_PK);
    const out: Array<InFlight & { readonly serviceKey: string }> = [];
    for (const pointer of pointers) {
      const serviceKey = pointer.sk as string;
      const inFlight = await this.getInFlight(serviceKey);
      if (inFlight) {
        out.push({ ...inFlight, serviceKey });
        continue;
      }
      await this.conditional('locks', () =>
        this.doc.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { pk: LOCK_INDEX_PK, sk: serviceKey },
            ConditionExpression: '#token = :token',
            ExpressionAttributeNames: { '#token': 'token' },
            ExpressionAttributeValues: { ':token': pointer.token },
          }),
        ),
      );
    }
    return out;
  }

  /** Write the service's pointer in the lock index (before its lock): `token` tells this write from a later one. */
  private async pointAt(serviceKey: string, token: string, op: string): Promise<void> {
    await this.send(op, () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: LOCK_INDEX_PK, sk: serviceKey, token, at: this.now().toISOString() },
        }),
      ),
    );
  }

  /**
   * A service's finished remediations, newest first (by `finishedAt`).
   *
   * The sort key is fixed by the contract as `REMEDIATION#<remediationId>` (a hash), so it does not
   * order by time; `finishedAt` is an attribute and the records are ordered here. That reads the
   * service's whole history, which stays small (a few remediations a month per service); if it ever
   * grows, an LSI on (pk, finishedAt) makes this a single bounded Query.
   */
  async history(serviceKey: string, limit = 20): Promise<OutcomeRecord[]> {
    const records: OutcomeRecord[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.send('history', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
            ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
            ExpressionAttributeValues: { ':pk': LEDGER.serviceKey(serviceKey).pk, ':prefix': HISTORY_PREFIX },
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      for (const item of out.Items ?? []) {
        records.push(toRecord(item));
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return records
      .sort(
        (a, b) =>
          Date.parse(b.finishedAt) - Date.parse(a.finishedAt) ||
          b.remediationId.localeCompare(a.remediationId),
      )
      .slice(0, Math.max(0, limit));
  }

  // ---------------------------------------------------------------- internals

  private newLock(key: Key, request: RemediationRequest, status: LockStatus, version: number): LockItem {
    return {
      ...key,
      executionName: request.executionName,
      remediationId: request.remediationId,
      status,
      request: JSON.stringify(request),
      claimedAt: this.now().toISOString(),
      version,
      merges: {},
      queue: {},
      entryBytes: 0,
    };
  }

  /** The request as gathered so far: the run's own, with the merge entries folded in (no write). */
  private gathered(lock: LockItem): RemediationRequest {
    const current = this.parse(lock.request);
    const { folded } = foldWithin(current, entriesOf(lock.merges));
    return { ...folded, executionName: current.executionName };
  }

  /** True when the lock's request, or one merged or queued behind it, already carries every finding of `request`. */
  private carries(lock: LockItem, request: RemediationRequest): boolean {
    const name = request.executionName;
    if (
      lock.executionName === name ||
      lock.queuedNames?.has(name) ||
      (lock.merges !== undefined && name in lock.merges) ||
      (lock.queue !== undefined && name in lock.queue)
    )
      return true;
    const carried = new Set(
      [
        lock.request,
        ...(lock.queued ?? []),
        ...Object.values(lock.merges ?? {}),
        ...Object.values(lock.queue ?? {}),
      ].flatMap((json) => coverage(this.parse(json))),
    );
    return coverage(request).every((c) => carried.has(c));
  }

  /**
   * Merge a request into the unsealed run (`merges`) or queue it behind the run (`queue`): one map
   * entry per request, keyed by its execution name. The write is conditional on the holder (and,
   * for a merge, on the lock being unsealed) and on the item's size, never on the version, so any
   * number of concurrent writers all succeed in one round. False when the condition failed: the
   * lock moved on (sealed, released) or is full; read again.
   */
  private async addEntry(
    key: Key,
    lock: LockItem,
    request: RemediationRequest,
    into: 'merges' | 'queue',
    op: string,
  ): Promise<boolean> {
    // A lock written before the entry maps existed gets them first (a nested SET needs the map).
    if (lock.merges === undefined || lock.queue === undefined) {
      await this.conditional(op, () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: key,
            UpdateExpression:
              'SET #merges = if_not_exists(#merges, :empty), #queue = if_not_exists(#queue, :empty)',
            ConditionExpression: '#name = :holder',
            ExpressionAttributeNames: { '#merges': 'merges', '#queue': 'queue', '#name': 'executionName' },
            ExpressionAttributeValues: { ':empty': {}, ':holder': lock.executionName },
          }),
        ),
      );
      return false; // read again
    }
    const json = JSON.stringify(request);
    const merge = into === 'merges';
    let written: LockItem | undefined;
    const added = await this.conditional(op, async () => {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: `SET #map.#entry = :json${merge ? ', #mergedAt = :now' : ''} ADD #bytes :bytes, #version :inc`,
          ConditionExpression: `#name = :holder AND attribute_exists(#map)${merge ? ' AND attribute_not_exists(#sealed)' : ''} AND (attribute_not_exists(#bytes) OR #bytes <= :limit)`,
          ExpressionAttributeNames: {
            '#map': into,
            '#entry': request.executionName,
            '#bytes': 'entryBytes',
            '#version': 'version',
            '#name': 'executionName',
            ...(merge ? { '#mergedAt': 'mergedAt', '#sealed': 'sealed' } : {}),
          },
          ExpressionAttributeValues: {
            ':json': json,
            ':bytes': json.length,
            ':inc': 1,
            ':holder': lock.executionName,
            // The run's own request only grows at the seal, by less than the entries it folds.
            ':limit': MAX_LOCK_BYTES - lock.request.length - json.length,
            ...(merge ? { ':now': this.now().toISOString() } : {}),
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      written = out.Attributes as LockItem | undefined;
    });
    if (added && written) await this.compact(key, written, into);
    return added;
  }

  /**
   * Keep a long wait from filling the lock item: once a map holds COMPACT_AT entries, fold them into
   * as few requests as fit one execution each. Best effort and conditional on the version as just
   * written: if anyone wrote since, they (or the next writer) compact instead. Folding loses nothing:
   * a request's findings are its (digest, CVE) pairs, and the fold keeps them all.
   */
  private async compact(key: Key, lock: LockItem, into: 'merges' | 'queue'): Promise<void> {
    const map = lock[into] ?? {};
    if (Object.keys(map).length < COMPACT_AT) return;
    const chains: RemediationRequest[] = [];
    let rest = entriesOf(map);
    while (rest.length > 0) {
      const [head, ...tail] = rest as [RemediationRequest, ...RemediationRequest[]];
      const { folded, left } = foldWithin(head, tail);
      chains.push(folded);
      rest = left;
    }
    const compacted = Object.fromEntries(chains.map((r) => [r.executionName, JSON.stringify(r)]));
    const before = Object.values(map).reduce((n, json) => n + json.length, 0);
    const after = Object.values(compacted).reduce((n, json) => n + json.length, 0);
    await this.conditional('compact', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: 'SET #map = :map ADD #bytes :delta, #version :inc',
          ConditionExpression: `#name = :holder AND #version = :version${into === 'merges' ? ' AND attribute_not_exists(#sealed)' : ''}`,
          ExpressionAttributeNames: {
            '#map': into,
            '#bytes': 'entryBytes',
            '#version': 'version',
            '#name': 'executionName',
            ...(into === 'merges' ? { '#sealed': 'sealed' } : {}),
          },
          ExpressionAttributeValues: {
            ':map': compacted,
            ':delta': after - before,
            ':inc': 1,
            ':holder': lock.executionName,
            ':version': lock.version,
          },
        }),
      ),
    );
  }

  private async readLock(key: Key, op: string): Promise<LockItem | undefined> {
    const out = await this.send(op, () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return out.Item as LockItem | undefined;
  }

  private parse(json: string): RemediationRequest {
    return JSON.parse(json) as RemediationRequest;
  }

  private tokenKey(executionName: string, purpose: TaskTokenPurpose): Key {
    return { pk: `TOKEN#${executionName}`, sk: purpose };
  }

  private ttl(days: number): number {
    return Math.floor(this.now().getTime() / 1000) + days * DAY_SECONDS;
  }

  private async backoff(attempt: number, op: string, pending: number): Promise<void> {
    if (attempt >= this.retry.attempts) {
      throw new TransientError(
        `ledger ${op}: ${pending} items still unprocessed after ${this.retry.attempts} attempts (table ${this.tableName} throttled)`,
      );
    }
    const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    await sleep(Math.random() * cap);
  }

  /** Run a conditional write: true if written, false if its condition failed. */
  private async conditional(op: string, write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw this.wrap(op, error);
    }
  }

  private async send<T>(op: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.wrap(op, error);
    }
  }

  /** Throttling and 5xx become TransientError (the caller retries the batch item); anything else keeps its cause. */
  private wrap(op: string, error: unknown): Error {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const message = `ledger ${op} on table ${this.tableName} failed: ${detail}`;
    return isTransient(error)
      ? new TransientError(message, { cause: error })
      : new AutopatchError(message, { cause: error });
  }

  /**
   * The optimistic-concurrency loop of one lock transition: `next()` is true for the first round at
   * once, then after a pause with full jitter (base * 2^round, capped), as long as the pause ends
   * before the deadline; `lost()` is the error to throw when it returns false. Wall-clock time
   * (Date.now), not the ledger's `now`, which tests and the simulation may freeze or move.
   */
  private race(op: string, serviceKey: string, options: ContentionOptions = {}) {
    const { budgetMs, baseDelayMs, maxDelayMs } = this.contentionPolicy;
    const startedAt = Date.now();
    const deadline = Math.min(startedAt + budgetMs, options.deadlineMs ?? Number.POSITIVE_INFINITY);
    let rounds = 0;
    return {
      next: async (): Promise<boolean> => {
        if (rounds >= CONTENTION_MAX_ATTEMPTS) return false;
        if (rounds > 0) {
          const pause = Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(rounds, 16));
          if (Date.now() + pause > deadline) return false;
          await sleep(pause);
        }
        rounds++;
        return true;
      },
      lost: (): TransientError =>
        new TransientError(
          `ledger ${op} for ${serviceKey}: the lock changed under ${rounds} attempts in ${Date.now() - startedAt} ms; retry`,
        ),
    };
  }
}
