import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { Ledger } from '../shared/ledger';
import { ApprovalNotPendingError, WORKFLOW_ERRORS } from './errors';

export interface ResolveApprovalInput {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ledger: Pick<Ledger, 'getTaskToken' | 'deleteTaskToken'>;
  readonly executionName: string;
  readonly approve: boolean;
  readonly reason?: string;
  /** Who answered, for the record (the CLI passes the caller's identity). */
  readonly by?: string;
}

export interface ResolveApprovalResult {
  readonly executionName: string;
  readonly serviceKey: string;
  readonly decision: 'approved' | 'rejected';
}

/** Errors that mean the execution no longer waits for this answer. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/**
 * Answer a pending approval (called by `npm run approve`). Approve resumes the execution with
 * { approved, by, reason }; reject fails the waiting task with Autopatch.Rejected, which the workflow
 * turns into outcome Rejected. The token is deleted either way, so a second answer says so instead of
 * failing obscurely.
 */
export const resolveApproval = async (input: ResolveApprovalInput): Promise<ResolveApprovalResult> => {
  const stored = await input.ledger.getTaskToken(input.executionName, 'approval');
  if (!stored) {
    throw new ApprovalNotPendingError(
      `No approval is pending for ${input.executionName}: it was already answered, it expired, or the name is wrong.`,
    );
  }
  const reason = input.reason?.trim() || undefined;
  try {
    if (input.approve) {
      await input.sfn.send(
        new SendTaskSuccessCommand({
          taskToken: stored.token,
          output: JSON.stringify({
            approved: true,
            ...(input.by ? { by: input.by } : {}),
            ...(reason ? { reason } : {}),
          }),
        }),
      );
    } else {
      await input.sfn.send(
        new SendTaskFailureCommand({
          taskToken: stored.token,
          error: WORKFLOW_ERRORS.rejected,
          // SendTaskFailure's cause is at most 32768 characters.
          cause: `Rejected${input.by ? ` by ${input.by}` : ''}: ${reason ?? 'no reason given'}`.slice(
            0,
            32_768,
          ),
        }),
      );
    }
  } catch (error) {
    if (error instanceof Error && GONE.has(error.name)) {
      await input.ledger.deleteTaskToken(input.executionName, 'approval');
      throw new ApprovalNotPendingError(
        `${input.executionName} no longer waits for approval (${error.name}): it expired or was stopped.`,
        { cause: error },
      );
    }
    throw error;
  }
  await input.ledger.deleteTaskToken(input.executionName, 'approval');
  return {
    executionName: input.executionName,
    serviceKey: stored.serviceKey,
    decision: input.approve ? 'approved' : 'rejected',
  };
};
