#!/usr/bin/env node
/**
 * Autopatch for an organization, as one CDK app (docs/organizations.md):
 *
 *   npx cdk ls     -a "npx tsx bin/organization.ts"
 *   npx cdk deploy -a "npx tsx bin/organization.ts" Hub/AutopatchStack   (then each Spoke-… stack)
 *
 * It reads `autopatch:organization` from the CDK context (cdk.json holds an example) and builds:
 * - stage `Hub`: the Autopatch stack (named AutopatchStack) in the hub account and Region, with the
 *   usual `autopatch` context settings plus the organization;
 * - stage `Spoke-<account>-<region>` per spoke account and Region: the AutopatchSpoke stack (the
 *   role in the account's first listed Region only, the forwarding rules in each);
 * - `AutopatchSpoke` and `AutopatchSpokeEvents`, environment-agnostic: the StackSet templates (role
 *   and rules for one Region; rules only for the others), `cdk synth AutopatchSpoke > spoke.yaml`.
 *
 * bin/autopatch.ts (one account) is unchanged and does not read this context.
 */
import { App, Stack, Stage, Validations } from 'aws-cdk-lib';
import * as cloudformation from 'aws-cdk-lib/aws-cloudformation';
import { AwsSolutionsChecks } from 'cdk-nag';
import * as z from 'zod';
import { ConfigurationError } from '../lambdas/shared/errors';
import { OU_ID } from '../lambdas/shared/fleet';
import { formatProblems, issueProblems } from '../lambdas/triage/schema/issues';
import { AutopatchChecks } from '../lib/nag';
import { DEFAULT_HUB_STACK_NAME } from '../lib/organization';
import { type AutopatchSpokeProps, AutopatchSpokeStack } from '../lib/spoke';
import { AutopatchStack, autopatchPropsFromContext } from '../lib/stack';

export const ORGANIZATION_CONTEXT_KEY = 'autopatch:organization';

const account = z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id');
const region = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'a Region name (eu-central-1)');
const organizationalUnit = z
  .string()
  .regex(OU_ID, 'an organizational unit id such as ou-ab12-cd34ef56 (ou-<root part>-<8 to 32 characters>)');
const spokeOptions = {
  /** The account holds ECR repositories the hub reads and pushes to. */
  registry: z.boolean().optional(),
  pushToTaggedRepositoriesOnly: z.boolean().optional(),
  taskRoleArns: z.array(z.string()).optional(),
};
const organizationContext = z.strictObject({
  hub: z.strictObject({ account, region }),
  organizationId: z.string().optional(),
  spokeRoleName: z.string().optional(),
  spokes: z
    .array(
      z.strictObject({
        account,
        /** The first one also holds the role (IAM is global). */
        regions: z.array(region).min(1),
        /** The Inspector delegated administrator account: also forward Inspector2 Finding events. */
        findings: z.boolean().optional(),
        /**
         * The account's organizational units (its own, then those above it): the hub's fleet stages
         * by OU place it without asking AWS Organizations (`fleet.accountOUs`).
         */
        organizationalUnits: z.array(organizationalUnit).min(1).optional(),
        ...spokeOptions,
      }),
    )
    .default([]),
  /** The StackSet templates' settings (the same for every account). */
  stackSet: z
    .strictObject({
      ...spokeOptions,
      /**
       * Deploy the spokes as two service-managed StackSets over these OUs (new accounts in them get
       * the spoke automatically), from stage `SpokeStackSets` in `administrator`.
       */
      organizationalUnits: z.array(organizationalUnit).min(1).optional(),
      /** The Regions of the spokes; the first also holds the role. Needed with organizationalUnits. */
      regions: z.array(region).min(1).optional(),
      /**
       * Where the StackSets live: the management account, or a StackSets delegated administrator
       * (then `callAs: DELEGATED_ADMIN`). @default the hub
       */
      administrator: z.strictObject({ account, region }).optional(),
      callAs: z.enum(['SELF', 'DELEGATED_ADMIN']).optional(),
    })
    .refine((s) => (s.organizationalUnits === undefined) === (s.regions === undefined), {
      message:
        'organizationalUnits and regions go together (the OUs to deploy the spokes to, and in which Regions)',
    })
    .optional(),
});
export type OrganizationContext = z.infer<typeof organizationContext>;

/** The context, checked: every problem named by its path. */
export const organizationFromContext = (app: App): OrganizationContext => {
  let raw: unknown = app.node.tryGetContext(ORGANIZATION_CONTEXT_KEY);
  if (raw === undefined)
    throw new ConfigurationError(
      `context ${ORGANIZATION_CONTEXT_KEY} is missing: give the hub and the spokes (docs/organizations.md)`,
    );
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (error) {
      throw new ConfigurationError(
        `context ${ORGANIZATION_CONTEXT_KEY} is not JSON: ${(error as Error).message}`,
      );
    }
  }
  const parsed = organizationContext.safeParse(raw);
  if (!parsed.success)
    throw new ConfigurationError(
      `context ${ORGANIZATION_CONTEXT_KEY} is invalid: ${formatProblems(issueProblems(parsed.error.issues, { root: ORGANIZATION_CONTEXT_KEY, messages: 'zod' }))}`,
    );
  return parsed.data;
};

/** The hub stage, one stage per spoke account and Region, and the StackSet templates. */
export const buildOrganizationApp = (app: App, org: OrganizationContext): void => {
  const spokeAccounts = [...new Set(org.spokes.map((s) => s.account))].filter((a) => a !== org.hub.account);
  const stackSetRegions = org.stackSet?.regions ?? [];
  const regions = [...new Set([...org.spokes.flatMap((s) => s.regions), ...stackSetRegions])];
  const hubStage = new Stage(app, 'Hub', { env: org.hub });
  const settings = autopatchPropsFromContext(hubStage);
  // The spokes' OUs place them in the fleet's stages by OU; the hub's own fleet.accountOUs wins.
  const spokeOUs = Object.fromEntries(
    org.spokes.flatMap((s) =>
      s.organizationalUnits !== undefined ? [[s.account, s.organizationalUnits]] : [],
    ),
  );
  const fleet =
    Object.keys(spokeOUs).length > 0
      ? { fleet: { ...settings.fleet, accountOUs: { ...spokeOUs, ...settings.fleet?.accountOUs } } }
      : {};
  new AutopatchStack(hubStage, 'AutopatchStack', {
    stackName: DEFAULT_HUB_STACK_NAME,
    autopatch: {
      ...settings,
      ...fleet,
      organization: {
        ...(org.organizationId !== undefined ? { organizationId: org.organizationId } : {}),
        ...(spokeAccounts.length > 0 ? { accounts: spokeAccounts } : {}),
        ...(regions.length > 0 ? { regions } : {}),
        ...(org.spokeRoleName !== undefined ? { spokeRoleName: org.spokeRoleName } : {}),
      },
    },
  });

  const common = {
    hubAccount: org.hub.account,
    hubRegion: org.hub.region,
    hubRoleNamePrefix: `${DEFAULT_HUB_STACK_NAME}-`,
    ...(org.organizationId !== undefined ? { organizationId: org.organizationId } : {}),
    ...(org.spokeRoleName !== undefined ? { roleName: org.spokeRoleName } : {}),
    ...(settings.discoverByTag !== undefined ? { serviceTag: settings.discoverByTag } : {}),
  } satisfies Partial<AutopatchSpokeProps>;
  const options = (o: z.infer<z.ZodObject<typeof spokeOptions>> | undefined) => ({
    ...(o?.registry !== undefined ? { registry: o.registry } : {}),
    ...(o?.pushToTaggedRepositoriesOnly !== undefined
      ? { pushToTaggedRepositoriesOnly: o.pushToTaggedRepositoriesOnly }
      : {}),
    ...(o?.taskRoleArns !== undefined ? { taskRoleArns: o.taskRoleArns } : {}),
  });

  for (const spoke of org.spokes) {
    const home = spoke.account === org.hub.account;
    spoke.regions.forEach((r, index) => {
      // The hub's own account and Region need nothing; elsewhere in the hub's account, the rules only.
      if (home && r === org.hub.region) return;
      const stage = new Stage(app, `Spoke-${spoke.account}-${r}`, {
        env: { account: spoke.account, region: r },
      });
      new AutopatchSpokeStack(stage, 'AutopatchSpoke', {
        ...common,
        ...options(spoke),
        createRole: !home && index === 0,
        ...(spoke.findings === true ? { forwardFindings: true } : {}),
      });
    });
  }

  // StackSet templates: no environment, no assets, no bootstrap version rule.
  const roleProps: AutopatchSpokeProps = { ...common, ...options(org.stackSet) };
  const eventsProps: AutopatchSpokeProps = { ...common, createRole: false };
  new AutopatchSpokeStack(app, 'AutopatchSpoke', roleProps);
  new AutopatchSpokeStack(app, 'AutopatchSpokeEvents', eventsProps);

  const stackSet = org.stackSet;
  if (stackSet?.organizationalUnits !== undefined && stackSet.regions !== undefined) {
    const [roleRegion, ...otherRegions] = stackSet.regions;
    const stage = new Stage(app, 'SpokeStackSets', { env: stackSet.administrator ?? org.hub });
    const holder = new Stack(stage, 'AutopatchSpokeStackSets', {
      description: 'Autopatch spokes, as service-managed StackSets over organizational units',
    });
    const deploy = (
      id: string,
      props: AutopatchSpokeProps,
      targetRegions: readonly string[],
      capability: string,
    ) =>
      new cloudformation.CfnStackSet(holder, id, {
        stackSetName: `autopatch-${id === 'RoleAndRules' ? 'spoke' : 'spoke-events'}`,
        permissionModel: 'SERVICE_MANAGED',
        autoDeployment: { enabled: true, retainStacksOnAccountRemoval: false },
        capabilities: [capability],
        ...(stackSet.callAs !== undefined ? { callAs: stackSet.callAs } : {}),
        templateBody: templateBodyOf(props),
        stackInstancesGroup: [
          {
            deploymentTargets: { organizationalUnitIds: [...(stackSet.organizationalUnits ?? [])] },
            regions: [...targetRegions],
          },
        ],
      });
    // IAM is global: the role (and the rules) in the first Region, the rules alone in the others.
    deploy('RoleAndRules', roleProps, [roleRegion as string], 'CAPABILITY_NAMED_IAM');
    if (otherRegions.length > 0) deploy('RulesOnly', eventsProps, otherRegions, 'CAPABILITY_IAM');
  }
};

/**
 * A spoke template as CloudFormation reads it, synthesized on its own (the StackSet's TemplateBody:
 * the template has no assets and no parameters, so it stands alone).
 */
const templateBodyOf = (props: AutopatchSpokeProps): string => {
  const copy = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new AutopatchSpokeStack(copy, 'AutopatchSpoke', props);
  return JSON.stringify(copy.synth().getStackArtifact(stack.artifactId).template);
};

if (require.main === module) {
  const app = new App();
  try {
    buildOrganizationApp(app, organizationFromContext(app));
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new AutopatchChecks(app));
}
