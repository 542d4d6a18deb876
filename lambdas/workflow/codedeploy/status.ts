import { type CodeDeployClient, type DeploymentInfo, GetDeploymentCommand } from '@aws-sdk/client-codedeploy';
import type { Service } from '@aws-sdk/client-ecs';
import { awsCall } from '../aws';
import { UnsupportedDeploymentError } from '../errors';

/**
 * ECS services whose deployment controller is CODE_DEPLOY: ECS refuses UpdateService with a new task
 * definition for them, so Autopatch deploys through the CodeDeploy deployment group that owns the
 * service (CreateDeployment with an AppSpec naming the patched task definition), watches that
 * deployment like any other (same alarms, same bake), and rolls back with CodeDeploy
 * (StopDeployment with automatic rollback while it runs, a deployment of the last good task
 * definition once it has succeeded).
 *
 * In the workflow a CodeDeploy deployment is identified by its id (`d-XXXXXXXXX`) where an ECS
 * deployment is identified by its service deployment ARN.
 */

export type CodeDeployApi = Pick<CodeDeployClient, 'send'>;

/** A CodeDeploy deployment id. */
export const CODEDEPLOY_DEPLOYMENT_ID = /^d-[A-Z0-9]{9}$/;
export const isCodeDeployDeployment = (id: string | undefined): boolean =>
  id !== undefined && CODEDEPLOY_DEPLOYMENT_ID.test(id);

export const getCodeDeployDeployment = async (
  codedeploy: CodeDeployApi,
  deploymentId: string,
): Promise<DeploymentInfo> => {
  const out = await awsCall('codedeploy GetDeployment', () =>
    codedeploy.send(new GetDeploymentCommand({ deploymentId })),
  );
  if (!out.deploymentInfo)
    throw new UnsupportedDeploymentError(`CodeDeploy does not know deployment ${deploymentId}.`);
  return out.deploymentInfo;
};

/** CodeDeploy statuses in which the deployment still moves (StopDeployment can roll it back). */
export const CODEDEPLOY_IN_PROGRESS = new Set(['Created', 'Queued', 'InProgress', 'Baking', 'Ready']);

/**
 * The task definition a CODE_DEPLOY service serves production traffic with: its PRIMARY task set's
 * (DescribeServices' service-level taskDefinition is the same once a deployment has completed).
 */
export const primaryTaskDefinition = (service: Service): string | undefined =>
  service.taskSets?.find((t) => t.status === 'PRIMARY')?.taskDefinition ?? service.taskDefinition;

/**
 * A CodeDeploy deployment in the vocabulary of ECS service deployments, so the watch judges both
 * alike: IN_PROGRESS, SUCCESSFUL, ROLLBACK_IN_PROGRESS / ROLLBACK_SUCCESSFUL (CodeDeploy rolled it
 * back, its rollback deployment still running or done), STOPPED (failed or stopped, no rollback).
 */
export const normalizedStatus = (
  deployment: DeploymentInfo,
  rollback: DeploymentInfo | undefined,
): { status: string; reason?: string } => {
  const status = deployment.status ?? 'Unknown';
  const reason = deployment.errorInformation?.message ?? deployment.rollbackInfo?.rollbackMessage;
  const withReason = (s: string) => ({ status: s, ...(reason ? { reason } : {}) });
  if (CODEDEPLOY_IN_PROGRESS.has(status)) return withReason('IN_PROGRESS');
  if (status === 'Succeeded') return withReason('SUCCESSFUL');
  if (rollback) {
    const r = rollback.status ?? 'Unknown';
    if (CODEDEPLOY_IN_PROGRESS.has(r)) return withReason('ROLLBACK_IN_PROGRESS');
    if (r === 'Succeeded') return withReason('ROLLBACK_SUCCESSFUL');
    return withReason('ROLLBACK_FAILED');
  }
  return withReason('STOPPED');
};
