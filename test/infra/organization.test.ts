/**
 * Autopatch for an organization (docs/organizations.md): the spoke stack (role, trust, forwarding
 * rules; StackSet-ready), the hub's `organization` prop, and the example app bin/organization.ts.
 * The spoke role's trust and permissions are decided by a real IAM evaluator over the synthesized
 * policies.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { App, Stack, Token } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { buildOrganizationApp, organizationFromContext } from '../../bin/organization';
import * as runtime from '../../lambdas/shared/accounts';
import { AutopatchChecks } from '../../lib/nag';
import * as organization from '../../lib/organization';
import { type AutopatchSpokeProps, AutopatchSpokeStack } from '../../lib/spoke';
import { AutopatchStack, type AutopatchStackProps } from '../../lib/stack';
import { testApp } from '../support/synth';

const HUB = '111111111111';
const SPOKE = '222222222222';
const OTHER = '333333333333';
const ORG = 'o-exampleorg1';
const HUB_REGION = 'eu-central-1';

type Json = Record<string, unknown>;

const violations = (scope: IConstruct): string[] =>
  [new AwsSolutionsChecks(), new AutopatchChecks()].flatMap((pack) =>
    pack
      .validateScope(scope)
      .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} @ ${r.constructPath}`)),
  );

const spokeStack = (props: Partial<AutopatchSpokeProps> = {}, env?: { account: string; region: string }) => {
  const app = testApp();
  const stack = new AutopatchSpokeStack(app, 'AutopatchSpoke', {
    hubAccount: HUB,
    hubRegion: HUB_REGION,
    organizationId: ORG,
    ...props,
    ...(env ? { env } : {}),
  });
  return { app, stack, template: Template.fromStack(stack) };
};

const hubStack = (autopatch: AutopatchStackProps) => {
  const app = testApp();
  const stack = new AutopatchStack(app, 'AutopatchStack', autopatch);
  return { app, stack, template: Template.fromStack(stack) };
};

/** CloudFormation's pseudo parameters and Fn::Join, resolved for one account (for the evaluator). */
const resolve = (value: unknown, account: string, region = HUB_REGION): unknown => {
  if (Array.isArray(value)) return value.map((v) => resolve(v, account, region));
  if (value && typeof value === 'object') {
    const o = value as Json;
    if ('Ref' in o) {
      const pseudo: Record<string, string> = {
        'AWS::Partition': 'aws',
        'AWS::AccountId': account,
        'AWS::Region': region,
        'AWS::URLSuffix': 'amazonaws.com',
      };
      return pseudo[o.Ref as string] ?? `<Ref ${String(o.Ref)}>`;
    }
    if ('Fn::Join' in o) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map((p) => resolve(p, account, region)).join(sep);
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, resolve(v, account, region)]));
  }
  return value;
};

const roleOf = (template: Template, path: RegExp): Json => {
  const roles = Object.values(template.findResources('AWS::IAM::Role')).filter((r) =>
    path.test(String((r.Properties as Json).RoleName ?? '')),
  );
  expect(roles).toHaveLength(1);
  return (roles[0] as { Properties: Json }).Properties;
};

const decide = async (simulation: Simulation): Promise<string> => {
  const response = await runSimulation(simulation, {});
  if (response.resultType === 'error') throw new Error(JSON.stringify(response.errors));
  return response.overallResult;
};

const SPOKE_ROLE_ARN = `arn:aws:iam::${SPOKE}:role/autopatch/AutopatchSpoke`;
const hubRole = (name: string, account = HUB) => `arn:aws:iam::${account}:role/${name}`;
const TRIAGE_ROLE = hubRole('AutopatchStack-AutopatchTriageServiceRoleA1B2C3D4-Q1W2E3R4T5Y6');

describe('the runtime contract', () => {
  test('lib/organization.ts names the role, path and environment as lambdas/shared/accounts.ts does', () => {
    expect(organization.SPOKE_ROLE_NAME).toBe(runtime.SPOKE_ROLE_NAME);
    expect(organization.SPOKE_ROLE_PATH).toBe(runtime.SPOKE_ROLE_PATH);
    expect(organization.HOME_ACCOUNT_ENV).toBe(runtime.HOME_ACCOUNT_ENV);
    expect(organization.SPOKE_ROLE_ENV).toBe(runtime.SPOKE_ROLE_ENV);
    expect(runtime.spokeRoleArn(SPOKE)).toBe(SPOKE_ROLE_ARN);
  });
});

describe('AutopatchSpokeStack', () => {
  const { stack, template } = spokeStack();
  const json = template.toJSON() as Json;

  test('creates one role, the forwarding rules and their role, and nothing else (no Lambda, no table)', () => {
    const types = Object.values(json.Resources as Record<string, { Type: string }>).map((r) => r.Type);
    expect(new Set(types)).toEqual(new Set(['AWS::IAM::Role', 'AWS::IAM::Policy', 'AWS::Events::Rule']));
    expect(types.filter((t) => t === 'AWS::Events::Rule')).toHaveLength(4);
  });

  test('is StackSet-ready: no parameters, no rules, no assets, no CDK metadata', () => {
    expect(json.Parameters).toBeUndefined();
    expect(json.Rules).toBeUndefined();
    expect(json.Conditions).toBeUndefined();
    expect(JSON.stringify(json)).not.toMatch(
      /AssetParameters|aws:asset|BootstrapVersion|CDKMetadata|cdk-hnb659fds-assets/,
    );
  });

  test('the role is /autopatch/AutopatchSpoke, trusted by the hub account with the org and role-name conditions', () => {
    const role = roleOf(template, /AutopatchSpoke/);
    expect(role.Path).toBe('/autopatch/');
    expect(role.MaxSessionDuration).toBe(3600);
    const trust = resolve(role.AssumeRolePolicyDocument, SPOKE) as { Statement: Json[] };
    expect(trust.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${HUB}:root` },
        Condition: {
          ArnLike: { 'aws:PrincipalArn': `arn:aws:iam::${HUB}:role/AutopatchStack-*` },
          StringEquals: { 'aws:PrincipalOrgID': ORG },
        },
      },
    ]);
  });

  test("the rules forward the account's ECS, alarm, CodeDeploy and Inspector scan events to the hub's default bus, with a role", () => {
    const rules = Object.values(template.findResources('AWS::Events::Rule')).map((r) =>
      resolve((r as { Properties: Json }).Properties, SPOKE),
    ) as Array<{ EventPattern: Json; Targets: Array<{ Arn: string; RoleArn: unknown }> }>;
    expect(rules.map((r) => r.EventPattern)).toEqual(
      expect.arrayContaining([
        {
          source: ['aws.ecs'],
          'detail-type': [
            'ECS Deployment State Change',
            'ECS Service Action',
            'ECS Task Definition State Change',
          ],
        },
        { source: ['aws.cloudwatch'], 'detail-type': ['CloudWatch Alarm State Change'] },
        { source: ['aws.codedeploy'], 'detail-type': ['CodeDeploy Deployment State-change Notification'] },
        { source: ['aws.inspector2'], 'detail-type': ['Inspector2 Scan'] },
      ]),
    );
    for (const rule of rules) {
      expect(rule.Targets).toHaveLength(1);
      expect(rule.Targets[0]?.Arn).toBe(`arn:aws:events:${HUB_REGION}:${HUB}:event-bus/default`);
      expect(rule.Targets[0]?.RoleArn).toBeDefined();
    }
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Action: 'events:PutEvents',
            Resource: Match.objectLike({ 'Fn::Join': Match.anyValue() }),
          }),
        ],
      },
    });
  });

  test('no unacknowledged cdk-nag finding (AwsSolutions and Autopatch), in every variant', () => {
    expect(violations(stack)).toEqual([]);
    for (const variant of [
      spokeStack({ registry: true, pushToTaggedRepositoriesOnly: true }),
      spokeStack(
        { registry: true, regions: ['eu-central-1', 'us-east-1'] },
        { account: SPOKE, region: 'us-east-1' },
      ),
      spokeStack(
        { taskRoleArns: ['ecs-task-*'], services: ['prod/api'] },
        { account: SPOKE, region: HUB_REGION },
      ),
      spokeStack({ createRole: false, forwardFindings: true }),
    ])
      expect(violations(variant.stack)).toEqual([]);
  });

  test('createRole: false forwards only; forwardFindings adds Inspector2 Finding events', () => {
    const { template: t } = spokeStack({ createRole: false, forwardFindings: true });
    expect(Object.values(t.findResources('AWS::IAM::Role'))).toHaveLength(1); // the forwarding role
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.inspector2'], 'detail-type': ['Inspector2 Finding'] },
    });
    expect(JSON.stringify(t.toJSON())).not.toContain('/autopatch/');
  });

  test('bad settings fail with every problem named', () => {
    expect(() =>
      spokeStack({
        hubAccount: '123',
        organizationId: 'org-1',
        roleName: 'a/b',
        taskRoleArns: ['*'],
        pushToTaggedRepositoriesOnly: true,
      }),
    ).toThrow(
      /5 problems:[\s\S]*hubAccount: "123"[\s\S]*organizationId: "org-1"[\s\S]*roleName[\s\S]*taskRoleArns\[0\][\s\S]*pushToTaggedRepositoriesOnly/,
    );
    expect(() => spokeStack({}, { account: HUB, region: HUB_REGION })).toThrow(/need no spoke/);
  });
});

describe('the spoke role, evaluated', () => {
  const { template } = spokeStack();
  const role = roleOf(template, /AutopatchSpoke/);
  const trust = resolve(role.AssumeRolePolicyDocument, SPOKE);
  const permissions = (role.Policies as Array<{ PolicyName: string; PolicyDocument: unknown }>).map((p) => ({
    name: p.PolicyName,
    policy: resolve(p.PolicyDocument, SPOKE),
  }));
  // The hub's side: its AssumeSpokeRolePolicy, as synthesized for an organization given by id.
  const { template: hub } = hubStack({ autopatch: { organization: { organizationId: ORG } } });
  const hubPolicy = Object.values(hub.findResources('AWS::IAM::Policy')).find((p) =>
    JSON.stringify(p).includes('sts:AssumeRole'),
  ) as { Properties: { PolicyDocument: unknown } };
  const hubIdentity = [
    { name: 'AssumeSpokeRolePolicy', policy: resolve(hubPolicy.Properties.PolicyDocument, HUB) },
  ];

  const assume = (principal: string, orgId: string, account = HUB) =>
    decide({
      request: {
        principal,
        action: 'sts:AssumeRole',
        resource: { resource: SPOKE_ROLE_ARN, accountId: SPOKE },
        contextVariables: {
          'aws:PrincipalArn': principal,
          'aws:PrincipalAccount': account,
          'aws:PrincipalOrgID': orgId,
          'aws:ResourceOrgID': ORG,
          'aws:ResourceAccount': SPOKE,
          'aws:SecureTransport': 'true',
        },
      },
      identityPolicies: account === HUB ? hubIdentity : [{ name: 'any', policy: anyAssume }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: trust,
    });
  const anyAssume = {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*' }],
  };

  test("trust: the hub's Lambda and build roles in the organization may assume it", async () => {
    expect(await assume(TRIAGE_ROLE, ORG)).toBe('Allowed');
    expect(await assume(hubRole('AutopatchStack-AutopatchWorkflowPatchOsX86ProjectRole-ZZZ'), ORG)).toBe(
      'Allowed',
    );
  });

  test('trust: a role of another account, outside the organization, or with another name may not', async () => {
    expect(await assume(hubRole('AutopatchStack-AutopatchTriageServiceRole-X', OTHER), ORG, OTHER)).not.toBe(
      'Allowed',
    );
    expect(await assume(TRIAGE_ROLE, 'o-someoneelse1')).not.toBe('Allowed');
    expect(await assume(hubRole('OtherStack-AdminRole-X'), ORG)).not.toBe('Allowed');
  });

  const act = (action: string, resource: string, context: Record<string, string | string[]> = {}) =>
    decide({
      request: {
        principal: SPOKE_ROLE_ARN,
        action,
        resource: { resource, accountId: SPOKE },
        contextVariables: {
          'aws:PrincipalArn': SPOKE_ROLE_ARN,
          'aws:PrincipalAccount': SPOKE,
          'aws:RequestedRegion': 'us-east-1',
          'aws:SecureTransport': 'true',
          ...context,
        },
      },
      identityPolicies: permissions,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    });
  const service = (name: string) => `arn:aws:ecs:us-east-1:${SPOKE}:service/prod/${name}`;

  test('permissions: what the hub does in a workload account is allowed', async () => {
    expect(await act('ecs:DescribeServices', service('api'))).toBe('Allowed');
    expect(
      await act('ecs:UpdateService', service('api'), { 'aws:ResourceTag/autopatch:enabled': 'true' }),
    ).toBe('Allowed');
    expect(
      await act('ecs:RegisterTaskDefinition', `arn:aws:ecs:us-east-1:${SPOKE}:task-definition/api:4`),
    ).toBe('Allowed');
    expect(
      await act('iam:PassRole', `arn:aws:iam::${SPOKE}:role/api-task`, {
        'iam:PassedToService': 'ecs-tasks.amazonaws.com',
      }),
    ).toBe('Allowed');
    expect(
      await act('cloudwatch:DescribeAlarms', `arn:aws:cloudwatch:us-east-1:${SPOKE}:alarm:api-5xx`),
    ).toBe('Allowed');
    expect(
      await act(
        'codedeploy:CreateDeployment',
        `arn:aws:codedeploy:us-east-1:${SPOKE}:deploymentgroup:AppECS-prod-api/DgpECS-prod-api`,
      ),
    ).toBe('Allowed');
    expect(await act('inspector2:ListFindings', '*')).toBe('Allowed');
  });

  test('permissions: what the hub does not need is denied', async () => {
    expect(await act('ecs:DeleteService', service('api'))).not.toBe('Allowed');
    expect(
      await act('ecs:UpdateService', service('billing'), { 'aws:ResourceTag/team': 'billing' }),
    ).not.toBe('Allowed');
    expect(
      await act('iam:PassRole', `arn:aws:iam::${SPOKE}:role/admin`, {
        'iam:PassedToService': 'lambda.amazonaws.com',
      }),
    ).not.toBe('Allowed');
    expect(await act('ecs:UpdateService', `arn:aws:ecs:us-east-1:${OTHER}:service/prod/api`)).not.toBe(
      'Allowed',
    );
    // Not a registry account: no pushes, no reads of images.
    expect(await act('ecr:PutImage', `arn:aws:ecr:us-east-1:${SPOKE}:repository/api`)).not.toBe('Allowed');
    expect(await act('dynamodb:PutItem', `arn:aws:dynamodb:us-east-1:${SPOKE}:table/t`)).not.toBe('Allowed');
  });
});

describe('the hub with an organization', () => {
  const byId = hubStack({ autopatch: { organization: { organizationId: ORG } } });
  const listed = hubStack({
    autopatch: {
      organization: {
        organizationId: ORG,
        accounts: [SPOKE, OTHER],
        regions: ['eu-central-1', 'us-east-1'],
        spokeRoleName: 'PlatformAutopatch',
      },
    },
  });
  const rulesOf = (template: Template) =>
    Object.values(template.findResources('AWS::Events::Rule')).map(
      (r) => (r as { Properties: { Description: string; EventPattern?: Json } }).Properties,
    );
  const byDescription = (template: Template, text: string) => {
    const found = rulesOf(template).filter((r) => r.Description.includes(text));
    expect(found).toHaveLength(1);
    return found[0] as { EventPattern: Json };
  };

  test('the default bus accepts PutEvents from the organization, or from the listed accounts in it', () => {
    byId.template.hasResourceProperties('AWS::Events::EventBusPolicy', {
      EventBusName: 'default',
      Statement: Match.objectLike({
        Effect: 'Allow',
        Principal: '*',
        Action: 'events:PutEvents',
        Condition: { StringEquals: { 'aws:PrincipalOrgID': ORG } },
      }),
    });
    const policy = resolve(
      Object.values(listed.template.findResources('AWS::Events::EventBusPolicy'))[0],
      HUB,
    ) as { Properties: { Statement: Json } };
    expect(policy.Properties.Statement.Principal).toEqual({
      AWS: [`arn:aws:iam::${SPOKE}:root`, `arn:aws:iam::${OTHER}:root`],
    });
  });

  test('the intake takes findings from any account of the organization, or from the listed ones and Regions', () => {
    const intake = (t: Template) => byDescription(t, 'Autopatch intake').EventPattern;
    expect(intake(byId.template).account).toBeUndefined();
    expect(intake(byId.template).region).toBeUndefined();
    expect(intake(listed.template).account).toEqual([{ Ref: 'AWS::AccountId' }, SPOKE, OTHER]);
    expect(intake(listed.template).region).toEqual([{ Ref: 'AWS::Region' }, 'eu-central-1', 'us-east-1']);
  });

  test("the deployment-events rules take the listed spokes' events (no account filter otherwise)", () => {
    for (const text of [
      'ECS deployment state',
      'alarm going to ALARM',
      'CodeDeploy deployment state',
      "Inspector's scan",
    ]) {
      expect(byDescription(byId.template, text).EventPattern.account).toBeUndefined();
      expect(byDescription(listed.template, text).EventPattern.account).toEqual([
        { Ref: 'AWS::AccountId' },
        SPOKE,
        OTHER,
      ]);
    }
    expect(byDescription(listed.template, 'stopped by hand').EventPattern.account).toBeUndefined();
  });

  test('the roles that act in workload accounts may assume the spoke role: any in the org by id, or the listed ones', () => {
    const assumePolicies = (t: Template) =>
      Object.values(t.findResources('AWS::IAM::Policy')).filter((p) =>
        JSON.stringify(p).includes('sts:AssumeRole'),
      );
    const [byIdPolicy] = assumePolicies(byId.template) as Array<{ Properties: Json }>;
    expect(assumePolicies(byId.template)).toHaveLength(1);
    const props = resolve(byIdPolicy?.Properties, HUB) as {
      PolicyDocument: { Statement: Json[] };
    };
    expect(props.PolicyDocument.Statement).toEqual([
      {
        Sid: 'AssumeAutopatchSpokeRole',
        Effect: 'Allow',
        Action: 'sts:AssumeRole',
        Resource: 'arn:aws:iam::*:role/autopatch/AutopatchSpoke',
        Condition: { StringEquals: { 'aws:ResourceOrgID': ORG } },
      },
    ]);
    const roles = JSON.stringify(byIdPolicy?.Properties.Roles);
    for (const expected of [
      'TriageServiceRole',
      'SweepRole',
      'RestoreRole',
      'GateRole',
      'PatchOsX86',
      'Source',
    ])
      expect(roles).toContain(expected);
    for (const excluded of ['FinishRole', 'PlanBuildsRole', 'RequestApprovalRole'])
      expect(roles).not.toContain(excluded);

    const [listedPolicy] = assumePolicies(listed.template) as Array<{ Properties: Json }>;
    const listedDoc = resolve(listedPolicy?.Properties, HUB) as { PolicyDocument: { Statement: Json[] } };
    expect(listedDoc.PolicyDocument.Statement[0]?.Resource).toEqual([
      `arn:aws:iam::${SPOKE}:role/autopatch/PlatformAutopatch`,
      `arn:aws:iam::${OTHER}:role/autopatch/PlatformAutopatch`,
    ]);
  });

  test('every Lambda knows the home account, and the spoke role name when it is not the default', () => {
    const envs = (t: Template) =>
      Object.values(t.findResources('AWS::Lambda::Function')).map(
        (f) => (f as { Properties: { Environment: { Variables: Json } } }).Properties.Environment.Variables,
      );
    for (const variables of envs(byId.template)) {
      expect(variables.AUTOPATCH_HOME_ACCOUNT).toEqual({ Ref: 'AWS::AccountId' });
      expect(variables.AUTOPATCH_SPOKE_ROLE_NAME).toBeUndefined();
    }
    for (const variables of envs(listed.template))
      expect(variables.AUTOPATCH_SPOKE_ROLE_NAME).toBe('PlatformAutopatch');
  });

  test('no unacknowledged cdk-nag finding', () => {
    expect(violations(byId.stack)).toEqual([]);
    expect(violations(listed.stack)).toEqual([]);
  });

  test('bad organization settings fail with the field named', () => {
    expect(() => hubStack({ autopatch: { organization: {} } })).toThrow(/organization: give organizationId/);
    expect(() =>
      hubStack({ autopatch: { organization: { organizationId: 'org', accounts: ['1', SPOKE, SPOKE] } } }),
    ).toThrow(/organizationId: "org"[\s\S]*accounts\[0\][\s\S]*accounts\[2\]: 222222222222 is listed twice/);
  });
});

describe('the hub without an organization (single account, as before)', () => {
  const { template } = hubStack({ autopatch: {} });
  const text = JSON.stringify(template.toJSON());

  test('adds only AUTOPATCH_HOME_ACCOUNT: no bus policy, no AssumeRole, no account filters beyond its own', () => {
    expect(Object.keys(template.findResources('AWS::Events::EventBusPolicy'))).toEqual([]);
    const identityPolicies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(identityPolicies).not.toContain('sts:AssumeRole');
    expect(text).not.toContain('AUTOPATCH_SPOKE_ROLE_NAME');
    const rules = Object.values(template.findResources('AWS::Events::Rule')).map(
      (r) => (r as { Properties: { Description: string; EventPattern?: Json } }).Properties,
    );
    for (const rule of rules) {
      if (rule.Description.includes('Autopatch intake')) {
        expect(rule.EventPattern?.account).toEqual([{ Ref: 'AWS::AccountId' }]);
        expect(rule.EventPattern?.region).toBeUndefined();
      } else expect(rule.EventPattern?.account).toBeUndefined();
    }
    const functions = Object.values(template.findResources('AWS::Lambda::Function'));
    // triage, the two inventory functions and the 15 workflow functions: every one knows the hub.
    expect(functions).toHaveLength(18);
    for (const f of functions)
      expect(
        (f as { Properties: { Environment: { Variables: Json } } }).Properties.Environment.Variables,
      ).toMatchObject({ AUTOPATCH_HOME_ACCOUNT: { Ref: 'AWS::AccountId' } });
  });
});

describe('bin/organization.ts', () => {
  test("cdk.json's example context is valid", () => {
    const cdkJson = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8'));
    const example = new App({ context: cdkJson.context });
    expect(organizationFromContext(example).spokes.length).toBeGreaterThan(0);
    expect(() =>
      organizationFromContext(new App({ context: { 'autopatch:organization': { hub: {} } } })),
    ).toThrow(/autopatch:organization is invalid/);
  });

  const app = testApp({
    'autopatch:organization': {
      hub: { account: HUB, region: HUB_REGION },
      organizationId: ORG,
      spokes: [
        { account: SPOKE, regions: [HUB_REGION, 'us-east-1'], registry: true },
        { account: HUB, regions: [HUB_REGION, 'us-east-1'] },
        { account: OTHER, regions: [HUB_REGION], findings: true },
      ],
    },
  });
  buildOrganizationApp(app, organizationFromContext(app));
  const stacks = app.node
    .findAll()
    .filter((c): c is Stack => Stack.isStack(c))
    .map((s) => s.node.path);

  test('one hub stage, one spoke stage per account and Region (none for the hub account and Region), and the StackSet templates', () => {
    expect(stacks.sort()).toEqual(
      [
        'Hub/AutopatchStack',
        `Spoke-${SPOKE}-${HUB_REGION}/AutopatchSpoke`,
        `Spoke-${SPOKE}-us-east-1/AutopatchSpoke`,
        `Spoke-${HUB}-us-east-1/AutopatchSpoke`,
        `Spoke-${OTHER}-${HUB_REGION}/AutopatchSpoke`,
        'AutopatchSpoke',
        'AutopatchSpokeEvents',
      ].sort(),
    );
  });

  test('the role is created in the first Region of each spoke account only, never in the hub account', () => {
    const roleIn = (path: string) => {
      const stack = app.node.findAll().find((c) => c.node.path === path) as AutopatchSpokeStack;
      return stack.spoke.role !== undefined;
    };
    expect(roleIn(`Spoke-${SPOKE}-${HUB_REGION}/AutopatchSpoke`)).toBe(true);
    expect(roleIn(`Spoke-${SPOKE}-us-east-1/AutopatchSpoke`)).toBe(false);
    expect(roleIn(`Spoke-${HUB}-us-east-1/AutopatchSpoke`)).toBe(false);
    expect(roleIn('AutopatchSpoke')).toBe(true);
    expect(roleIn('AutopatchSpokeEvents')).toBe(false);
  });

  test('the StackSet templates have no parameters and no environment', () => {
    for (const id of ['AutopatchSpoke', 'AutopatchSpokeEvents']) {
      const stack = app.node.findChild(id) as AutopatchSpokeStack;
      expect(Template.fromStack(stack).toJSON().Parameters).toBeUndefined();
      expect(Token.isUnresolved(stack.account) && Token.isUnresolved(stack.region)).toBe(true);
    }
  });

  test('the hub trusts the listed spokes; the delegated administrator account forwards findings', () => {
    const hub = app.node.findAll().find((c) => c.node.path === 'Hub/AutopatchStack') as AutopatchStack;
    const policy = Template.fromStack(hub).findResources('AWS::Events::EventBusPolicy');
    expect(JSON.stringify(policy)).toContain(SPOKE);
    expect(JSON.stringify(policy)).not.toContain(`${HUB}:root`);
    const admin = app.node
      .findAll()
      .find((c) => c.node.path === `Spoke-${OTHER}-${HUB_REGION}/AutopatchSpoke`) as AutopatchSpokeStack;
    expect(Object.keys(admin.spoke.rules)).toContain('inspectorFindings');
  });
});
