import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER, type RemediationRequest } from '../contracts';
import { LockNotHeldError, TransientError } from '../errors';
import { mergeRequests, executionName as nameExecution, remediationId } from '../remediation';
import { type ContentionOptions, type ContentionPolicy, contend } from './contention';
import {
  byRequestedAt,
  type Contribution,
  contributionId,
  contributionItem,
  mergePrefix,
  packRequest,
  QUEUE_PREFIX,
  readContribution,
  requestTextOf,
  withoutCarried,
} from './contributions';
import { type Hold, type Holds, withoutHeld } from './holds';
import {
  carries,
  gathered,
  type LockItem,
  type LockProblem,
  type LockStatus,
  lockProblem,
  newLockItem,
  ownCoverage,
  requestProblem,
} from './lock-item';
import { entriesOf, foldWithin, isUrgent, MAX_REQUEST_BYTES, parseRequest, urgentFirst } from './requests';
import { isConditionFailure, type Key, type LedgerTable } from './table';

/**
 * The per-service lock, with the requests merged into the run in flight and queued behind it.
 *
 * Items:
 * - `SERVICE#<cluster>/<service>` / `LOCK`: the one remediation in flight for a service, with the
 *   requests queued behind it. Absent when the service is idle.
 * - `LOCKS` / `<cluster>/<service>`: the lock index, one pointer per service with a lock, written
 *   before the lock; the reconciler lists locks through it and removes pointers whose lock is gone.
 * - `SERVICE#<cluster>/<service>` / `POISONED#<at>`: a lock found unreadable and taken away (see
 *   readLock), kept 90 days for whoever investigates.
 *
 * - `SERVICE#<cluster>/<service>` / `MERGE#<execution>#<id>` and `QUEUE#<id>`: the requests that
 *   join the run in flight (see contributions.ts), each its own small item, so a merge writes what
 *   is new, never the LOCK item: its size and its cost do not grow with a burst. Each is written
 *   without a version check (any number of concurrent claims for one service succeed in one round)
 *   and is idempotent by its id (an SQS redelivery writes the same item again). The seal folds the
 *   run's MERGE items into its request; the release folds the QUEUE items into the next run; both
 *   Query them and delete what they took.
 *
 * A merge is written, then the lock read again: if the run still gathers, the seal (which closes the
 * lock before it Queries) will see it; if the run sealed meanwhile, the request is queued as well
 * (the seal may have taken it too: at worst a finding runs twice, never not at all). A queued
 * request whose lock has gone (released with nothing queued) claims the service itself.
 *
 * Locks written before the contribution items (requests in the LOCK item's `merges` and `queue`
 * maps, or its `queued` list and `merged` copy) are still read and folded, so a stack can be
 * upgraded with runs in flight.
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
  /** Whether one of them is urgent (a CRITICAL with a known exploit): it pre-empts a window wait. */
  readonly queuedUrgent: boolean;
}

/** A lock found unreadable and taken away (or healed, when only one entry was bad). */
export interface PoisonedLock {
  readonly serviceKey: string;
  readonly reason: string;
  /** Bytes of the item as read (its attributes as JSON). */
  readonly rawBytes: number;
  /** The execution the lock named, when that much was readable. */
  readonly executionName?: string;
  /** 'entry-removed': one bad merges/queue entry was removed; 'lock-removed': the lock was deleted. */
  readonly action: 'entry-removed' | 'lock-removed';
}

/** Where poisoned locks are reported (besides the POISONED item): the caller's logger. */
export type PoisonedLockListener = (poisoned: PoisonedLock) => void;

/** The lock index: one pointer per locked service (`LOCKS` / `<serviceKey>`), so the reconciler need not scan. */
const LOCK_INDEX_PK = 'LOCKS';
/** A request waiting for the next run, and the contribution item it was read from (if any). */
interface Queued {
  readonly request: RemediationRequest;
  readonly item?: Contribution;
}

/** The next run a release (or a late queued request) starts: see planNext. */
interface NextPlan {
  readonly next: RemediationRequest;
  readonly taken: Key[];
  readonly took: string[];
}
const POISONED_PREFIX = 'POISONED#';
const POISONED_TTL_DAYS = 90;
/** Raw characters of a poisoned lock kept in its POISONED record (an item holds at most 400 KB). */
const POISONED_RAW_CHARS = 64 * 1024;
/** Poisoned locks taken away in one read before giving up (each heal is one write). */
const POISON_ROUNDS = 8;

export class ServiceLocks {
  constructor(
    private readonly table: LedgerTable,
    private readonly holdStore: Holds,
    private readonly contentionPolicy: ContentionPolicy,
    private readonly onPoisoned: PoisonedLockListener,
  ) {}

  /**
   * Claim the service for a remediation, or queue the request behind the one in flight.
   * Safe to repeat: the same request claimed twice resumes its own claim; queued twice, it is queued once;
   * a request whose findings the in-flight or queued remediations already carry is not queued again.
   */
  async claim(wanted: RemediationRequest, options: ContentionOptions = {}): Promise<ClaimResult> {
    const key = LEDGER.serviceKey(wanted.service.key);
    // Churn holds first: a rolled-back or ineffective fix is not retried on every finding update.
    const { request, held } = withoutHeld(wanted, await this.holdStore.holds(wanted.service.key));
    if (!request) return { kind: 'held', holds: [...new Set(held.map((h) => h.hold))] };
    const race = contend(this.contentionPolicy, 'claim', request.service.key, options);
    while (await race.next()) {
      // Read first: in a burst the lock usually exists, and the read is what every path below needs
      // (two calls per busy service instead of a failed write, a read and a write).
      const lock = await this.readLock(key, 'claim');
      if (!lock) {
        await this.pointAt(request.service.key, request.executionName, 'claim');
        const claimed = await this.table.conditional('claim', () =>
          this.table.doc.send(
            new PutCommand({
              TableName: this.table.tableName,
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
      if (lock.status === 'STARTING') return { kind: 'resume', request: parseRequest(lock.request) };
      // Already carried (a redelivery, or the same request claimed again): nothing to write.
      if (carries(lock, request)) {
        return { kind: lock.sealed ? 'queued' : 'merged', inFlight: lock.executionName };
      }
      // Only what the run does not carry yet is written (what does not fit one execution is queued by the seal).
      const fresh = withoutCarried(request, ownCoverage(lock)) ?? request;
      // A request that would not fit one execution even with the run's own alone queues at once.
      const fits =
        JSON.stringify(mergeRequests(parseRequest(lock.request), fresh)).length <= MAX_REQUEST_BYTES;
      const kind = await this.contribute(key, lock, fresh, 'claim', fits);
      if (kind) return { kind, inFlight: lock.executionName };
    }
    throw race.lost();
  }

  /** StartExecution is confirmed: STARTING → STARTED. A no-op when the lock has moved on. */
  async markStarted(serviceKey: string, executionName: string, executionArn: string): Promise<void> {
    const key = LEDGER.serviceKey(serviceKey);
    const values = { ':name': executionName, ':arn': executionArn, ':now': this.table.now().toISOString() };
    const started = await this.table.conditional('markStarted', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    await this.table.conditional('markStarted', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    const race = contend(this.contentionPolicy, 'acquire', serviceKey);
    while (await race.next()) {
      const now = this.table.now().toISOString();
      const acquired = await this.table.conditional('acquire', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
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
        const taken = await this.table.conditional('acquire', () =>
          this.table.doc.send(
            new PutCommand({
              TableName: this.table.tableName,
              Item: { ...this.newLock(key, { ...request, executionName }, 'RUNNING', 0), lockedAt: now },
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          ),
        );
        if (taken) return 'acquired';
        continue;
      }
      if (lock.executionName === executionName) continue; // claimed for us between the two writes
      if (carries(lock, request) || (await this.queueBehind(key, request, 'acquire'))) return 'superseded';
    }
    throw race.lost();
  }

  /** The remediation in flight for a service, if any. */
  async getInFlight(serviceKey: string): Promise<InFlight | undefined> {
    const key = LEDGER.serviceKey(serviceKey);
    const lock = await this.readLock(key, 'getInFlight');
    if (!lock) return undefined;
    const [merges, queue] = await Promise.all([
      lock.sealed ? [] : this.contributions(key, mergePrefix(lock.executionName), 'getInFlight'),
      this.queueItems(key, lock, 'getInFlight'),
    ]);
    return {
      executionName: lock.executionName,
      status: lock.status,
      // As gathered so far: what the run takes if it seals now.
      request: gathered(
        lock,
        merges.map((m) => m.request),
      ),
      claimedAt: lock.claimedAt,
      ...(lock.executionArn ? { executionArn: lock.executionArn } : {}),
      ...(lock.lockedAt ? { lockedAt: lock.lockedAt } : {}),
      queued: (lock.queued?.length ?? 0) + Object.keys(lock.queue ?? {}).length + queue.length,
      queuedUrgent: [
        ...(lock.queued ?? []).map((json) => parseRequest(json)),
        ...entriesOf(lock.queue),
        ...queue.map((q) => q.request),
      ].some(isUrgent),
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
    if (quietSince !== undefined) {
      const lock = await this.readLock(key, 'seal');
      if (lock?.executionName !== executionName) throw new LockNotHeldError(notHeld);
      if (!lock.sealed) {
        const merges = await this.contributions(key, mergePrefix(executionName), 'seal');
        const mergedAt = [lock.mergedAt ?? '', ...merges.map((m) => m.at)].sort().at(-1) ?? '';
        if (mergedAt > quietSince.toISOString()) {
          return {
            sealed: false,
            request: gathered(
              lock,
              merges.map((m) => m.request),
            ),
            mergedAt,
          };
        }
      }
    }
    let out: { Attributes?: Record<string, unknown> | undefined };
    try {
      // First close the lock to merges: a merge written before this write is seen by the Query
      // below; one written after it sees the lock sealed when it reads it again, and queues.
      out = await this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: key,
          UpdateExpression: 'SET #sealed = :true, #version = #version + :inc',
          ConditionExpression: '#name = :name',
          ExpressionAttributeNames: { '#sealed': 'sealed', '#version': 'version', '#name': 'executionName' },
          ExpressionAttributeValues: { ':true': true, ':inc': 1, ':name': executionName },
          ReturnValues: 'ALL_NEW',
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw this.table.wrap('seal', error);
      throw new LockNotHeldError(notHeld, { cause: error });
    }
    let lock = out.Attributes as LockItem | undefined;
    if (!lock) throw new LockNotHeldError(notHeld);
    if (lockProblem(lock as unknown as Record<string, unknown>)) {
      // Poisoned: readLock takes away what is bad; the run goes on only if it still holds the lock.
      const healed = await this.readLock(key, 'seal');
      if (healed?.executionName !== executionName) throw new LockNotHeldError(notHeld);
      lock = healed;
    }
    return { sealed: true, request: await this.foldMerges(key, lock) };
  }

  /**
   * The sealed run takes its merges (its MERGE items, and the `merges` map of an older lock): folded
   * into `request` as far as one execution carries, the rest queued. Idempotent (a retried seal
   * finds the items gone and the request folded, or folds the same requests again into the same
   * request). Old-format locks carry their merges in `request` already (`merged` is only a copy).
   */
  private async foldMerges(key: Key, lock: LockItem): Promise<RemediationRequest> {
    const current = parseRequest(lock.request);
    const items = await this.contributions(key, mergePrefix(lock.executionName), 'seal');
    const legacy = entriesOf(lock.merges);
    if (items.length === 0 && legacy.length === 0 && lock.merged === undefined) return current;
    const { folded, left } = foldWithin(current, [...legacy, ...items.map((m) => m.request)]);
    const request: RemediationRequest = { ...folded, executionName: current.executionName };
    // What does not fit one execution runs next: queued before the merges are removed.
    for (const r of left) await this.putContribution(key, `${QUEUE_PREFIX}${contributionId(r)}`, r, 'seal');
    const folding = await this.table.conditional('seal', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: key,
          UpdateExpression: 'SET #request = :request REMOVE #merges, #merged, #bytes ADD #version :inc',
          // Not on the version: requests queued meanwhile do not change what this run takes.
          ConditionExpression: '#name = :name',
          ExpressionAttributeNames: {
            '#request': 'request',
            '#merges': 'merges',
            '#merged': 'merged',
            '#bytes': 'entryBytes',
            '#version': 'version',
            '#name': 'executionName',
          },
          ExpressionAttributeValues: {
            ':request': JSON.stringify(request),
            ':inc': 1,
            ':name': lock.executionName,
          },
        }),
      ),
    );
    if (!folding) throw new LockNotHeldError(`${lock.executionName} does not hold the lock any more`);
    await this.table.batchDelete(
      'seal',
      items.map((m) => ({ pk: key.pk, sk: m.sk })),
    );
    return request;
  }

  /**
   * Let go of the service. If requests were queued meanwhile, they become ONE next remediation: the
   * lock is replaced, in the same write, by a STARTING claim for it, and it is returned for the caller
   * to start (if the caller crashes first, the next claim for the service resumes it). Returns {} when
   * this execution does not hold the lock. Idempotent: a repeated release returns the same `next`
   * until it is started.
   */
  /**
   * With `requeueOwn` (a run pre-empted while it waited for approval), the run's own request is
   * queued again with the others: it runs after the urgent one that pre-empted it.
   */
  async release(
    serviceKey: string,
    executionName: string,
    options: { readonly requeueOwn?: boolean } = {},
  ): Promise<{ next?: RemediationRequest }> {
    const key = LEDGER.serviceKey(serviceKey);
    const race = contend(this.contentionPolicy, 'release', serviceKey);
    while (await race.next()) {
      const lock = await this.readLock(key, 'release');
      if (!lock) return {};
      if (lock.executionName !== executionName) {
        return lock.releasedBy === executionName && lock.status === 'STARTING'
          ? { next: parseRequest(lock.request) }
          : {};
      }
      const guard = {
        ConditionExpression: '#name = :name AND #version = :version',
        ExpressionAttributeNames: { '#name': 'executionName', '#version': 'version' },
        ExpressionAttributeValues: { ':name': executionName, ':version': lock.version },
      };
      if (!lock.sealed && !lock.closing) {
        // A run that ends before it sealed: close it to merges first (they queue from now on), so
        // the merges read below are all there will be.
        await this.table.conditional('release', () =>
          this.table.doc.send(
            new UpdateCommand({
              TableName: this.table.tableName,
              Key: key,
              UpdateExpression: 'SET #closing = :true ADD #version :inc',
              ...guard,
              ExpressionAttributeNames: { ...guard.ExpressionAttributeNames, '#closing': 'closing' },
              ExpressionAttributeValues: { ...guard.ExpressionAttributeValues, ':true': true, ':inc': 1 },
            }),
          ),
        );
        continue;
      }
      const [merges, queue] = await Promise.all([
        this.contributions(key, mergePrefix(executionName), 'release'),
        this.queueItems(key, lock, 'release'),
      ]);
      // Requests merged into a remediation that ended before it took them (failed or stopped while
      // gathering) were never worked on: they run next, ahead of the ones queued behind it.
      const queued: Queued[] = [
        ...(options.requeueOwn ? [{ request: parseRequest(lock.request) }] : []),
        ...(lock.sealed ? [] : entriesOf(lock.merges).map((request) => ({ request }))),
        ...(lock.sealed || !lock.merged ? [] : [{ request: parseRequest(lock.merged) }]),
        ...(lock.queued ?? []).map((json) => ({ request: parseRequest(json) })),
        ...entriesOf(lock.queue).map((request) => ({ request })),
        ...merges.map((m) => ({ request: m.request, item: m })),
        ...queue.map((q) => ({ request: q.request, item: q })),
      ];
      const cleanup = [
        ...merges.map((m) => ({ pk: key.pk, sk: m.sk })),
        ...(lock.took ?? []).map((id) => ({ pk: key.pk, sk: `${QUEUE_PREFIX}${id}` })),
      ];
      const plan = await this.planNext(serviceKey, queued, 'release');
      if (!plan) {
        const deleted = await this.table.conditional('release', () =>
          this.table.doc.send(new DeleteCommand({ TableName: this.table.tableName, Key: key, ...guard })),
        );
        if (!deleted) continue;
        await this.table.batchDelete('release', [
          ...cleanup,
          ...queue.map((q) => ({ pk: key.pk, sk: q.sk })),
        ]);
        // A request queued after the read above, whose writer may have seen this lock (and so
        // counts on it): it runs next. Each is taken by deleting it; a writer that saw no lock
        // withdraws its own the same way and claims the service itself, so each is taken once.
        const late = await this.contributions(key, QUEUE_PREFIX, 'release');
        const mine: Queued[] = [];
        for (const q of late) {
          const taken = await this.table.conditional('release', () =>
            this.table.doc.send(
              new DeleteCommand({
                TableName: this.table.tableName,
                Key: { pk: key.pk, sk: q.sk },
                ConditionExpression: 'attribute_exists(pk)',
              }),
            ),
          );
          if (taken) mine.push({ request: q.request });
        }
        const latePlan = await this.planNext(serviceKey, mine, 'release');
        if (!latePlan) return {};
        await this.pointAt(serviceKey, latePlan.next.executionName, 'release');
        const claimed = await this.table.conditional('release', () =>
          this.table.doc.send(
            new PutCommand({
              TableName: this.table.tableName,
              Item: this.nextLock(key, latePlan, executionName, 0),
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          ),
        );
        if (!claimed) {
          // Someone claimed the service meanwhile: they wait behind that run instead.
          for (const q of mine)
            await this.putContribution(
              key,
              `${QUEUE_PREFIX}${contributionId(q.request)}`,
              q.request,
              'release',
            );
          return {};
        }
        return { next: latePlan.next };
      }
      const replaced = await this.table.conditional('release', () =>
        this.table.doc.send(
          new PutCommand({
            TableName: this.table.tableName,
            Item: this.nextLock(key, plan, executionName, lock.version + 1),
            ...guard,
          }),
        ),
      );
      if (!replaced) continue;
      await this.table.batchDelete('release', [...cleanup, ...plan.taken]);
      return { next: plan.next };
    }
    throw race.lost();
  }

  /**
   * The next run from queued requests: urgent first, folded as far as one execution carries, held
   * findings left out. What is left stays queued: QUEUE items as they are, anything else written as
   * one (before the lock that replaces the maps is written). `taken` are the items to delete once
   * the next lock is written, `took` their ids (which readers ignore until they are gone).
   */
  private async planNext(
    serviceKey: string,
    queued: readonly Queued[],
    op: string,
  ): Promise<NextPlan | undefined> {
    if (queued.length === 0) return undefined;
    const key = LEDGER.serviceKey(serviceKey);
    const holds = await this.holdStore.holds(serviceKey, { fresh: true });
    const source = new Map<RemediationRequest, Queued>();
    const kept = queued.flatMap((q) => {
      const request = withoutHeld(q.request, holds).request;
      if (!request) return [];
      source.set(request, q);
      return [request];
    });
    const [first, ...more] = urgentFirst(kept);
    if (!first) {
      const items = queued.flatMap((q) => (q.item ? [{ pk: key.pk, sk: q.item.sk }] : []));
      await this.table.batchDelete(op, items);
      return undefined;
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
    const name = nameExecution(merged.service, merged.images, this.table.now());
    const next: RemediationRequest = {
      ...merged,
      executionName: name,
      remediationId: remediationId(serviceKey, name),
    };
    // Left as they are: QUEUE items unchanged by the holds. Everything else left is (re)written as a QUEUE item.
    const stays = new Set<string>();
    for (const r of left) {
      const q = source.get(r);
      if (q?.item?.sk.startsWith(QUEUE_PREFIX) && q.request === r) {
        stays.add(q.item.sk);
        continue;
      }
      await this.putContribution(key, `${QUEUE_PREFIX}${contributionId(r)}`, r, op);
      stays.add(`${QUEUE_PREFIX}${contributionId(r)}`);
    }
    const taken = queued.flatMap((q) =>
      q.item && !stays.has(q.item.sk) ? [{ pk: key.pk, sk: q.item.sk }] : [],
    );
    const took = taken.flatMap((k) =>
      k.sk.startsWith(QUEUE_PREFIX) ? [k.sk.slice(QUEUE_PREFIX.length)] : [],
    );
    return { next, taken, took };
  }

  private nextLock(key: Key, plan: NextPlan, releasedBy: string, version: number): LockItem {
    return {
      ...this.newLock(key, plan.next, 'STARTING', version),
      releasedBy,
      ...(plan.took.length > 0 ? { took: plan.took } : {}),
    };
  }

  /**
   * Pre-emption: a run waiting for its maintenance window takes the urgent requests queued behind it
   * (a CRITICAL with a known exploit, which policy exempts from windows), and with them every queued
   * request that needs no approval, as far as one execution carries: it deploys now, so they deploy
   * with it. Requests that need an approval stay queued (an urgent fix does not wait for a human
   * another finding needs). Returns the run's request with them folded in, or undefined when nothing
   * urgent is queued. Conditional on the lock as read: a concurrent writer makes it read again.
   */
  async takeUrgent(
    serviceKey: string,
    executionName: string,
  ): Promise<{ readonly request: RemediationRequest; readonly took: number } | undefined> {
    const key = LEDGER.serviceKey(serviceKey);
    const race = contend(this.contentionPolicy, 'take-urgent', serviceKey);
    while (await race.next()) {
      const lock = await this.readLock(key, 'take-urgent');
      if (lock?.executionName !== executionName)
        throw new LockNotHeldError(`${executionName} does not hold the lock of ${serviceKey}`);
      const items = await this.queueItems(key, lock, 'take-urgent');
      const queued: Queued[] = [
        ...(lock.queued ?? []).map((json) => ({ request: parseRequest(json) })),
        ...entriesOf(lock.queue).map((request) => ({ request })),
        ...items.map((q) => ({ request: q.request, item: q })),
      ];
      if (!queued.some((q) => isUrgent(q.request))) return undefined;
      // A run that needs approval itself does not take them (they would wait for its approver): it
      // goes on to its approval wait, which the urgent request pre-empts in turn.
      if (parseRequest(lock.request).decision.action === 'approve') return undefined;
      const candidates = urgentFirst(
        queued.map((q) => q.request).filter((r) => r.decision.action !== 'approve'),
      );
      const { folded, left: overflow } = foldWithin(parseRequest(lock.request), candidates);
      const tookCount = candidates.length - overflow.length;
      if (tookCount === 0) return undefined;
      const taken = new Set(candidates.slice(0, tookCount));
      // Requests of an older lock's maps that stay queued become QUEUE items (the maps are removed below).
      for (const q of queued)
        if (!q.item && !taken.has(q.request))
          await this.putContribution(
            key,
            `${QUEUE_PREFIX}${contributionId(q.request)}`,
            q.request,
            'take-urgent',
          );
      const takenItems = queued.flatMap((q) => (q.item && taken.has(q.request) ? [q.item] : []));
      const ids = takenItems.map((q) => q.id);
      const written = await this.table.conditional('take-urgent', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: key,
            UpdateExpression: `SET #request = :request${ids.length > 0 ? ', #took = list_append(if_not_exists(#took, :empty), :ids)' : ''}, #version = #version + :inc REMOVE #queue, #legacy, #legacyNames, #bytes`,
            ConditionExpression: '#name = :name AND #version = :version',
            ExpressionAttributeNames: {
              '#request': 'request',
              '#queue': 'queue',
              '#legacy': 'queued',
              '#legacyNames': 'queuedNames',
              '#bytes': 'entryBytes',
              '#version': 'version',
              '#name': 'executionName',
              ...(ids.length > 0 ? { '#took': 'took' } : {}),
            },
            ExpressionAttributeValues: {
              ':request': JSON.stringify(folded),
              ':inc': 1,
              ':name': executionName,
              ':version': lock.version,
              ...(ids.length > 0 ? { ':ids': ids, ':empty': [] } : {}),
            },
          }),
        ),
      );
      if (!written) continue;
      await this.table.batchDelete(
        'take-urgent',
        takenItems.map((q) => ({ pk: key.pk, sk: q.sk })),
      );
      return { request: folded, took: tookCount };
    }
    throw race.lost();
  }

  // ---------------------------------------------------------------- the lock index

  /**
   * Every service lock, as getInFlight reads it, for the reconciler. The index has one pointer per
   * service that was ever locked, written before each lock is created; pointers whose lock is gone
   * are removed here (conditional on the pointer not having been written again meanwhile, so a claim
   * racing this never loses its pointer).
   */
  async locks(): Promise<Array<InFlight & { readonly serviceKey: string }>> {
    const pointers = await this.table.query('locks', LOCK_INDEX_PK);
    const out: Array<InFlight & { readonly serviceKey: string }> = [];
    for (const pointer of pointers) {
      const serviceKey = pointer.sk as string;
      const inFlight = await this.getInFlight(serviceKey);
      if (inFlight) {
        out.push({ ...inFlight, serviceKey });
        continue;
      }
      await this.table.conditional('locks', () =>
        this.table.doc.send(
          new DeleteCommand({
            TableName: this.table.tableName,
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
    await this.table.send(op, () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: { pk: LOCK_INDEX_PK, sk: serviceKey, token, at: this.table.now().toISOString() },
        }),
      ),
    );
  }

  // ---------------------------------------------------------------- internals

  private newLock(key: Key, request: RemediationRequest, status: LockStatus, version: number): LockItem {
    return newLockItem(key, request, status, version, this.table.now());
  }

  /**
   * Join the run `lock` holds: merge the request into it while it gathers, queue it behind it once
   * it sealed. Returns undefined when the lock moved on meanwhile (released, replaced): read again.
   */
  private async contribute(
    key: Key,
    lock: LockItem,
    request: RemediationRequest,
    op: string,
    mayMerge: boolean,
  ): Promise<'merged' | 'queued' | undefined> {
    if (mayMerge && !lock.sealed && !lock.closing) {
      await this.putContribution(
        key,
        `${mergePrefix(lock.executionName)}${contributionId(request)}`,
        request,
        op,
      );
      // Read again: a seal after this read Queries after our write (it closes the lock first).
      const now = await this.readLock(key, op);
      if (now?.executionName !== lock.executionName) return undefined;
      if (!now.sealed && !now.closing) return 'merged';
      // Sealed meanwhile, maybe before it read our merge: queue it too (a duplicate at worst).
    }
    return (await this.queueBehind(key, request, op)) ? 'queued' : undefined;
  }

  /**
   * Queue a request behind whichever run holds the service. False when no run holds it any more
   * (released with nothing queued after our write could be seen): the item is withdrawn and the
   * caller claims the service itself.
   */
  private async queueBehind(key: Key, request: RemediationRequest, op: string): Promise<boolean> {
    const sk = `${QUEUE_PREFIX}${contributionId(request)}`;
    await this.putContribution(key, sk, request, op);
    if (await this.table.get(key, op)) return true;
    // No run holds the service: withdraw the request and claim it. If a release took it first
    // (see release), it runs next: queued.
    const withdrawn = await this.table.conditional(op, () =>
      this.table.doc.send(
        new DeleteCommand({
          TableName: this.table.tableName,
          Key: { pk: key.pk, sk },
          ConditionExpression: '#request = :request',
          ExpressionAttributeNames: { '#request': 'request' },
          // As putContribution wrote it (packRequest is deterministic).
          ExpressionAttributeValues: { ':request': packRequest(request) },
        }),
      ),
    );
    return !withdrawn;
  }

  /** Write a contribution item once: an item with the same id (a redelivery) is left as it is. */
  private async putContribution(
    key: Key,
    sk: string,
    request: RemediationRequest,
    op: string,
  ): Promise<void> {
    const id = sk.slice(sk.lastIndexOf('#') + 1);
    await this.table.conditional(op, () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: contributionItem(key.pk, sk, id, request, this.table.now()),
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      ),
    );
  }

  /** The QUEUE items behind the run `lock` holds (those it took already left out). */
  private async queueItems(key: Key, lock: LockItem, op: string): Promise<Contribution[]> {
    const took = new Set(lock.took ?? []);
    return (await this.contributions(key, QUEUE_PREFIX, op)).filter((q) => !took.has(q.id));
  }

  /**
   * Contribution items under `prefix`, oldest request first. One that cannot be read is poisoned:
   * reported, kept as a POISONED record and removed (conditional on its value as read), like a bad
   * entry of an older lock's maps.
   */
  private async contributions(key: Key, prefix: string, op: string): Promise<Contribution[]> {
    const items = await this.table.query(op, key.pk, { prefix });
    const out: Contribution[] = [];
    for (const item of items) {
      const problem = requestProblem(requestTextOf(item.request));
      if (!problem) {
        out.push(readContribution(item));
        continue;
      }
      const sk = item.sk as string;
      await this.takeAway(
        { pk: key.pk, sk },
        item,
        { reason: `the ${sk} entry ${problem}`, item: { raw: item.request } },
        op,
      );
    }
    return out.sort(byRequestedAt);
  }

  /**
   * The service's LOCK item, strongly consistent. A lock that cannot be read (a request that is not
   * JSON, or not a request; a missing executionName, status or version) would block the service for
   * good: every claim, seal and release reads it. It is treated as poisoned instead: reported (the
   * listener, and a `POISONED#<at>` record with the raw item) and taken away, conditional on the
   * corrupt value still being there, so a concurrent writer that already fixed or replaced it is
   * never overwritten. One bad merges/queue entry is removed alone; anything else deletes the lock,
   * so later findings claim the service afresh.
   */
  private async readLock(key: Key, op: string): Promise<LockItem | undefined> {
    for (let round = 0; round < POISON_ROUNDS; round++) {
      const item = await this.table.get(key, op);
      if (!item) return undefined;
      const problem = lockProblem(item);
      if (!problem) return item as unknown as LockItem;
      await this.takeAway(key, item, problem, op);
    }
    throw new TransientError(
      `ledger ${op}: the lock at ${key.pk} stays unreadable after ${POISON_ROUNDS} repairs`,
    );
  }

  /** Report a poisoned lock, keep a copy, then remove what is bad (see readLock). */
  private async takeAway(
    key: Key,
    item: Record<string, unknown>,
    problem: LockProblem,
    op: string,
  ): Promise<void> {
    const serviceKey = key.pk.slice(LEDGER.serviceKey('').pk.length);
    const raw = JSON.stringify(item, (_k, v: unknown) => (v instanceof Set ? [...v] : v));
    const at = this.table.now().toISOString();
    const executionName = typeof item.executionName === 'string' ? item.executionName : undefined;
    const action = problem.entry || problem.item ? 'entry-removed' : 'lock-removed';
    const removed = problem.item
      ? await this.table.conditional(op, () =>
          this.table.doc.send(
            new DeleteCommand({
              TableName: this.table.tableName,
              Key: key,
              ...(problem.item?.raw === undefined
                ? {
                    ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(#request)',
                    ExpressionAttributeNames: { '#request': 'request' },
                  }
                : {
                    ConditionExpression: '#request = :raw',
                    ExpressionAttributeNames: { '#request': 'request' },
                    ExpressionAttributeValues: { ':raw': problem.item?.raw },
                  }),
            }),
          ),
        )
      : problem.entry
        ? await this.table.conditional(op, () =>
            this.table.doc.send(
              new UpdateCommand({
                TableName: this.table.tableName,
                Key: key,
                UpdateExpression: 'REMOVE #map.#entry ADD #version :inc',
                ConditionExpression: '#map.#entry = :raw',
                ExpressionAttributeNames: {
                  '#map': problem.entry?.map as string,
                  '#entry': problem.entry?.name as string,
                  '#version': 'version',
                },
                ExpressionAttributeValues: { ':raw': problem.entry?.raw, ':inc': 1 },
              }),
            ),
          )
        : await this.table.conditional(op, () =>
            this.table.doc.send(
              new DeleteCommand({
                TableName: this.table.tableName,
                Key: key,
                // On the value read: a writer that replaced the corrupt lock meanwhile keeps its own.
                ...corruptCondition(item),
              }),
            ),
          );
    if (!removed) return; // someone else changed it first: read again
    this.onPoisoned({
      serviceKey,
      reason: problem.reason,
      rawBytes: raw.length,
      action,
      ...(executionName ? { executionName } : {}),
    });
    await this.table.send(op, () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            pk: key.pk,
            sk: `${POISONED_PREFIX}${at}`,
            serviceKey,
            reason: problem.reason,
            action,
            rawBytes: raw.length,
            raw: raw.slice(0, POISONED_RAW_CHARS),
            ...(executionName ? { executionName } : {}),
            foundAt: at,
            foundBy: op,
            [LEDGER.ttlAttribute]: this.table.ttl(POISONED_TTL_DAYS),
          },
        }),
      ),
    );
  }

  /** Locks found poisoned and taken away for a service, oldest first (for people and tests). */
  async poisoned(serviceKey: string): Promise<Array<Record<string, unknown>>> {
    return this.table.query('poisoned', LEDGER.serviceKey(serviceKey).pk, { prefix: POISONED_PREFIX });
  }

  /**
   * Read-only: the requests queued behind a service's run, oldest first (none when it is not
   * locked). For the sweep's deadline watch and the pre-emption messages; it writes nothing.
   */
  async queuedRequests(serviceKey: string): Promise<RemediationRequest[]> {
    const key = LEDGER.serviceKey(serviceKey);
    const lock = await this.readLock(key, 'queuedRequests');
    if (!lock) return [];
    const items = await this.queueItems(key, lock, 'queuedRequests');
    return [
      ...(lock.queued ?? []).map((json) => parseRequest(json)),
      ...entriesOf(lock.queue),
      ...items.map((q) => q.request),
    ];
  }
}

/**
 * A condition that holds only while the lock is exactly as read, in the attributes that say what it
 * is: its holder, status, version and request (whichever exist; absent ones must stay absent).
 */
const corruptCondition = (
  item: Record<string, unknown>,
): {
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues?: Record<string, unknown>;
} => {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const terms = ['executionName', 'status', 'version', 'request', 'merged', 'queued'].map((attribute, i) => {
    names[`#c${i}`] = attribute;
    if (item[attribute] === undefined) return `attribute_not_exists(#c${i})`;
    values[`:c${i}`] = item[attribute];
    return `#c${i} = :c${i}`;
  });
  return {
    ConditionExpression: terms.join(' AND '),
    ExpressionAttributeNames: names,
    ...(Object.keys(values).length > 0 ? { ExpressionAttributeValues: values } : {}),
  };
};
