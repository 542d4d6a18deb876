import { SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { ServiceRef } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { awsCall } from './aws';
import { assessDeployment, type DeploymentClients } from './deployment';
import type { WatchResult } from './state';
import type { WatchRegistry } from './watch-registry';

export interface WatchDeploymentInput {
  readonly taskToken: string;
  readonly executionName: string;
  readonly service: ServiceRef;
  readonly alarmNames: readonly string[];
  readonly taskDefinitionArn: string;
  readonly deploymentTimeoutSeconds: number;
}

export interface WatchDeps extends DeploymentClients {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ledger: Pick<Ledger, 'putTaskToken' | 'deleteTaskToken'>;
  readonly registry: Pick<WatchRegistry, 'register'>;
}

/** Errors that mean the execution no longer waits on this token: someone else already resumed it, or it ended. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/**
 * Resume the watching execution with the verdict. True if it was resumed by this call; false if the
 * token was already used or the execution is gone (the watch Lambda and an event can race; the first
 * one wins and the other is a no-op).
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

/** Margin on top of the deployment timeout before the watch index expires (TTL deletes lazily anyway). */
const REGISTRY_TTL_MARGIN_SECONDS = 86_400;

/**
 * "Watch the deployment through the bake time": invoked with a task token, returns at once. Stores
 * the token first (so any event from now on can resume the execution), pins the deployment to follow
 * and indexes its alarms for the events Lambda, then checks once: if the deployment is already decided
 * (or an alarm is already firing, which would send no new event) it resumes the execution itself.
 */
export const startWatch = async (
  input: WatchDeploymentInput,
  deps: WatchDeps,
): Promise<{ decided: boolean; deploymentArn?: string; status?: string }> => {
  await deps.ledger.putTaskToken(input.executionName, 'watch', input.taskToken, input.service.key);
  const assessment = await assessDeployment(
    { service: input.service, alarmNames: input.alarmNames, taskDefinitionArn: input.taskDefinitionArn },
    deps,
  );
  const deploymentArn = assessment.decided ? assessment.result.deploymentArn : assessment.deploymentArn;
  await deps.registry.register(
    {
      serviceKey: input.service.key,
      executionName: input.executionName,
      deploymentArn,
      taskDefinitionArn: input.taskDefinitionArn,
      alarmNames: assessment.alarmNames,
    },
    input.deploymentTimeoutSeconds + REGISTRY_TTL_MARGIN_SECONDS,
  );
  if (!assessment.decided) return { decided: false, deploymentArn, status: assessment.deploymentStatus };
  await resumeWatch(deps.sfn, input.taskToken, assessment.result);
  await deps.ledger.deleteTaskToken(input.executionName, 'watch');
  return { decided: true, deploymentArn, status: assessment.result.status };
};
