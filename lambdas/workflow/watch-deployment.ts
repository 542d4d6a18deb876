import { createHash } from 'node:crypto';
import { SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { ServiceRef } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { awsCall } from './aws';
import { type Assessment, assessDeployment, type DeploymentClients, type WatchMode } from './deployment';
import type { WatchResult } from './state';
import type { WatchRecord, WatchRegistry } from './watch-registry';

export interface WatchDeploymentInput {
  readonly taskToken: string;
  readonly executionName: string;
  readonly service: ServiceRef;
  readonly alarmNames: readonly string[];
  /** The revision the watch expects the service to end on: patched (bake) or last good (rollback). */
  readonly taskDefinitionArn: string;
  readonly deploymentTimeoutSeconds: number;
  /** bake (default) or rollback. */
  readonly mode?: WatchMode;
  /** The service deployment to follow (from UpdateService's response, or the rollback's). */
  readonly deploymentArn?: string;
  /** The configured bake (bake mode). */
  readonly bakeTimeMinutes?: number;
}

export interface WatchDeps extends DeploymentClients {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ledger: Pick<Ledger, 'putTaskToken'>;
  readonly registry: Pick<WatchRegistry, 'register' | 'forget'>;
}

/** Errors that mean the execution no longer waits on this token: someone else already resumed it, or it ended. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/**
 * How long the deployment or its alarms may stay unreadable (every look failing, past the SDK's and
 * Lambda's retries) before the watch stops waiting and fails closed: the heartbeat looks every minute,
 * so this is five failed looks in a row.
 */
export const UNREADABLE_LIMIT_MS = 5 * 60_000;

/**
 * Resume the watching execution with the verdict. True if it was resumed by this call; false if the
 * token was already used or the execution is gone (the watch Lambda, an event and the heartbeat can
 * race; the first one wins and the others are no-ops).
 */
export const resumeWatch = async (
  sfn: Pick<SFNClient, 'send'>,
  token: string,
  result: WatchResult,
): Promise<boolean> => {
  try {
    await awsCall('sfn SendTaskSuccess', () =>
      sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(result) })),
    );
    return true;
  } catch (error) {
    if (error instanceof Error && GONE.has(error.name)) return false;
    throw error;
  }
};

/** A wait's identity: a hash of its task token (never the token itself, which grants resuming it). */
export const watchIdOf = (taskToken: string): string =>
  createHash('sha256').update(taskToken).digest('hex').slice(0, 24);

/** Margin on top of the deployment timeout before the watch index expires (TTL deletes lazily anyway). */
const REGISTRY_TTL_MARGIN_SECONDS = 86_400;

/** What a watch record asks the assessment to judge. */
export const subjectOf = (watch: WatchRecord, service: ServiceRef) => ({
  service,
  mode: watch.mode ?? 'bake',
  alarmNames: watch.alarmNames,
  taskDefinitionArn: watch.taskDefinitionArn,
  ...(watch.deploymentArn ? { deploymentArn: watch.deploymentArn } : {}),
  ...(watch.bakeSeconds !== undefined ? { bakeSeconds: watch.bakeSeconds } : {}),
  ...(watch.watchingSince ? { watchingSince: watch.watchingSince } : {}),
});

/**
 * "Watch the deployment through the bake time" / "Wait for the rollback" / "Wait until the last good
 * revision runs": invoked with a task token, returns at once. Stores the token and the watch first (so
 * any event, and the heartbeat sweep, can resume the execution from now on), then looks once: if it
 * is already decided it resumes the execution itself. A look that fails here is not fatal: the
 * heartbeat looks again every minute, and fails closed if the state stays unreadable.
 */
export const startWatch = async (
  input: WatchDeploymentInput,
  deps: WatchDeps,
  now: Date = new Date(),
): Promise<{ decided: boolean; deploymentArn?: string; status?: string; waitingFor?: string }> => {
  await deps.ledger.putTaskToken(input.executionName, 'watch', input.taskToken, input.service.key);
  const mode = input.mode ?? 'bake';
  const watchId = watchIdOf(input.taskToken);
  const base = {
    watchId,
    serviceKey: input.service.key,
    service: input.service,
    executionName: input.executionName,
    taskDefinitionArn: input.taskDefinitionArn,
    mode,
    ...(mode === 'bake' ? { bakeSeconds: Math.max(0, input.bakeTimeMinutes ?? 0) * 60 } : {}),
    watchingSince: now.toISOString(),
  };
  const ttl = input.deploymentTimeoutSeconds + REGISTRY_TTL_MARGIN_SECONDS;
  let assessment: Assessment | undefined;
  let lookError: unknown;
  try {
    assessment = await assessDeployment(
      subjectOf(
        { ...base, deploymentArn: input.deploymentArn ?? '', alarmNames: input.alarmNames },
        input.service,
      ),
      deps,
      now,
    );
  } catch (error) {
    lookError = error;
  }
  const deploymentArn =
    input.deploymentArn ||
    (assessment ? (assessment.decided ? assessment.result.deploymentArn : assessment.deploymentArn) : '');
  await deps.registry.register(
    {
      ...base,
      deploymentArn,
      alarmNames: assessment?.alarmNames ?? input.alarmNames,
      ...(assessment ? { lastAssessedAt: now.toISOString() } : {}),
    },
    ttl,
  );
  if (!assessment) {
    // Without a deployment to follow nothing can judge it: let the state's Retry/Catch decide.
    if (!deploymentArn) throw lookError;
    return { decided: false, deploymentArn, waitingFor: 'the heartbeat (the first look failed)' };
  }
  if (!assessment.decided)
    return {
      decided: false,
      deploymentArn,
      status: assessment.deploymentStatus,
      waitingFor: assessment.waitingFor,
    };
  await resumeWatch(deps.sfn, input.taskToken, assessment.result);
  // The token item stays: the execution's next wait replaces it, and a used token only answers
  // TaskDoesNotExist. Forgetting the wait is conditional, so it never removes a later one.
  await deps.registry.forget(input.service.key, watchId);
  return { decided: true, deploymentArn, status: assessment.result.status };
};
