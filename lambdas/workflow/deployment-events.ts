import * as z from 'zod';
import type { Ledger } from '../shared/ledger';
import { assessDeployment, type DeploymentClients } from './deployment';
import type { WatchResult } from './state';
import { resumeWatch, type WatchDeps } from './watch-deployment';
import type { WatchRegistry } from './watch-registry';

/** ECS Deployment State Change (source aws.ecs): resources[0] is the service ARN. */
export const ecsDeploymentEventSchema = z.object({
  source: z.literal('aws.ecs'),
  'detail-type': z.literal('ECS Deployment State Change'),
  resources: z.array(z.string()).min(1),
  detail: z.object({
    eventName: z.string(),
    deploymentId: z.string().optional(),
    reason: z.string().optional(),
  }),
});

/** CloudWatch Alarm State Change (source aws.cloudwatch). */
export const alarmEventSchema = z.object({
  source: z.literal('aws.cloudwatch'),
  'detail-type': z.literal('CloudWatch Alarm State Change'),
  detail: z.object({ alarmName: z.string(), state: z.object({ value: z.string() }) }),
});

export const deploymentEventSchema = z.union([ecsDeploymentEventSchema, alarmEventSchema]);
export type DeploymentEvent = z.infer<typeof deploymentEventSchema>;

/**
 * The only ECS deployment event that cannot decide anything (a deployment or a rollback starting).
 * COMPLETED, FAILED and any rollback-specific names ECS adds are all worth a look.
 */
export const UNDECIDING_ECS_EVENT = 'SERVICE_DEPLOYMENT_IN_PROGRESS';

/** arn:aws:ecs:<region>:<account>:service/<cluster>/<service> → "<cluster>/<service>" (the ledger key). */
export const serviceKeyFromArn = (arn: string): string | undefined => {
  const match = /:service\/([^/]+)\/([^/]+)$/.exec(arn);
  return match ? `${match[1]}/${match[2]}` : undefined;
};

export interface EventsDeps extends DeploymentClients {
  readonly sfn: WatchDeps['sfn'];
  readonly ledger: Pick<Ledger, 'getInFlight' | 'getTaskToken' | 'deleteTaskToken'>;
  readonly registry: Pick<WatchRegistry, 'get' | 'servicesWatching'>;
}

export type Handled =
  | {
      readonly serviceKey: string;
      readonly action: 'resumed' | 'already-resumed';
      readonly result: WatchResult;
    }
  | { readonly serviceKey: string; readonly action: 'undecided'; readonly deploymentStatus: string }
  | { readonly serviceKey: string; readonly action: 'not-watching' };

/**
 * Look at one service whose deployment or alarm changed: if a remediation is in flight for it and
 * waits on a watch token, judge the deployment (the same check the watch Lambda makes on entry) and
 * resume the execution once it is decided. The event only says "look now"; the decision is made on
 * the current state, so duplicate, late or out-of-order events cannot mislead it.
 */
export const checkService = async (serviceKey: string, deps: EventsDeps): Promise<Handled> => {
  const inFlight = await deps.ledger.getInFlight(serviceKey);
  if (!inFlight) return { serviceKey, action: 'not-watching' };
  const token = await deps.ledger.getTaskToken(inFlight.executionName, 'watch');
  if (!token) return { serviceKey, action: 'not-watching' };
  const watch = await deps.registry.get(serviceKey);
  const pinned = watch?.executionName === inFlight.executionName ? watch : undefined;
  const assessment = await assessDeployment(
    {
      service: inFlight.request.service,
      alarmNames: inFlight.request.target.alarmNames,
      ...(pinned ? { taskDefinitionArn: pinned.taskDefinitionArn, deploymentArn: pinned.deploymentArn } : {}),
    },
    deps,
  );
  if (!assessment.decided)
    return { serviceKey, action: 'undecided', deploymentStatus: assessment.deploymentStatus };
  const resumed = await resumeWatch(deps.sfn, token.token, assessment.result);
  await deps.ledger.deleteTaskToken(inFlight.executionName, 'watch');
  return { serviceKey, action: resumed ? 'resumed' : 'already-resumed', result: assessment.result };
};

/** The services an event concerns. */
export const servicesFor = async (
  event: DeploymentEvent,
  deps: Pick<EventsDeps, 'registry'>,
): Promise<string[]> => {
  if (event.source === 'aws.ecs') {
    if (event.detail.eventName === UNDECIDING_ECS_EVENT) return [];
    return event.resources.map(serviceKeyFromArn).filter((k): k is string => k !== undefined);
  }
  if (event.detail.state.value !== 'ALARM') return [];
  return deps.registry.servicesWatching(event.detail.alarmName);
};

/**
 * The deployment-events Lambda's logic. Latency from an alarm to the rollback request is EventBridge
 * delivery (typically seconds) plus this one invocation (a handful of DynamoDB/ECS/CloudWatch reads
 * and SendTaskSuccess, about a second warm) plus one state transition: well under 60 seconds.
 */
export const handleDeploymentEvent = async (event: DeploymentEvent, deps: EventsDeps): Promise<Handled[]> => {
  const services = await servicesFor(event, deps);
  const handled: Handled[] = [];
  for (const serviceKey of services) handled.push(await checkService(serviceKey, deps));
  return handled;
};
