import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { Ledger } from '../shared/ledger';
import { rejectionCause } from './approver';
import { ApprovalNotPendingError, WORKFLOW_ERRORS } from './errors';

export interface ResolveApprovalInput {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ledger: Pick<Ledger, 'getTaskToken' | 'deleteTaskToken'>;
  readonly executionName: string;
  readonly approve: boolean;
  readonly reason?: string;
  /** Who answered, for the record: the CLI passes the caller's identity ARN (sts:GetCallerIdentity). */
  readonly by?: string;
  /** A name the approver gave, recorded next to `by`. */
  readonly name?: string;
}

export interface ResolveApprovalResult {
  readonly executionName: string;
  readonly serviceKey: string;
  readonly decision: 'approved' | 'rejected';
}

/** An execution as an approver names it: by name, or by ARN (which also says where it runs). */
export interface ExecutionRef {
  readonly name: string;
  readonly arn?: string;
  readonly region?: string;
}

/** Step Functions execution names: 1 to 80 characters, no whitespace, no wildcard or delimiter characters. */
const EXECUTION_NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/]{1,80}$/;
const EXECUTION_ARN = /^arn:[\w-]+:states:([a-z0-9-]+):\d{12}:execution:[^:]+:([^:]+)$/;

/**
 * Read an execution name or ARN (`arn:aws:states:<region>:<account>:execution:<state machine>:<name>`).
 * The ledger keys approvals by name; the ARN's Region tells the CLI where to look. Undefined when it
 * is neither. Pure.
 */
export const parseExecutionRef = (ref: string): ExecutionRef | undefined => {
  const trimmed = ref.trim();
  const arn = EXECUTION_ARN.exec(trimmed);
  if (arn) {
    const [, region = '', name = ''] = arn;
    return EXECUTION_NAME.test(name) ? { name, arn: trimmed, region } : undefined;
  }
  if (trimmed.startsWith('arn:')) return undefined;
  return EXECUTION_NAME.test(trimmed) ? { name: trimmed } : undefined;
};

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
            ...(input.name ? { name: input.name } : {}),
            ...(reason ? { reason } : {}),
          }),
        }),
      );
    } else {
      await input.sfn.send(
        new SendTaskFailureCommand({
          taskToken: stored.token,
          error: WORKFLOW_ERRORS.rejected,
          // SendTaskFailure's cause is at most 32768 characters; the finish step reads `by` back from it.
          cause: rejectionCause(input.by, input.name, reason).slice(0, 32_768),
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
