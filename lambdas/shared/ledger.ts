import type { Outcome, RemediationRequest } from './contracts';
import type { ContentionOptions } from './ledger/contention';
import { FindingDeliveries, type FindingKey } from './ledger/deliveries';
import { type Digest, Digests, type Notice } from './ledger/digests';
import { FleetSlots } from './ledger/fleet';
import { History, type OutcomeRecord } from './ledger/history';
import { type Hold, type HoldRequest, Holds } from './ledger/holds';
import { type ClaimResult, type InFlight, type PoisonedLockListener, ServiceLocks } from './ledger/lock';
import { LedgerTable, type TableOptions } from './ledger/table';
import { type TaskTokenPurpose, TaskTokens } from './ledger/tokens';

/**
 * The ledger: Autopatch's memory in one DynamoDB table (`pk`, `sk`, TTL attribute `expiresAt`).
 * This class is its one door; each of its jobs lives in a module of `ledger/`, which documents its
 * items:
 * - `deliveries.ts`: duplicate deliveries (`FINDING#…`) and the newest update seen of each finding;
 * - `lock.ts` (+ `lock-item.ts`, `requests.ts`, `contention.ts`): the per-service lock (`…/LOCK`),
 *   the requests merged into the run in flight and queued behind it, the lock index (`LOCKS`);
 * - `holds.ts`: churn holds (`…/HOLD#<cve>`);
 * - `tokens.ts`: the task tokens paused executions wait on (`TOKEN#…`);
 * - `history.ts`: the history of finished remediations (`…/REMEDIATION#…`) and its outbox (`OUTBOX`);
 * - `digests.ts`: notify decisions gathered per service until the sweep sends them (`DIGEST`);
 * - `fleet.ts`: the deployment slots in flight across the fleet and the runs waiting for one (`FLEET`);
 * - `table.ts`: the DynamoDB calls they share (errors, conditional writes, batch retries).
 */

export type { ContentionOptions } from './ledger/contention';
export type { FindingKey } from './ledger/deliveries';
export { ACCOUNT_SCOPE, type Digest, type DigestEntry, type Notice } from './ledger/digests';
export type { FleetCaps, FleetState, SlotClaim, SlotDecision } from './ledger/fleet';
export type { OutcomeRecord } from './ledger/history';
export { type Hold, type HoldRequest, withoutHeld } from './ledger/holds';
export type { ClaimResult, InFlight, PoisonedLock, PoisonedLockListener } from './ledger/lock';
export { type LockStatus, MAX_LOCK_BYTES } from './ledger/lock-item';
export { isUrgent, MAX_REQUEST_BYTES } from './ledger/requests';
export type { TaskTokenPurpose } from './ledger/tokens';

/** The table, the clock and batch retries (see TableOptions), and what the lock and holds add. */
export interface LedgerOptions extends TableOptions {
  /**
   * How long claims reuse a service's churn holds as this instance last read them (wall-clock).
   * A hold placed by another process is seen by claims at most this late; releases always read.
   * @default 30000
   */
  readonly holdsCacheMs?: number;
  /**
   * Lock transitions that lose a race (another writer changed the lock between our read and our
   * write) read again after a jittered, exponentially growing pause, until `budgetMs` has passed
   * (or the caller's own deadline, whichever is first). A burst of findings for one service is
   * settled inside the invocation instead of by SQS redelivery.
   * @default { budgetMs: 30000, baseDelayMs: 10, maxDelayMs: 400 }
   */
  readonly contention?: {
    readonly budgetMs?: number;
    readonly baseDelayMs?: number;
    readonly maxDelayMs?: number;
  };
  /**
   * Told of every lock found unreadable and taken away (see docs/runbook.md, "Poisoned lock").
   * @default a WARN line on stderr (CloudWatch Logs in Lambda)
   */
  readonly onPoisonedLock?: PoisonedLockListener;
}

const warnPoisoned: PoisonedLockListener = (poisoned) =>
  console.warn(JSON.stringify({ level: 'WARN', message: 'Poisoned lock taken away', ...poisoned }));

export class Ledger {
  /** The DynamoDB table this ledger works on. */
  readonly tableName: string;
  private readonly deliveries: FindingDeliveries;
  private readonly lock: ServiceLocks;
  private readonly churn: Holds;
  private readonly tokens: TaskTokens;
  private readonly outcomes: History;
  private readonly digests: Digests;
  /** The deployment slots (fleet guardrails): take, release, state. */
  readonly fleet: FleetSlots;

  constructor(options: LedgerOptions) {
    const table = new LedgerTable(options);
    this.tableName = table.tableName;
    this.deliveries = new FindingDeliveries(table);
    this.churn = new Holds(table, options.holdsCacheMs ?? 30_000);
    this.lock = new ServiceLocks(
      table,
      this.churn,
      {
        budgetMs: options.contention?.budgetMs ?? 30_000,
        baseDelayMs: options.contention?.baseDelayMs ?? 10,
        maxDelayMs: options.contention?.maxDelayMs ?? 400,
      },
      options.onPoisonedLock ?? warnPoisoned,
    );
    this.tokens = new TaskTokens(table);
    this.outcomes = new History(table);
    this.digests = new Digests(table);
    this.fleet = new FleetSlots(table);
  }

  // ---------------------------------------------------------------- duplicate deliveries

  /** The keys not marked seen yet, in input order. Reads are strongly consistent. */
  unseen<K extends FindingKey>(keys: readonly K[]): Promise<K[]> {
    return this.deliveries.unseen(keys);
  }

  /**
   * Mark finding deliveries as triaged for 90 days. Idempotent: marking twice only refreshes the TTL.
   * Keys with `updatedAtIso` also move their finding's newest-seen mark forward.
   */
  markSeen(keys: readonly FindingKey[]): Promise<void> {
    return this.deliveries.markSeen(keys);
  }

  /** unseen() and newestSeen() in one read: what triage asks of every batch. */
  unseenAndNewest<K extends FindingKey>(
    keys: readonly K[],
  ): Promise<{ readonly unseen: K[]; readonly newest: ReadonlyMap<string, string> }> {
    return this.deliveries.unseenAndNewest(keys);
  }

  /** The newest updatedAt (ISO-8601) marked seen, for each of the findings that has one. */
  newestSeen(findingArns: readonly string[]): Promise<ReadonlyMap<string, string>> {
    return this.deliveries.newestSeen(findingArns);
  }

  // ---------------------------------------------------------------- the per-service lock

  /**
   * Claim the service for a remediation, or queue the request behind the one in flight.
   * Safe to repeat: the same request claimed twice resumes its own claim; queued twice, it is queued once;
   * a request whose findings the in-flight or queued remediations already carry is not queued again.
   */
  claim(wanted: RemediationRequest, options: ContentionOptions = {}): Promise<ClaimResult> {
    return this.lock.claim(wanted, options);
  }

  /** StartExecution is confirmed: STARTING → STARTED. A no-op when the lock has moved on. */
  markStarted(serviceKey: string, executionName: string, executionArn: string): Promise<void> {
    return this.lock.markStarted(serviceKey, executionName, executionArn);
  }

  /** The workflow's first state: take the lock if it is this execution's → RUNNING (see ServiceLocks.acquire). */
  acquire(
    serviceKey: string,
    executionName: string,
    request?: RemediationRequest,
  ): Promise<'acquired' | 'superseded'> {
    return this.lock.acquire(serviceKey, executionName, request);
  }

  /** The remediation in flight for a service, if any. */
  /** Pre-emption of a run waiting for its window: see ServiceLocks.takeUrgent. */
  takeUrgent(serviceKey: string, executionName: string) {
    return this.lock.takeUrgent(serviceKey, executionName);
  }

  getInFlight(serviceKey: string): Promise<InFlight | undefined> {
    return this.lock.getInFlight(serviceKey);
  }

  /** The execution takes the findings gathered so far (see ServiceLocks.seal). */
  seal(
    serviceKey: string,
    executionName: string,
    quietSince?: Date,
  ): Promise<{ readonly sealed: boolean; readonly request: RemediationRequest; readonly mergedAt?: string }> {
    return this.lock.seal(serviceKey, executionName, quietSince);
  }

  /** Let go of the service; what was queued becomes ONE next remediation (see ServiceLocks.release). */
  release(
    serviceKey: string,
    executionName: string,
    options?: { readonly requeueOwn?: boolean },
  ): Promise<{ next?: RemediationRequest }> {
    return this.lock.release(serviceKey, executionName, options);
  }

  /** Every service lock, as getInFlight reads it, for the reconciler. */
  locks(): Promise<Array<InFlight & { readonly serviceKey: string }>> {
    return this.lock.locks();
  }

  /** The requests queued behind a service's run, oldest first (read-only: deadlines, pre-emption reasons). */
  queuedRequests(serviceKey: string): Promise<RemediationRequest[]> {
    return this.lock.queuedRequests(serviceKey);
  }

  /** The records of locks found poisoned and taken away for a service (`POISONED#<at>`), oldest first. */
  poisonedLocks(serviceKey: string): Promise<Array<Record<string, unknown>>> {
    return this.lock.poisoned(serviceKey);
  }

  // ---------------------------------------------------------------- churn holds

  /** The service's churn holds; claims reuse a recent read (see LedgerOptions.holdsCacheMs). */
  holds(serviceKey: string, options: { readonly fresh?: boolean } = {}): Promise<Hold[]> {
    return this.churn.holds(serviceKey, options);
  }

  /** Hold (service, CVE) pairs after a remediation failed to fix them for good. Idempotent. */
  hold(
    serviceKey: string,
    requests: readonly HoldRequest[],
    why: { readonly outcome: Outcome; readonly reason: string; readonly executionName: string },
  ): Promise<void> {
    return this.churn.hold(serviceKey, requests, why);
  }

  /** Lift the service's holds (all, or those of the given CVEs). Returns the holds lifted. */
  clearHolds(serviceKey: string, cves?: readonly string[]): Promise<Hold[]> {
    return this.churn.clearHolds(serviceKey, cves);
  }

  // ---------------------------------------------------------------- task tokens

  /** Store the token a paused execution waits on. A new wait replaces the previous token of the same purpose. */
  putTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
    token: string,
    serviceKey: string,
  ): Promise<void> {
    return this.tokens.putTaskToken(executionName, purpose, token, serviceKey);
  }

  /** The stored token, unless it expired. */
  getTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
  ): Promise<{ token: string; serviceKey: string } | undefined> {
    return this.tokens.getTaskToken(executionName, purpose);
  }

  /** Idempotent. */
  deleteTaskToken(executionName: string, purpose: TaskTokenPurpose): Promise<void> {
    return this.tokens.deleteTaskToken(executionName, purpose);
  }

  // ---------------------------------------------------------------- history

  /** Write the history record of a finished remediation, and its outbox entry. Idempotent. */
  recordOutcome(record: OutcomeRecord): Promise<void> {
    return this.outcomes.recordOutcome(record);
  }

  /** The outcome was published: mark the history record and clear its outbox entry. Idempotent. */
  markAnnounced(serviceKey: string, remediationId: string): Promise<void> {
    return this.outcomes.markAnnounced(serviceKey, remediationId);
  }

  /** Outcomes recorded but not announced, that finished before `finishedBefore`. */
  unannounced(finishedBefore: Date): Promise<OutcomeRecord[]> {
    return this.outcomes.unannounced(finishedBefore);
  }

  /** One history record, if it was written. */
  getOutcome(serviceKey: string, remediationId: string): Promise<OutcomeRecord | undefined> {
    return this.outcomes.getOutcome(serviceKey, remediationId);
  }

  /** A service's finished remediations, newest first (by `finishedAt`). */
  history(serviceKey: string, limit = 20): Promise<OutcomeRecord[]> {
    return this.outcomes.history(serviceKey, limit);
  }

  // ---------------------------------------------------------------- notify digests

  /** Record notify decisions into the digest of their service (or the account's). Safe to run concurrently. */
  recordNotices(notices: readonly Notice[]): Promise<void> {
    return this.digests.record(notices);
  }

  /** Every digest with notices not yet sent, oldest first. */
  pendingDigests(): Promise<Digest[]> {
    return this.digests.pending();
  }

  /** A digest was sent: take what it held out of the ledger (notices recorded meanwhile stay). */
  clearDigest(sent: Digest): Promise<void> {
    return this.digests.clear(sent);
  }

  /** Digests were sent: take what they held out at once (a part they share costs one write, not one each). */
  clearDigests(sent: readonly Digest[]): Promise<void> {
    return this.digests.clearAll(sent);
  }
}
