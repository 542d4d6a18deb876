import {
  type DeploymentInfo,
  type DeploymentStatus,
  ListDeploymentsCommand,
  StopDeploymentCommand,
} from '@aws-sdk/client-codedeploy';
import type { Service } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../../shared/contracts';
import { awsCall } from '../aws';
import { appSpecFor, createCodeDeployDeployment } from './deploy';
import { type DeploymentGroupRef, findDeploymentGroup } from './groups';
import {
  CODEDEPLOY_IN_PROGRESS,
  type CodeDeployApi,
  getCodeDeployDeployment,
  isCodeDeployDeployment,
  primaryTaskDefinition,
} from './status';

/** Stop a CodeDeploy deployment and have CodeDeploy roll it back to the original task set. */
export const stopWithRollback = async (codedeploy: CodeDeployApi, deploymentId: string): Promise<void> => {
  await awsCall('codedeploy StopDeployment', () =>
    codedeploy.send(new StopDeploymentCommand({ deploymentId, autoRollbackEnabled: true })),
  );
};

/** The id of the deployment CodeDeploy is running for a group now, if any (one at a time per group). */
export const activeDeploymentId = async (
  codedeploy: CodeDeployApi,
  group: DeploymentGroupRef,
): Promise<string | undefined> => {
  const out = await awsCall('codedeploy ListDeployments', () =>
    codedeploy.send(
      new ListDeploymentsCommand({
        applicationName: group.application,
        deploymentGroupName: group.deploymentGroup,
        includeOnlyStatuses: [...CODEDEPLOY_IN_PROGRESS] as DeploymentStatus[],
      }),
    ),
  );
  return out.deployments?.[0];
};

/** The deployment CodeDeploy is running for a group now, if any. */
export const activeDeployment = async (
  codedeploy: CodeDeployApi,
  group: DeploymentGroupRef,
): Promise<DeploymentInfo | undefined> => {
  const id = await activeDeploymentId(codedeploy, group);
  return id ? getCodeDeployDeployment(codedeploy, id) : undefined;
};

/** Whether a deployment deploys `taskDefinitionArn` (its AppSpec names it). */
export const deploysTaskDefinition = (deployment: DeploymentInfo, taskDefinitionArn: string): boolean =>
  (deployment.revision?.appSpecContent?.content ?? deployment.revision?.string?.content ?? '').includes(
    taskDefinitionArn,
  );

/**
 * The CodeDeploy deployment that created a task set of the service running `taskDefinitionArn`: ECS
 * reports it as the task set's externalId. Read from DescribeServices, so it still identifies
 * Autopatch's deployment when CodeDeploy's own read APIs cannot be called.
 */
export const deploymentOfTaskSet = (
  service: Service | undefined,
  taskDefinitionArn: string,
): string | undefined =>
  service?.taskSets?.find(
    (t) => t.taskDefinition === taskDefinitionArn && isCodeDeployDeployment(t.externalId),
  )?.externalId;

/** The command that stops a CodeDeploy deployment with automatic rollback, for on-call. */
export const stopDeploymentCommand = (deploymentId: string): string =>
  `aws deploy stop-deployment --deployment-id ${deploymentId} --auto-rollback-enabled`;

/**
 * The command that deploys `taskDefinitionArn` through the group, for on-call: the same AppSpec
 * Autopatch sends (the service's load balancer container and port, network configuration), and the
 * group's alarm polling off, so the alarm that condemned the patched revision cannot stop it. When the
 * service could not be read, the AppSpec says which values to fill in.
 */
export const createDeploymentCommand = (
  group: DeploymentGroupRef,
  service: Service | undefined,
  taskDefinitionArn: string,
): string => {
  let content: string;
  try {
    if (!service) throw new Error('service unknown');
    content = appSpecFor(service, taskDefinitionArn);
  } catch {
    content = JSON.stringify({
      version: 0.0,
      Resources: [
        {
          TargetService: {
            Type: 'AWS::ECS::Service',
            Properties: {
              TaskDefinition: taskDefinitionArn,
              LoadBalancerInfo: { ContainerName: '<container>', ContainerPort: '<port>' },
            },
          },
        },
      ],
    });
  }
  const revision = JSON.stringify({ revisionType: 'AppSpecContent', appSpecContent: { content } });
  return `aws deploy create-deployment --application-name ${group.application} --deployment-group-name ${group.deploymentGroup} --revision '${revision}' --override-alarm-configuration '{"enabled":false}'`;
};

/** The group the console names for a service, for a command when the group could not be found. */
const conventionalGroup = (ref: ServiceRef): DeploymentGroupRef => {
  const cluster = ref.clusterArn.slice(ref.clusterArn.lastIndexOf('/') + 1);
  return {
    application: `AppECS-${cluster}-${ref.serviceName}`,
    deploymentGroup: `DgpECS-${cluster}-${ref.serviceName}`,
  };
};

/**
 * What a CodeDeploy put-back has learnt so far, so that when it cannot finish, on-call gets the best
 * command there is: stop the patched deployment once it is known to run, otherwise deploy the last
 * good task definition.
 */
export class CodeDeployPutBack {
  group: DeploymentGroupRef;
  service: Service | undefined;
  stopping: string | undefined;

  constructor(
    readonly ref: ServiceRef,
    readonly previousTaskDefinitionArn: string,
    named?: DeploymentGroupRef,
  ) {
    this.group = named ?? conventionalGroup(ref);
  }

  get command(): string {
    return this.stopping
      ? stopDeploymentCommand(this.stopping)
      : createDeploymentCommand(this.group, this.service, this.previousTaskDefinitionArn);
  }
}

const errorText = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/** StopDeployment's answer when the deployment is no longer active (it completed or never existed). */
const NOT_ACTIVE = new Set(['DeploymentAlreadyCompletedException', 'DeploymentDoesNotExistException']);

/** A deployment Autopatch cannot tell is its own: retried (the state's Retry), then paged. */
export class UnidentifiedDeploymentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnidentifiedDeploymentError';
  }
}

/**
 * "Put the service back on its last good revision" for a CODE_DEPLOY service:
 * - CodeDeploy is still deploying the patched revision: StopDeployment with automatic rollback, so
 *   traffic goes back to the original task set the way CodeDeploy shifted it;
 * - the patched revision serves production: a CodeDeploy deployment of the last good task definition;
 * - otherwise (it never got there, or someone else's deployment runs now): nothing to do.
 * No single read API decides: when GetDeployment cannot be read, the service's task sets
 * (DescribeServices) say whether the active deployment is Autopatch's (the task set it created runs
 * the patched revision and names it as its externalId); when ListDeployments cannot be read either,
 * StopDeployment on that deployment says whether it still runs. A deployment nothing identifies is
 * never stopped: the caller fails, to be retried.
 * Returns what it did and the CodeDeploy deployment the next state waits on.
 */
export const restoreWithCodeDeploy = async (
  codedeploy: CodeDeployApi,
  service: Service,
  ref: ServiceRef,
  previousTaskDefinitionArn: string,
  patchedTaskDefinitionArn: string,
  named?: DeploymentGroupRef,
  putBack: CodeDeployPutBack = new CodeDeployPutBack(ref, previousTaskDefinitionArn, named),
): Promise<{
  action: 'rollback-requested' | 'redeployed-previous' | 'nothing-to-do';
  detail: string;
  deploymentArn: string;
  manualCommand: string;
}> => {
  putBack.service = service;
  const group = await findDeploymentGroup(codedeploy, ref, named);
  putBack.group = { application: group.application, deploymentGroup: group.deploymentGroup };
  const where = `${group.application}/${group.deploymentGroup}`;
  const notes: string[] = [];
  const ourTaskSet = deploymentOfTaskSet(service, patchedTaskDefinitionArn);
  const patchedServes = primaryTaskDefinition(service) === patchedTaskDefinitionArn;

  const stop = async (deploymentId: string, how: string) => {
    putBack.stopping = deploymentId;
    await stopWithRollback(codedeploy, deploymentId);
    return {
      action: 'rollback-requested' as const,
      detail: `Stopped CodeDeploy deployment ${deploymentId} with automatic rollback (${how}): CodeDeploy moves traffic back to ${previousTaskDefinitionArn}.`,
      deploymentArn: deploymentId,
      manualCommand: stopDeploymentCommand(deploymentId),
    };
  };

  let activeId: string | undefined;
  let listed = true;
  try {
    activeId = await activeDeploymentId(codedeploy, group);
  } catch (error) {
    listed = false;
    notes.push(`ListDeployments failed (${errorText(error)})`);
  }

  if (activeId) {
    let ours: boolean | undefined;
    try {
      ours = deploysTaskDefinition(
        await getCodeDeployDeployment(codedeploy, activeId),
        patchedTaskDefinitionArn,
      );
    } catch (error) {
      notes.push(`GetDeployment failed (${errorText(error)})`);
      if (activeId === ourTaskSet) ours = true;
    }
    if (ours === false) {
      return {
        action: 'nothing-to-do',
        detail: `CodeDeploy deployment ${activeId} of ${where} is not Autopatch's (it does not deploy ${patchedTaskDefinitionArn}): Autopatch leaves it to its owner.`,
        deploymentArn: '',
        manualCommand: '',
      };
    }
    if (ours === undefined) {
      throw new UnidentifiedDeploymentError(
        `CodeDeploy deployment ${activeId} of ${where} is in progress, and nothing tells whether it deploys ${patchedTaskDefinitionArn} (${notes.join('; ')}; no task set of the service names it): Autopatch does not stop a deployment it cannot tell is its own. Check with aws deploy get-deployment --deployment-id ${activeId}.`,
      );
    }
    return stop(
      activeId,
      notes.length > 0
        ? `its task set runs the patched revision; ${notes.join('; ')}`
        : 'it deploys the patched revision',
    );
  }

  if (!listed) {
    if (ourTaskSet) {
      // Whether Autopatch's deployment still runs is what StopDeployment answers: stopped, or not active.
      try {
        return await stop(ourTaskSet, `its task set runs the patched revision; ${notes.join('; ')}`);
      } catch (error) {
        putBack.stopping = undefined;
        const name = error instanceof Error ? error.name : '';
        if (!NOT_ACTIVE.has(name)) throw error;
        notes.push(`deployment ${ourTaskSet} is no longer active`);
      }
    } else if (!patchedServes) {
      throw new UnidentifiedDeploymentError(
        `Autopatch cannot tell whether a CodeDeploy deployment of ${patchedTaskDefinitionArn} is still in progress in ${where} (${notes.join('; ')}), and the service does not serve it yet.`,
      );
    }
  }

  if (!patchedServes) {
    return {
      action: 'nothing-to-do',
      detail: `Service ${ref.key} serves ${primaryTaskDefinition(service) ?? 'an unknown task definition'}, not the patched revision: nothing to put back.`,
      deploymentArn: '',
      manualCommand: '',
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
    detail: `Started CodeDeploy deployment ${deploymentId} of the previous task definition ${previousTaskDefinitionArn} (the group's alarm polling off for it, so the alarm that still fires cannot stop it)${notes.length > 0 ? ` (${notes.join('; ')})` : ''}.`,
    deploymentArn: deploymentId,
    manualCommand: createDeploymentCommand(putBack.group, service, previousTaskDefinitionArn),
  };
};
