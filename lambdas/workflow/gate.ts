import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type { ServiceRef, TargetSettings } from '../shared/contracts';
import { readAlarms, watchedAlarms } from './alarms';
import { type DeploymentGroupRef, findDeploymentGroup } from './codedeploy/groups';
import type { CodeDeployApi } from './codedeploy/status';
import { describeService } from './ecs-service';
import { UnsupportedDeploymentError } from './errors';

/**
 * How long a remediation waits for an alarm that was already in ALARM before it deployed anything,
 * re-checking every 10 minutes, before it gives up as Deferred.
 */
export const DEFER_LIMIT_SECONDS = 24 * 3_600;

export interface GateInput {
  readonly service: ServiceRef;
  /**
   * The request's target: alarmNames (the service's own deployment alarms are added) and
   * withoutAlarms (absent in requests from before it existed: the safe default).
   */
  readonly target: Pick<TargetSettings, 'alarmNames' | 'withoutAlarms'> & {
    /** The CodeDeploy deployment group of a CODE_DEPLOY service, when the target names it. */
    readonly codeDeploy?: DeploymentGroupRef;
  };
  /** Where the check runs: before anything is built, or right before traffic moves. */
  readonly stage: 'plan' | 'deploy';
  /** The previous check's result, to time how long an alarm has kept the deployment waiting. */
  readonly previous?: Partial<GateResult>;
}

export type GateVerdict = 'ready' | 'firing' | 'deferred' | 'missing' | 'unobserved' | 'unsupported';

export interface GateResult {
  readonly verdict: GateVerdict;
  /** unobserved: a human approves before anything is built (withoutAlarms 'approve'). */
  readonly approvalRequired: boolean;
  /** A sentence for on-call: why this verdict. */
  readonly reason: string;
  readonly stage: GateInput['stage'];
  readonly alarmNames: readonly string[];
  readonly controller: string;
  /** ISO-8601: when this remediation first found a watched alarm already firing at this stage ('' if none). */
  readonly firingSince: string;
}

/**
 * "Check the service can be watched" / "Check the alarms before deploying": before anything is
 * built, and again right before traffic moves, make sure the deployment can be judged at all.
 * - unsupported: the service is gone, an EXTERNAL controller owns its deployments, or it is a
 *   CODE_DEPLOY service no CodeDeploy deployment group deploys: nothing is built.
 * - missing: a watched alarm does not exist (misspelt, deleted): nobody could tell if it breaks.
 * - firing: a watched alarm is already in ALARM: deploying now would blame the patch for it, so the
 *   remediation waits and checks again; deferred once it has waited DEFER_LIMIT_SECONDS.
 * - deferred: the service runs no task (desired count 0): nothing could judge a deployment.
 * - unobserved: no watched alarm at all, or one in INSUFFICIENT_DATA: approval required unless the
 *   target says withoutAlarms 'deploy'.
 * Read errors propagate (retried by the state, then the one failure path: nothing deployed).
 */
export const checkGate = async (
  input: GateInput,
  clients: {
    readonly ecs: Pick<ECSClient, 'send'>;
    readonly cloudwatch: Pick<CloudWatchClient, 'send'>;
    readonly codedeploy?: CodeDeployApi;
  },
  now: Date = new Date(),
): Promise<GateResult> => {
  const service = await describeService(clients.ecs, input.service);
  const base = { stage: input.stage, approvalRequired: false, firingSince: '' };
  if (!service) {
    return {
      ...base,
      verdict: 'unsupported',
      controller: 'NONE',
      alarmNames: [],
      reason: `Service ${input.service.key} does not exist (any more) in ${input.service.clusterArn}: nothing to patch.`,
    };
  }
  const controller = service.deploymentController?.type ?? 'ECS';
  const alarmNames = watchedAlarms(service, input.target.alarmNames);
  if (controller === 'CODE_DEPLOY') {
    // Deployed through CodeDeploy: only if a deployment group Autopatch can find deploys it.
    const problem = clients.codedeploy
      ? await findDeploymentGroup(clients.codedeploy, input.service, input.target.codeDeploy).then(
          () => undefined,
          (error: unknown) => {
            if (error instanceof UnsupportedDeploymentError) return error.message;
            throw error;
          },
        )
      : 'this check has no CodeDeploy client';
    if (problem) {
      return {
        ...base,
        verdict: 'unsupported',
        controller,
        alarmNames,
        reason: `Service ${input.service.key} uses the CODE_DEPLOY deployment controller, and Autopatch cannot deploy it through CodeDeploy: ${problem}`,
      };
    }
  } else if (controller !== 'ECS') {
    return {
      ...base,
      verdict: 'unsupported',
      controller,
      alarmNames,
      reason: `Service ${input.service.key} uses the ${controller} deployment controller: its deployments are made by another tool, so Autopatch does not rebuild for it. Patch it through the tool that deploys it.`,
    };
  }
  if ((service.desiredCount ?? 1) === 0) {
    return {
      ...base,
      verdict: 'deferred',
      controller,
      alarmNames,
      reason: `Service ${input.service.key} runs no task (desired count 0): a deployment would prove nothing about the patched image, so nothing was deployed. The findings stay open; they start a new remediation when the service runs again and Inspector reports them.`,
    };
  }
  const alarms = await readAlarms(clients.cloudwatch, alarmNames);
  if (alarms.missing.length > 0) {
    return {
      ...base,
      verdict: 'missing',
      controller,
      alarmNames,
      reason: `Watched alarm ${alarms.missing.join(', ')} does not exist: nobody could tell whether ${input.service.key} breaks after the deploy. Fix the alarm name (targets[].alarmNames, or the service's deployment alarms) and retry.`,
    };
  }
  const firing = alarms.firing[0];
  if (firing) {
    const previous = input.previous?.stage === input.stage ? input.previous.firingSince : undefined;
    const firingSince = previous || now.toISOString();
    const waited = (now.getTime() - Date.parse(firingSince)) / 1000;
    const deferred = waited >= DEFER_LIMIT_SECONDS;
    return {
      ...base,
      verdict: deferred ? 'deferred' : 'firing',
      controller,
      alarmNames,
      firingSince,
      reason: deferred
        ? `Alarm ${firing.name} was already in ALARM before Autopatch deployed anything, and stayed so for ${Math.round(waited / 3_600)} hours: nothing was deployed.`
        : `Alarm ${firing.name} is already in ALARM${firing.since ? ` (since ${firing.since.toISOString()})` : ''}, before anything is deployed: Autopatch waits for it to clear rather than deploy and blame the patch.`,
    };
  }
  if (alarmNames.length === 0 || alarms.insufficient.length > 0) {
    const approvalRequired = input.target.withoutAlarms !== 'deploy';
    const what =
      alarmNames.length === 0
        ? `No alarm watches ${input.service.key} (no targets[].alarmNames, no ECS deployment alarms)`
        : `Alarm ${alarms.insufficient.join(', ')} is in INSUFFICIENT_DATA`;
    return {
      ...base,
      verdict: 'unobserved',
      approvalRequired,
      controller,
      alarmNames,
      reason: `${what}: nothing could tell whether the patched revision is healthy. ${approvalRequired ? 'A person approves before it is deployed (target withoutAlarms: approve).' : 'Deployed anyway, as the target says (withoutAlarms: deploy).'}`,
    };
  }
  return {
    ...base,
    verdict: 'ready',
    controller,
    alarmNames,
    reason: `Every watched alarm exists and none is in ALARM (${alarmNames.join(', ')}).`,
  };
};
