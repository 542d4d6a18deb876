import { coveredFindings, type RemediationRequest } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { urgentFindingText } from '../shared/urgency';
import { type Resolution, resolveFollowUp } from './follow-up';

export interface AcquireLockInput {
  readonly serviceKey: string;
  readonly executionName: string;
  /** The execution's input: lets a re-run from the console take an idle lock or queue behind the one in flight. */
  readonly request?: RemediationRequest;
}

export interface AcquireLockOutput {
  readonly status: 'acquired' | 'superseded';
  /** A sentence for the console and the outcome. */
  readonly reason: string;
}

/** "Acquire the service lock". */
export const acquireLock = async (
  ledger: Pick<Ledger, 'acquire' | 'getInFlight'>,
  input: AcquireLockInput,
): Promise<AcquireLockOutput> => {
  const status = await ledger.acquire(input.serviceKey, input.executionName, input.request);
  if (status === 'acquired') {
    return { status, reason: `${input.executionName} holds the lock of ${input.serviceKey}.` };
  }
  const holder = (await ledger.getInFlight(input.serviceKey))?.executionName;
  return {
    status,
    reason: holder
      ? `Remediation ${holder} is in flight for ${input.serviceKey}: this request's findings were queued behind it and are remediated when it finishes.`
      : `Another remediation held the lock of ${input.serviceKey}: this request's findings were queued behind it.`,
  };
};

export interface TakeFindingsInput<S extends RemediationRequest = RemediationRequest> {
  readonly step: 'take-findings';
  readonly serviceKey: string;
  readonly executionName: string;
  /** The execution's start ($$.Execution.StartTime): the gathering ends gatherMaxSeconds after it. */
  readonly startedAt: string;
  /** The execution's state so far: returned with the images and counts replaced by the gathered ones. */
  readonly state: S;
}

export type GatheredState<S extends RemediationRequest = RemediationRequest> = S & {
  /** Set when the sealed request was re-resolved against what the service runs now (see follow-up.ts). */
  readonly resolution?: ResolutionSummary;
  /** true: findings were still arriving, the lock stays open: wait gatherWaitSeconds and take again. */
  readonly gathering: boolean;
  /** With gathering: seconds until the burst has been quiet for target.gatherSeconds. */
  readonly gatherWaitSeconds?: number;
};

/**
 * "Take the findings gathered meanwhile": continue with every finding merged into this remediation
 * since it started, and seal the lock so that later findings queue for the next run. The gathering
 * is a debounce: while a finding was merged within the last target.gatherSeconds, and another quiet
 * period would still end within target.gatherMaxSeconds of the execution's start, it leaves the lock
 * open and says how long to wait. Returns the whole execution state (the definition's OutputPath
 * takes it as is).
 */
export const takeGatheredFindings = async <S extends RemediationRequest>(
  ledger: Pick<Ledger, 'seal'> & Partial<Pick<Ledger, 'history'>>,
  input: TakeFindingsInput<S>,
  now: Date = new Date(),
  options: {
    /** Container name → the digest it runs now (DescribeServices + DescribeTaskDefinition). */
    readonly running?: (service: RemediationRequest['service']) => Promise<ReadonlyMap<string, string>>;
  } = {},
): Promise<GatheredState<S>> => {
  const { gatherSeconds = 0, gatherMaxSeconds = 0 } = input.state.target;
  const started = Date.parse(input.startedAt);
  const deadline =
    (Number.isNaN(started) ? now.getTime() : started) + Math.max(gatherSeconds, gatherMaxSeconds) * 1000;
  const quietMs = gatherSeconds * 1000;
  const mayWaitLonger = quietMs > 0 && now.getTime() < deadline;
  const quietSince = mayWaitLonger ? new Date(now.getTime() - quietMs) : undefined;
  const { sealed, request, mergedAt } = await ledger.seal(input.serviceKey, input.executionName, quietSince);
  const quietAt = Math.min(Date.parse(mergedAt ?? '') + quietMs, deadline);
  const waitSeconds = Number.isNaN(quietAt) ? gatherSeconds : Math.ceil((quietAt - now.getTime()) / 1000);
  // Sealed: what this run rebuilds is final, so re-resolve it against what the service runs now.
  const resolution =
    sealed && ledger.history
      ? resolveFollowUp(
          request.images,
          await ledger.history(input.serviceKey, HISTORY_LOOKBACK),
          options.running ? await options.running(request.service) : undefined,
        )
      : undefined;
  const changed =
    resolution !== undefined &&
    (resolution.alreadyFixed.length > 0 || resolution.rebased.length > 0 || resolution.dropped.length > 0);
  // With nothing left, the images stay as they were: the definition must end the run on
  // resolution.nothingLeft before building (an empty build list would redeploy the same images).
  const images = changed && !resolution.nothingLeft ? resolution.images : request.images;
  return {
    ...input.state,
    images,
    findingsCount: images === request.images ? request.findingsCount : new Set(coveredFindings(images)).size,
    requestedAt: request.requestedAt,
    // A merged finding may need approval, or may not wait for the maintenance window.
    decision: request.decision,
    gathering: !sealed,
    ...(sealed ? {} : { gatherWaitSeconds: Math.max(1, waitSeconds) }),
    ...(changed ? { resolution: summarizeResolution(resolution) } : {}),
  };
};

/** Previous runs read to re-resolve a follow-up: a service's recent history is short. */
const HISTORY_LOOKBACK = 50;

/** What the take step tells the definition and the console about the re-resolution (bounded). */
export interface ResolutionSummary {
  /** Nothing is left to rebuild: every finding was fixed by a previous run (or no longer runs). */
  readonly nothingLeft: boolean;
  /** A sentence for the console and the outcome. */
  readonly reason: string;
  readonly alreadyFixed: number;
  readonly rebased: ReadonlyArray<{ readonly from: string; readonly to: string; readonly by: string }>;
}

const summarizeResolution = (r: Resolution): ResolutionSummary => {
  const by = [...new Set([...r.alreadyFixed, ...r.rebased].map((x) => x.by))].slice(0, 5).join(', ');
  const parts = [
    r.alreadyFixed.length > 0
      ? `${r.alreadyFixed.length} finding(s) already fixed by ${by} (closed, not rebuilt)`
      : '',
    r.rebased.length > 0 ? `${r.rebased.length} image(s) rebuilt from the digest ${by} deployed` : '',
    r.dropped.length > 0
      ? `${r.dropped.length} image(s) no longer run by the service (left to their own findings)`
      : '',
  ].filter(Boolean);
  return {
    nothingLeft: r.nothingLeft,
    reason: `${r.nothingLeft ? 'Nothing left to remediate: ' : ''}${parts.join('; ')}.`,
    alreadyFixed: r.alreadyFixed.length,
    rebased: r.rebased.slice(0, 20),
  };
};

/** What resumes "Wait for the maintenance window" (`$.window`). */
export interface WindowResult {
  /** true: an urgent finding pre-empted the wait; the run takes it and deploys now. */
  readonly preempted: boolean;
  readonly reason: string;
}

export interface WaitForWindowInput {
  readonly step: 'wait-for-window';
  readonly serviceKey: string;
  readonly executionName: string;
  readonly taskToken: string;
  /** ISO-8601: the start of the window (decision.notBefore). */
  readonly notBefore: string;
}

/**
 * "Wait for the maintenance window": stores the wait's task token (purpose `window`) so that triage
 * can pre-empt it when an urgent finding (known exploited, CRITICAL, or due within 48 hours) queues behind this run,
 * and the sweep resumes it once the window has started. Answers at once when the window has already
 * started, or when an urgent request is already queued.
 */
export const waitForWindow = async (
  deps: {
    readonly ledger: Pick<Ledger, 'putTaskToken' | 'getInFlight'> & Partial<Pick<Ledger, 'queuedRequests'>>;
    readonly resume: (token: string, result: WindowResult) => Promise<boolean>;
  },
  input: WaitForWindowInput,
  now: Date = new Date(),
): Promise<{ readonly resumed: boolean; readonly reason: string }> => {
  await deps.ledger.putTaskToken(input.executionName, 'window', input.taskToken, input.serviceKey);
  const startsAt = Date.parse(input.notBefore);
  if (Number.isNaN(startsAt) || startsAt <= now.getTime()) {
    const reason = `The maintenance window started at ${input.notBefore}.`;
    return { resumed: await deps.resume(input.taskToken, { preempted: false, reason }), reason };
  }
  const inFlight = await deps.ledger.getInFlight(input.serviceKey);
  if (inFlight?.executionName === input.executionName && inFlight.queuedUrgent) {
    const queued = (await deps.ledger.queuedRequests?.(input.serviceKey)) ?? [];
    const reason = `${urgentFindingText(queued, now)} is queued behind this remediation: it deploys now.`;
    return { resumed: await deps.resume(input.taskToken, { preempted: true, reason }), reason };
  }
  return { resumed: false, reason: `Waiting for the maintenance window at ${input.notBefore}.` };
};

export interface TakeUrgentInput<S extends RemediationRequest = RemediationRequest> {
  readonly step: 'take-urgent';
  readonly serviceKey: string;
  readonly executionName: string;
  readonly state: S;
}

/**
 * "Take the urgent findings": the pre-empted run folds the urgent requests queued behind it (and the
 * queued ones that need no approval) into its own, and goes on at once. Returns the whole state.
 */
export const takeUrgentFindings = async <S extends RemediationRequest>(
  ledger: Pick<Ledger, 'takeUrgent'>,
  input: TakeUrgentInput<S>,
  now: Date = new Date(),
): Promise<S & { readonly preemption: { readonly took: number; readonly reason: string } }> => {
  const taken = await ledger.takeUrgent(input.serviceKey, input.executionName);
  if (!taken) {
    return {
      ...input.state,
      preemption: { took: 0, reason: 'Nothing urgent was queued any more: the run goes on as it was.' },
    };
  }
  const { request } = taken;
  return {
    ...input.state,
    images: request.images,
    findingsCount: request.findingsCount,
    requestedAt: request.requestedAt,
    decision: request.decision,
    preemption: {
      took: taken.took,
      reason: `Pre-empted its maintenance window for ${taken.took} queued request(s) with ${urgentFindingText([request], now).replace(/^An/, 'an')}: deploying now.`,
    },
  };
};
