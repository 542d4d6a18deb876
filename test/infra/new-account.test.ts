import type { Template } from 'aws-cdk-lib/assertions';
import type { AutopatchStack } from '../../lib/stack';
import { logicalIdOf, synthAutopatch } from '../support/synth';

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
