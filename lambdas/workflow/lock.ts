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

export interface TakeFindingsInput {
  readonly step: 'take-findings';
  readonly serviceKey: string;
  readonly executionName: string;
  /** The execution's state so far: returned with the images and counts replaced by the gathered ones. */
  readonly state: RemediationRequest & Record<string, unknown>;
}

/**
 * "Take the findings gathered meanwhile": seal the lock, so that later findings queue for the next
 * run, and continue with every finding merged into this remediation since it started. Returns the
 * whole execution state (the definition's OutputPath takes it as is).
 */
export const takeGatheredFindings = async (
  ledger: Pick<Ledger, 'seal'>,
  input: TakeFindingsInput,
): Promise<RemediationRequest & Record<string, unknown>> => {
  const gathered = await ledger.seal(input.serviceKey, input.executionName);
  return {
    ...input.state,
    images: gathered.images,
    findingsCount: gathered.findingsCount,
    requestedAt: gathered.requestedAt,
  };
};
