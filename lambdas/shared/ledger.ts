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
  /** The caller owns the service now: StartExecution with the request's name, then markStarted. */
  | { readonly kind: 'claimed' }
  /** An earlier claim never confirmed its start: StartExecution with this (stored) request, then markStarted. */
  | { readonly kind: 'resume'; readonly request: RemediationRequest }
  /** A remediation is in flight (`inFlight` is its execution name); the request waits for it, or it already covers it. */
  | { readonly kind: 'queued'; readonly inFlight: string }
  /** The remediation in flight (`inFlight`) has not sealed its findings yet: the request was folded into it. */
  | { readonly kind: 'merged'; readonly inFlight: string };

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
}

const DAY_SECONDS = 86_400;
const SEEN_TTL_DAYS = 90;
const TOKEN_TTL_DAYS = 30;
const BATCH_GET_MAX = 100;
const BATCH_WRITE_MAX = 25;
const BATCH_CONCURRENCY = 4;
/** Optimistic-concurrency rounds before a lock transition gives up (each round is one read + one write). */
const CONTENTION_ATTEMPTS = 10;
const HISTORY_PREFIX = 'REMEDIATION#';
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
  /** Queued RemediationRequests as JSON, oldest first. */
  readonly queued?: string[];
  /** Execution names of the queued requests: the dedup key for a request queued twice. */
  readonly queuedNames?: Set<string>;
  /** The execution whose release created this claim: a repeated release returns the same next request. */
  readonly releasedBy?: string;
  /** Set when the execution took its findings (seal): later requests queue instead of merging. */
  readonly sealed?: boolean;
  /** When a request was last merged into this one (the gathering waits until the burst is quiet). */
  readonly mergedAt?: string;
  /** The requests merged into `request`, folded into one, as JSON: what runs next if this one ends before sealing. */
  readonly merged?: string;
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
  [lock.request, lock.merged ?? '', ...(lock.queued ?? [])].reduce((n, json) => n + json.length, 0);

/** (digest, CVE) pairs a request carries: two requests with the same pairs remediate the same thing. */
const coverage = (request: RemediationRequest): string[] => coveredFindings(request.images);

export class Ledger {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;
  private readonly retry: { attempts: number; baseDelayMs: number; maxDelayMs: number };

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
  async claim(request: RemediationRequest): Promise<ClaimResult> {
    const key = LEDGER.serviceKey(request.service.key);
    for (let attempt = 0; attempt < CONTENTION_ATTEMPTS; attempt++) {
      // Read first: in a burst the lock usually exists, and the read is what every path below needs
      // (two calls per busy service instead of a failed write, a read and a write).
      const lock = await this.readLock(key, 'claim');
      if (!lock) {
        const claimed = await this.conditional('claim', () =>
          this.doc.send(
            new PutCommand({
              TableName: this.tableName,
              Item: this.newLock(key, request, 'STARTING', 0),
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          ),
        );
        if (claimed) return { kind: 'claimed' };
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
      // A merge adds the request twice (into `request`, and into `merged` in case the run ends unsealed).
      if (!lock.sealed && lock.request.length + adding <= MAX_REQUEST_BYTES && 2 * adding <= room) {
        if (await this.merge(key, lock, request)) return { kind: 'merged', inFlight: lock.executionName };
        continue;
      }
      if (adding > room) {
        // The batch items are retried (and dead-lettered, alarmed, after the queue's receive limit).
        throw new TransientError(
          `the lock of ${request.service.key} holds ${lockBytes(lock)} bytes of requests already; ` +
            `this one (${adding} bytes) is retried once the remediation in flight has released it`,
        );
      }
      if (await this.enqueue(key, lock, request, 'claim'))
        return { kind: 'queued', inFlight: lock.executionName };
    }
    throw this.contention('claim', request.service.key);
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
    for (let attempt = 0; attempt < CONTENTION_ATTEMPTS; attempt++) {
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
      if (this.carries(lock, request) || (await this.enqueue(key, lock, request, 'acquire')))
        return 'superseded';
    }
    throw this.contention('acquire', serviceKey);
  }

  /** The remediation in flight for a service, if any. */
  async getInFlight(serviceKey: string): Promise<InFlight | undefined> {
    const lock = await this.readLock(LEDGER.serviceKey(serviceKey), 'getInFlight');
    if (!lock) return undefined;
    return {
      executionName: lock.executionName,
      status: lock.status,
      request: this.parse(lock.request),
      claimedAt: lock.claimedAt,
      ...(lock.executionArn ? { executionArn: lock.executionArn } : {}),
      ...(lock.lockedAt ? { lockedAt: lock.lockedAt } : {}),
      queued: lock.queued?.length ?? 0,
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
      out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          // Once sealed, what was merged is this run's to do: the copies kept for an unsealed end go.
          UpdateExpression: 'SET #sealed = :true, #version = #version + :inc REMOVE #merged',
          ConditionExpression: quiet
            ? '#name = :name AND (attribute_not_exists(#mergedAt) OR #mergedAt <= :since OR attribute_exists(#sealed))'
            : '#name = :name',
          ExpressionAttributeNames: {
            '#sealed': 'sealed',
            '#merged': 'merged',
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
        request: this.parse(lock.request),
        ...(lock.mergedAt ? { mergedAt: lock.mergedAt } : {}),
      };
    }
    const lock = out.Attributes as LockItem | undefined;
    if (!lock) throw new LockNotHeldError(notHeld);
    return { sealed: true, request: this.parse(lock.request) };
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
    for (let attempt = 0; attempt < CONTENTION_ATTEMPTS; attempt++) {
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
      const queued = [...(lock.sealed || !lock.merged ? [] : [lock.merged]), ...(lock.queued ?? [])].map(
        (json) => this.parse(json),
      );
      const [first, ...more] = queued;
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
      let merged = first;
      let taken = 1;
      for (const request of more) {
        const candidate = mergeRequests(merged, request);
        if (JSON.stringify(candidate).length > MAX_REQUEST_BYTES) break;
        merged = candidate;
        taken++;
      }
      const left = queued.slice(taken);
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
              ...(left.length > 0
                ? {
                    queued: left.map((r) => JSON.stringify(r)),
                    queuedNames: new Set(left.map((r) => r.executionName)),
                  }
                : {}),
            },
            ...guard,
          }),
        ),
      );
      if (replaced) return { next };
    }
    throw this.contention('release', serviceKey);
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
          },
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
        const { pk: _pk, sk: _sk, recordedAt: _recordedAt, ...record } = item;
        records.push(record as OutcomeRecord);
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
    };
  }

  /**
   * Fold a request into the unsealed in-flight one, as read. False when the lock changed or was
   * sealed since (re-read and retry).
   */
  private async merge(key: Key, lock: LockItem, request: RemediationRequest): Promise<boolean> {
    const current = this.parse(lock.request);
    const foldedMerges = lock.merged ? mergeRequests(this.parse(lock.merged), request) : request;
    const merged: RemediationRequest = {
      ...mergeRequests(current, request),
      executionName: current.executionName,
    };
    return this.conditional('merge', () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression:
            'SET #request = :request, #mergedAt = :now, #merged = :merged, #version = #version + :inc',
          ConditionExpression: '#name = :holder AND #version = :version AND attribute_not_exists(#sealed)',
          ExpressionAttributeNames: {
            '#request': 'request',
            '#mergedAt': 'mergedAt',
            '#merged': 'merged',
            '#version': 'version',
            '#name': 'executionName',
            '#sealed': 'sealed',
          },
          ExpressionAttributeValues: {
            ':request': JSON.stringify(merged),
            ':now': this.now().toISOString(),
            ':merged': JSON.stringify(foldedMerges),
            ':inc': 1,
            ':holder': lock.executionName,
            ':version': lock.version,
          },
        }),
      ),
    );
  }

  /**
   * Queue a request behind the lock as read. False when the lock changed since (re-read and retry);
   * true when queued, or when there was nothing to queue (the same request, or its findings already
   * in flight or queued).
   */
  /** True when the lock's request, or one queued behind it, already carries every finding of `request`. */
  private carries(lock: LockItem, request: RemediationRequest): boolean {
    if (lock.executionName === request.executionName || lock.queuedNames?.has(request.executionName))
      return true;
    const carried = new Set(
      [lock.request, ...(lock.queued ?? [])].flatMap((json) => coverage(this.parse(json))),
    );
    return coverage(request).every((c) => carried.has(c));
  }

  /**
   * Queue a request behind the lock as read (the caller checked that the lock does not carry it
   * already). False when the lock changed since (re-read and retry). The queue is kept compact: a request joins the last queued one while that
   * stays within MAX_REQUEST_BYTES (the release folds them into one run anyway).
   */
  private async enqueue(key: Key, lock: LockItem, request: RemediationRequest, op: string): Promise<boolean> {
    const queued = lock.queued ?? [];
    const lastIndex = queued.length - 1;
    const last = lastIndex >= 0 ? this.parse(queued[lastIndex] as string) : undefined;
    const joined = last ? JSON.stringify(mergeRequests(last, request)) : undefined;
    const compact = joined !== undefined && joined.length <= MAX_REQUEST_BYTES;
    return this.conditional(op, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: compact
            ? `SET #queued[${lastIndex}] = :joined, #version = #version + :inc ADD #names :name`
            : 'SET #queued = list_append(if_not_exists(#queued, :empty), :one), #version = #version + :inc ADD #names :name',
          ConditionExpression: '#name = :holder AND #version = :version',
          ExpressionAttributeNames: {
            '#queued': 'queued',
            '#version': 'version',
            '#names': 'queuedNames',
            '#name': 'executionName',
          },
          ExpressionAttributeValues: {
            ...(compact ? { ':joined': joined } : { ':empty': [], ':one': [JSON.stringify(request)] }),
            ':inc': 1,
            ':name': new Set([request.executionName]),
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

  private contention(op: string, serviceKey: string): TransientError {
    return new TransientError(
      `ledger ${op} for ${serviceKey}: the lock changed under ${CONTENTION_ATTEMPTS} attempts in a row; retry`,
    );
  }
}
