import * as z from 'zod';
import type { ServiceRef } from '../shared/contracts';
import type { Ledger } from '../shared/ledger';
import { serviceKeyOfServiceArn } from './clients';
import { isCodeDeployDeployment } from './codedeploy/status';
import { type Assessment, assessDeployment, type DeploymentClients } from './deployment';
import type { WatchResult } from './state';
import { resumeWatch, subjectOf, UNREADABLE_LIMIT_MS, type WatchDeps } from './watch-deployment';
import type { WatchRecord, WatchRegistry } from './watch-registry';

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

/** CodeDeploy Deployment State-change Notification (source aws.codedeploy), for CODE_DEPLOY services. */
export const codeDeployEventSchema = z.object({
  source: z.literal('aws.codedeploy'),
  'detail-type': z.literal('CodeDeploy Deployment State-change Notification'),
  detail: z.object({
    deploymentId: z.string(),
    state: z.string(),
    application: z.string().optional(),
    deploymentGroup: z.string().optional(),
  }),
});

export const deploymentEventSchema = z.union([
  ecsDeploymentEventSchema,
  alarmEventSchema,
  codeDeployEventSchema,
]);
export type DeploymentEvent = z.infer<typeof deploymentEventSchema>;

/**
 * The only ECS deployment event that cannot decide anything (a deployment or a rollback starting).
 * COMPLETED, FAILED and any rollback-specific names ECS adds are all worth a look.
 */
export const UNDECIDING_ECS_EVENT = 'SERVICE_DEPLOYMENT_IN_PROGRESS';

/**
 * arn:aws:ecs:<region>:<account>:service/<cluster>/<service> → the ledger key: "<cluster>/<service>"
 * in the hub's account and Region, "<account>/<region>/<cluster>/<service>" elsewhere (serviceKeyOf),
 * so a spoke's forwarded event finds its service's lock.
 */
export const serviceKeyFromArn = (arn: string): string | undefined => serviceKeyOfServiceArn(arn);

export interface EventsDeps extends DeploymentClients {
  /**
   * The clients of a service's own account and Region (the handlers' `serviceClients`): a service in a
   * spoke is read with the spoke role. Without it, the clients above serve every service.
   */
  readonly clientsFor?: (service: ServiceRef) => DeploymentClients;
  readonly sfn: WatchDeps['sfn'];
  readonly ledger: Pick<Ledger, 'getInFlight' | 'getTaskToken'>;
  readonly registry: Pick<WatchRegistry, 'get' | 'servicesWatching' | 'touch' | 'forget'> &
    Partial<Pick<WatchRegistry, 'list'>>;
}

export type Handled =
  | {
      readonly serviceKey: string;
      readonly action: 'resumed' | 'already-resumed';
      readonly result: WatchResult;
    }
  | {
      readonly serviceKey: string;
      readonly action: 'undecided';
      readonly deploymentStatus: string;
      readonly waitingFor: string;
    }
  | { readonly serviceKey: string; readonly action: 'unreadable'; readonly error: string }
  | { readonly serviceKey: string; readonly action: 'not-watching' };

export interface CheckOptions {
  /**
   * When the look fails: true (the heartbeat) reports 'unreadable' and, once the watch has not been
   * read for UNREADABLE_LIMIT_MS, resumes it with UNKNOWN (fail closed); false (an event) rethrows,
   * so the delivery is retried.
   */
  readonly heartbeat?: boolean;
  readonly now?: Date;
  /** The heartbeat's record of the wait (from the registry's list): no need to read it again. */
  readonly watch?: WatchRecord;
}

/** A good look is noted at most this often (it only has to beat UNREADABLE_LIMIT_MS). */
const TOUCH_EVERY_MS = 2 * 60_000;

const describeError = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/**
 * Look at one service whose deployment or alarm changed (or whose heartbeat is due): if a
 * remediation is in flight for it and waits on a watch, judge the deployment from the APIs (the same
 * check the watch Lambda makes on entry) and resume the execution once it is decided. The event only
 * says "look now"; the decision is made on the current state, so duplicate, late, lost or
 * out-of-order events cannot mislead it.
 */
export const checkService = async (
  serviceKey: string,
  deps: EventsDeps,
  options: CheckOptions = {},
): Promise<Handled> => {
  const now = options.now ?? new Date();
  let watch = options.watch;
  let service = watch?.service;
  if (!watch || !service) {
    // An event: is a remediation in flight for the service, and does it wait on a watch?
    const inFlight = await deps.ledger.getInFlight(serviceKey);
    if (!inFlight) return { serviceKey, action: 'not-watching' };
    watch = await deps.registry.get(serviceKey);
    if (!watch || watch.executionName !== inFlight.executionName)
      return { serviceKey, action: 'not-watching' };
    service = inFlight.request.service;
  }
  // The token is the execution's current wait; a used one only answers TaskDoesNotExist.
  const token = await deps.ledger.getTaskToken(watch.executionName, 'watch');
  if (!token) return { serviceKey, action: 'not-watching' };
  let assessment: Assessment;
  try {
    const clients = deps.clientsFor ? { ...deps, ...deps.clientsFor(service) } : deps;
    assessment = await assessDeployment(subjectOf(watch, service), clients, now);
  } catch (error) {
    if (!options.heartbeat) throw error;
    const lastRead = Date.parse(watch.lastAssessedAt ?? watch.watchingSince ?? '');
    if (Number.isNaN(lastRead) || now.getTime() - lastRead < UNREADABLE_LIMIT_MS) {
      return { serviceKey, action: 'unreadable', error: describeError(error) };
    }
    assessment = {
      decided: true,
      alarmNames: watch.alarmNames,
      result: {
        status: 'UNKNOWN',
        deploymentArn: watch.deploymentArn,
        reason: `Autopatch could not read the state of deployment ${watch.deploymentArn} or its alarms for ${Math.round((now.getTime() - lastRead) / 60_000)} minutes (${describeError(error)}), so it cannot tell whether the service is healthy.`,
        decidedAt: now.toISOString(),
      },
    };
  }
  if (!assessment.decided) {
    // The heartbeat notes a good look (the fail-closed clock), at most every TOUCH_EVERY_MS.
    const last = Date.parse(watch.lastAssessedAt ?? '');
    if (options.heartbeat && watch.watchId && !(now.getTime() - last < TOUCH_EVERY_MS))
      await deps.registry.touch(serviceKey, watch.watchId, now);
    return {
      serviceKey,
      action: 'undecided',
      deploymentStatus: assessment.deploymentStatus,
      waitingFor: assessment.waitingFor,
    };
  }
  const resumed = await resumeWatch(deps.sfn, token.token, assessment.result);
  if (watch.watchId) await deps.registry.forget(serviceKey, watch.watchId);
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
  if (event.source === 'aws.codedeploy') {
    if (event.detail.state === 'START') return [];
    // The event names the deployment, not the service; a rollback is a deployment of its own id.
    // Every watch that follows a CodeDeploy deployment looks (there are few watches at a time).
    const watches = deps.registry.list ? await deps.registry.list() : [];
    return [
      ...new Set(watches.filter((w) => isCodeDeployDeployment(w.deploymentArn)).map((w) => w.serviceKey)),
    ];
  }
  if (event.detail.state.value !== 'ALARM') return [];
  return deps.registry.servicesWatching(event.detail.alarmName);
};

/**
 * The deployment-events Lambda's logic. Latency from an alarm to the rollback request is EventBridge
 * delivery (typically seconds) plus this one invocation (a handful of DynamoDB/ECS/CloudWatch reads
 * and SendTaskSuccess, about a second warm) plus one state transition: well under 60 seconds.
 */
export const handleDeploymentEvent = async (
  event: DeploymentEvent,
  deps: EventsDeps,
  now: Date = new Date(),
): Promise<Handled[]> => {
  const services = await servicesFor(event, deps);
  const handled: Handled[] = [];
  for (const serviceKey of services) handled.push(await checkService(serviceKey, deps, { now }));
  return handled;
};

/**
 * The heartbeat: look at every watch in force, whether or not an event arrived, so a lost or delayed
 * event delays a decision by at most one heartbeat (a minute), the end of a bake is noticed without
 * any event, and a state that stays unreadable fails closed. One service's failure never stops the
 * others.
 */
export const heartbeat = async (
  deps: EventsDeps & { registry: Pick<WatchRegistry, 'list'> },
  now = new Date(),
) => {
  const handled: Handled[] = [];
  for (const watch of await deps.registry.list()) {
    const { serviceKey } = watch;
    try {
      const result = await checkService(serviceKey, deps, { heartbeat: true, now, watch });
      // A wait whose execution no longer waits (it ended, or was stopped) is forgotten.
      if ((result.action === 'not-watching' || result.action === 'already-resumed') && watch.watchId)
        await deps.registry.forget(serviceKey, watch.watchId);
      handled.push(result);
    } catch (error) {
      handled.push({ serviceKey, action: 'unreadable', error: describeError(error) });
    }
  }
  return handled;
};
