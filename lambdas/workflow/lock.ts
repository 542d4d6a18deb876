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
