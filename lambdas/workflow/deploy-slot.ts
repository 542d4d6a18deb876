import type { ECSClient } from '@aws-sdk/client-ecs';
import type { SFNClient } from '@aws-sdk/client-sfn';
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { type Place, placeOfArn } from '../shared/accounts';
import type { AffectedImage, ServiceRef } from '../shared/contracts';
import { ConfigurationError, isTransient, TransientError } from '../shared/errors';
import {
  type AccountOUs,
  type FleetSettings,
  PAUSED_VALUES,
  stageOf,
  unlimited,
  usesOrganizationalUnits,
} from '../shared/fleet';
import type { Ledger, SlotDecision } from '../shared/ledger';
import { answerSlotWait } from '../shared/window-wait';
import { describeService } from './ecs-service';

/**
 * "Take a deployment slot": right before the patched revision is deployed, the fleet guardrails
 * decide whether it may go now. The pause switch stops every new deployment at once (runs already
 * deploying finish their bake, or roll back); the caps bound how many deployments are in flight in
 * the organization, per account and per Region; the stages make staging deploy an image before
 * production does. A run that may not go waits on a task token ("Wait for a deployment slot") that
 * the sweep answers once the switch is off and the fleet has room for it; then it checks the alarms
 * again and takes its slot, so what it deploys into is checked right before it moves.
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
  /** ISO-8601: since when it waits (absent once taken). */
  readonly waitingSince?: string;
  /** Why the service was put in its stage, when not by a match: its account's OUs are unknown (stageOf). */
  readonly stageReason?: string;
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
  /**
   * The organizational units of an account, for stages that name them (lambdas/shared/org-units.ts).
   * Absent: unknown, so with such stages every service goes last (stageOf).
   */
  readonly organizationalUnits?: { readonly ousOf: (account: string) => Promise<AccountOUs> };
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
    // Fail closed: a switch nobody can read might say "paused". Nothing is deployed: the step fails
    // with the reason (the run ends Failed, the lock released) instead of waiting on a switch that
    // may never be readable; the sweep lets no waiting run go meanwhile.
    throw new ConfigurationError(
      `The pause switch ${name} cannot be read (${(error as Error).name}: ${(error as Error).message}), so nothing was deployed: ` +
        'give the slot step and the sweep ssm:GetParameter on it, or recreate it as a String parameter (docs/runbook.md, "Fleet guardrails").',
      { cause: error },
    );
  }
};

export const takeDeploySlot = async (
  input: DeploySlotInput,
  deps: DeploySlotDeps,
): Promise<DeploySlotResult> => {
  const { settings } = deps;
  const pause = await readPauseSwitch(deps.ssm, deps.pauseParameter);
  const place = placeOfArn(input.service.clusterArn, deps.home);

  if (unlimited(settings) && !pause.paused) {
    // Nothing to count: no slot is written (a wait recorded while paused is removed).
    await deps.ledger.fleet.release(input.executionName);
    return { verdict: 'taken', reason: 'No fleet limits are configured.', stage: 'default' };
  }

  const needsTags = !pause.paused && settings.stages.some((s) => s.tags !== undefined);
  const tags = needsTags ? await serviceTags(deps.ecsFor(place), input.service) : {};
  const organizationalUnits =
    !pause.paused && usesOrganizationalUnits(settings)
      ? ((await deps.organizationalUnits?.ousOf(place.account)) ?? {
          known: false as const,
          reason: 'no organizational unit lookup is configured',
        })
      : undefined;
  const stage = stageOf(settings, {
    ...place,
    tags,
    ...(organizationalUnits !== undefined ? { organizationalUnits } : {}),
  });
  // Said in the run's output and the step's log: a service placed last because its account's OUs are unknown.
  // While paused nothing is looked up (the stage is decided again when the run asks after the pause).
  const unplaced = pause.paused ? undefined : stage.reason;
  const placed = unplaced !== undefined ? ` Stage: ${stage.name}, because ${unplaced}.` : '';
  const stageReason = unplaced !== undefined ? { stageReason: unplaced } : {};
  const wait = (reason: string, stageName: string, since?: string): DeploySlotResult => ({
    verdict: 'wait',
    reason,
    stage: stageName,
    ...(since !== undefined ? { waitingSince: since } : {}),
    ...stageReason,
  });
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
    { paused: pause.paused },
  );
  if (decision.kind === 'taken') {
    return {
      verdict: 'taken',
      reason: `Took a deployment slot (${decision.inFlight} in flight, stage ${stage.name}).${placed}`,
      stage: stage.name,
      ...stageReason,
    };
  }
  const why = pause.paused
    ? `Deployments are paused: ${pause.why}`
    : `Waiting for a deployment slot: ${decision.reason}`;
  return wait(
    `${why}. It deploys within a minute of the fleet having room (checked by the sweep).${placed}`,
    stage.name,
    decision.since,
  );
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

export interface SlotWaitInput {
  readonly service: ServiceRef;
  readonly executionName: string;
  readonly taskToken: string;
}

export interface SlotWaitDeps {
  readonly ledger: Pick<Ledger, 'fleet' | 'putTaskToken' | 'getTaskToken' | 'deleteTaskToken'>;
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ssm: Pick<SSMClient, 'send'>;
  readonly settings: FleetSettings;
  readonly pauseParameter?: string;
}

/**
 * "Wait for a deployment slot": registers the run's task token. If room appeared between the take
 * and now (a slot given back meanwhile), it answers its own wait at once, or nobody would until
 * the next sweep.
 */
export const waitForDeploySlot = async (
  input: SlotWaitInput,
  deps: SlotWaitDeps,
): Promise<{ readonly answered: boolean }> => {
  await deps.ledger.putTaskToken(input.executionName, 'slot', input.taskToken, input.service.key);
  const answered = await wakeDeploySlots(deps, input.executionName);
  return { answered: answered.includes(input.executionName) };
};

/**
 * The sweep's part (every minute): answer the waits of runs that may take a slot now. Nothing while
 * the pause switch is on. `only`: just that run (its own wait, registered a moment ago).
 */
export const wakeDeploySlots = async (deps: SlotWaitDeps, only?: string): Promise<string[]> => {
  const candidates = (
    unlimited(deps.settings)
      ? (await deps.ledger.fleet.state()).waiting
      : await deps.ledger.fleet.wakeable(deps.settings)
  ).filter((w) => only === undefined || w.executionName === only);
  // The switch is read only when someone could go: an idle fleet costs the sweep one GetItem.
  if (candidates.length === 0) return [];
  const pause = await readPauseSwitch(deps.ssm, deps.pauseParameter);
  if (pause.paused) return [];
  const woken: string[] = [];
  for (const w of candidates) {
    if (await answerSlotWait(deps, w.executionName, 'The fleet has room for this deployment now.'))
      woken.push(w.executionName);
  }
  return woken;
};
