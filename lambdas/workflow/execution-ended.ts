import { ExecutionAlreadyExists, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import * as z from 'zod';
import type { RemediationRequest } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { ABANDONING_STATUSES } from '../shared/workflow-constants';
import { awsCall } from './aws';

/**
 * Step Functions Execution Status Change (source aws.states) for an execution that ended without
 * going through its own finish state: stopped by hand (ABORTED), timed out, or failed in a way no
 * Catch can catch (States.Runtime). Without this, its service lock would stay held and every later
 * finding for the service would queue behind it for good.
 */
export const executionEndedEventSchema = z.object({
  source: z.literal('aws.states'),
  'detail-type': z.literal('Step Functions Execution Status Change'),
  detail: z.object({
    executionArn: z.string(),
    stateMachineArn: z.string(),
    name: z.string(),
    status: z.string(),
    input: z.string().nullable().optional(),
  }),
});
export type ExecutionEndedEvent = z.infer<typeof executionEndedEventSchema>;

/** Statuses whose execution may have skipped its finish state (defined without runtime dependencies, for lib/). */
export { ABANDONING_STATUSES };

export interface ExecutionEndedDeps {
  readonly ledger: Pick<Ledger, 'release' | 'markStarted'>;
  readonly sfn: Pick<SFNClient, 'send'>;
}

export type ReleaseResult =
  | { readonly action: 'released'; readonly serviceKey: string; readonly next?: string }
  | { readonly action: 'skipped'; readonly reason: string };

const serviceKeyOf = (input: string | null | undefined): string | undefined => {
  if (!input) return undefined;
  try {
    const key = (JSON.parse(input) as Partial<RemediationRequest>).service?.key;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Release the lock the ended execution may still hold and start the remediation queued behind it.
 * Safe for executions that did release it: release() is a no-op for a lock held by someone else, and
 * returns the same queued request until it is started, which StartExecution's deterministic name
 * makes idempotent.
 */
export const releaseAbandonedLock = async (
  event: ExecutionEndedEvent,
  deps: ExecutionEndedDeps,
): Promise<ReleaseResult> => {
  const { detail } = event;
  if (!(ABANDONING_STATUSES as readonly string[]).includes(detail.status)) {
    return { action: 'skipped', reason: `status ${detail.status}` };
  }
  const serviceKey = serviceKeyOf(detail.input);
  if (!serviceKey) return { action: 'skipped', reason: 'the event carries no readable execution input' };
  const { next } = await deps.ledger.release(serviceKey, detail.name);
  if (!next) return { action: 'released', serviceKey };
  let executionArn = `${detail.stateMachineArn.replace(':stateMachine:', ':execution:')}:${next.executionName}`;
  try {
    const out = await awsCall('sfn StartExecution', () =>
      deps.sfn.send(
        new StartExecutionCommand({
          stateMachineArn: detail.stateMachineArn,
          name: next.executionName,
          input: JSON.stringify(next),
        }),
      ),
    );
    executionArn = out.executionArn ?? executionArn;
  } catch (error) {
    if (!(error instanceof ExecutionAlreadyExists)) throw error;
  }
  await deps.ledger.markStarted(next.service.key, next.executionName, executionArn);
  return { action: 'released', serviceKey, next: next.executionName };
};
