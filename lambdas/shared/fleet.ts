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

/**
 * An AWS Organizations organizational unit id (ListParents' ChildId pattern): `ou-`, 4-32 lower-case
 * letters or digits (the root's part), `-`, 8-32 more.
 */
export const OU_ID = /^ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}$/;
const ouId = z
  .string()
  .regex(
    OU_ID,
    'must be an organizational unit id such as ou-ab12-cd34ef56 (ou-<root part>-<8 to 32 characters>)',
  );
const accountId = z.string().regex(/^\d{12}$/, 'must be a 12-digit account id');

const stageSchema = z
  .strictObject({
    /** How people call the stage ("staging", "production"): shown in the console and the logs. */
    name: z.string().min(1).max(64),
    /** Accounts whose services are in this stage. */
    accounts: z.array(accountId).optional(),
    /** Regions whose services are in this stage. */
    regions: z
      .array(z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a Region name such as eu-west-1'))
      .optional(),
    /** Service tags (every one must match) that put a service in this stage. */
    tags: z.record(z.string().min(1), z.string()).optional(),
    /**
     * Organizational units whose accounts are in this stage, nested ones included (an account in an
     * OU below one of these matches). The hub reads an account's OUs from `accountOUs`, else from
     * AWS Organizations (ListParents up to the root), which answers the management account and
     * delegated administrators only; an account whose OUs cannot be read goes last (see stageOf).
     */
    organizationalUnits: z.array(ouId).min(1).optional(),
  })
  .refine(
    (s) =>
      s.accounts !== undefined ||
      s.regions !== undefined ||
      s.tags !== undefined ||
      s.organizationalUnits !== undefined,
    {
      message:
        'a stage names at least one of accounts, regions, tags or organizationalUnits (a stage that matches everything is the default)',
    },
  );
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
  /**
   * The organizational units each account is in, for stages that name `organizationalUnits`: the
   * account's own OU and, for nested OUs, those above it (a stage matches when it names any of them).
   * An account listed here is never looked up in AWS Organizations: give it for every account when
   * the hub is neither the management account nor a delegated administrator.
   * @default - looked up with organizations:ListParents
   */
  accountOUs: z.record(accountId, z.array(ouId).min(1)).optional(),
});
export type FleetSettings = z.infer<typeof fleetSchema>;
export type FleetSettingsInput = z.input<typeof fleetSchema>;

/** Values of the pause switch (an SSM String parameter) that pause new deployments. */
export const PAUSED_VALUES: ReadonlySet<string> = new Set(['paused', 'true', 'on', 'yes']);
/** Environment: the pause switch's parameter name, and the fleet settings (JSON). */
export const PAUSE_PARAMETER_ENV = 'PAUSE_PARAMETER';
export const FLEET_ENV = 'AUTOPATCH_FLEET';

/** Whether any stage names organizational units (then an account's OUs must be known to place it). */
export const usesOrganizationalUnits = (settings: Pick<FleetSettings, 'stages'>): boolean =>
  settings.stages.some((s) => s.organizationalUnits !== undefined);

/**
 * The organizational units an account is in (its own and every one above it), or why they are not
 * known.
 */
export type AccountOUs =
  | { readonly known: true; readonly ous: readonly string[] }
  | { readonly known: false; readonly reason: string };

/**
 * The stage a service is in: its index (stages.length when it matches none) and name.
 *
 * When a stage names organizational units and the service's account's OUs are not known (not
 * given, or AWS Organizations refused: only the management account and delegated administrators
 * may call ListParents), the service is put last, after every stage, whatever else it matches:
 * an account of unknown place might be production, so it deploys an image only after every stage
 * has finished deploying it. `reason` says so, for the run's output and the logs.
 */
export const stageOf = (
  settings: Pick<FleetSettings, 'stages'>,
  service: {
    readonly account: string;
    readonly region: string;
    readonly tags: Readonly<Record<string, string>>;
    readonly organizationalUnits?: AccountOUs;
  },
): { readonly index: number; readonly name: string; readonly reason?: string } => {
  const last = settings.stages.length;
  const ous = service.organizationalUnits;
  if (usesOrganizationalUnits(settings) && ous?.known !== true)
    return {
      index: last,
      name: 'default',
      reason:
        `the organizational units of account ${service.account} are unknown (${ous?.known === false ? ous.reason : 'not looked up'}), ` +
        'so it deploys after every stage; list the account in fleet.accountOUs, or run the hub in the management ' +
        'account or an Organizations delegated administrator (docs/organizations.md, "Stages by organizational unit")',
    };
  const index = settings.stages.findIndex(
    (stage) =>
      (stage.accounts === undefined || stage.accounts.includes(service.account)) &&
      (stage.regions === undefined || stage.regions.includes(service.region)) &&
      (stage.organizationalUnits === undefined ||
        (ous?.known === true && stage.organizationalUnits.some((ou) => ous.ous.includes(ou)))) &&
      Object.entries(stage.tags ?? {}).every(([k, v]) => service.tags[k] === v),
  );
  return index < 0
    ? { index: last, name: 'default' }
    : { index, name: settings.stages[index]?.name ?? 'default' };
};

/** True when nothing limits or orders deployments: no slot is taken or counted (only the pause switch applies). */
export const unlimited = (settings: FleetSettings): boolean =>
  settings.maxInFlight === undefined &&
  settings.maxInFlightPerAccount === undefined &&
  settings.maxInFlightPerRegion === undefined &&
  settings.stages.length === 0;
