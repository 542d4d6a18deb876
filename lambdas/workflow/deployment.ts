import { type CloudWatchClient, DescribeAlarmHistoryCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeServiceDeploymentsCommand, type ECSClient, type Service } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { readAlarms, watchedAlarms } from './alarms';
import { awsCall } from './aws';
import {
  type CodeDeployApi,
  getCodeDeployDeployment,
  isCodeDeployDeployment,
  normalizedStatus,
  primaryTaskDefinition,
} from './codedeploy/status';
import { describeService } from './ecs-service';
import { UnsupportedDeploymentError } from './errors';
import type { WatchResult } from './state';

export { type AlarmStates, readAlarms, watchedAlarms } from './alarms';

export interface DeploymentClients {
  readonly ecs: Pick<ECSClient, 'send'>;
  readonly cloudwatch: Pick<CloudWatchClient, 'send'>;
  /** For services deployed by CodeDeploy (deployment controller CODE_DEPLOY). */
  readonly codedeploy?: CodeDeployApi;
}

/**
 * What a watch waits for:
 * - `bake`: the patched deployment completes and then runs through the whole configured bake with
 *   every watched alarm readable and OK (→ SUCCESSFUL); an alarm before that → ALARM.
 * - `rollback`: the service is back on its last good revision (→ ROLLED_BACK), or that failed.
 */
export type WatchMode = 'bake' | 'rollback';

export interface DeploymentSubject {
  readonly service: ServiceRef;
  readonly mode?: WatchMode;
  /** Alarms Autopatch watches (target.alarmNames); the service's own deployment alarms are added. */
  readonly alarmNames: readonly string[];
  /**
   * The revision the watch expects the service to end on: the patched task definition (bake), or
   * the last good one (rollback).
   */
  readonly taskDefinitionArn?: string;
  /** The service deployment to follow; by default the service's current one. */
  readonly deploymentArn?: string;
  /** The configured bake (bake mode), in seconds. 0: judged as soon as ECS completes. */
  readonly bakeSeconds?: number;
  /** ISO-8601: when the watch began (UpdateService). Alarm history is read from here on. */
  readonly watchingSince?: string;
}

export type Assessment =
  | {
      readonly decided: false;
      readonly deploymentArn: string;
      readonly deploymentStatus: string;
      readonly alarmNames: readonly string[];
      /** Why it is not decided yet, for the logs and the registry. */
      readonly waitingFor: string;
      /** ISO-8601: when the bake ends, once ECS has completed the deployment. */
      readonly bakeEndsAt?: string;
    }
  | { readonly decided: true; readonly result: WatchResult; readonly alarmNames: readonly string[] };

/** ECS deployment statuses in which ECS still moves the service. */
const ROLLING_BACK = new Set(['ROLLBACK_REQUESTED', 'ROLLBACK_IN_PROGRESS', 'STOP_REQUESTED']);
const IN_PROGRESS = new Set(['PENDING', 'IN_PROGRESS']);

/**
 * The first watched alarm that was in ALARM at any moment since `since` (DescribeAlarmHistory), so an
 * alarm that fired and recovered between two looks, with its event lost, still counts.
 */
export const alarmThatFiredSince = async (
  cloudwatch: DeploymentClients['cloudwatch'],
  names: readonly string[],
  since: Date,
  until: Date,
): Promise<{ name: string; at?: Date } | undefined> => {
  for (const name of [...names].sort()) {
    let nextToken: string | undefined;
    do {
      const out = await awsCall('cloudwatch DescribeAlarmHistory', () =>
        cloudwatch.send(
          new DescribeAlarmHistoryCommand({
            AlarmName: name,
            HistoryItemType: 'StateUpdate',
            StartDate: since,
            EndDate: until,
            ...(nextToken ? { NextToken: nextToken } : {}),
          }),
        ),
      );
      for (const item of out.AlarmHistoryItems ?? []) {
        if (/ to ALARM$/.test(item.HistorySummary ?? '')) {
          return { name, ...(item.Timestamp ? { at: item.Timestamp } : {}) };
        }
      }
      nextToken = out.NextToken;
    } while (nextToken);
  }
  return undefined;
};

const serviceNow = async (clients: DeploymentClients, service: ServiceRef): Promise<Service> => {
  const found = await describeService(clients.ecs, service);
  if (!found)
    throw new UnsupportedDeploymentError(`Service ${service.key} was not found in ${service.clusterArn}.`);
  return found;
};

/**
 * How long after ECS reports the deployment SUCCESSFUL Autopatch keeps watching, so the whole
 * configured bake is watched after production traffic reached the new tasks. Rolling: all of it
 * (ECS completes at steady state). Native blue/green: ECS completes after its own bake, which ran
 * after the production traffic shift, so only what ECS's bake did not cover.
 */
export const bakeAfterCompletionSeconds = (service: Service, bakeSeconds: number): number => {
  const config = service.deploymentConfiguration;
  const ecsBakeSeconds = config?.strategy === 'BLUE_GREEN' ? (config.bakeTimeInMinutes ?? 0) * 60 : 0;
  return Math.max(0, bakeSeconds - ecsBakeSeconds);
};

/** The verdict for one deployment status that needs no alarm, or undefined while it is undecided. Pure. */
export const verdict = (
  deployment: {
    readonly status?: string;
    readonly statusReason?: string;
    readonly rollback?: { readonly reason?: string };
  },
  deploymentArn: string,
  runningTaskDefinition: string | undefined,
  patchedTaskDefinition: string | undefined,
  /** Who runs the deployment, for the reason: ECS, or CodeDeploy for a CODE_DEPLOY service. */
  who: 'ECS' | 'CodeDeploy' = 'ECS',
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
      return undefined;
    case 'ROLLBACK_SUCCESSFUL':
      return {
        status: 'ROLLED_BACK',
        deploymentArn,
        reason: `${who} rolled the deployment back${why ? `: ${why}` : ''}.`,
      };
    case 'ROLLBACK_FAILED':
    case 'STOPPED':
      return {
        status: 'FAILED',
        deploymentArn,
        reason: `${who} reports the deployment as ${status}${why ? `: ${why}` : ''}.`,
      };
    default:
      return undefined;
  }
};

const minutesBetween = (from: Date | undefined, to: Date): string =>
  from ? `${Math.max(0, Math.round((to.getTime() - from.getTime()) / 6_000) / 10)}` : '?';

/**
 * One deployment, whoever runs it, in ECS's vocabulary: an ECS service deployment, or a CodeDeploy
 * deployment of a CODE_DEPLOY service (see normalizedStatus), so both are judged by the same rules.
 */
interface DeploymentView {
  readonly controller: 'ECS' | 'CODE_DEPLOY';
  /** The ECS service deployment ARN, or the CodeDeploy deployment id. */
  readonly deploymentArn: string;
  readonly status: string;
  readonly statusReason?: string;
  readonly rollbackReason?: string;
  /** A deployment alarm ECS itself reports as triggered. */
  readonly triggeredAlarm?: string;
  readonly startedAt?: Date;
  /** When the deployment completed (SUCCESSFUL). */
  readonly completedAt?: Date;
  /** The task definition that serves production traffic now. */
  readonly runningTaskDefinition?: string;
  /** Seconds of the configured bake still to watch after completion. */
  readonly bakeAfterCompletion: (bakeSeconds: number) => number;
}

const ecsView = async (
  clients: DeploymentClients,
  service: Service,
  subject: DeploymentSubject,
): Promise<DeploymentView> => {
  const deploymentArn = subject.deploymentArn ?? service.currentServiceDeployment;
  if (!deploymentArn) {
    throw new UnsupportedDeploymentError(
      `Service ${subject.service.key} has no current service deployment to watch (deployment controller ${service.deploymentController?.type ?? 'ECS'}). Autopatch deploys services that use the ECS deployment controller (rolling or BLUE_GREEN) or CodeDeploy.`,
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
  const completedAt = deployment.finishedAt ?? deployment.updatedAt;
  const triggered = deployment.alarms?.triggeredAlarmNames?.[0];
  return {
    controller: 'ECS',
    deploymentArn,
    status: deployment.status ?? 'UNKNOWN',
    ...(deployment.statusReason ? { statusReason: deployment.statusReason } : {}),
    ...(deployment.rollback?.reason ? { rollbackReason: deployment.rollback.reason } : {}),
    ...(triggered ? { triggeredAlarm: triggered } : {}),
    ...(deployment.startedAt ? { startedAt: deployment.startedAt } : {}),
    ...(completedAt ? { completedAt } : {}),
    ...(service.taskDefinition ? { runningTaskDefinition: service.taskDefinition } : {}),
    bakeAfterCompletion: (bakeSeconds) => bakeAfterCompletionSeconds(service, bakeSeconds),
  };
};

/**
 * A CodeDeploy deployment. The whole configured bake is watched after CodeDeploy reports it
 * Succeeded: whether the deployment group's wait before terminating the original task set comes
 * before or after that status is not something Autopatch relies on, so it never subtracts it (a
 * longer watch, never a shorter one).
 */
const codeDeployView = async (
  clients: DeploymentClients,
  service: Service,
  subject: DeploymentSubject,
): Promise<DeploymentView> => {
  const deploymentId = subject.deploymentArn;
  if (!deploymentId || !isCodeDeployDeployment(deploymentId)) {
    throw new UnsupportedDeploymentError(
      `Service ${subject.service.key} is deployed by CodeDeploy, and the watch names no CodeDeploy deployment (${deploymentId || 'none'}).`,
    );
  }
  if (!clients.codedeploy)
    throw new UnsupportedDeploymentError('This watcher has no CodeDeploy client (a wiring error).');
  const deployment = await getCodeDeployDeployment(clients.codedeploy, deploymentId);
  const rollbackId = deployment.rollbackInfo?.rollbackDeploymentId;
  const rollback = rollbackId ? await getCodeDeployDeployment(clients.codedeploy, rollbackId) : undefined;
  const { status, reason } = normalizedStatus(deployment, rollback);
  const running = primaryTaskDefinition(service);
  const completedAt = deployment.completeTime;
  return {
    controller: 'CODE_DEPLOY',
    deploymentArn: deploymentId,
    status,
    ...(reason ? { statusReason: reason } : {}),
    // errorInformation says why CodeDeploy stopped it (ALARM_ACTIVE names the alarms), rollbackMessage
    // only how the rollback went: the reason keeps both.
    ...(rollback
      ? {
          rollbackReason:
            [deployment.errorInformation?.message, deployment.rollbackInfo?.rollbackMessage]
              .filter((x): x is string => Boolean(x))
              .join(' ') || 'CodeDeploy rolled it back',
        }
      : {}),
    ...(deployment.startTime || deployment.createTime
      ? { startedAt: (deployment.startTime ?? deployment.createTime) as Date }
      : {}),
    ...(completedAt ? { completedAt } : {}),
    ...(running ? { runningTaskDefinition: running } : {}),
    bakeAfterCompletion: (bakeSeconds) => bakeSeconds,
  };
};

/** Judge a deployment Autopatch rolls back or redeploys: is the service back on its last good revision? */
const assessRollback = (
  service: Service,
  view: DeploymentView,
  lastGood: string | undefined,
  alarmNames: readonly string[],
): Assessment => {
  const { status, deploymentArn } = view;
  const runs = view.runningTaskDefinition;
  const back = lastGood === undefined || runs === lastGood;
  // Back means the service runs the last good revision: a ROLLBACK_SUCCESSFUL of the deployment that
  // was meant to put it back (ECS's own deployment alarms rolling a restore back) is the opposite.
  if ((status === 'ROLLBACK_SUCCESSFUL' || status === 'SUCCESSFUL') && back) {
    return {
      decided: true,
      alarmNames,
      result: {
        status: 'ROLLED_BACK',
        deploymentArn,
        reason: `${service.serviceName} is back on ${runs ?? 'its last good revision'} (deployment ${status}).`,
      },
    };
  }
  if (
    status === 'SUCCESSFUL' ||
    status === 'ROLLBACK_SUCCESSFUL' ||
    status === 'ROLLBACK_FAILED' ||
    status === 'STOPPED'
  ) {
    return {
      decided: true,
      alarmNames,
      result: {
        status: 'FAILED',
        deploymentArn,
        reason: `Putting ${service.serviceName} back did not work: deployment ${deploymentArn} is ${status}${view.statusReason ? ` (${view.statusReason})` : ''} and the service runs ${runs ?? 'an unknown revision'}.`,
      },
    };
  }
  return {
    decided: false,
    deploymentArn,
    deploymentStatus: status,
    alarmNames,
    waitingFor: `${view.controller === 'CODE_DEPLOY' ? 'CodeDeploy' : 'ECS'} to finish putting the service back (${status})`,
  };
};

/**
 * Look once at a deployment and the alarms that judge it. Shared by the watch Lambda (on entry), the
 * deployment-events Lambda (on each event) and the heartbeat sweep, so all decide alike, always from
 * the current state read from the APIs (an event only says "look now"). ECS deployments and CodeDeploy
 * deployments (CODE_DEPLOY services) are judged by the same rules.
 *
 * Bake mode decides:
 * - ROLLED_BACK / FAILED from the deployment's own status (it rolled back, failed, or another
 *   deployment won);
 * - UNKNOWN when a watched alarm does not exist (fail closed: nobody can tell whether it is healthy);
 * - ALARM when a watched alarm is in ALARM, or was at any moment since the watch began;
 * - SUCCESSFUL only once the deployment completed on the patched revision, the configured bake
 *   has elapsed after production traffic reached it, and every watched alarm is readable and OK.
 * Errors reading any of it propagate: the caller decides how long "cannot tell" may last.
 */
export const assessDeployment = async (
  subject: DeploymentSubject,
  clients: DeploymentClients,
  now: Date = new Date(),
): Promise<Assessment> => {
  const service = await serviceNow(clients, subject.service);
  const alarmNames = watchedAlarms(service, subject.alarmNames);
  const codeDeploy =
    service.deploymentController?.type === 'CODE_DEPLOY' || isCodeDeployDeployment(subject.deploymentArn);
  const view = codeDeploy
    ? await codeDeployView(clients, service, subject)
    : await ecsView(clients, service, subject);
  const { deploymentArn, status } = view;
  const who = view.controller === 'CODE_DEPLOY' ? 'CodeDeploy' : 'ECS';
  if (subject.mode === 'rollback')
    return assessRollback(service, view, subject.taskDefinitionArn, alarmNames);

  const decided = verdict(
    {
      status,
      ...(view.statusReason ? { statusReason: view.statusReason } : {}),
      ...(view.rollbackReason ? { rollback: { reason: view.rollbackReason } } : {}),
    },
    deploymentArn,
    view.runningTaskDefinition,
    subject.taskDefinitionArn,
    who,
  );
  if (decided) return { decided: true, result: decided, alarmNames };
  if (ROLLING_BACK.has(status)) {
    return {
      decided: false,
      deploymentArn,
      deploymentStatus: status,
      alarmNames,
      waitingFor: `${who} (${status})`,
    };
  }

  const since = subject.watchingSince ? new Date(subject.watchingSince) : view.startedAt;
  const sinceText = `${minutesBetween(since, now)} minutes after the deploy`;
  const alarms = await readAlarms(clients.cloudwatch, alarmNames);
  /** Fail closed: nothing can tell whether the service is healthy. */
  const unknown = (reason: string): Assessment => ({
    decided: true,
    alarmNames,
    result: { status: 'UNKNOWN', deploymentArn, reason, decidedAt: now.toISOString() },
  });
  if (alarms.missing.length > 0) {
    return unknown(
      `Watched alarm ${alarms.missing.join(', ')} does not exist (${sinceText}): Autopatch cannot tell whether ${service.serviceName} is healthy, so it does not call it patched.`,
    );
  }
  const ecsCompleted = status === 'SUCCESSFUL';
  const alarmResult = (fired: { name: string; since?: Date }): Assessment => ({
    decided: true,
    alarmNames,
    result: {
      status: 'ALARM',
      alarmName: fired.name,
      deploymentArn,
      ecsCompleted,
      controller: view.controller,
      reason: `Alarm ${fired.name} went into ALARM ${fired.since ? `${minutesBetween(since, fired.since)} minutes after the deploy` : `by ${sinceText}`}, during the ${ecsCompleted ? 'bake' : 'deployment'} of ${deploymentArn}.`,
      // For the alarm → rollback metric (the finish Lambda): the rollback request follows this decision.
      ...(fired.since ? { alarmAt: fired.since.toISOString() } : {}),
      decidedAt: now.toISOString(),
    },
  });
  const firing = view.triggeredAlarm ? { name: view.triggeredAlarm } : alarms.firing[0];
  if (firing) return alarmResult(firing);
  if (!ecsCompleted) {
    return {
      decided: false,
      deploymentArn,
      deploymentStatus: status,
      alarmNames,
      waitingFor: IN_PROGRESS.has(status) ? `${who} to complete the deployment` : `${who} (${status})`,
    };
  }
  const completedAt = view.completedAt ?? now;
  const bakeEndsAt = new Date(
    completedAt.getTime() + view.bakeAfterCompletion(subject.bakeSeconds ?? 0) * 1000,
  );
  if (now.getTime() < bakeEndsAt.getTime()) {
    return {
      decided: false,
      deploymentArn,
      deploymentStatus: status,
      alarmNames,
      waitingFor: `the bake to end at ${bakeEndsAt.toISOString()}`,
      bakeEndsAt: bakeEndsAt.toISOString(),
    };
  }
  if (alarms.insufficient.length > 0) {
    // Not OK is not healthy: keep watching until they report, up to the watch's deadline.
    return {
      decided: false,
      deploymentArn,
      deploymentStatus: status,
      alarmNames,
      waitingFor: `alarm ${alarms.insufficient.join(', ')} to leave INSUFFICIENT_DATA`,
      bakeEndsAt: bakeEndsAt.toISOString(),
    };
  }
  if ((service.runningCount ?? 1) === 0) {
    // Nothing took traffic during the bake (the owner scaled it to 0): it proves nothing.
    return unknown(
      `${service.serviceName} runs no task at the end of the bake (${sinceText}): nothing took traffic on the patched revision, so nothing shows it is healthy.`,
    );
  }
  // Before calling it baked: an alarm that fired and recovered between two looks (its event lost)
  // counts as firing too.
  if (since && alarmNames.length > 0) {
    const flapped = await alarmThatFiredSince(clients.cloudwatch, alarmNames, since, now);
    if (flapped) return alarmResult({ name: flapped.name, ...(flapped.at ? { since: flapped.at } : {}) });
  }
  const bakeMinutes = Math.round((subject.bakeSeconds ?? 0) / 6) / 10;
  return {
    decided: true,
    alarmNames,
    result: {
      status: 'SUCCESSFUL',
      deploymentArn,
      reason: `The deployment completed and baked for ${bakeMinutes} minutes after production traffic reached it (${sinceText}), with ${alarmNames.length === 0 ? 'no watched alarm' : `every watched alarm OK (${alarmNames.join(', ')})`}.`,
      decidedAt: now.toISOString(),
    },
  };
};
