import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  type ECSClient,
  type Service,
  StopServiceDeploymentCommand,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall } from './aws';
import type { DeploymentGroupRef } from './codedeploy/groups';
import { CodeDeployPutBack, restoreWithCodeDeploy } from './codedeploy/restore';
import type { CodeDeployApi } from './codedeploy/status';
import { describeService } from './ecs-service';
import { PutBackFailedError } from './errors';
import type { RecoveryResult } from './state';

export interface RestoreInput {
  readonly service: ServiceRef;
  readonly previousTaskDefinitionArn: string;
  readonly patchedTaskDefinitionArn: string;
  /** The deployment controller the gate saw (ECS or CODE_DEPLOY), for when DescribeServices fails. */
  readonly controller?: string;
  /** The target, for its CodeDeploy deployment group when it names one. */
  readonly target?: { readonly codeDeploy?: DeploymentGroupRef };
}

const IN_PROGRESS = new Set(['PENDING', 'IN_PROGRESS']);
const ROLLING_BACK = new Set(['ROLLBACK_REQUESTED', 'ROLLBACK_IN_PROGRESS', 'ROLLBACK_SUCCESSFUL']);

/** A read that may fail: restore goes on without it (it must not depend on any single read API). */
const tryRead = async <T>(
  read: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: string }> => {
  try {
    return { ok: true, value: await read() };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
};

/** The command that puts an ECS-controlled service back on `taskDefinitionArn` by hand. */
export const updateServiceCommand = (service: ServiceRef, taskDefinitionArn: string): string =>
  `aws ecs update-service --cluster ${service.clusterArn} --service ${service.serviceName} --task-definition ${taskDefinitionArn}`;

const errorText = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/**
 * "Put the service back on its last good revision", after a failure past UpdateService or an alarm.
 * Does the least that gets there, and never depends on one API alone:
 * - the service does not run the patched revision (read with DescribeServices): nothing to do;
 * - the patched deployment is still in progress: StopServiceDeployment(ROLLBACK), so traffic goes back
 *   the way ECS shifted it; ECS already rolling back: wait for it;
 * - otherwise (it completed, failed without rollback, was stopped), or when a read or the rollback
 *   request fails: a new deployment of the previous task definition (UpdateService), which is always
 *   safe to ask for.
 * Returns the service deployment that puts the last good revision back, for the next state to wait on,
 * and the command that does it by hand. Any failure is a PutBackFailedError whose message ends with
 * that command: the state retries it for about half an hour (AWS outages recover), then pages with it.
 */
export const restoreLastGoodRevision = async (
  input: RestoreInput,
  ecs: Pick<ECSClient, 'send'>,
  codedeploy?: CodeDeployApi,
): Promise<RecoveryResult> => {
  const putBack = new CodeDeployPutBack(
    input.service,
    input.previousTaskDefinitionArn,
    input.target?.codeDeploy,
  );
  const state: { controller?: string } = {};
  try {
    return await restore(input, ecs, codedeploy, putBack, state);
  } catch (error) {
    if (error instanceof PutBackFailedError) throw error;
    const command =
      state.controller === 'CODE_DEPLOY'
        ? putBack.command
        : updateServiceCommand(input.service, input.previousTaskDefinitionArn);
    throw new PutBackFailedError(
      `Autopatch could not put ${input.service.key} back on its last good revision ${input.previousTaskDefinitionArn} (${errorText(error)}).`,
      command,
      { cause: error },
    );
  }
};

const restore = async (
  input: RestoreInput,
  ecs: Pick<ECSClient, 'send'>,
  codedeploy: CodeDeployApi | undefined,
  putBack: CodeDeployPutBack,
  state: { controller?: string },
): Promise<RecoveryResult> => {
  const { service } = input;
  const manualCommand = updateServiceCommand(service, input.previousTaskDefinitionArn);
  const notes: string[] = [];
  const described = await tryRead(() =>
    awsCall('ecs DescribeServices', () =>
      ecs.send(new DescribeServicesCommand({ cluster: service.clusterArn, services: [service.serviceName] })),
    ),
  );
  let current: Service | undefined;
  if (described.ok) {
    current = described.value.services?.[0];
    if (!current || current.status === 'INACTIVE') {
      return {
        action: 'nothing-to-do',
        detail: `Service ${service.key} was not found; there is nothing to put back.`,
        deploymentArn: '',
        manualCommand: '',
      };
    }
  }
  const controller = current?.deploymentController?.type ?? input.controller ?? 'ECS';
  state.controller = controller;
  if (controller === 'CODE_DEPLOY') {
    // ECS refuses UpdateService with a task definition for these: everything goes through CodeDeploy.
    if (!codedeploy) throw new Error('restore: no CodeDeploy client for a CODE_DEPLOY service');
    const serviceNow: Service = current ?? (await describeService(ecs, service)) ?? {};
    return restoreWithCodeDeploy(
      codedeploy,
      serviceNow,
      service,
      input.previousTaskDefinitionArn,
      input.patchedTaskDefinitionArn,
      input.target?.codeDeploy,
      putBack,
    );
  }
  if (current) {
    if (current.taskDefinition !== input.patchedTaskDefinitionArn) {
      return {
        action: 'nothing-to-do',
        detail: `Service ${service.key} runs ${current.taskDefinition ?? 'an unknown task definition'}, not the patched revision: nothing to put back.`,
        deploymentArn: '',
        manualCommand: '',
      };
    }
  } else if (!described.ok) notes.push(`DescribeServices failed (${described.error})`);

  const deploymentArn = current?.currentServiceDeployment;
  if (deploymentArn) {
    const deployments = await tryRead(() =>
      awsCall('ecs DescribeServiceDeployments', () =>
        ecs.send(new DescribeServiceDeploymentsCommand({ serviceDeploymentArns: [deploymentArn] })),
      ),
    );
    const status = deployments.ok
      ? (deployments.value.serviceDeployments?.[0]?.status ?? 'UNKNOWN')
      : 'UNKNOWN';
    if (!deployments.ok) notes.push(`DescribeServiceDeployments failed (${deployments.error})`);
    if (ROLLING_BACK.has(status)) {
      return {
        action: 'rollback-in-progress',
        detail: `ECS is already rolling back deployment ${deploymentArn} (${status}).`,
        deploymentArn,
        manualCommand,
      };
    }
    if (IN_PROGRESS.has(status)) {
      const stopped = await tryRead(() =>
        awsCall('ecs StopServiceDeployment', () =>
          ecs.send(
            new StopServiceDeploymentCommand({ serviceDeploymentArn: deploymentArn, stopType: 'ROLLBACK' }),
          ),
        ),
      );
      if (stopped.ok) {
        return {
          action: 'rollback-requested',
          detail: `Requested a rollback of deployment ${deploymentArn}: ECS moves the service back to ${input.previousTaskDefinitionArn}.`,
          deploymentArn,
          manualCommand,
        };
      }
      notes.push(`StopServiceDeployment failed (${stopped.error})`);
    }
  }
  const updated = await awsCall('ecs UpdateService', () =>
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
    detail: `Started a deployment of the previous task definition ${input.previousTaskDefinitionArn}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}.`,
    // (A mocked or partial response may carry no service.)
    deploymentArn: updated?.service?.currentServiceDeployment ?? '',
    manualCommand,
  };
};
