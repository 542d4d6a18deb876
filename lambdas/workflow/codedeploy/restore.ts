import {
  type DeploymentInfo,
  type DeploymentStatus,
  ListDeploymentsCommand,
  StopDeploymentCommand,
} from '@aws-sdk/client-codedeploy';
import type { Service } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../../shared/contracts';
import { awsCall } from '../aws';
import { createCodeDeployDeployment } from './deploy';
import { type DeploymentGroupRef, findDeploymentGroup } from './groups';
import {
  CODEDEPLOY_IN_PROGRESS,
  type CodeDeployApi,
  getCodeDeployDeployment,
  primaryTaskDefinition,
} from './status';

/** Stop a CodeDeploy deployment and have CodeDeploy roll it back to the original task set. */
export const stopWithRollback = async (codedeploy: CodeDeployApi, deploymentId: string): Promise<void> => {
  await awsCall('codedeploy StopDeployment', () =>
    codedeploy.send(new StopDeploymentCommand({ deploymentId, autoRollbackEnabled: true })),
  );
};

/** The deployment CodeDeploy is running for a group now, if any (it runs one at a time per group). */
export const activeDeployment = async (
  codedeploy: CodeDeployApi,
  group: DeploymentGroupRef,
): Promise<DeploymentInfo | undefined> => {
  const out = await awsCall('codedeploy ListDeployments', () =>
    codedeploy.send(
      new ListDeploymentsCommand({
        applicationName: group.application,
        deploymentGroupName: group.deploymentGroup,
        includeOnlyStatuses: [...CODEDEPLOY_IN_PROGRESS] as DeploymentStatus[],
      }),
    ),
  );
  const id = out.deployments?.[0];
  return id ? getCodeDeployDeployment(codedeploy, id) : undefined;
};

/** Whether a deployment deploys `taskDefinitionArn` (its AppSpec names it). */
export const deploysTaskDefinition = (deployment: DeploymentInfo, taskDefinitionArn: string): boolean =>
  (deployment.revision?.appSpecContent?.content ?? deployment.revision?.string?.content ?? '').includes(
    taskDefinitionArn,
  );

/**
 * "Put the service back on its last good revision" for a CODE_DEPLOY service:
 * - CodeDeploy is still deploying the patched revision: StopDeployment with automatic rollback, so
 *   traffic goes back to the original task set the way CodeDeploy shifted it;
 * - the patched revision serves production: a CodeDeploy deployment of the last good task definition;
 * - otherwise (it never got there, or someone else's deployment runs now): nothing to do.
 * Returns what it did and the CodeDeploy deployment the next state waits on.
 */
export const restoreWithCodeDeploy = async (
  codedeploy: CodeDeployApi,
  service: Service,
  ref: ServiceRef,
  previousTaskDefinitionArn: string,
  patchedTaskDefinitionArn: string,
  named?: DeploymentGroupRef,
): Promise<{
  action: 'rollback-requested' | 'redeployed-previous' | 'nothing-to-do';
  detail: string;
  deploymentArn: string;
}> => {
  const group = await findDeploymentGroup(codedeploy, ref, named);
  // Never depend on one API alone: when the deployments cannot be read but the patched revision
  // serves production traffic, a deployment of the last good revision still puts it back.
  let active: DeploymentInfo | undefined;
  try {
    active = await activeDeployment(codedeploy, group);
  } catch (error) {
    if (primaryTaskDefinition(service) !== patchedTaskDefinitionArn) throw error;
  }
  if (active?.deploymentId) {
    if (!deploysTaskDefinition(active, patchedTaskDefinitionArn)) {
      return {
        action: 'nothing-to-do',
        detail: `CodeDeploy deployment ${active.deploymentId} of ${group.application}/${group.deploymentGroup} is not Autopatch's (it does not deploy ${patchedTaskDefinitionArn}): Autopatch leaves it to its owner.`,
        deploymentArn: '',
      };
    }
    await stopWithRollback(codedeploy, active.deploymentId);
    return {
      action: 'rollback-requested',
      detail: `Stopped CodeDeploy deployment ${active.deploymentId} with automatic rollback: CodeDeploy moves traffic back to ${previousTaskDefinitionArn}.`,
      deploymentArn: active.deploymentId,
    };
  }
  if (primaryTaskDefinition(service) !== patchedTaskDefinitionArn) {
    return {
      action: 'nothing-to-do',
      detail: `Service ${ref.key} serves ${primaryTaskDefinition(service) ?? 'an unknown task definition'}, not the patched revision: nothing to put back.`,
      deploymentArn: '',
    };
  }
  const { deploymentId } = await createCodeDeployDeployment(
    codedeploy,
    service,
    ref,
    previousTaskDefinitionArn,
    `Autopatch: put ${ref.key} back on its last good revision ${previousTaskDefinitionArn}`,
    group,
    true,
  );
  return {
    action: 'redeployed-previous',
    detail: `Started CodeDeploy deployment ${deploymentId} of the previous task definition ${previousTaskDefinitionArn} (the group's alarm polling off for it, so the alarm that still fires cannot stop it).`,
    deploymentArn: deploymentId,
  };
};
