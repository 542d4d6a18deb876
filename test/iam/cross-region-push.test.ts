/**
 * Builds push to the registry the image came from, cross-Region too (issue 13), decided by a real
 * IAM evaluator (@cloud-copilot/iam-simulate) over the synthesized policies of the hub's build roles
 * and of a registry account's spoke role:
 * - the hub's own registry in a Region the organization lists: allowed;
 * - the hub's own registry in a Region it does not list: denied;
 * - another account's registry: denied to the build role itself, allowed to that account's spoke
 *   role (which the build assumes for the login: statemachines/buildspecs/patch-os.ts ECR_LOGIN).
 */
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { Template } from 'aws-cdk-lib/assertions';
import { AutopatchSpokeStack } from '../../lib/spoke';
import { synthAutopatch, testApp } from '../support/synth';

const HUB = '111111111111';
const REGISTRY = '222222222222';
const ORG = 'o-exampleorg1';
const HUB_REGION = 'eu-central-1';

type Json = Record<string, unknown>;

/** CloudFormation pseudo parameters, Fn::Join and Refs resolved for one account and Region. */
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
    if ('Fn::GetAtt' in o) return `<GetAtt ${JSON.stringify(o['Fn::GetAtt'])}>`;
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, resolve(v, account, region)]));
  }
  return value;
};

/** Every identity policy attached to the role whose logical id matches (its inline policies and AWS::IAM::Policy). */
const policiesOfRole = (template: Template, roleId: RegExp, account: string) => {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Json }>;
  const roleIds = Object.entries(resources)
    .filter(
      ([id, r]) =>
        r.Type === 'AWS::IAM::Role' && (roleId.test(id) || roleId.test(String(r.Properties.RoleName))),
    )
    .map(([id]) => id);
  expect(roleIds).toHaveLength(1);
  const [role] = roleIds;
  const attached = Object.entries(resources)
    .filter(
      ([, r]) =>
        r.Type === 'AWS::IAM::Policy' &&
        JSON.stringify(r.Properties.Roles ?? []).includes(JSON.stringify({ Ref: role })),
    )
    .map(([id, r]) => ({ name: id, policy: resolve(r.Properties.PolicyDocument, account) }));
  const inline = (
    (resources[role as string]?.Properties.Policies ?? []) as Array<{
      PolicyName: string;
      PolicyDocument: unknown;
    }>
  ).map((p) => ({ name: p.PolicyName, policy: resolve(p.PolicyDocument, account) }));
  return [...attached, ...inline];
};

const decide = async (
  principal: { arn: string; account: string; policies: Array<{ name: string; policy: unknown }> },
  action: string,
  resource: string,
  region: string,
): Promise<string> => {
  const resourceAccount = resource === '*' ? principal.account : (resource.split(':')[4] ?? '');
  const response = await runSimulation(
    {
      request: {
        principal: principal.arn,
        action,
        resource: { resource, accountId: resourceAccount },
        contextVariables: {
          'aws:PrincipalArn': principal.arn,
          'aws:PrincipalAccount': principal.account,
          'aws:RequestedRegion': region,
          'aws:SecureTransport': 'true',
        },
      },
      identityPolicies: principal.policies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    },
    {},
  );
  if (response.resultType === 'error') throw new Error(JSON.stringify(response.errors));
  return response.overallResult;
};

const repository = (account: string, region: string, name = 'payments/api') =>
  `arn:aws:ecr:${region}:${account}:repository/${name}`;

/** What docker push and the ECR login ask of IAM, for one repository. */
const PUSH = [
  'ecr:BatchCheckLayerAvailability',
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
];

describe('cross-Region and cross-account pushes of the image builds, evaluated', () => {
  // One hub synth for the file: an organization that lists eu-central-1 (the hub's) and us-west-2.
  const { template } = synthAutopatch({
    props: { organization: { organizationId: ORG, regions: [HUB_REGION, 'us-west-2'] } },
  });
  const buildRole = {
    arn: `arn:aws:iam::${HUB}:role/AutopatchStack-AutopatchWorkflowPatchOsX86ProjectRole-ABC`,
    account: HUB,
    policies: policiesOfRole(template, /PatchOsX86ProjectRole/, HUB),
  };
  const sourceRole = {
    ...buildRole,
    arn: `arn:aws:iam::${HUB}:role/AutopatchStack-AutopatchWorkflowSourceX86ProjectRole-ABC`,
    policies: policiesOfRole(template, /SourceX86ProjectRole/, HUB),
  };
  const spokeTemplate = Template.fromStack(
    new AutopatchSpokeStack(testApp(), 'AutopatchSpoke', {
      hubAccount: HUB,
      hubRegion: HUB_REGION,
      organizationId: ORG,
      registry: true,
    }),
  );
  const spokeRole = {
    arn: `arn:aws:iam::${REGISTRY}:role/autopatch/AutopatchSpoke`,
    account: REGISTRY,
    policies: policiesOfRole(spokeTemplate, /AutopatchSpoke/, REGISTRY),
    trust: resolve(
      (
        Object.values(spokeTemplate.findResources('AWS::IAM::Role')).find((r) =>
          String((r as { Properties: Json }).Properties.RoleName).includes('AutopatchSpoke'),
        ) as { Properties: Json }
      ).Properties.AssumeRolePolicyDocument,
      REGISTRY,
    ),
  };

  test.each([
    ['patch-os', () => buildRole],
    ['source', () => sourceRole],
  ])(
    "%s build: pull and push in the hub registry of a listed Region (the hub's, us-west-2)",
    async (_, role) => {
      for (const region of [HUB_REGION, 'us-west-2']) {
        for (const action of [...PUSH, 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'])
          expect([region, action, await decide(role(), action, repository(HUB, region), region)]).toEqual([
            region,
            action,
            'Allowed',
          ]);
      }
      expect(await decide(role(), 'ecr:GetAuthorizationToken', '*', 'us-west-2')).toBe('Allowed');
    },
  );

  test('a Region the organization does not list: the push is denied', async () => {
    for (const action of PUSH)
      expect(await decide(buildRole, action, repository(HUB, 'ap-southeast-2'), 'ap-southeast-2')).not.toBe(
        'Allowed',
      );
  });

  test("another account's repository: never with the build role's own credentials, only through that account's spoke role", async () => {
    for (const region of [HUB_REGION, 'us-west-2']) {
      for (const action of PUSH) {
        expect(await decide(buildRole, action, repository(REGISTRY, region), region)).not.toBe('Allowed');
        expect(await decide(spokeRole, action, repository(REGISTRY, region), region)).toBe('Allowed');
      }
    }
    // The build reaches the spoke role by AssumeRole (the hub's AssumeSpokeRolePolicy).
    const assume = await runSimulation(
      {
        request: {
          principal: buildRole.arn,
          action: 'sts:AssumeRole',
          resource: { resource: spokeRole.arn, accountId: REGISTRY },
          contextVariables: {
            'aws:PrincipalArn': buildRole.arn,
            'aws:PrincipalAccount': HUB,
            'aws:PrincipalOrgID': ORG,
            'aws:ResourceOrgID': ORG,
            'aws:ResourceAccount': REGISTRY,
            'aws:SecureTransport': 'true',
          },
        },
        identityPolicies: buildRole.policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: spokeRole.trust,
      },
      {},
    );
    expect(assume.resultType === 'error' ? assume.errors : assume.overallResult).toBe('Allowed');
  });
});
