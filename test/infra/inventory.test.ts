import type { Template } from 'aws-cdk-lib/assertions';
import type { InventoryIndex } from '../../lib/inventory';
import type { AutopatchStack } from '../../lib/stack';
import {
  type FoundStatement,
  logicalIdOf,
  policyStatements,
  synthAutopatch,
  unacknowledgedNagFindings,
} from '../support/synth';

// One synth for the file: the smallest deployment, which includes the inventory index.
let stack: AutopatchStack;
let template: Template;
let inventory: InventoryIndex;
let statements: FoundStatement[];

beforeAll(() => {
  ({ stack, template } = synthAutopatch({ props: {} }));
  inventory = stack.autopatch.node.findChild('Inventory') as InventoryIndex;
  statements = policyStatements(stack, template);
});

const resource = (logicalId: string) => template.toJSON().Resources[logicalId];
const inventoryStatements = () =>
  statements.filter((s) => s.kind === 'identity' && s.path.includes('/Autopatch/Inventory/'));

describe('inventory index', () => {
  test('ECS deployment and task set events go to the indexer queue, with a dead-letter queue', () => {
    // Arrange
    const rule = resource(logicalIdOf(stack, inventory.ecsEventRule)).Properties;

    // Assess
    expect(rule.EventPattern).toStrictEqual({
      source: ['aws.ecs'],
      'detail-type': ['ECS Deployment State Change', 'ECS Service Action'],
      detail: {
        eventName: [
          'SERVICE_DEPLOYMENT_IN_PROGRESS',
          'SERVICE_DEPLOYMENT_COMPLETED',
          'SERVICE_DEPLOYMENT_FAILED',
          'TASKSET_STEADY_STATE',
        ],
      },
    });
    expect(rule.Targets).toHaveLength(1);
    expect(rule.Targets[0].Arn).toEqual({ 'Fn::GetAtt': [logicalIdOf(stack, inventory.queue), 'Arn'] });
    expect(rule.Targets[0].DeadLetterConfig.Arn).toEqual({
      'Fn::GetAtt': [logicalIdOf(stack, inventory.deadLetterQueue), 'Arn'],
    });
  });

  test('the CloudTrail rule matches the ECS calls that create, change, delete or re-tag a service', () => {
    // Arrange
    const rule = resource(logicalIdOf(stack, inventory.apiCallRule)).Properties;

    // Assess
    expect(rule.EventPattern).toStrictEqual({
      source: ['aws.ecs'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: {
        eventSource: ['ecs.amazonaws.com'],
        eventName: ['CreateService', 'UpdateService', 'DeleteService', 'TagResource', 'UntagResource'],
      },
    });
  });

  test('the reconcile runs every hour without retries, the indexer from the queue with partial failures', () => {
    // Arrange
    const schedule = resource(logicalIdOf(stack, inventory.reconcileSchedule)).Properties;
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping')).filter((m) =>
      JSON.stringify(m).includes(logicalIdOf(stack, inventory.queue)),
    );

    // Assess
    expect(schedule.ScheduleExpression).toBe('rate(1 hour)');
    expect(schedule.Targets[0].RetryPolicy).toEqual({ MaximumRetryAttempts: 0 });
    expect(mappings).toHaveLength(1);
    expect(mappings[0]?.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    expect(mappings[0]?.Properties.ScalingConfig).toEqual({ MaximumConcurrency: 2 });
    const queue = resource(logicalIdOf(stack, inventory.queue)).Properties;
    expect(queue.RedrivePolicy.maxReceiveCount).toBe(5);
  });

  test('both functions follow the runtime conventions, with their own roles', () => {
    for (const fn of [inventory.indexer, inventory.reconciler]) {
      const props = resource(logicalIdOf(stack, fn)).Properties;
      expect(props.Runtime).toBe('nodejs24.x');
      expect(props.Architectures).toEqual(['arm64']);
      expect(props.TracingConfig).toEqual({ Mode: 'Active' });
      expect(props.Environment.Variables.AUTOPATCH_HOME_ACCOUNT).toEqual({ Ref: 'AWS::AccountId' });
      const role = resource(logicalIdOf(stack, fn.role ?? fn)).Properties;
      expect(role.ManagedPolicyArns).toBeUndefined();
    }
  });

  test('IAM: no wildcard action; the ledger only under the index keys; spoke roles only in the organization', () => {
    // Arrange
    const found = inventoryStatements();
    const ledger = found.filter((s) => s.actions.some((a) => a.startsWith('dynamodb:')));
    const assume = found.filter((s) => s.actions.includes('sts:AssumeRole'));

    // Assess
    expect(found.length).toBeGreaterThan(0);
    expect(found.flatMap((s) => s.actions).filter((a) => a.includes('*'))).toEqual([]);
    expect(ledger).toHaveLength(2); // one per function
    for (const s of ledger) {
      expect(s.actions.sort()).toEqual([
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ]);
      expect(s.condition).toEqual({
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['IMAGE#*', 'INVENTORY#*'] },
      });
    }
    // A single-account hub assumes no role: the `organization` prop grants it (test/infra/organization.test.ts).
    expect(assume).toHaveLength(0);
    // The ECS grants are read-only.
    const ecs = found.flatMap((s) => s.actions).filter((a) => a.startsWith('ecs:'));
    expect(ecs.every((a) => /^ecs:(List|Describe)/.test(a))).toBe(true);
  });

  test('triage knows its account, to find the watermark of its place', () => {
    const props = resource(logicalIdOf(stack, stack.autopatch.triageFunction)).Properties;
    expect(props.Environment.Variables.AUTOPATCH_HOME_ACCOUNT).toEqual({ Ref: 'AWS::AccountId' });
  });

  test('cdk-nag: no unacknowledged finding on the inventory index', () => {
    const findings = unacknowledgedNagFindings(stack).filter((f) => f.path.includes('/Autopatch/Inventory/'));
    expect(findings).toEqual([]);
  });
});
