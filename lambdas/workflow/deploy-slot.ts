import type { ECSClient } from '@aws-sdk/client-ecs';
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { type Place, placeOfArn } from '../shared/accounts';
import type { AffectedImage, ServiceRef } from '../shared/contracts';
import { isTransient, TransientError } from '../shared/errors';
import { type FleetSettings, PAUSED_VALUES, stageOf, unlimited } from '../shared/fleet';
import type { Ledger, SlotDecision } from '../shared/ledger';
import { describeService } from './ecs-service';

/**
 * "Take a deployment slot": right before the patched revision is deployed, the fleet guardrails
 * decide whether it may go now. The pause switch stops every new deployment at once (runs already
 * deploying finish their bake, or roll back); the caps bound how many deployments are in flight in
 * the organization, per account and per Region; the stages make staging deploy an image before
 * production does. A run that may not go waits `pollSeconds` and asks again (after the alarm check
 * before deploying, so what it deploys into is checked right before it moves).
 */

export interface DeploySlotInput {
  readonly service: ServiceRef;
  readonly images: readonly Pick<AffectedImage, 'registry' | 'repository'>[];
  readonly decision?: { readonly deadline?: string };
  readonly executionName: string;
  readonly executionArn?: string;
}

export interface DeploySlotResult {
  readonly verdict: 'taken' | 'wait';
  /** A sentence for on-call: why it waits, or what it took. */
  readonly reason: string;
  readonly stage: string;
  /** Seconds until it asks again (the Wait state's SecondsPath). */
  readonly waitSeconds: number;
  /** ISO-8601: since when it waits (absent once taken). */
  readonly waitingSince?: string;
}

export interface DeploySlotDeps {
  readonly ledger: Pick<Ledger, 'fleet'>;
  readonly ssm: Pick<SSMClient, 'send'>;
  /** The ECS client of the service's account and Region (its tags place it in a stage). */
  readonly ecsFor: (place: Place) => Pick<ECSClient, 'send'>;
  readonly settings: FleetSettings;
  /** The pause switch's SSM parameter name; absent: no switch. */
  readonly pauseParameter?: string;
  /** The hub's account and Region (for ARNs that leave them out). */
  readonly home: Place;
}

/** What the pause switch says: paused or not, and why when it cannot be read. */
export const readPauseSwitch = async (
  ssm: Pick<SSMClient, 'send'>,
  name: string | undefined,
): Promise<{ readonly paused: boolean; readonly why?: string }> => {
  if (name === undefined) return { paused: false };
  try {
    const out = await ssm.send(new GetParameterCommand({ Name: name }));
    const value = (out.Parameter?.Value ?? '').trim().toLowerCase();
    return PAUSED_VALUES.has(value)
      ? { paused: true, why: `the pause switch ${name} is "${value}"` }
      : { paused: false };
  } catch (error) {
    if ((error as Error).name === 'ParameterNotFound') return { paused: false };
    if (isTransient(error))
      throw new TransientError(`ssm GetParameter ${name}: ${(error as Error).message}`, { cause: error });
    // Fail closed: a switch nobody can read might say "paused". The reason says how to fix it.
    return {
      paused: true,
      why: `the pause switch ${name} cannot be read (${(error as Error).name}: ${(error as Error).message}); waiting as if paused`,
    };
  }
};

export const takeDeploySlot = async (
  input: DeploySlotInput,
  deps: DeploySlotDeps,
): Promise<DeploySlotResult> => {
  const { settings } = deps;
  const pause = await readPauseSwitch(deps.ssm, deps.pauseParameter);
  const place = placeOfArn(input.service.clusterArn, deps.home);
  const wait = (reason: string, stage: string, since?: string): DeploySlotResult => ({
    verdict: 'wait',
    reason,
    stage,
    waitSeconds: settings.pollSeconds,
    ...(since !== undefined ? { waitingSince: since } : {}),
  });

  if (unlimited(settings)) {
    // Nothing to count: only the pause switch applies, and no slot is written.
    return pause.paused
      ? wait(`Deployments are paused: ${pause.why}.`, 'default')
      : { verdict: 'taken', reason: 'No fleet limits are configured.', stage: 'default', waitSeconds: 0 };
  }

  const needsTags = settings.stages.some((s) => s.tags !== undefined);
  const tags = needsTags ? await serviceTags(deps.ecsFor(place), input.service) : {};
  const stage = stageOf(settings, { ...place, tags });
  const decision: SlotDecision = await deps.ledger.fleet.take(
    {
      executionName: input.executionName,
      ...(input.executionArn !== undefined ? { executionArn: input.executionArn } : {}),
      serviceKey: input.service.key,
      account: place.account,
      region: place.region,
      stage: stage.index,
      stageName: stage.name,
      repositories: [...new Set(input.images.map((i) => `${i.registry}/${i.repository}`))].sort(),
      ...(input.decision?.deadline !== undefined ? { deadline: input.decision.deadline } : {}),
    },
    settings,
    { paused: pause.paused, staleAfterMs: 3 * settings.pollSeconds * 1000 + 60_000 },
  );
  if (decision.kind === 'taken') {
    return {
      verdict: 'taken',
      reason: `Took a deployment slot (${decision.inFlight} in flight, stage ${stage.name}).`,
      stage: stage.name,
      waitSeconds: 0,
    };
  }
  const why = pause.paused
    ? `Deployments are paused: ${pause.why}`
    : `Waiting for a deployment slot: ${decision.reason}`;
  return wait(`${why}. Asking again every ${settings.pollSeconds} s.`, stage.name, decision.since);
};

const serviceTags = async (
  ecs: Pick<ECSClient, 'send'>,
  service: ServiceRef,
): Promise<Record<string, string>> => {
  const found = await describeService(ecs, service, { tags: true });
  return Object.fromEntries(
    (found?.tags ?? []).flatMap((t) =>
      t.key !== undefined && t.value !== undefined ? [[t.key, t.value]] : [],
    ),
  );
};
