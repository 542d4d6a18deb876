import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER, type RemediationRequest } from '../contracts';
import { LockNotHeldError, TransientError } from '../errors';
import { mergeRequests, executionName as nameExecution, remediationId } from '../remediation';
import { type ContentionOptions, type ContentionPolicy, contend } from './contention';
import { type Hold, type Holds, withoutHeld } from './holds';
import {
  carries,
  gathered,
  type LockItem,
  type LockProblem,
  type LockStatus,
  lockBytes,
  lockProblem,
  MAX_LOCK_BYTES,
  newLockItem,
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
/** Entries in a lock's merges or queue map from which a writer folds them together (see compact). */
const COMPACT_AT = 16;
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
        lock.sealed || JSON.stringify(mergeRequests(gathered(lock), request)).length > MAX_REQUEST_BYTES
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
      if (carries(lock, request) || (await this.addEntry(key, lock, request, 'queue', 'acquire')))
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
      request: gathered(lock),
      claimedAt: lock.claimedAt,
      ...(lock.executionArn ? { executionArn: lock.executionArn } : {}),
      ...(lock.lockedAt ? { lockedAt: lock.lockedAt } : {}),
      queued: (lock.queued?.length ?? 0) + Object.keys(lock.queue ?? {}).length,
      queuedUrgent: [...(lock.queued ?? []).map((json) => parseRequest(json)), ...entriesOf(lock.queue)].some(
        isUrgent,
      ),
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
    let out: { Attributes?: Record<string, unknown> | undefined };
    try {
      // First close the lock to merges: from this write on, merge entries are frozen (their writes
      // are conditional on the lock being unsealed), so folding them below races nobody.
      out = await this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
      if (!isConditionFailure(error)) throw this.table.wrap('seal', error);
      const lock = quiet ? await this.readLock(key, 'seal') : undefined;
      if (lock?.executionName !== executionName) throw new LockNotHeldError(notHeld, { cause: error });
      return {
        sealed: false,
        request: gathered(lock),
        ...(lock.mergedAt ? { mergedAt: lock.mergedAt } : {}),
      };
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
   * The sealed run takes its merge entries: folded into `request` as far as one execution carries,
   * the rest moved to the queue. Idempotent (a retried seal finds the entries gone and the request
   * folded). Old-format locks carry their merges in `request` already (`merged` is only a copy).
   */
  private async foldMerges(key: Key, lock: LockItem): Promise<RemediationRequest> {
    const current = parseRequest(lock.request);
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
    const folding = await this.table.conditional('seal', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    return parseRequest(again.request);
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
      // Requests merged into a remediation that ended before it took them (failed or stopped while
      // gathering) were never worked on: they run next, ahead of the ones queued behind it.
      const queued = [
        ...(options.requeueOwn ? [parseRequest(lock.request)] : []),
        ...(lock.sealed ? [] : entriesOf(lock.merges)),
        ...(lock.sealed || !lock.merged ? [] : [lock.merged]).map((json) => parseRequest(json)),
        ...(lock.queued ?? []).map((json) => parseRequest(json)),
        ...entriesOf(lock.queue),
      ];
      const holds = queued.length > 0 ? await this.holdStore.holds(serviceKey, { fresh: true }) : [];
      const [first, ...more] = urgentFirst(
        queued.flatMap((r) => {
          const kept = withoutHeld(r, holds).request;
          return kept ? [kept] : [];
        }),
      );
      if (!first) {
        const deleted = await this.table.conditional('release', () =>
          this.table.doc.send(new DeleteCommand({ TableName: this.table.tableName, Key: key, ...guard })),
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
      const name = nameExecution(merged.service, merged.images, this.table.now());
      const next: RemediationRequest = {
        ...merged,
        executionName: name,
        remediationId: remediationId(serviceKey, name),
      };
      const replaced = await this.table.conditional('release', () =>
        this.table.doc.send(
          new PutCommand({
            TableName: this.table.tableName,
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
      const queued = [...(lock.queued ?? []).map((json) => parseRequest(json)), ...entriesOf(lock.queue)];
      if (!queued.some(isUrgent)) return undefined;
      // A run that needs approval itself does not take them (they would wait for its approver): it
      // goes on to its approval wait, which the urgent request pre-empts in turn.
      if (parseRequest(lock.request).decision.action === 'approve') return undefined;
      const candidates = urgentFirst(queued.filter((r) => r.decision.action !== 'approve'));
      const { folded, left: overflow } = foldWithin(parseRequest(lock.request), candidates);
      const took = candidates.length - overflow.length;
      if (took === 0) return undefined;
      const left = [...overflow, ...queued.filter((r) => r.decision.action === 'approve')];
      const written = await this.table.conditional('take-urgent', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: key,
            UpdateExpression:
              'SET #request = :request, #queue = :queue, #bytes = :bytes, #version = #version + :inc REMOVE #legacy',
            ConditionExpression: '#name = :name AND #version = :version',
            ExpressionAttributeNames: {
              '#request': 'request',
              '#queue': 'queue',
              '#bytes': 'entryBytes',
              '#version': 'version',
              '#legacy': 'queued',
              '#name': 'executionName',
            },
            ExpressionAttributeValues: {
              ':request': JSON.stringify(folded),
              ':queue': Object.fromEntries(left.map((r) => [r.executionName, JSON.stringify(r)])),
              ':bytes': left.reduce((n, r) => n + JSON.stringify(r).length, 0),
              ':inc': 1,
              ':name': executionName,
              ':version': lock.version,
            },
          }),
        ),
      );
      if (written) return { request: folded, took };
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
      await this.table.conditional(op, () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
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
    const added = await this.table.conditional(op, async () => {
      const out = await this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
            ...(merge ? { ':now': this.table.now().toISOString() } : {}),
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
    await this.table.conditional('compact', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    const action = problem.entry ? 'entry-removed' : 'lock-removed';
    const removed = problem.entry
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
    const lock = await this.readLock(LEDGER.serviceKey(serviceKey), 'queuedRequests');
    if (!lock) return [];
    return [...(lock.queued ?? []).map((json) => parseRequest(json)), ...entriesOf(lock.queue)];
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
