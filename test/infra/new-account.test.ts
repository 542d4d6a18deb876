import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import type { AutopatchProps } from '../../lib/autopatch';
import { AutopatchStack } from '../../lib/stack';
import { CODEBUILD_ARM_REGIONS, NO_ARM_BUILDER } from '../../lib/workflow';
import { matchesPattern } from '../../simulation/model/eventbus';
import { logicalIdOf, synthAutopatch, testApp, unacknowledgedNagFindings } from '../support/synth';

/**
 * What a first `cdk deploy` in a new or low-quota account needs, and what a redeploy after
 * `cdk destroy` needs (issue 15).
 */
let stack: AutopatchStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synthAutopatch({ props: {} }));
});

type Json = Record<string, unknown>;
const resourcesOf = (t: Template, type: string): Array<[string, Json]> =>
  Object.entries(t.findResources(type)) as Array<[string, Json]>;

describe('log groups survive cdk destroy without blocking the next deploy', () => {
  test('every log group is kept when the stack is deleted', () => {
    const groups = resourcesOf(template, 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(12);
    for (const [, group] of groups) {
      expect(group.DeletionPolicy).toBe('Retain');
      expect(group.UpdateReplacePolicy).toBe('Retain');
    }
  });

  test('a kept log group has a generated name, or a name unique to this stack (its id), never a fixed one', () => {
    const stackIdGuidPrefix = {
      'Fn::Select': [
        0,
        { 'Fn::Split': ['-', { 'Fn::Select': [2, { 'Fn::Split': ['/', { Ref: 'AWS::StackId' }] }] }] },
      ],
    };
    const named = resourcesOf(template, 'AWS::Logs::LogGroup').filter(
      ([, group]) => (group.Properties as Json).LogGroupName !== undefined,
    );
    expect(named.map(([id]) => id)).toEqual([
      logicalIdOf(stack, stack.autopatch.workflow.stateMachineLogGroup),
    ]);
    for (const [, group] of named) {
      const name = (group.Properties as Json).LogGroupName;
      expect(typeof name).not.toBe('string');
      expect(JSON.stringify(name)).toContain(JSON.stringify(stackIdGuidPrefix));
    }
  });

  test("the state machine's log group keeps the /aws/vendedlogs/states/ prefix and the state machine's name", () => {
    const group =
      template.toJSON().Resources[logicalIdOf(stack, stack.autopatch.workflow.stateMachineLogGroup)];
    expect(group.Properties.LogGroupName).toEqual({
      'Fn::Join': ['', ['/aws/vendedlogs/states/AutopatchStack-Remediation-', expect.anything()]],
    });
  });

  test('every Lambda function logs to a log group of the stack, not to a /aws/lambda/ group it would create itself', () => {
    const groups = new Set(resourcesOf(template, 'AWS::Logs::LogGroup').map(([id]) => id));
    for (const [id, fn] of resourcesOf(template, 'AWS::Lambda::Function')) {
      const config = (fn.Properties as Json).LoggingConfig as { LogGroup?: { Ref?: string } } | undefined;
      expect([id, groups.has(config?.LogGroup?.Ref ?? '')]).toEqual([id, true]);
    }
  });

  test('every CodeBuild project logs to the build log group of the stack', () => {
    const build = logicalIdOf(stack, stack.autopatch.workflow.buildLogGroup);
    for (const [, project] of resourcesOf(template, 'AWS::CodeBuild::Project')) {
      expect((project.Properties as Json).LogsConfig).toMatchObject({
        CloudWatchLogs: { Status: 'ENABLED', GroupName: { Ref: build } },
      });
    }
  });
});

describe('the intake rule accepts findings of the accounts Autopatch serves', () => {
  const accountsOf = (t: Template): unknown => {
    const rules = resourcesOf(t, 'AWS::Events::Rule').filter(([, r]) =>
      JSON.stringify((r.Properties as Json).EventPattern ?? {}).includes('Inspector2 Finding'),
    );
    expect(rules).toHaveLength(1);
    const properties = rules[0]?.[1].Properties as Json | undefined;
    return (properties?.EventPattern as Json | undefined)?.account;
  };

  test('by default, the deploying account only (what a single-account user had before)', () => {
    expect(accountsOf(template)).toEqual([{ Ref: 'AWS::AccountId' }]);
  });

  test('findingAccounts adds accounts after the deploying one', () => {
    const { template: t } = synthAutopatch({ props: { findingAccounts: ['111122223333', '444455556666'] } });
    expect(accountsOf(t)).toEqual([{ Ref: 'AWS::AccountId' }, '111122223333', '444455556666']);
  });

  test('a concrete deploying account is not listed twice', () => {
    const app = testApp();
    const pinned = new AutopatchStack(app, 'Pinned', {
      env: { account: '111122223333', region: 'eu-west-1' },
      autopatch: { findingAccounts: ['111122223333', '444455556666', '444455556666'] },
    });
    expect(accountsOf(Template.fromStack(pinned))).toEqual(['111122223333', '444455556666']);
    // cdk-nag names findings with the literal account and Region of such a stack: still acknowledged.
    expect(unacknowledgedNagFindings(pinned)).toEqual([]);
  });

  test('cdk.json context.autopatch.findingAccounts is read', () => {
    const { template: t } = synthAutopatch({ context: { autopatch: { findingAccounts: ['111122223333'] } } });
    expect(accountsOf(t)).toEqual([{ Ref: 'AWS::AccountId' }, '111122223333']);
  });

  test('a real finding event matches in its own account, and in another only when findingAccounts lists it', () => {
    const event = JSON.parse(
      readFileSync(path.join(__dirname, '..', 'fixtures', 'events', 'finding-ecr-ubuntu-2024.json'), 'utf8'),
    ) as { account: string };
    const patternIn = (t: Template, deployingAccount: string): Record<string, unknown> => {
      const rule = resourcesOf(t, 'AWS::Events::Rule').find(([, r]) =>
        JSON.stringify((r.Properties as Json).EventPattern ?? {}).includes('Inspector2 Finding'),
      );
      const properties = rule?.[1].Properties as Json | undefined;
      const pattern = JSON.stringify(properties?.EventPattern ?? {});
      return JSON.parse(
        pattern.replace(JSON.stringify({ Ref: 'AWS::AccountId' }), JSON.stringify(deployingAccount)),
      );
    };
    const other = '999988887777';
    expect(matchesPattern(patternIn(template, event.account), event)).toBe(true);
    expect(matchesPattern(patternIn(template, other), event)).toBe(false);
    const { template: t } = synthAutopatch({ props: { findingAccounts: [event.account] } });
    expect(matchesPattern(patternIn(t, other), event)).toBe(true);
  });

  test('every malformed account id is reported at once, naming its index', () => {
    expect(() =>
      synthAutopatch({ props: { findingAccounts: ['12345', 'abcdefghijkl', '111122223333'] } }),
    ).toThrow(/findingAccounts\[0\]: "12345" is not a 12-digit AWS account id\n {2}- findingAccounts\[1\]/);
    expect(() =>
      synthAutopatch({ props: { findingAccounts: '111122223333' as unknown as readonly string[] } }),
    ).toThrow(/findingAccounts: must be a list/);
  });
});

describe('arm64 CodeBuild projects only where CodeBuild offers ARM_CONTAINER', () => {
  /** A stack pinned to a Region (as `env: { region }` or CDK_DEFAULT_REGION would make it). */
  const synthesized = new Map<string, { stack: AutopatchStack; template: Template }>();
  /** Synthesized once per Region and props in this file: the tests only read the stack and template. */
  const inRegion = (region: string | undefined, autopatch: AutopatchProps = {}) => {
    const key = JSON.stringify([region, autopatch]);
    const known = synthesized.get(key);
    if (known) return known;
    const app = testApp();
    const built = new AutopatchStack(app, 'Regional', { ...(region ? { env: { region } } : {}), autopatch });
    const result = { stack: built, template: Template.fromStack(built) };
    synthesized.set(key, result);
    return result;
  };
  const environmentTypes = (t: Template): string[] =>
    resourcesOf(t, 'AWS::CodeBuild::Project')
      .map(([, p]) => ((p.Properties as Json).Environment as { Type: string }).Type)
      .sort();
  const planBuildsEnvironment = (s: AutopatchStack, t: Template): Record<string, unknown> =>
    t.toJSON().Resources[logicalIdOf(s, s.autopatch.workflow.planBuildsFunction)].Properties.Environment
      .Variables;
  const BOTH = ['ARM_CONTAINER', 'ARM_CONTAINER', 'LINUX_CONTAINER', 'LINUX_CONTAINER'];
  const X86_ONLY = ['LINUX_CONTAINER', 'LINUX_CONTAINER'];

  test('an environment-agnostic stack (the Region is a token) keeps both architectures', () => {
    expect(environmentTypes(template)).toEqual(BOTH);
    expect(stack.autopatch.workflow.patchOsProjects.arm).toBeDefined();
  });

  test.each([['us-east-1'], ['ap-southeast-2']])('%s, where CodeBuild offers ARM, gets both', (region) => {
    expect(CODEBUILD_ARM_REGIONS).toContain(region);
    expect(environmentTypes(inRegion(region).template)).toEqual(BOTH);
  });

  test.each([['eu-west-3'], ['cn-north-1']])(
    '%s gets x86_64 projects only, and plan-builds is told there is no arm64 builder',
    (region) => {
      const { stack: s, template: t } = inRegion(region);
      expect(environmentTypes(t)).toEqual(X86_ONLY);
      expect(s.autopatch.workflow.patchOsProjects.arm).toBeUndefined();
      expect(s.autopatch.workflow.sourceProjects.arm).toBeUndefined();
      expect(planBuildsEnvironment(s, t)).toMatchObject({
        PATCH_OS_PROJECT_ARM: NO_ARM_BUILDER,
        SOURCE_PROJECT_ARM: NO_ARM_BUILDER,
        PATCH_OS_PROJECT_X86: { Ref: logicalIdOf(s, s.autopatch.workflow.patchOsProjects.x86) },
      });
      // A CodeBuild project name: letters, digits, '-' and '_'.
      expect(NO_ARM_BUILDER).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{1,254}$/);
    },
  );

  test('without arm64 projects, the state machine may start the x86_64 ones only, and cdk-nag stays clean', () => {
    const { stack: s, template: t } = inRegion('eu-west-3');
    const projects = resourcesOf(t, 'AWS::CodeBuild::Project').map(([id]) => id);
    const startBuild = JSON.stringify(t.toJSON().Resources).match(/codebuild:StartBuild/g);
    expect(startBuild).not.toBeNull();
    const machineRole = t.toJSON().Resources as Record<string, { Type: string; Properties: Json }>;
    const statements = Object.values(machineRole)
      .filter((r) => r.Type === 'AWS::IAM::Policy')
      .flatMap(
        (r) =>
          (r.Properties.PolicyDocument as { Statement: Array<{ Action: unknown; Resource: unknown }> })
            .Statement,
      )
      .filter((st) => JSON.stringify(st.Action).includes('codebuild:StartBuild'));
    expect(statements).toHaveLength(1);
    expect(statements[0]?.Resource).toEqual(projects.map((id) => ({ 'Fn::GetAtt': [id, 'Arn'] })));
    expect(unacknowledgedNagFindings(s)).toEqual([]);
  });

  test('armBuilds overrides the Region either way (prop and cdk.json context)', () => {
    expect(environmentTypes(inRegion(undefined, { armBuilds: false }).template)).toEqual(X86_ONLY);
    expect(environmentTypes(inRegion('eu-west-3', { armBuilds: true }).template)).toEqual(BOTH);
    expect(
      environmentTypes(synthAutopatch({ context: { autopatch: { armBuilds: false } } }).template),
    ).toEqual(X86_ONLY);
  });

  test('armBuilds must be a boolean', () => {
    expect(() => synthAutopatch({ props: { armBuilds: 'no' as unknown as boolean } })).toThrow(
      /armBuilds: must be true or false, got "no"/,
    );
  });
});
