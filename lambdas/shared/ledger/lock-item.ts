import type { RemediationRequest } from '../contracts';
import { coverage, entriesOf, foldWithin, parseRequest } from './requests';
import type { Key } from './table';

/**
 * The LOCK item (`SERVICE#<cluster>/<service>` / `LOCK`) as stored, and pure readings of it.
 */

export type LockStatus = 'STARTING' | 'STARTED' | 'RUNNING';

const LOCK_STATUSES: readonly string[] = ['STARTING', 'STARTED', 'RUNNING'];

/** Largest LOCK item (request, merged and queued requests). DynamoDB caps an item at 400 KB. */
export const MAX_LOCK_BYTES = 350 * 1024;

/** What the LOCK item holds, as the document client reads it. */
export interface LockItem {
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
  /** Before the contribution items: when a request was last merged into this one. */
  readonly mergedAt?: string;
  /**
   * Set by a release of a run that never sealed: merges stop (they queue instead) before the
   * release reads them, so none is written after it read and lost.
   */
  readonly closing?: boolean;
  /** Ids of QUEUE items this run already carries (taken by the release or takeUrgent that wrote it), deleted after. */
  readonly took?: string[];
}

export const newLockItem = (
  key: Key,
  request: RemediationRequest,
  status: LockStatus,
  version: number,
  now: Date,
): LockItem => ({
  ...key,
  executionName: request.executionName,
  remediationId: request.remediationId,
  status,
  request: JSON.stringify(request),
  claimedAt: now.toISOString(),
  version,
});

/** The bytes of requests a LOCK item holds. */
export const lockBytes = (lock: LockItem): number =>
  [lock.request, lock.merged ?? '', ...(lock.queued ?? [])].reduce((n, json) => n + json.length, 0) +
  (lock.entryBytes ?? 0);

/**
 * The request as gathered so far: the run's own, with the merge entries (of a lock written before
 * the contribution items) and `merges` (the run's MERGE items, oldest first) folded in.
 */
export const gathered = (lock: LockItem, merges: readonly RemediationRequest[] = []): RemediationRequest => {
  const current = parseRequest(lock.request);
  const { folded } = foldWithin(current, [...entriesOf(lock.merges), ...merges]);
  return { ...folded, executionName: current.executionName };
};

/** The (digest, CVE) pairs the run's own request carries (and, for an older lock, its merged copy). */
export const ownCoverage = (lock: LockItem): Set<string> =>
  new Set(
    [lock.request, ...(lock.merged ? [lock.merged] : [])].flatMap((json) => coverage(parseRequest(json))),
  );

/** True when the lock's request, or one merged or queued behind it, already carries every finding of `request`. */
export const carries = (lock: LockItem, request: RemediationRequest): boolean => {
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
    ].flatMap((json) => coverage(parseRequest(json))),
  );
  return coverage(request).every((c) => carried.has(c));
};

// ---------------------------------------------------------------- poisoned locks

/**
 * What is wrong with a LOCK item as read, if anything: `entry` names one bad entry of the merges or
 * queue map (removing it heals the lock); without it, the lock itself is unusable.
 */
export interface LockProblem {
  readonly reason: string;
  readonly entry?: { readonly map: 'merges' | 'queue'; readonly name: string; readonly raw: unknown };
  /** The item read is a contribution (MERGE#/QUEUE#), with this unreadable request: removing it heals the lock. */
  readonly item?: { readonly raw: unknown };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** Why a stored request is not one, if it is not: the fields the lock's logic reads. */
export const requestProblem = (json: unknown): string | undefined => {
  if (typeof json !== 'string') return `is a ${json === null ? 'null' : typeof json}, not JSON text`;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    return `is not JSON (${(error as Error).message})`;
  }
  if (!isObject(value)) return 'is not a JSON object';
  for (const field of ['executionName', 'remediationId', 'requestedAt'] as const) {
    if (!isString(value[field])) return `has no ${field}`;
  }
  if (!isObject(value.service) || !isString(value.service.key)) return 'has no service.key';
  if (!isObject(value.decision) || !isString(value.decision.action)) return 'has no decision.action';
  if (!isObject(value.target)) return 'has no target';
  if (!Array.isArray(value.images)) return 'has no images';
  const bad = value.images.findIndex(
    (i) =>
      !isObject(i) || !isString(i.imageDigest) || !Array.isArray(i.cves) || !i.cves.every((c) => isString(c)),
  );
  if (bad >= 0) return `has an unreadable images[${bad}]`;
  return undefined;
};

/** Why a LOCK item cannot be worked with, if it cannot (see LockProblem). */
export const lockProblem = (item: Record<string, unknown>): LockProblem | undefined => {
  if (!isString(item.executionName)) return { reason: 'the lock has no executionName' };
  if (typeof item.status !== 'string' || !LOCK_STATUSES.includes(item.status))
    return { reason: `the lock's status ${JSON.stringify(item.status)} is not a lock status` };
  if (typeof item.version !== 'number') return { reason: 'the lock has no numeric version' };
  const own = requestProblem(item.request);
  if (own) return { reason: `the lock's request ${own}` };
  if (item.merged !== undefined) {
    const merged = requestProblem(item.merged);
    if (merged) return { reason: `the lock's merged request ${merged}` };
  }
  if (item.queued !== undefined) {
    if (!Array.isArray(item.queued)) return { reason: "the lock's queued list is not a list" };
    const bad = item.queued.findIndex((json) => requestProblem(json) !== undefined);
    if (bad >= 0) return { reason: `the lock's queued[${bad}] ${requestProblem(item.queued[bad])}` };
  }
  for (const map of ['merges', 'queue'] as const) {
    const entries = item[map];
    if (entries === undefined) continue;
    if (!isObject(entries)) return { reason: `the lock's ${map} is not a map` };
    for (const [name, raw] of Object.entries(entries)) {
      const problem = requestProblem(raw);
      if (problem) return { reason: `the lock's ${map} entry ${name} ${problem}`, entry: { map, name, raw } };
    }
  }
  return undefined;
};
