import type { RemediationRequest } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';

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
  ledger: Pick<Ledger, 'seal'>,
  input: TakeFindingsInput<S>,
  now: Date = new Date(),
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
  return {
    ...input.state,
    images: request.images,
    findingsCount: request.findingsCount,
    requestedAt: request.requestedAt,
    // A merged finding may need approval, or may not wait for the maintenance window.
    decision: request.decision,
    gathering: !sealed,
    ...(sealed ? {} : { gatherWaitSeconds: Math.max(1, waitSeconds) }),
  };
};
