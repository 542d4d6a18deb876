import {
  Annotations,
  ArnFormat,
  Aws,
  DefaultStackSynthesizer,
  Duration,
  type IStackSynthesizer,
  Stack,
  type StackProps,
  Tags,
  Token,
} from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { ConfigurationError } from '../lambdas/shared/errors';
import { acknowledge, IAM5_ANY_RESOURCE } from './nag';
import {
  ACCOUNT_ID,
  DEFAULT_HUB_STACK_NAME,
  ORGANIZATION_ID,
  REGION,
  ROLE_NAME,
  SPOKE_ROLE_NAME,
  SPOKE_ROLE_PATH,
} from './organization';
import { ECR_PULL_ACTIONS, ECR_PUSH_ACTIONS } from './workflow/iam';

/**
 * Autopatch's spoke: what a workload account (in one Region) needs so that the hub can remediate its
 * services (docs/organizations.md). A role the hub assumes, and the rules that forward the account's
 * ECS, alarm, CodeDeploy and Inspector scan events to the hub's bus. No Lambda, no table, no asset.
 */

export interface AutopatchSpokeProps {
  /** The hub's account (where the Autopatch stack runs). */
  readonly hubAccount: string;
  /** The hub's Region: the forwarded events go to its default bus there. */
  readonly hubRegion: string;
  /**
   * The AWS Organizations id: only principals of this organization may assume the role
   * (aws:PrincipalOrgID).
   * @default - no organization condition (the hub account and role-name conditions only)
   */
  readonly organizationId?: string;
  /**
   * The start of the names of the hub's roles that may assume the spoke role: CloudFormation names a
   * role `<stack name>-<logical id>-<suffix>`, so this is the hub stack's name and a dash.
   * @default 'AutopatchStack-'
   */
  readonly hubRoleNamePrefix?: string;
  /**
   * The role's name (path `/autopatch/`). Give the hub the same as `organization.spokeRoleName`.
   * @default 'AutopatchSpoke'
   */
  readonly roleName?: string;
  /**
   * Create the role. IAM is global: create it in one Region of the account only, and set false in
   * the others (their stacks forward events only).
   * @default true
   */
  readonly createRole?: boolean;
  /**
   * Forward the account's ECS, CloudWatch alarm, CodeDeploy and Inspector scan events to the hub.
   * @default true
   */
  readonly forwardEvents?: boolean;
  /**
   * Also forward Inspector2 Finding events. Inspector publishes a member account's findings on the
   * member's default bus and on the delegated administrator's: set this in the delegated
   * administrator account only (unless the hub is that account), or the hub gets each finding twice.
   * @default false
   */
  readonly forwardFindings?: boolean;
  /**
   * This account holds ECR repositories whose images the hub reads, rebuilds and pushes (a shared
   * registry account, or workload accounts with their own repositories): the role gets ECR reads and
   * pushes.
   * @default false
   */
  readonly registry?: boolean;
  /**
   * With `registry`: let the builds push only to repositories carrying the service tag.
   * @default false
   */
  readonly pushToTaggedRepositoriesOnly?: boolean;
  /**
   * The tag that marks the services (and, with pushToTaggedRepositoriesOnly, repositories) Autopatch
   * may change: ecs:UpdateService is allowed on services carrying it.
   * @default { key: 'autopatch:enabled', value: 'true' }
   */
  readonly serviceTag?: { readonly key: string; readonly value: string };
  /**
   * Services Autopatch may deploy without the tag (the hub's explicit targets in this account):
   * service ARNs (`*` allowed in the Region) or `<cluster>/<service>` in this account, any Region.
   * @default - tagged services only
   */
  readonly services?: readonly string[];
  /**
   * The task and execution roles the patched task definitions carry (ARNs, or role names of this
   * account): iam:PassRole on exactly these.
   * @default - any role of the account, only to ecs-tasks.amazonaws.com
   */
  readonly taskRoleArns?: readonly string[];
  /**
   * The Regions the role may act in (aws:RequestedRegion).
   * @default - any Region
   */
  readonly regions?: readonly string[];
}

/** The detail-types the spoke forwards, by source (the hub's rules in lib/workflow/events.ts consume them). */
export const SPOKE_FORWARDED_EVENTS = {
  ecs: {
    source: 'aws.ecs',
    detailType: ['ECS Deployment State Change', 'ECS Service Action', 'ECS Task Definition State Change'],
  },
  alarms: { source: 'aws.cloudwatch', detailType: ['CloudWatch Alarm State Change'] },
  codeDeploy: { source: 'aws.codedeploy', detailType: ['CodeDeploy Deployment State-change Notification'] },
  inspectorScans: { source: 'aws.inspector2', detailType: ['Inspector2 Scan'] },
} as const;
export const SPOKE_FINDING_EVENTS = { source: 'aws.inspector2', detailType: ['Inspector2 Finding'] } as const;

const DEFAULT_TAG = { key: 'autopatch:enabled', value: 'true' };
const ROLE_NAME_PREFIX = /^[\w+=,.@-]{1,64}$/;
const SERVICE_ARN = /^arn:aws(-[a-z]+)*:ecs:([a-z0-9-]+|\*):\d{12}:service\/[\w-]+\/[\w-]+$/;
const CLUSTER_SERVICE = /^[\w-]{1,255}\/[\w-]{1,255}$/;
const ROLE_ARN = /^arn:aws(-[a-z]+)*:iam::\d{12}:role\/[\w+=,.@/*?-]{1,512}$/;
const TASK_ROLE_NAME = /^[\w+=,.@*?-]+(\/[\w+=,.@*?-]+)*$/;

/**
 * One workload account and Region's part of Autopatch: the role the hub assumes (in one Region per
 * account: `createRole`) and the forwarding rules.
 */
export class AutopatchSpoke extends Construct {
  /** The role the hub assumes; absent where `createRole` is false. */
  public readonly role?: iam.Role;
  /** The forwarding rules, by what they forward. */
  public readonly rules: Readonly<Record<string, events.Rule>>;

  constructor(scope: Construct, id: string, props: AutopatchSpokeProps) {
    super(scope, id);
    validate(this, props);
    const stack = Stack.of(this);
    if (
      !Token.isUnresolved(stack.account) &&
      stack.account === props.hubAccount &&
      props.createRole !== false
    )
      Annotations.of(this).addWarningV2(
        'autopatch:spoke-in-hub-account',
        "The hub uses its own credentials in its own account: a spoke role in the hub's account is never assumed (set createRole: false).",
      );
    if (props.createRole !== false) this.role = this.createRole(props);
    this.rules = props.forwardEvents === false && props.forwardFindings !== true ? {} : this.forward(props);
  }

  private createRole(props: AutopatchSpokeProps): iam.Role {
    const prefix = props.hubRoleNamePrefix ?? `${DEFAULT_HUB_STACK_NAME}-`;
    const role = new iam.Role(this, 'Role', {
      roleName: props.roleName ?? SPOKE_ROLE_NAME,
      path: SPOKE_ROLE_PATH,
      description: `Autopatch spoke: assumed by the Autopatch hub (account ${props.hubAccount}) to remediate this account's ECS services.`,
      // The hub asks for one-hour sessions (lambdas/shared/accounts.ts).
      maxSessionDuration: Duration.hours(1),
      assumedBy: new iam.AccountPrincipal(props.hubAccount).withConditions({
        ArnLike: { 'aws:PrincipalArn': `arn:${Aws.PARTITION}:iam::${props.hubAccount}:role/${prefix}*` },
        ...(props.organizationId !== undefined
          ? { StringEquals: { 'aws:PrincipalOrgID': props.organizationId } }
          : {}),
      }),
      inlinePolicies: { AutopatchHub: new iam.PolicyDocument({ statements: spokeStatements(this, props) }) },
    });
    acknowledgeSpokeRole(role, props);
    return role;
  }

  private forward(props: AutopatchSpokeProps): Record<string, events.Rule> {
    const stack = Stack.of(this);
    const hubBus = events.EventBus.fromEventBusArn(
      this,
      'HubBus',
      `arn:${Aws.PARTITION}:events:${props.hubRegion}:${props.hubAccount}:event-bus/default`,
    );
    // One role for every rule: EventBridge uses it to put the events on the hub's bus (required for a
    // bus in another Region, accepted for one in another account of the same Region).
    const role = new iam.Role(this, 'ForwardRole', {
      assumedBy: new iam.ServicePrincipal('events.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': stack.account },
      }),
      description: "Autopatch spoke: EventBridge forwards this account's events to the Autopatch hub's bus.",
    });
    type Family = { readonly source: string; readonly detailType: readonly string[] };
    const families: Array<[string, Family]> = [
      ...(props.forwardEvents === false
        ? []
        : (Object.entries(SPOKE_FORWARDED_EVENTS) as Array<[string, Family]>)),
      ...(props.forwardFindings === true
        ? [['inspectorFindings', SPOKE_FINDING_EVENTS] as [string, Family]]
        : []),
    ];
    const rules: Record<string, events.Rule> = {};
    for (const [name, family] of families) {
      rules[name] = new events.Rule(this, `Forward${name.charAt(0).toUpperCase()}${name.slice(1)}`, {
        description: `Autopatch spoke: forward ${family.detailType.join(', ')} to the Autopatch hub`,
        eventPattern: { source: [family.source], detailType: [...family.detailType] },
        targets: [new targets.EventBus(hubBus, { role })],
      });
    }
    return rules;
  }
}

/**
 * What the hub does in a workload account: the same actions the hub's own roles are granted for ECS,
 * CloudWatch alarms, CodeDeploy, Inspector and (in a registry account) ECR (lib/workflow/iam.ts,
 * lib/workflow/function-permissions.ts, lib/triage-function.ts, lib/workflow/builders.ts), on this
 * account's resources in any Region (or the listed ones).
 */
export const spokeStatements = (scope: Construct, props: AutopatchSpokeProps): iam.PolicyStatement[] => {
  const stack = Stack.of(scope);
  const arn = (service: string, resource: string, resourceName: string, colon = false) =>
    stack.formatArn({
      service,
      region: '*',
      resource,
      resourceName,
      arnFormat: colon ? ArnFormat.COLON_RESOURCE_NAME : ArnFormat.SLASH_RESOURCE_NAME,
    });
  const inRegions = props.regions !== undefined ? { 'aws:RequestedRegion': [...props.regions] } : undefined;
  const allow = (
    sid: string,
    actions: readonly string[],
    resources: readonly string[],
    conditions: Record<string, Record<string, unknown>> = {},
  ) =>
    new iam.PolicyStatement({
      sid,
      actions: [...actions],
      resources: [...resources],
      conditions: inRegions
        ? { ...conditions, StringEquals: { ...(conditions.StringEquals ?? {}), ...inRegions } }
        : conditions,
    });
  const tag = props.serviceTag ?? DEFAULT_TAG;
  const tagged = { StringEquals: { [`aws:ResourceTag/${tag.key}`]: tag.value } };
  const services = arn('ecs', 'service', '*');
  const serviceDeployments = arn('ecs', 'service-deployment', '*');
  const taskDefinitions = arn('ecs', 'task-definition', '*');
  const named = (props.services ?? []).map((s) => (s.startsWith('arn:') ? s : arn('ecs', 'service', s)));
  const taskRoles = (props.taskRoleArns ?? []).map((r) =>
    r.startsWith('arn:')
      ? r
      : stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: r }),
  );
  const groups = arn('codedeploy', 'deploymentgroup', '*', true);
  const applications = arn('codedeploy', 'application', '*', true);
  const repositories = arn('ecr', 'repository', '*');
  return [
    // Inventory (triage), the gate, the watchers, restore.
    allow(
      'EcsDescribeServices',
      ['ecs:DescribeServices', 'ecs:DescribeServiceDeployments'],
      [services, serviceDeployments],
    ),
    allow('EcsDescribeTasks', ['ecs:DescribeTasks'], [arn('ecs', 'task', '*')]),
    // No resource-level permissions for an unfiltered listing, nor for DescribeTaskDefinition.
    allow(
      'EcsListAndDescribeTaskDefinitions',
      ['ecs:ListClusters', 'ecs:ListServices', 'ecs:ListTasks', 'ecs:DescribeTaskDefinition'],
      ['*'],
    ),
    // Deploy and restore: tagged services, and the named ones.
    allow('EcsUpdateTaggedServices', ['ecs:UpdateService'], [services], tagged),
    ...(named.length > 0 ? [allow('EcsUpdateNamedServices', ['ecs:UpdateService'], named)] : []),
    allow('EcsStopServiceDeployment', ['ecs:StopServiceDeployment'], [serviceDeployments]),
    allow('EcsRegisterTaskDefinition', ['ecs:RegisterTaskDefinition'], [taskDefinitions]),
    allow('EcsTagOnRegister', ['ecs:TagResource'], [taskDefinitions], {
      StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' },
    }),
    allow(
      'PassTaskRolesToEcsTasks',
      ['iam:PassRole'],
      taskRoles.length > 0
        ? [...new Set(taskRoles)]
        : [stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: '*' })],
      { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
    ),
    // The gate and the watchers: the watched alarms.
    allow(
      'CloudWatchDescribeAlarms',
      ['cloudwatch:DescribeAlarms', 'cloudwatch:DescribeAlarmHistory'],
      [arn('cloudwatch', 'alarm', '*', true)],
    ),
    // CODE_DEPLOY services: find the group, deploy, watch, put back.
    allow(
      'CodeDeployDeploymentGroups',
      [
        'codedeploy:GetDeploymentGroup',
        'codedeploy:BatchGetDeploymentGroups',
        'codedeploy:CreateDeployment',
        'codedeploy:GetDeployment',
        'codedeploy:ListDeployments',
        'codedeploy:UpdateDeploymentGroup',
      ],
      [groups],
    ),
    allow(
      'CodeDeployApplications',
      ['codedeploy:ListDeploymentGroups', 'codedeploy:RegisterApplicationRevision'],
      [applications],
    ),
    allow(
      'CodeDeployDeploymentConfigs',
      ['codedeploy:GetDeploymentConfig'],
      [arn('codedeploy', 'deploymentconfig', '*', true)],
    ),
    allow('CodeDeployUnscopable', ['codedeploy:ListApplications', 'codedeploy:StopDeployment'], ['*']),
    // The rescan (coverage, findings) and triage's exploitation details.
    allow(
      'InspectorReads',
      ['inspector2:ListCoverage', 'inspector2:ListFindings', 'inspector2:BatchGetFindingDetails'],
      ['*'],
    ),
    // The hub's inventory and triage: which platform manifests an image index of this account holds.
    ...(props.registry === true ? [] : [allow('EcrReadImageIndexes', ['ecr:BatchGetImage'], [repositories])]),
    ...(props.registry === true
      ? [
          allow('EcrReadImages', ['ecr:DescribeImages', ...ECR_PULL_ACTIONS], [repositories]),
          allow(
            'EcrPushImages',
            [...ECR_PUSH_ACTIONS],
            [repositories],
            props.pushToTaggedRepositoriesOnly === true ? tagged : {},
          ),
          allow('EcrLogin', ['ecr:GetAuthorizationToken'], ['*']),
        ]
      : []),
  ];
};

/** The spoke role's cdk-nag findings that are the design, each with its reason. */
const acknowledgeSpokeRole = (role: iam.Role, props: AutopatchSpokeProps): void => {
  const stack = Stack.of(role);
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  const arn = (service: string, rest: string, region = '*') =>
    `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:${service}:${region}:${account}:${rest}]`;
  const reasons: Array<[string, string]> = [
    [
      IAM5_ANY_RESOURCE,
      'Only actions without resource-level permissions: ecs:ListClusters/ListServices/ListTasks/DescribeTaskDefinition, codedeploy:ListApplications/StopDeployment, inspector2 reads, ecr:GetAuthorizationToken (Autopatch-IAMAnyResource checks each one).',
    ],
    [
      arn('ecs', 'service/*'),
      "Services are discovered by tag at run time, in any of the account's Regions; UpdateService only on services carrying the Autopatch tag (or named).",
    ],
    [
      arn('ecs', 'service-deployment/*'),
      'Service deployment ids are created by ECS at run time and carry no tags; the hub stops only the deployment it started.',
    ],
    [
      arn('ecs', 'task/*'),
      'DescribeTasks (read-only) of the tasks of discovered services; task ids are random.',
    ],
    [
      arn('ecs', 'task-definition/*'),
      'New revisions of the running family (known at run time) are registered; TagResource only as part of RegisterTaskDefinition.',
    ],
    [
      arn('cloudwatch', 'alarm:*'),
      "DescribeAlarms and DescribeAlarmHistory (read-only) of the watched alarms: the service's deployment alarms and the target's, named at run time.",
    ],
    [
      arn('codedeploy', 'deploymentgroup:*'),
      'The CodeDeploy deployment group of a CODE_DEPLOY service is found at run time; only deployments of ECS services are created, read or stopped.',
    ],
    [
      arn('codedeploy', 'application:*'),
      'The CodeDeploy application of a CODE_DEPLOY service is found at run time.',
    ],
    [
      arn('codedeploy', 'deploymentconfig:*'),
      'CreateDeployment reads the deployment configuration the group names (its own or a CodeDeployDefault.*).',
    ],
    ...((props.taskRoleArns ?? []).length === 0
      ? [
          [
            arn('iam', 'role/*', ''),
            "iam:PassRole of the running task definition's own task and execution roles, only to ecs-tasks.amazonaws.com (iam:PassedToService); narrow it with taskRoleArns.",
          ] as [string, string],
        ]
      : []),
    ...named(props).map(
      (rendered) =>
        [
          `AwsSolutions-IAM5[Resource::${rendered}]`,
          'A service named in services (an explicit target), in any Region of this account.',
        ] as [string, string],
    ),
    ...(props.taskRoleArns ?? [])
      .filter((r) => r.includes('*'))
      .map(
        (r) =>
          [
            `AwsSolutions-IAM5[Resource::${r.startsWith('arn:') ? r : `arn:<AWS::Partition>:iam::${account}:role/${r}`}]`,
            'iam:PassRole of the task and execution roles taskRoleArns names by pattern, only to ecs-tasks.amazonaws.com (iam:PassedToService).',
          ] as [string, string],
      ),
    ...(props.registry === true
      ? [
          [
            arn('ecr', 'repository/*'),
            props.pushToTaggedRepositoriesOnly === true
              ? 'Reads of the images services run (repositories known at run time); pushes of patched images only to repositories carrying the Autopatch tag.'
              : 'Reads of the images services run and pushes of their patched images: the repositories are those of the discovered services, known at run time.',
          ] as [string, string],
        ]
      : [
          [
            arn('ecr', 'repository/*'),
            "ecr:BatchGetImage (read-only) of the images services run, so the hub maps a platform digest to the image index a service runs; the repositories are those of the services' task definitions, known at run time.",
          ] as [string, string],
        ]),
  ];
  function named(p: AutopatchSpokeProps): string[] {
    return (p.services ?? []).map((s) =>
      s.startsWith('arn:') ? s : `arn:<AWS::Partition>:ecs:*:${account}:service/${s}`,
    );
  }
  // The inline policy is part of the role resource: acknowledged on the role, finding by finding.
  for (const [id, reason] of reasons) acknowledge(role, id, reason);
};

/** All problems with the spoke's props at once, each naming its field. */
const validate = (scope: Construct, props: AutopatchSpokeProps): void => {
  const errors: string[] = [];
  const check = (value: unknown, field: string, pattern: RegExp, what: string) => {
    if (value === undefined || Token.isUnresolved(value)) return;
    if (typeof value !== 'string' || !pattern.test(value))
      errors.push(`${field}: ${JSON.stringify(value)} is not ${what}`);
  };
  if (props.hubAccount === undefined) errors.push('hubAccount: required (the Autopatch hub account id)');
  check(props.hubAccount, 'hubAccount', ACCOUNT_ID, 'a 12-digit AWS account id');
  if (props.hubRegion === undefined) errors.push("hubRegion: required (the Autopatch hub's Region)");
  check(props.hubRegion, 'hubRegion', REGION, 'a Region name (eu-central-1)');
  check(props.organizationId, 'organizationId', ORGANIZATION_ID, 'an organization id (o-…)');
  check(props.roleName, 'roleName', ROLE_NAME, 'an IAM role name (no path)');
  check(props.hubRoleNamePrefix, 'hubRoleNamePrefix', ROLE_NAME_PREFIX, 'the start of an IAM role name');
  (props.regions ?? []).forEach((r, i) => {
    check(r, `regions[${i}]`, REGION, 'a Region name');
  });
  (props.services ?? []).forEach((s, i) => {
    if (Token.isUnresolved(s)) return;
    if (!(s.startsWith('arn:') ? SERVICE_ARN : CLUSTER_SERVICE).test(s))
      errors.push(
        `services[${i}]: ${JSON.stringify(s)} is neither an ECS service ARN nor <cluster>/<service>`,
      );
  });
  (props.taskRoleArns ?? []).forEach((r, i) => {
    if (Token.isUnresolved(r)) return;
    if (!(r.startsWith('arn:') ? ROLE_ARN : TASK_ROLE_NAME).test(r))
      errors.push(`taskRoleArns[${i}]: ${JSON.stringify(r)} is neither a role ARN nor a role name`);
    else if (r === '*' || /:role\/\*$/.test(r))
      errors.push(`taskRoleArns[${i}]: ${JSON.stringify(r)} is every role; leave taskRoleArns out for that`);
  });
  if (props.serviceTag !== undefined && (!props.serviceTag.key || !props.serviceTag.value))
    errors.push('serviceTag: needs a key and a value');
  if (props.pushToTaggedRepositoriesOnly === true && props.registry !== true)
    errors.push('pushToTaggedRepositoriesOnly: only with registry: true (the role pushes nowhere otherwise)');
  if (props.createRole === false && props.forwardEvents === false && props.forwardFindings !== true)
    errors.push('createRole and forwardEvents are both false: the spoke would create nothing');
  const stack = Stack.of(scope);
  if (
    !Token.isUnresolved(stack.account) &&
    !Token.isUnresolved(stack.region) &&
    stack.account === props.hubAccount &&
    stack.region === props.hubRegion
  )
    errors.push(
      "the hub's own account and Region need no spoke: the hub reads its own bus and uses its own credentials there",
    );
  if (errors.length > 0)
    throw new ConfigurationError(
      `Invalid AutopatchSpoke configuration (${scope.node.path}), ${errors.length} problem${errors.length === 1 ? '' : 's'}:\n` +
        errors.map((e) => `  - ${e}`).join('\n'),
    );
};

export interface AutopatchSpokeStackProps extends StackProps, AutopatchSpokeProps {}

/**
 * One workload account and Region's spoke, as a stack. It synthesizes to a template with no assets,
 * no parameters and no bootstrap version rule, so the same template also deploys as a CloudFormation
 * StackSet over organizational units (docs/organizations.md). With `cdk deploy` it still uses the
 * bootstrapped deployment roles of the target account.
 */
export class AutopatchSpokeStack extends Stack {
  public readonly spoke: AutopatchSpoke;

  constructor(scope: Construct, id: string, props: AutopatchSpokeStackProps) {
    super(scope, id, {
      description:
        'Autopatch spoke: the role the Autopatch hub assumes and the rules that forward ECS, alarm, CodeDeploy and Inspector events to it.',
      // exactOptionalPropertyTypes: DefaultStackSynthesizer's optional getters do not fit the interface.
      synthesizer: new DefaultStackSynthesizer({
        generateBootstrapVersionRule: false,
      }) as unknown as IStackSynthesizer,
      analyticsReporting: false,
      ...props,
    });
    this.spoke = new AutopatchSpoke(this, 'Spoke', props);
    Tags.of(this).add('application', 'autopatch');
    Tags.of(this).add('managed-by', 'aws-cdk');
  }
}
