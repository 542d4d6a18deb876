import { Aws, Stack, Token } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { acknowledge, iam5Resource } from './nag';

/**
 * Autopatch across an organization, the hub's side (docs/organizations.md): the settings, their
 * validation, and what the hub adds when they are given (the default bus accepts the spokes'
 * events, the hub's roles may assume the spoke role). The spoke's side is ./spoke.ts.
 *
 * The names below are the runtime contract of lambdas/shared/accounts.ts, repeated here because lib/
 * must not load the STS client at synth (test/infra/organization.test.ts checks they agree).
 */

/** The spoke role's path and default name, the same in every workload account. */
export const SPOKE_ROLE_PATH = '/autopatch/';
export const SPOKE_ROLE_NAME = 'AutopatchSpoke';
/** Lambda environment: the hub's account id. */
export const HOME_ACCOUNT_ENV = 'AUTOPATCH_HOME_ACCOUNT';
/** Lambda environment: the spoke role's name, when it is not the default. */
export const SPOKE_ROLE_ENV = 'AUTOPATCH_SPOKE_ROLE_NAME';
/**
 * The hub stack's name, which starts the names of the hub's roles (CloudFormation names a role
 * `<stack name>-<logical id>-<suffix>`): the spoke role trusts roles whose name starts with it.
 */
export const DEFAULT_HUB_STACK_NAME = 'AutopatchStack';

/** The hub's organization settings (the `organization` prop, cdk.json `context.autopatch.organization`). */
export interface AutopatchOrganization {
  /**
   * The AWS Organizations id (`o-…`). The default bus accepts events from any account of the
   * organization (aws:PrincipalOrgID), and the hub may assume the spoke role in any of them
   * (aws:ResourceOrgID).
   * @default - only the listed `accounts`
   */
  readonly organizationId?: string;
  /**
   * The workload accounts (spokes). Without `organizationId`: the only accounts whose events the
   * default bus accepts and whose spoke role the hub may assume. With it: the intake and the
   * workflow's event rules also accept events from these accounts only (and the hub's).
   * @default - every account of the organization (needs `organizationId`)
   */
  readonly accounts?: readonly string[];
  /**
   * The Regions the spokes forward events from: the intake rule accepts findings from these (and the
   * hub's own Region) only.
   * @default - any Region
   */
  readonly regions?: readonly string[];
  /**
   * The spoke role's name (path `/autopatch/`), the same in every account.
   * @default 'AutopatchSpoke'
   */
  readonly spokeRoleName?: string;
}

/** The organization settings after validation. */
export interface ResolvedOrganization {
  readonly organizationId?: string;
  readonly accounts?: readonly string[];
  readonly regions?: readonly string[];
  readonly spokeRoleName: string;
  /** Whether the role name was given (then the Lambdas get AUTOPATCH_SPOKE_ROLE_NAME). */
  readonly spokeRoleNameGiven: boolean;
}

export const ACCOUNT_ID = /^\d{12}$/;
export const ORGANIZATION_ID = /^o-[a-z0-9]{10,32}$/;
export const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
/** An IAM role name (no path). */
export const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;

/** Every problem of the organization settings, each naming its field, and the resolved settings. */
export const checkOrganization = (
  input: unknown,
  field = 'organization',
): { readonly errors: string[]; readonly value?: ResolvedOrganization } => {
  const errors: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    return {
      errors: [`${field}: must be an object ({ organizationId?, accounts?, regions?, spokeRoleName? })`],
    };
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (!['organizationId', 'accounts', 'regions', 'spokeRoleName'].includes(key))
      errors.push(`${field}.${key}: unknown setting (organizationId, accounts, regions, spokeRoleName)`);
  const { organizationId, accounts, regions, spokeRoleName } = o;
  if (
    organizationId !== undefined &&
    !Token.isUnresolved(organizationId) &&
    (typeof organizationId !== 'string' || !ORGANIZATION_ID.test(organizationId))
  )
    errors.push(`${field}.organizationId: ${JSON.stringify(organizationId)} is not an organization id (o-…)`);
  const list = (value: unknown, name: string, pattern: RegExp, what: string): string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length === 0) {
      errors.push(`${field}.${name}: must be a non-empty list of ${what}s`);
      return undefined;
    }
    const seen: string[] = [];
    value.forEach((item: unknown, index) => {
      if (Token.isUnresolved(item)) seen.push(item as string);
      else if (typeof item !== 'string' || !pattern.test(item))
        errors.push(`${field}.${name}[${index}]: ${JSON.stringify(item)} is not a ${what}`);
      else if (seen.includes(item)) errors.push(`${field}.${name}[${index}]: ${item} is listed twice`);
      else seen.push(item);
    });
    return seen;
  };
  const accountList = list(accounts, 'accounts', ACCOUNT_ID, '12-digit AWS account id');
  const regionList = list(regions, 'regions', REGION, 'Region name (eu-central-1)');
  if (organizationId === undefined && accounts === undefined)
    errors.push(
      `${field}: give organizationId (every account of the organization) or accounts (these accounts only), or both`,
    );
  if (
    spokeRoleName !== undefined &&
    !Token.isUnresolved(spokeRoleName) &&
    (typeof spokeRoleName !== 'string' || !ROLE_NAME.test(spokeRoleName))
  )
    errors.push(
      `${field}.spokeRoleName: ${JSON.stringify(spokeRoleName)} is not an IAM role name (1-64 letters, digits, +=,.@_-; no path)`,
    );
  if (errors.length > 0) return { errors };
  return {
    errors,
    value: {
      ...(organizationId !== undefined ? { organizationId: organizationId as string } : {}),
      ...(accountList !== undefined ? { accounts: accountList } : {}),
      ...(regionList !== undefined ? { regions: regionList } : {}),
      spokeRoleName: (spokeRoleName as string | undefined) ?? SPOKE_ROLE_NAME,
      spokeRoleNameGiven: spokeRoleName !== undefined,
    },
  };
};

/**
 * The default event bus accepts PutEvents from the spokes' forwarding rules: from any principal of
 * the organization (aws:PrincipalOrgID), or from the listed accounts (both, when both are given).
 * EventBridge sets a forwarded event's `account` to the account it came from and refuses `aws.*`
 * sources in PutEvents, so a spoke can only speak for itself.
 */
export const allowSpokesToSendEvents = (scope: Construct, organization: ResolvedOrganization): void => {
  const stack = Stack.of(scope);
  const accounts = organization.accounts ?? [];
  new events.CfnEventBusPolicy(scope, 'SpokeEventsPolicy', {
    eventBusName: 'default',
    // Unique per hub stack: several statements can live on one bus policy.
    statementId: `autopatch-spokes-${stack.stackName}`.slice(0, 64),
    statement: {
      Sid: `autopatch-spokes-${stack.stackName}`.slice(0, 64),
      Effect: 'Allow',
      Principal:
        accounts.length > 0 ? { AWS: accounts.map((a) => `arn:${Aws.PARTITION}:iam::${a}:root`) } : '*',
      Action: 'events:PutEvents',
      Resource: stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' }),
      ...(organization.organizationId !== undefined
        ? { Condition: { StringEquals: { 'aws:PrincipalOrgID': organization.organizationId } } }
        : {}),
    },
  });
};

/** The spoke role ARN pattern the hub may assume: any account (with aws:ResourceOrgID), or each listed one. */
export const spokeRoleArns = (organization: ResolvedOrganization): string[] =>
  organization.accounts !== undefined
    ? organization.accounts.map(
        (a) => `arn:${Aws.PARTITION}:iam::${a}:role${SPOKE_ROLE_PATH}${organization.spokeRoleName}`,
      )
    : [`arn:${Aws.PARTITION}:iam::*:role${SPOKE_ROLE_PATH}${organization.spokeRoleName}`];

/**
 * sts:AssumeRole of the spoke role, for the hub's roles that act in workload accounts, in one policy
 * (so its one acknowledgement covers it alone). Listed accounts are named by ARN; with an
 * organization id only, the account is a wildcard held to the organization by aws:ResourceOrgID.
 */
export const grantAssumeSpokeRole = (
  scope: Construct,
  organization: ResolvedOrganization,
  roles: readonly iam.IRole[],
): iam.Policy => {
  const resources = spokeRoleArns(organization);
  const policy = new iam.Policy(scope, 'AssumeSpokeRolePolicy', {
    statements: [
      new iam.PolicyStatement({
        sid: 'AssumeAutopatchSpokeRole',
        actions: ['sts:AssumeRole'],
        resources,
        ...(organization.organizationId !== undefined
          ? { conditions: { StringEquals: { 'aws:ResourceOrgID': organization.organizationId } } }
          : {}),
      }),
    ],
  });
  for (const role of roles) policy.attachToRole(role);
  if (organization.accounts === undefined)
    acknowledge(
      policy,
      iam5Resource(`arn:<AWS::Partition>:iam::*:role${SPOKE_ROLE_PATH}${organization.spokeRoleName}`),
      'The hub assumes the Autopatch spoke role (one fixed name and path) in the workload account a ' +
        'service runs in, known at run time; any account of the organization only (aws:ResourceOrgID).',
    );
  return policy;
};

/** The intake and workflow rules' `account` filter: the hub's account and the listed ones, when listed. */
export const eventAccounts = (
  scope: Construct,
  organization: ResolvedOrganization,
  more: readonly string[] = [],
): string[] | undefined => {
  if (organization.accounts === undefined) return undefined;
  return [...new Set([Stack.of(scope).account, ...more, ...organization.accounts])];
};

/** The intake rule's `region` filter: the hub's Region and the listed ones, when listed. */
export const eventRegions = (scope: Construct, organization: ResolvedOrganization): string[] | undefined => {
  if (organization.regions === undefined) return undefined;
  const region = Stack.of(scope).region;
  return organization.regions.includes(region)
    ? [...organization.regions]
    : [region, ...organization.regions];
};

/**
 * organizations:ListParents for the step that places a service in its fleet stage, when a stage
 * names organizational units (lambdas/shared/org-units.ts walks from the account up to the root).
 * ListParents supports resource-level permissions (Service Authorization Reference: `account` and
 * `organizationalunit`), so the grant names them: the organization's accounts (the listed ones and
 * the hub's, when listed) and its OUs. Their ARNs carry the management account's id, which the hub
 * does not know, hence `organizations::*:`; the organization id narrows them when given. In a policy
 * of its own, so its acknowledgements cover it alone.
 */
export const grantListParents = (
  scope: Construct,
  organization: ResolvedOrganization | undefined,
  role: iam.IRole,
): iam.Policy => {
  const org = organization?.organizationId ?? 'o-*';
  const accounts =
    organization?.accounts !== undefined
      ? [...new Set([Stack.of(scope).account, ...organization.accounts])]
      : ['*'];
  const arn = (rest: string) => `arn:${Aws.PARTITION}:organizations::*:${rest}`;
  const policy = new iam.Policy(scope, 'ListOrganizationalUnitParentsPolicy', {
    statements: [
      new iam.PolicyStatement({
        sid: 'FleetStagesByOrganizationalUnit',
        actions: ['organizations:ListParents'],
        resources: [...accounts.map((a) => arn(`account/${org}/${a}`)), arn(`ou/${org}/ou-*`)],
      }),
    ],
  });
  policy.attachToRole(role);
  const rendered = (rest: string) => `arn:<AWS::Partition>:organizations::*:${rest}`;
  const nagAccount = (a: string) => (Token.isUnresolved(a) ? '<AWS::AccountId>' : a);
  for (const a of accounts)
    acknowledge(
      policy,
      iam5Resource(rendered(`account/${org}/${nagAccount(a)}`)),
      'organizations:ListParents of the accounts Autopatch deploys to (fleet stages by organizational unit): ' +
        "an account ARN carries the organization's management account id, unknown to the hub.",
    );
  acknowledge(
    policy,
    iam5Resource(rendered(`ou/${org}/ou-*`)),
    'organizations:ListParents walks from an account up through its OUs to the root, which OUs known only at ' +
      "run time; an OU ARN carries the organization's management account id, unknown to the hub.",
  );
  return policy;
};
