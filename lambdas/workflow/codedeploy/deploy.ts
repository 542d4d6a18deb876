import { CreateDeploymentCommand } from '@aws-sdk/client-codedeploy';
import type { ECSClient, Service } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../../shared/contracts';
import { awsCall } from '../aws';
import { describeService } from '../ecs-service';
import { UnsupportedDeploymentError } from '../errors';
import { type DeploymentGroupRef, findDeploymentGroup } from './groups';
import type { CodeDeployApi } from './status';

/**
 * The AppSpec of a deployment of `taskDefinitionArn` to `service`: the same load balancer container
 * and port, platform version, network configuration and capacity providers the service uses now,
 * so the only change is the task definition.
 */
export const appSpecFor = (service: Service, taskDefinitionArn: string): string => {
  const lb = service.loadBalancers?.[0];
  if (!lb?.containerName || lb.containerPort === undefined) {
    throw new UnsupportedDeploymentError(
      `Service ${service.serviceName} uses CodeDeploy but names no load balancer container and port, which a CodeDeploy ECS deployment's AppSpec needs.`,
    );
  }
  const vpc = service.networkConfiguration?.awsvpcConfiguration;
  const properties = {
    TaskDefinition: taskDefinitionArn,
    LoadBalancerInfo: { ContainerName: lb.containerName, ContainerPort: lb.containerPort },
    ...(service.platformVersion ? { PlatformVersion: service.platformVersion } : {}),
    ...(vpc
      ? {
          NetworkConfiguration: {
            AwsvpcConfiguration: {
              Subnets: vpc.subnets ?? [],
              ...(vpc.securityGroups ? { SecurityGroups: vpc.securityGroups } : {}),
              ...(vpc.assignPublicIp ? { AssignPublicIp: vpc.assignPublicIp } : {}),
            },
          },
        }
      : {}),
    ...(service.capacityProviderStrategy && service.capacityProviderStrategy.length > 0
      ? {
          CapacityProviderStrategy: service.capacityProviderStrategy.map((c) => ({
            CapacityProvider: c.capacityProvider,
            ...(c.base !== undefined ? { Base: c.base } : {}),
            ...(c.weight !== undefined ? { Weight: c.weight } : {}),
          })),
        }
      : {}),
  };
  return JSON.stringify({
    version: 0.0,
    Resources: [{ TargetService: { Type: 'AWS::ECS::Service', Properties: properties } }],
  });
};

/** Start a CodeDeploy deployment of `taskDefinitionArn` to `service` (the ECS service as described now). */
export const createCodeDeployDeployment = async (
  codedeploy: CodeDeployApi,
  service: Service,
  ref: ServiceRef,
  taskDefinitionArn: string,
  description: string,
  named?: DeploymentGroupRef,
  /**
   * Turn the group's alarm polling off for this deployment (overrideAlarmConfiguration, which needs
   * codedeploy:UpdateDeploymentGroup): for putting the last good revision back while the alarm that
   * condemned the patched one still fires, which would otherwise stop the put-back at once
   * (ALARM_ACTIVE) and roll it back onto the patched revision.
   * @default false
   */
  ignoreAlarms = false,
): Promise<{ deploymentId: string; group: DeploymentGroupRef }> => {
  const group = await findDeploymentGroup(codedeploy, ref, named);
  const out = await awsCall('codedeploy CreateDeployment', () =>
    codedeploy.send(
      new CreateDeploymentCommand({
        applicationName: group.application,
        deploymentGroupName: group.deploymentGroup,
        description: description.slice(0, 1000),
        revision: {
          revisionType: 'AppSpecContent',
          appSpecContent: { content: appSpecFor(service, taskDefinitionArn) },
        },
        ...(ignoreAlarms ? { overrideAlarmConfiguration: { enabled: false } } : {}),
      }),
    ),
  );
  if (!out.deploymentId)
    throw new UnsupportedDeploymentError('CodeDeploy CreateDeployment returned no deployment id.');
  return {
    deploymentId: out.deploymentId,
    group: { application: group.application, deploymentGroup: group.deploymentGroup },
  };
};

export interface CodeDeployDeployInput {
  readonly service: ServiceRef;
  readonly taskDefinitionArn: string;
  readonly executionName: string;
  /** The target, for the CodeDeploy deployment group it names, if any. */
  readonly target?: { readonly codeDeploy?: DeploymentGroupRef };
}

export interface CodeDeployDeployResult {
  /** The CodeDeploy deployment id, which the watch follows where it follows an ECS deployment ARN otherwise. */
  readonly deploymentArn: string;
  readonly application: string;
  readonly deploymentGroup: string;
}

/**
 * "Deploy the patched revision with CodeDeploy": for a CODE_DEPLOY service, a CodeDeploy deployment
 * of the patched task definition through the deployment group that owns the service. The group's
 * own traffic shifting, alarms and automatic rollback apply; Autopatch watches the deployment and
 * its bake the same way it watches an ECS deployment.
 */
export const deployWithCodeDeploy = async (
  input: CodeDeployDeployInput,
  clients: { ecs: Pick<ECSClient, 'send'>; codedeploy: CodeDeployApi },
): Promise<CodeDeployDeployResult> => {
  const service = await describeService(clients.ecs, input.service);
  if (!service) throw new UnsupportedDeploymentError(`Service ${input.service.key} was not found.`);
  if (service.deploymentController?.type !== 'CODE_DEPLOY') {
    throw new UnsupportedDeploymentError(
      `Service ${input.service.key} now uses the ${service.deploymentController?.type ?? 'ECS'} deployment controller, not CODE_DEPLOY.`,
    );
  }
  const { deploymentId, group } = await createCodeDeployDeployment(
    clients.codedeploy,
    service,
    input.service,
    input.taskDefinitionArn,
    `Autopatch ${input.executionName}: deploy the patched ${input.taskDefinitionArn}`,
    input.target?.codeDeploy,
  );
  return { deploymentArn: deploymentId, ...group };
};
