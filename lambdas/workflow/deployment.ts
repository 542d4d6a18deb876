import { type CloudWatchClient, DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  type ECSClient,
  type Service,
  type ServiceDeployment,
} from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall } from './aws';
import { UnsupportedDeploymentError } from './errors';
import type { WatchResult } from './state';

export interface DeploymentClients {
  readonly ecs: Pick<ECSClient, 'send'>;
  readonly cloudwatch: Pick<CloudWatchClient, 'send'>;
}

export interface DeploymentSubject {
  readonly service: ServiceRef;
  /** Alarms Autopatch watches (target.alarmNames); the service's own deployment alarms are added. */
  readonly alarmNames: readonly string[];
  /** The patched task definition: a SUCCESSFUL deployment only counts if the service runs it. */
  readonly taskDefinitionArn?: string;
  /** The service deployment to follow; by default the service's current one. */
  readonly deploymentArn?: string;
}

export type Assessment =
  | {
      readonly decided: false;
      readonly deploymentArn: string;
      readonly deploymentStatus: string;
      readonly alarmNames: readonly string[];
    }
  | { readonly decided: true; readonly result: WatchResult; readonly alarmNames: readonly string[] };

/** Statuses in which ECS is still moving: wait for the next event. */
const MOVING = new Set(['ROLLBACK_REQUESTED', 'ROLLBACK_IN_PROGRESS', 'STOP_REQUESTED']);

/** The first watched alarm in ALARM (by name), with when it entered ALARM. */
const firingAlarm = async (
  cloudwatch: DeploymentClients['cloudwatch'],
  names: readonly string[],
): Promise<{ name: string; since?: Date } | undefined> => {
  // DescribeAlarms takes at most 100 names per call.
  for (let i = 0; i < names.length; i += 100) {
    const out = await awsCall('cloudwatch DescribeAlarms', () =>
      cloudwatch.send(
        new DescribeAlarmsCommand({
          AlarmNames: names.slice(i, i + 100),
          StateValue: 'ALARM',
          AlarmTypes: ['MetricAlarm', 'CompositeAlarm'],
        }),
      ),
    );
    const firing = [...(out.MetricAlarms ?? []), ...(out.CompositeAlarms ?? [])]
      .filter((a): a is typeof a & { AlarmName: string } => a.AlarmName !== undefined)
      .sort((a, b) => (a.AlarmName < b.AlarmName ? -1 : a.AlarmName > b.AlarmName ? 1 : 0));
    const first = firing[0];
    if (first) {
      return {
        name: first.AlarmName,
        ...(first.StateUpdatedTimestamp ? { since: first.StateUpdatedTimestamp } : {}),
      };
    }
  }
  return undefined;
};

const describeService = async (clients: DeploymentClients, service: ServiceRef): Promise<Service> => {
  const out = await awsCall('ecs DescribeServices', () =>
    clients.ecs.send(
      new DescribeServicesCommand({ cluster: service.clusterArn, services: [service.serviceName] }),
    ),
  );
  const found = out.services?.[0];
  if (!found)
    throw new UnsupportedDeploymentError(`Service ${service.key} was not found in ${service.clusterArn}.`);
  return found;
};

/** The alarms the bake is judged by: the target's plus the service's own deployment alarms. */
export const watchedAlarms = (service: Service, alarmNames: readonly string[]): string[] => {
  const own = service.deploymentConfiguration?.alarms;
  return [...new Set([...alarmNames, ...(own?.enable ? (own.alarmNames ?? []) : [])])].sort();
};

/** The verdict for one deployment status, or undefined while it is undecided. Pure. */
export const verdict = (
  deployment: Pick<ServiceDeployment, 'status' | 'statusReason' | 'rollback'>,
  deploymentArn: string,
  runningTaskDefinition: string | undefined,
  patchedTaskDefinition: string | undefined,
): WatchResult | undefined => {
  const status = deployment.status ?? 'UNKNOWN';
  const why = deployment.rollback?.reason ?? deployment.statusReason;
  switch (status) {
    case 'SUCCESSFUL':
      if (patchedTaskDefinition && runningTaskDefinition && runningTaskDefinition !== patchedTaskDefinition) {
        return {
          status: 'FAILED',
          deploymentArn,
          reason: `The deployment completed but the service now runs ${runningTaskDefinition}, not the patched ${patchedTaskDefinition}: another deployment replaced it.`,
        };
      }
      return { status: 'SUCCESSFUL', deploymentArn, reason: 'The deployment completed and baked.' };
    case 'ROLLBACK_SUCCESSFUL':
      return {
        status: 'ROLLED_BACK',
        deploymentArn,
        reason: `ECS rolled the deployment back${why ? `: ${why}` : ''}.`,
      };
    case 'ROLLBACK_FAILED':
    case 'STOPPED':
      return {
        status: 'FAILED',
        deploymentArn,
        reason: `ECS reports the deployment as ${status}${why ? `: ${why}` : ''}.`,
      };
    default:
      return undefined;
  }
};

/**
 * Look once at a deployment and the alarms that judge it. Decided: SUCCESSFUL, ROLLED_BACK, FAILED,
 * or ALARM (a watched alarm is firing while the deployment is still in progress). Shared by the
 * watch Lambda (on entry) and the deployment-events Lambda (on each event), so both decide alike.
 */
export const assessDeployment = async (
  subject: DeploymentSubject,
  clients: DeploymentClients,
): Promise<Assessment> => {
  const service = await describeService(clients, subject.service);
  const alarmNames = watchedAlarms(service, subject.alarmNames);
  const deploymentArn = subject.deploymentArn ?? service.currentServiceDeployment;
  if (!deploymentArn) {
    throw new UnsupportedDeploymentError(
      `Service ${subject.service.key} has no current service deployment to watch (deployment controller ${service.deploymentController?.type ?? 'ECS'}). Autopatch deploys services that use the ECS deployment controller (rolling or BLUE_GREEN).`,
    );
  }
  const out = await awsCall('ecs DescribeServiceDeployments', () =>
    clients.ecs.send(new DescribeServiceDeploymentsCommand({ serviceDeploymentArns: [deploymentArn] })),
  );
  const deployment = out.serviceDeployments?.[0];
  if (!deployment) {
    throw new UnsupportedDeploymentError(
      `ECS does not know service deployment ${deploymentArn} (${out.failures?.[0]?.reason ?? 'no reason given'}).`,
    );
  }
  const decided = verdict(deployment, deploymentArn, service.taskDefinition, subject.taskDefinitionArn);
  if (decided) return { decided: true, result: decided, alarmNames };
  const status = deployment.status ?? 'UNKNOWN';
  if (!MOVING.has(status)) {
    const triggered = deployment.alarms?.triggeredAlarmNames?.[0];
    const firing: { name: string; since?: Date } | undefined = triggered
      ? { name: triggered }
      : await firingAlarm(clients.cloudwatch, alarmNames);
    if (firing) {
      return {
        decided: true,
        result: {
          status: 'ALARM',
          alarmName: firing.name,
          deploymentArn,
          reason: `Alarm ${firing.name} is in ALARM during the bake of deployment ${deploymentArn}.`,
          // For the alarm → rollback metric (the finish Lambda): the rollback request follows this decision.
          ...(firing.since ? { alarmAt: firing.since.toISOString() } : {}),
          decidedAt: new Date().toISOString(),
        },
        alarmNames,
      };
    }
  }
  return { decided: false, deploymentArn, deploymentStatus: status, alarmNames };
};
