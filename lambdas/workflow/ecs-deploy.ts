import { type ECSClient, StopServiceDeploymentCommand, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall } from './aws';

/**
 * "Deploy the patched revision in the service's account" and "Roll back the deployment in the
 * service's account": the Lambda steps for services outside the hub's account or Region. The hub's
 * own services are deployed and rolled back by the `aws-sdk:ecs` service integrations, which run as
 * the state machine's role in the hub's account and Region only (an SDK integration cannot call
 * another Region, and another account only with a fixed Credentials role); a spoke service needs
 * these calls made with the spoke role's client, in the service's Region (handlers/deploy-with-ecs.ts
 * resolves it). The definition picks the step by the service key's form (<account>/<region>/…).
 */

export interface EcsDeployInput {
  readonly service: ServiceRef;
  readonly taskDefinitionArn: string;
}

/** UpdateService with the patched revision; the deployment to watch, from this call's response. */
export const deployWithEcs = async (
  input: EcsDeployInput,
  ecs: Pick<ECSClient, 'send'>,
): Promise<{ deploymentArn: string }> => {
  const out = await awsCall('ecs UpdateService', () =>
    ecs.send(
      new UpdateServiceCommand({
        cluster: input.service.clusterArn,
        service: input.service.serviceName,
        taskDefinition: input.taskDefinitionArn,
      }),
    ),
  );
  return { deploymentArn: out.service?.currentServiceDeployment ?? '' };
};

export interface EcsRollbackInput {
  readonly service: ServiceRef;
  readonly deploymentArn: string;
}

/**
 * StopServiceDeployment with ROLLBACK. A ConflictException (ECS is already rolling back, or the
 * deployment ended) propagates by name, as the integration's Ecs.ConflictException does, so the
 * definition's Catch can send it to "Wait for the rollback".
 */
export const rollBackEcsDeployment = async (
  input: EcsRollbackInput,
  ecs: Pick<ECSClient, 'send'>,
): Promise<{ rollback: 'requested' }> => {
  await awsCall('ecs StopServiceDeployment', () =>
    ecs.send(
      new StopServiceDeploymentCommand({ serviceDeploymentArn: input.deploymentArn, stopType: 'ROLLBACK' }),
    ),
  );
  return { rollback: 'requested' };
};
