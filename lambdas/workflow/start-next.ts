import { ExecutionAlreadyExists, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { RemediationRequest } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { awsCall } from './aws';

/**
 * Start the remediation a release handed over, and confirm it in the ledger (STARTING → STARTED).
 * Idempotent: the deterministic name makes a repeated start ExecutionAlreadyExists, taken as started.
 * Shared by the finish step and the reconciler.
 */
export const startNext = async (
  next: RemediationRequest,
  stateMachineArn: string,
  deps: { readonly sfn: Pick<SFNClient, 'send'>; readonly ledger: Pick<Ledger, 'markStarted'> },
): Promise<string> => {
  let executionArn: string;
  try {
    const out = await awsCall('sfn StartExecution', () =>
      deps.sfn.send(
        new StartExecutionCommand({
          stateMachineArn,
          name: next.executionName,
          input: JSON.stringify(next),
        }),
      ),
    );
    executionArn = out.executionArn ?? '';
  } catch (error) {
    // A retry of this Lambda after a successful start: the deterministic name makes it idempotent.
    if (!(error instanceof ExecutionAlreadyExists)) throw error;
    executionArn = '';
  }
  executionArn ||= `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${next.executionName}`;
  await deps.ledger.markStarted(next.service.key, next.executionName, executionArn);
  return executionArn;
};
