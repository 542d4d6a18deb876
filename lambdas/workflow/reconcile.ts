import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { OUTCOMES, type Outcome, type RemediationRequest } from '../shared/contracts';
import type { InFlight, Ledger, OutcomeRecord } from '../shared/ledger';
import { remediationId } from '../shared/remediation';
import { urgentFindingText } from '../shared/urgency';
import { answerWindow, preemptApproval, type WindowAnswer } from '../shared/window-wait';
import { awsCall } from './aws';
import type { WatchedRemediation } from './deadlines';
import { startNext } from './start-next';

/**
 * The reconciler: the backstop that keeps "one at a time" from becoming "stuck". Run on a schedule
 * (every few minutes), it compares each service lock in the ledger with the execution it names:
 *
 * - the execution ended (or never existed) but still holds the lock — its finish step could not reach
 *   the ledger, or the execution-ended event was lost: release the lock (conditional on it still
 *   naming that execution), record a `Failed` outcome if the execution recorded none, and start what
 *   was queued behind it;
 * - a STARTING claim older than `startingTimeoutSeconds` with no execution (StartExecution kept
 *   failing, or its caller died): start it now with its stored name and input; if Step Functions
 *   rejects that input for good, release the lock so the requests behind it run, and report it;
 * - a STARTED/STARTING lock whose execution is running: nothing (a STARTING one is marked started).
 *
 * It also lists outcomes recorded but never announced (EventBridge/SNS failed after the record was
 * written), and re-sends them through `announce` when given one.
 *
 * Pure logic with injected clients; idempotent; each lock is handled on its own, so one failure is
 * reported and the others still run.
 */

export interface ReconcileDeps {
  readonly ledger: Pick<
    Ledger,
    | 'locks'
    | 'release'
    | 'markStarted'
    | 'getOutcome'
    | 'recordOutcome'
    | 'unannounced'
    | 'markAnnounced'
    | 'getTaskToken'
  > &
    Partial<Pick<Ledger, 'deleteTaskToken' | 'fleet' | 'queuedRequests'>>;
  readonly sfn: Pick<SFNClient, 'send'>;
  /** The remediation state machine: where STARTING claims are started. */
  readonly stateMachineArn: string;
  /** A STARTING claim younger than this may still be started by its claimer. @default 300 */
  readonly startingTimeoutSeconds?: number;
  /** An outcome recorded longer ago than this and not announced is listed (and re-sent). @default 900 */
  readonly announceGraceSeconds?: number;
  /** Re-send one unannounced outcome (EventBridge + SNS). Without it, they are only listed. */
  readonly announce?: (record: OutcomeRecord) => Promise<void>;
  /**
   * Look at a remediation's deadline (lambdas/workflow/deadlines.ts watchDeadline): the lock's run and,
   * when the ledger can list them (queuedRequests), each request queued behind it. It rides on the same
   * listing. Returns the state it reported for the first time, if any.
   */
  readonly watchDeadline?: (
    remediation: WatchedRemediation,
    now: Date,
  ) => Promise<'approaching' | 'missed' | undefined>;
}

export type LockAction =
  /** The execution ended (or does not exist) and its lock was released. */
  | 'released'
  /** A STARTING claim with no execution was started. */
  | 'started'
  /** A STARTING claim whose execution was already running was marked started. */
  | 'marked-started'
  /** Step Functions rejected the claim's input for good: released, the request is reported, not run. */
  | 'abandoned';

export interface LockOutcome {
  readonly serviceKey: string;
  readonly executionName: string;
  readonly action: LockAction;
  /** The execution's status as Step Functions reported it, or NOT_FOUND. */
  readonly executionStatus?: string;
  /** The remediation started next (queued behind the released lock). */
  readonly next?: string;
  /** The history record written for an execution that ended without one. */
  readonly recordedOutcome?: Outcome;
  /** A sentence for the log. */
  readonly detail: string;
  /** Abandoned only: the request that was not run, so its findings can be re-sent by hand. */
  readonly request?: RemediationRequest;
}

export interface ReconcileSummary {
  /** Locks looked at. */
  readonly checked: number;
  /** Locks whose execution is running (or a STARTING claim still young): left alone. */
  readonly healthy: number;
  readonly actions: readonly LockOutcome[];
  /** Outcomes recorded but not announced (before any re-send). */
  readonly unannounced: readonly OutcomeRecord[];
  /** remediationIds re-sent through `announce` and marked announced. */
  readonly reannounced: readonly string[];
  /** What failed this round (retried by the next one). */
  readonly errors: ReadonlyArray<{ readonly serviceKey?: string; readonly error: string }>;
  /** Executions whose maintenance-window wait this round ended (the window started, or an urgent finding queued). */
  readonly windowsEnded: readonly string[];
  /** Deployment slots given back because their run ended without its finish step (fleet guardrails). */
  readonly slotsReleased?: readonly string[];
  /** With watchDeadline: the deadline states reported this round (each once per execution). */
  readonly deadlines?: ReadonlyArray<{
    readonly executionName: string;
    readonly state: 'approaching' | 'missed';
    /** The request is queued behind the lock's run, not running. */
    readonly queued?: boolean;
  }>;
}

const ENDED = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']);

/**
 * Whether a running lock's window wait may end now, and why (undefined: it may not). `urgent`: what
 * makes the queued request urgent, as urgentFindingText says it.
 */
const windowDue = (lock: InFlight, now: Date, urgent: string): WindowAnswer | undefined => {
  const notBefore = lock.request.decision.notBefore;
  if (lock.status === 'STARTING' || notBefore === undefined) return undefined;
  if (Date.parse(notBefore) <= now.getTime())
    return { preempted: false, reason: `The maintenance window started at ${notBefore}.` };
  if (lock.queuedUrgent)
    return {
      preempted: true,
      reason: `${urgent} is queued behind this remediation: it deploys now.`,
    };
  return undefined;
};
/** StartExecution errors about the request itself: starting it again can never work. */
const REJECTED_INPUT = new Set(['InvalidExecutionInput', 'InvalidName', 'ValidationException']);

const executionArnOf = (stateMachineArn: string, name: string): string =>
  `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;

const describe = async (
  sfn: Pick<SFNClient, 'send'>,
  executionArn: string,
): Promise<DescribeExecutionCommandOutput | undefined> => {
  try {
    return await awsCall('sfn DescribeExecution', () =>
      sfn.send(new DescribeExecutionCommand({ executionArn })),
    );
  } catch (error) {
    if (error instanceof Error && error.name === 'ExecutionDoesNotExist') return undefined;
    throw error;
  }
};

const message = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/** The history record of an execution that ended without writing its own. */
const abandonedRecord = (
  lock: InFlight & { serviceKey: string },
  execution: DescribeExecutionCommandOutput | undefined,
  now: Date,
): OutcomeRecord => {
  const error = execution?.error;
  const outcome: Outcome =
    error && (OUTCOMES as readonly string[]).includes(error) && error !== 'Superseded'
      ? (error as Outcome)
      : 'Failed';
  const status = execution?.status ?? 'NOT_FOUND';
  const why = [error, execution?.cause].filter(Boolean).join(': ').slice(0, 1_500);
  return {
    serviceKey: lock.serviceKey,
    remediationId: remediationId(lock.serviceKey, lock.executionName),
    executionName: lock.executionName,
    outcome,
    reason:
      `The remediation ended ${status} without recording its outcome${why ? ` (${why})` : ''}; ` +
      `the reconciler released the service lock. Check the service runs the revision you expect.`,
    images: lock.request.images.map((i) => ({
      repository: i.repository,
      oldDigest: i.imageDigest,
      cves: [...i.cves],
    })),
    cvesClosed: [],
    startedAt: (execution?.startDate ?? new Date(lock.claimedAt)).toISOString(),
    finishedAt: (execution?.stopDate ?? now).toISOString(),
  };
};

const reconcileLock = async (
  lock: InFlight & { serviceKey: string },
  deps: ReconcileDeps,
  now: Date,
): Promise<LockOutcome | undefined> => {
  const { serviceKey, executionName } = lock;
  const executionArn = lock.executionArn ?? executionArnOf(deps.stateMachineArn, executionName);
  const starting = lock.status === 'STARTING';
  if (starting) {
    const age = now.getTime() - Date.parse(lock.claimedAt);
    if (!(age >= (deps.startingTimeoutSeconds ?? 300) * 1000)) return undefined; // its claimer may still start it
  }
  const execution = await describe(deps.sfn, executionArn);
  const status = execution?.status ?? 'NOT_FOUND';

  if (execution && !ENDED.has(status)) {
    // RUNNING (or PENDING_REDRIVE, about to run again): the lock is right.
    if (!starting) return undefined;
    await deps.ledger.markStarted(serviceKey, executionName, execution.executionArn ?? executionArn);
    return {
      serviceKey,
      executionName,
      action: 'marked-started',
      executionStatus: status,
      detail: `${executionName} is ${status}: its claim is marked started.`,
    };
  }

  if (!execution && starting) {
    // Never started: start it now, exactly as the claimer would have.
    try {
      await startNext(lock.request, deps.stateMachineArn, deps);
      return {
        serviceKey,
        executionName,
        action: 'started',
        executionStatus: status,
        detail: `${executionName} was claimed at ${lock.claimedAt} but never started: started it.`,
      };
    } catch (error) {
      if (!(error instanceof Error && REJECTED_INPUT.has(error.name))) throw error;
      const { next } = await deps.ledger.release(serviceKey, executionName);
      if (next) await startNext(next, deps.stateMachineArn, deps);
      return {
        serviceKey,
        executionName,
        action: 'abandoned',
        executionStatus: status,
        ...(next ? { next: next.executionName } : {}),
        request: lock.request,
        detail:
          `Step Functions rejects ${executionName} (${message(error)}): released its lock so the requests ` +
          `behind it run; its findings (${lock.request.findingsCount}) were not remediated.`,
      };
    }
  }

  // Ended (or gone) while holding the lock: its finish step never released it.
  const id = remediationId(serviceKey, executionName);
  let recordedOutcome: Outcome | undefined;
  if (!(await deps.ledger.getOutcome(serviceKey, id))) {
    const record = abandonedRecord(lock, execution, now);
    await deps.ledger.recordOutcome(record);
    recordedOutcome = record.outcome;
  }
  const { next } = await deps.ledger.release(serviceKey, executionName);
  if (next) await startNext(next, deps.stateMachineArn, deps);
  return {
    serviceKey,
    executionName,
    action: 'released',
    executionStatus: status,
    ...(next ? { next: next.executionName } : {}),
    ...(recordedOutcome ? { recordedOutcome } : {}),
    detail:
      `${executionName} is ${status} but still held the lock of ${serviceKey}: released it` +
      (next ? ` and started ${next.executionName}.` : '.'),
  };
};

/** A slot taken this recently is left alone: its run is about to deploy. */
const SLOT_GRACE_MS = 120_000;

/**
 * The deployment slots of runs that ended without their finish step (stopped by hand, timed out):
 * given back, so a cap never stays full of runs that are gone.
 */
const releaseEndedSlots = async (
  deps: ReconcileDeps,
  now: Date,
  errors: Array<{ serviceKey?: string; error: string }>,
): Promise<string[]> => {
  if (!deps.ledger.fleet) return [];
  const released: string[] = [];
  try {
    const { slots, waiting } = await deps.ledger.fleet.state();
    for (const slot of [...slots, ...waiting]) {
      const since = 'takenAt' in slot ? slot.takenAt : slot.since;
      if (now.getTime() - Date.parse(since) < SLOT_GRACE_MS) continue;
      try {
        const arn = slot.executionArn ?? executionArnOf(deps.stateMachineArn, slot.executionName);
        const execution = await describe(deps.sfn, arn);
        if (execution !== undefined && !ENDED.has(execution.status ?? '')) continue;
        await deps.ledger.fleet.release(slot.executionName);
        released.push(slot.executionName);
      } catch (error) {
        errors.push({
          serviceKey: slot.serviceKey,
          error: `giving back the deployment slot: ${message(error)}`,
        });
      }
    }
  } catch (error) {
    errors.push({ error: `listing the deployment slots: ${message(error)}` });
  }
  return released;
};

/** One reconcile round. `now` is the round's time (the schedule's), used for every age. */
export const reconcile = async (deps: ReconcileDeps, now: Date): Promise<ReconcileSummary> => {
  const actions: LockOutcome[] = [];
  const windowsEnded: string[] = [];
  const deadlines: Array<{ executionName: string; state: 'approaching' | 'missed'; queued?: boolean }> = [];
  const errors: Array<{ serviceKey?: string; error: string }> = [];
  let checked = 0;
  let healthy = 0;
  try {
    for (const lock of await deps.ledger.locks()) {
      checked++;
      // The requests queued behind the run (one read, only when there are some): their deadlines are
      // watched too, and they say what makes a queued finding urgent.
      let queued: RemediationRequest[] = [];
      if (lock.queued > 0 && deps.ledger.queuedRequests) {
        try {
          queued = await deps.ledger.queuedRequests(lock.serviceKey);
        } catch (error) {
          errors.push({ serviceKey: lock.serviceKey, error: `reading the queue: ${message(error)}` });
        }
      }
      const urgent = urgentFindingText(queued, now);
      try {
        // The window waits ride on the same listing: a run whose window has started, or behind which
        // an urgent finding queued (its triage answer lost), goes on within one sweep.
        const due = windowDue(lock, now, urgent);
        if (due && (await answerWindow(deps, lock.executionName, due))) windowsEnded.push(lock.executionName);
        else if (
          lock.queuedUrgent &&
          lock.request.decision.action === 'approve' &&
          (await preemptApproval(
            deps,
            lock.executionName,
            `${urgent} is queued behind this remediation: it runs first.`,
          ))
        )
          windowsEnded.push(lock.executionName);
      } catch (error) {
        errors.push({ serviceKey: lock.serviceKey, error: `ending the window wait: ${message(error)}` });
      }
      if (deps.watchDeadline) {
        // Each once per execution name (a conditional mark), however many sweeps see it.
        const watchedAll: WatchedRemediation[] = [
          lock,
          ...queued.map((request) => ({
            executionName: request.executionName,
            status: 'QUEUED',
            request,
            queuedBehind: lock.executionName,
          })),
        ];
        for (const watched of watchedAll) {
          try {
            const state = await deps.watchDeadline(watched, now);
            if (state)
              deadlines.push({
                executionName: watched.executionName,
                state,
                ...(watched.queuedBehind ? { queued: true } : {}),
              });
          } catch (error) {
            errors.push({
              serviceKey: lock.serviceKey,
              error: `watching the deadline of ${watched.executionName}: ${message(error)}`,
            });
          }
        }
      }
      try {
        const done = await reconcileLock(lock, deps, now);
        if (done) actions.push(done);
        else healthy++;
      } catch (error) {
        errors.push({ serviceKey: lock.serviceKey, error: message(error) });
      }
    }
  } catch (error) {
    errors.push({ error: `listing the locks: ${message(error)}` });
  }

  let unannounced: OutcomeRecord[] = [];
  const reannounced: string[] = [];
  try {
    unannounced = await deps.ledger.unannounced(
      new Date(now.getTime() - (deps.announceGraceSeconds ?? 900) * 1000),
    );
  } catch (error) {
    errors.push({ error: `listing unannounced outcomes: ${message(error)}` });
  }
  if (deps.announce) {
    for (const record of unannounced) {
      try {
        await deps.announce(record);
        await deps.ledger.markAnnounced(record.serviceKey, record.remediationId);
        reannounced.push(record.remediationId);
      } catch (error) {
        errors.push({
          serviceKey: record.serviceKey,
          error: `announcing ${record.executionName}: ${message(error)}`,
        });
      }
    }
  }
  const slotsReleased = await releaseEndedSlots(deps, now, errors);
  return {
    windowsEnded,
    ...(slotsReleased.length > 0 ? { slotsReleased } : {}),
    checked,
    healthy,
    actions,
    unannounced,
    reannounced,
    errors,
    ...(deps.watchDeadline ? { deadlines } : {}),
  };
};
