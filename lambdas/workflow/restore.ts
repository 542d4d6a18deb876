import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  type ECSClient,
  StopServiceDeploymentCommand,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall } from './aws';
import type { RecoveryResult } from './state';

export interface RestoreInput {
  readonly service: ServiceRef;
  readonly previousTaskDefinitionArn: string;
  readonly patchedTaskDefinitionArn: string;
}

const IN_PROGRESS = new Set(['PENDING', 'IN_PROGRESS']);
const ROLLING_BACK = new Set(['ROLLBACK_REQUESTED', 'ROLLBACK_IN_PROGRESS', 'ROLLBACK_SUCCESSFUL']);

/**
 * "Put the service back on its last good revision", after a failure past UpdateService. Does the
 * least that gets there: nothing if the service does not run the patched revision; a rollback of the
 * patched deployment if it is still in progress (traffic goes back the way ECS shifted it); otherwise
 * (the deployment completed, failed without rollback, or was stopped) a new deployment of the previous
 * task definition.
 */
export const restoreLastGoodRevision = async (
  input: RestoreInput,
  ecs: Pick<ECSClient, 'send'>,
): Promise<RecoveryResult> => {
  const { service } = input;
  const out = await awsCall('ecs DescribeServices', () =>
    ecs.send(new DescribeServicesCommand({ cluster: service.clusterArn, services: [service.serviceName] })),
  );
  const current = out.services?.[0];
  if (!current) {
    return {
      action: 'nothing-to-do',
      detail: `Service ${service.key} was not found; there is nothing to put back.`,
    };
  }
  if (current.taskDefinition !== input.patchedTaskDefinitionArn) {
    return {
      action: 'nothing-to-do',
      detail: `Service ${service.key} runs ${current.taskDefinition ?? 'an unknown task definition'}, not the patched revision: nothing to put back.`,
    };
  }
  const deploymentArn = current.currentServiceDeployment;
  if (deploymentArn) {
    const described = await awsCall('ecs DescribeServiceDeployments', () =>
      ecs.send(new DescribeServiceDeploymentsCommand({ serviceDeploymentArns: [deploymentArn] })),
    );
    const status = described.serviceDeployments?.[0]?.status ?? 'UNKNOWN';
    if (ROLLING_BACK.has(status)) {
      return {
        action: 'rollback-in-progress',
        detail: `ECS is already rolling back deployment ${deploymentArn} (${status}).`,
      };
    }
    if (IN_PROGRESS.has(status)) {
      await awsCall('ecs StopServiceDeployment', () =>
        ecs.send(
          new StopServiceDeploymentCommand({ serviceDeploymentArn: deploymentArn, stopType: 'ROLLBACK' }),
        ),
      );
      return {
        action: 'rollback-requested',
        detail: `Requested a rollback of deployment ${deploymentArn}: ECS moves the service back to ${input.previousTaskDefinitionArn}.`,
      };
    }
  }
  await awsCall('ecs UpdateService', () =>
    ecs.send(
      new UpdateServiceCommand({
        cluster: service.clusterArn,
        service: service.serviceName,
        taskDefinition: input.previousTaskDefinitionArn,
      }),
    ),
  );
  return {
    action: 'redeployed-previous',
    detail: `Started a deployment of the previous task definition ${input.previousTaskDefinitionArn}.`,
  };
};
