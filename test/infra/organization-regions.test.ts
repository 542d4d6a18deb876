/**
 * The hub's grants for an organization's Regions and for fleet stages by organizational unit, in the
 * synthesized template: the image builds, the rescan and the index assembly reach the hub account's
 * registry in each listed Region by ARN; the slot step may call organizations:ListParents only when
 * a stage names OUs; cdk-nag stays clean; a hub without `organization` keeps its ECR grants as they
 * were; bin/organization.ts deploys the spokes as StackSets over OUs and hands the spokes' OUs to
 * the hub's fleet. (The grants are evaluated with a real IAM evaluator in test/iam/cross-region-push.test.ts.)
 */
import { App, type Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { buildOrganizationApp, organizationFromContext } from '../../bin/organization';
import { AutopatchChecks } from '../../lib/nag';
import type { AutopatchStack } from '../../lib/stack';
import {
  logicalIdOf,
  policyStatements,
  synthAutopatch,
  testApp,
  unacknowledgedNagFindings,
} from '../support/synth';

const ORG = 'o-exampleorg1';
const SPOKE = '222222222222';
const OU = 'ou-ab12-prod0001';

type Json = Record<string, unknown>;

/** An ARN as synthesized: `Fn::Join` of literals and pseudo parameters, rendered as cdk-nag does. */
const render = (value: unknown): string => {
  if (typeof value === 'string') return value;
  const o = value as Json;
  if ('Ref' in o) return `<${String(o.Ref)}>`;
  if ('Fn::Join' in o) {
    const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(sep);
  }
  return JSON.stringify(value);
};

/** The statements of the policies attached to a function's or project's role, rendered. */
const statementsOf = (template: Template, stack: Parameters<typeof policyStatements>[0], roleId: string) => {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Json }>;
  const attached = new Set(
    Object.entries(resources)
      .filter(
        ([, r]) =>
          r.Type === 'AWS::IAM::Policy' &&
          JSON.stringify(r.Properties.Roles ?? []).includes(JSON.stringify({ Ref: roleId })),
      )
      .map(([id]) => id),
  );
  return policyStatements(stack, template)
    .filter((s) => attached.has(s.logicalId))
    .map((s) => ({ actions: s.actions, resources: s.resources.map(render), condition: s.condition }));
};

const roleOf = (
  fn: { role?: { node: { defaultChild?: unknown } } },
  stack: Parameters<typeof logicalIdOf>[0],
) => logicalIdOf(stack, fn.role as never);

const ecrArn = (region: string) => `arn:<AWS::Partition>:ecr:${region}:<AWS::AccountId>:repository/*`;
const HUB_REPOSITORIES = ecrArn('<AWS::Region>');

describe('a hub whose organization lists Regions, with stages by organizational unit', () => {
  // One synth for the describe: regions, listed accounts, and a fleet stage by OU.
  const { stack, template } = synthAutopatch({
    props: {
      organization: { organizationId: ORG, accounts: [SPOKE], regions: ['eu-central-1', 'us-west-2'] },
      fleet: { stages: [{ name: 'production', organizationalUnits: [OU] }] },
    },
  });
  const { workflow } = stack.autopatch;
  const projects = [workflow.patchOsProjects, workflow.sourceProjects].flatMap((p) => [
    p.x86,
    ...(p.arm ? [p.arm] : []),
  ]);

  test('each build role pulls and pushes in the hub Region and each listed Region, by ARN; logs in with GetAuthorizationToken on "*"', () => {
    for (const project of projects) {
      const statements = statementsOf(template, stack, roleOf(project, stack));
      const ecr = statements.filter((s) => s.actions.some((a) => a.startsWith('ecr:')));
      for (const action of ['ecr:PutImage', 'ecr:CompleteLayerUpload', 'ecr:BatchGetImage'])
        expect(ecr.find((s) => s.actions.includes(action))?.resources).toEqual([
          HUB_REPOSITORIES,
          ecrArn('eu-central-1'),
          ecrArn('us-west-2'),
        ]);
      expect(ecr.find((s) => s.actions.includes('ecr:GetAuthorizationToken'))).toEqual({
        actions: ['ecr:GetAuthorizationToken'],
        resources: ['*'],
        condition: undefined,
      });
      // No action wildcard, no repository of another account.
      for (const s of ecr) {
        expect(s.actions.every((a) => !a.includes('*'))).toBe(true);
        for (const r of s.resources) expect(r === '*' || r.includes(':<AWS::AccountId>:')).toBe(true);
      }
    }
  });

  test('the rescan and the index assembly read (and the assembly pushes the index) in the listed Regions too', () => {
    const describe = statementsOf(template, stack, roleOf(workflow.verifyRescanFunction, stack)).find((s) =>
      s.actions.includes('ecr:DescribeImages'),
    );
    expect(describe?.resources).toContain(ecrArn('us-west-2'));
    const assemble = statementsOf(template, stack, roleOf(workflow.assembleIndexesFunction, stack));
    expect(assemble.find((s) => s.actions.includes('ecr:PutImage'))?.resources).toContain(
      ecrArn('us-west-2'),
    );
  });

  test('the slot step may call organizations:ListParents on the organization’s listed accounts and OUs, nothing else may', () => {
    const slot = statementsOf(template, stack, roleOf(workflow.functions.takeDeploySlot, stack));
    expect(slot.filter((s) => s.actions.includes('organizations:ListParents'))).toEqual([
      {
        actions: ['organizations:ListParents'],
        resources: [
          `arn:<AWS::Partition>:organizations::*:account/${ORG}/<AWS::AccountId>`,
          `arn:<AWS::Partition>:organizations::*:account/${ORG}/${SPOKE}`,
          `arn:<AWS::Partition>:organizations::*:ou/${ORG}/ou-*`,
        ],
        condition: undefined,
      },
    ]);
    const everywhere = policyStatements(stack, template).filter((s) =>
      s.actions.some((a) => a.startsWith('organizations:')),
    );
    expect(everywhere).toHaveLength(1);
  });

  test('no unacknowledged cdk-nag finding (AwsSolutions and Autopatch checks)', () => {
    expect(unacknowledgedNagFindings(stack)).toEqual([]);
    expect(
      new AutopatchChecks().validateScope(stack).violations.flatMap((v) => v.violatingResources),
    ).toEqual([]);
  });

  test('a bad OU id fails synth with the field named', () => {
    expect(() =>
      synthAutopatch({ props: { fleet: { stages: [{ name: 'prod', organizationalUnits: ['prod-ou'] }] } } }),
    ).toThrow(
      /fleet\.stages\[0\]\.organizationalUnits\[0\].*must be an organizational unit id such as ou-ab12-cd34ef56/,
    );
  });
});

test('accountOUs too large for the slot step’s environment fails synth, saying what to do', () => {
  const accountOUs = Object.fromEntries(
    Array.from({ length: 100 }, (_, i) => [String(100000000000 + i), [OU]]),
  );
  expect(() => synthAutopatch({ props: { fleet: { accountOUs } } })).toThrow(
    /fleet: \d+ bytes as JSON, more than the 3072[\s\S]*list fewer accounts in fleet\.accountOUs/,
  );
});

describe('a hub without organization', () => {
  const { stack, template } = synthAutopatch({});
  const { workflow } = stack.autopatch;

  test("the build role's ECR grants are exactly those of a single-account hub: its own Region and account", () => {
    const statements = statementsOf(template, stack, roleOf(workflow.patchOsProjects.x86, stack)).filter(
      (s) => s.actions.some((a) => a.startsWith('ecr:')),
    );
    expect(statements).toEqual([
      { actions: ['ecr:GetAuthorizationToken'], resources: ['*'], condition: undefined },
      {
        actions: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'],
        resources: [HUB_REPOSITORIES],
        condition: undefined,
      },
      {
        actions: [
          'ecr:InitiateLayerUpload',
          'ecr:UploadLayerPart',
          'ecr:CompleteLayerUpload',
          'ecr:PutImage',
        ],
        resources: [HUB_REPOSITORIES],
        condition: undefined,
      },
    ]);
    // Every ECR ARN of the template is in the stack's own Region; nothing asks Organizations.
    const text = JSON.stringify(template.toJSON());
    expect(text).not.toMatch(/:ecr:[a-z]{2}-/);
    expect(text).not.toContain('organizations:');
  });
});

describe('bin/organization.ts: spokes by organizational unit', () => {
  const context = {
    hub: { account: '111111111111', region: 'eu-central-1' },
    organizationId: ORG,
    spokes: [{ account: SPOKE, regions: ['eu-central-1'], organizationalUnits: [OU] }],
    stackSet: {
      organizationalUnits: ['ou-ab12-11111111', 'ou-ab12-22222222'],
      regions: ['eu-central-1', 'us-east-1', 'us-west-2'],
      administrator: { account: '999999999999', region: 'us-east-1' },
      callAs: 'DELEGATED_ADMIN',
    },
  };
  const app = testApp({ 'autopatch:organization': context });
  buildOrganizationApp(app, organizationFromContext(app));
  const find = <T>(path: string) => app.node.findAll().find((c) => c.node.path === path) as T;

  test('stage SpokeStackSets: two service-managed StackSets over the OUs, the role in the first Region only', () => {
    const holder = find<Stack>('SpokeStackSets/AutopatchSpokeStackSets');
    expect(holder.account).toBe('999999999999');
    const sets = Object.values(Template.fromStack(holder).findResources('AWS::CloudFormation::StackSet')).map(
      (r) => (r as { Properties: Json }).Properties,
    );
    const common = {
      PermissionModel: 'SERVICE_MANAGED',
      CallAs: 'DELEGATED_ADMIN',
      AutoDeployment: { Enabled: true, RetainStacksOnAccountRemoval: false },
    };
    const targets = { OrganizationalUnitIds: ['ou-ab12-11111111', 'ou-ab12-22222222'] };
    expect(sets.map(({ TemplateBody: _, ...rest }) => rest)).toEqual([
      {
        ...common,
        StackSetName: 'autopatch-spoke',
        Capabilities: ['CAPABILITY_NAMED_IAM'],
        StackInstancesGroup: [{ DeploymentTargets: targets, Regions: ['eu-central-1'] }],
      },
      {
        ...common,
        StackSetName: 'autopatch-spoke-events',
        Capabilities: ['CAPABILITY_IAM'],
        StackInstancesGroup: [{ DeploymentTargets: targets, Regions: ['us-east-1', 'us-west-2'] }],
      },
    ]);
    const [role, events] = sets.map(
      (p) => JSON.parse(String(p.TemplateBody)) as { Resources: Record<string, Json> },
    );
    const types = (t?: { Resources: Record<string, Json> }) =>
      Object.values(t?.Resources ?? {}).map((r) => r.Type);
    expect(types(role)).toContain('AWS::IAM::Role');
    expect(types(events)).toContain('AWS::Events::Rule');
    expect(JSON.stringify(events)).not.toContain('AutopatchSpoke"');
    for (const p of sets) expect(String(p.TemplateBody).length).toBeLessThan(51_200);
  });

  test("the hub's fleet knows the spokes' OUs (fleet.accountOUs); its builds push in the StackSets' Regions", () => {
    const hub = find<AutopatchStack>('Hub/AutopatchStack');
    const fn = hub.autopatch.workflow.functions.takeDeploySlot;
    const variables = hub.resolve((fn.node.defaultChild as CfnFunction).environment) as {
      variables: Record<string, string>;
    };
    expect(JSON.parse(variables.variables.AUTOPATCH_FLEET as string).accountOUs).toEqual({ [SPOKE]: [OU] });
    // The StackSets' Regions are the organization's: the builds push in us-west-2 too.
    const policy = hub.autopatch.workflow.patchOsProjects.x86.role?.node.tryFindChild('DefaultPolicy') as
      | { document: unknown }
      | undefined;
    expect(JSON.stringify(hub.resolve(policy?.document))).toContain(':ecr:us-west-2:');
  });

  test('bad OU ids and an OU list without Regions are named', () => {
    const bad = new App({
      context: {
        'autopatch:organization': {
          ...context,
          spokes: [{ account: SPOKE, regions: ['eu-central-1'], organizationalUnits: ['prod'] }],
          stackSet: { organizationalUnits: ['ou-ab12-11111111'] },
        },
      },
    });
    expect(() => organizationFromContext(bad)).toThrow(
      /spokes\[0\]\.organizationalUnits\[0\][\s\S]*organizational unit id[\s\S]*organizationalUnits and regions go together/,
    );
  });
});
