import * as z from 'zod';

/**
 * Fleet guardrails: how many deployments may be in flight at once (in the organization, per account,
 * per Region), in which order accounts and services deploy (stages: staging before production), and
 * the pause switch that stops new deployments without redeploying the stack.
 *
 * A deployment is "in flight" from the moment its run takes a deployment slot (right before it
 * deploys) until the run ends: deployed, baked and Patched, or rolled back, or failed. Rollbacks and
 * put-backs never wait for a slot or for the pause switch: they only make the fleet safer.
 */

const stageSchema = z
  .strictObject({
    /** How people call the stage ("staging", "production"): shown in the console and the logs. */
    name: z.string().min(1).max(64),
    /** Accounts whose services are in this stage. */
    accounts: z.array(z.string().regex(/^\d{12}$/, 'must be a 12-digit account id')).optional(),
    /** Regions whose services are in this stage. */
    regions: z
      .array(z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a Region name such as eu-west-1'))
      .optional(),
    /** Service tags (every one must match) that put a service in this stage. */
    tags: z.record(z.string().min(1), z.string()).optional(),
  })
  .refine((s) => s.accounts !== undefined || s.regions !== undefined || s.tags !== undefined, {
    message:
      'a stage names at least one of accounts, regions or tags (a stage that matches everything is the default)',
  });
export type FleetStage = z.infer<typeof stageSchema>;

export const fleetSchema = z.strictObject({
  /** Deployments in flight at once across everything this hub serves. Absent: no limit. */
  maxInFlight: z.number().int().min(1).max(10_000).optional(),
  /** Deployments in flight at once in one account. Absent: no limit. */
  maxInFlightPerAccount: z.number().int().min(1).max(10_000).optional(),
  /** Deployments in flight at once in one Region (of any account). Absent: no limit. */
  maxInFlightPerRegion: z.number().int().min(1).max(10_000).optional(),
  /**
   * The rollout order. A service belongs to the first stage it matches; services that match none
   * come after every stage. A service deploys an image only when no service of an earlier stage is
   * deploying, or waiting to deploy, an image of the same repository: staging proves it first.
   */
  stages: z.array(stageSchema).max(20).default([]),
});
export type FleetSettings = z.infer<typeof fleetSchema>;
export type FleetSettingsInput = z.input<typeof fleetSchema>;

/** Values of the pause switch (an SSM String parameter) that pause new deployments. */
export const PAUSED_VALUES: ReadonlySet<string> = new Set(['paused', 'true', 'on', 'yes']);
/** Environment: the pause switch's parameter name, and the fleet settings (JSON). */
export const PAUSE_PARAMETER_ENV = 'PAUSE_PARAMETER';
export const FLEET_ENV = 'AUTOPATCH_FLEET';

/** The stage a service is in: its index (stages.length when it matches none) and name. */
export const stageOf = (
  settings: Pick<FleetSettings, 'stages'>,
  service: {
    readonly account: string;
    readonly region: string;
    readonly tags: Readonly<Record<string, string>>;
  },
): { readonly index: number; readonly name: string } => {
  const index = settings.stages.findIndex(
    (stage) =>
      (stage.accounts === undefined || stage.accounts.includes(service.account)) &&
      (stage.regions === undefined || stage.regions.includes(service.region)) &&
      Object.entries(stage.tags ?? {}).every(([k, v]) => service.tags[k] === v),
  );
  return index < 0
    ? { index: settings.stages.length, name: 'default' }
    : { index, name: settings.stages[index]?.name ?? 'default' };
};

/** True when nothing limits or orders deployments: no slot is taken or counted (only the pause switch applies). */
export const unlimited = (settings: FleetSettings): boolean =>
  settings.maxInFlight === undefined &&
  settings.maxInFlightPerAccount === undefined &&
  settings.maxInFlightPerRegion === undefined &&
  settings.stages.length === 0;
