import { SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { Ledger } from './ledger';

/**
 * The wait "Wait for the maintenance window" (a task token, purpose `window`) is answered by whoever
 * knows it may end: the run itself when the window has already started, the sweep once it starts,
 * and triage when an urgent finding (known exploited, CRITICAL, or due within 48 hours) queues behind
 * the run.
 */
export interface WindowAnswer {
  /** true: an urgent finding pre-empted the wait. */
  readonly preempted: boolean;
  readonly reason: string;
}

/** What answering a wait needs: the stored token, and Step Functions to answer it. */
export interface WaitAnswerDeps {
  readonly ledger: Pick<Ledger, 'getTaskToken'> & Partial<Pick<Ledger, 'deleteTaskToken'>>;
  readonly sfn: Pick<SFNClient, 'send'>;
}

/** Errors that mean the wait was answered already, or the execution is gone. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/**
 * Answer an execution's window wait, if it has one. True when this call ended the wait; false when
 * there is none, or it was answered already (a used token only answers TaskDoesNotExist).
 */
export const answerWindow = (
  deps: WaitAnswerDeps,
  executionName: string,
  answer: WindowAnswer,
): Promise<boolean> => answerWait(deps, executionName, 'window', answer);

/**
 * Pre-emption of an approval wait: an urgent finding does not wait for an approval another
 * remediation needs. The run ends Superseded, releases the lock and is queued again behind the
 * urgent one (finish.ts). True when this call ended the wait.
 */
export const preemptApproval = (
  deps: WaitAnswerDeps,
  executionName: string,
  reason: string,
): Promise<boolean> =>
  answerWait(deps, executionName, 'approval', { approved: false, preempted: true, reason });

const answerWait = async (
  deps: WaitAnswerDeps,
  executionName: string,
  purpose: 'window' | 'approval' | 'slot',
  answer: object,
): Promise<boolean> => {
  const token = await deps.ledger.getTaskToken(executionName, purpose);
  if (!token) return false;
  let ended: boolean;
  try {
    await deps.sfn.send(
      new SendTaskSuccessCommand({ taskToken: token.token, output: JSON.stringify(answer) }),
    );
    ended = true;
  } catch (error) {
    if (!(error instanceof Error && GONE.has(error.name))) throw error;
    ended = false;
  }
  // A token is answered once: forget it, so the sweep does not ask again every minute (best effort:
  // a token left behind only costs that call, and expires with its item).
  await deps.ledger.deleteTaskToken?.(executionName, purpose).catch(() => undefined);
  return ended;
};

/**
 * "Wait for a deployment slot" (purpose `slot`) ends when the run may take a slot: the sweep answers
 * it once the pause switch is off and the fleet has room for it (lambdas/workflow/deploy-slot.ts),
 * and the run itself when room appeared while it registered its wait. True when this call ended it.
 */
export const answerSlotWait = (
  deps: WaitAnswerDeps,
  executionName: string,
  reason: string,
): Promise<boolean> => answerWait(deps, executionName, 'slot', { reason });
