import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { buildOrganizationApp, organizationFromContext } from '../../bin/organization';
import { triageRuntimeConfigSchema } from '../../lambdas/shared/config';
import { parsePolicy } from '../../lambdas/triage/policy';
import type { Autopatch } from '../../lib/autopatch';
import type { AutopatchStack } from '../../lib/stack';
import {
  type FoundStatement,
  logicalIdOf,
  type NagFinding,
  policyStatements,
  synthAutopatch,
  unacknowledgedNagFindings,
  validatingApp,
} from '../support/synth';

// One synth for the whole file: the smallest deployment, `new Autopatch(this, 'Autopatch')`.
let stack: AutopatchStack;
let template: Template;
let autopatch: Autopatch;
let statements: FoundStatement[];
let ids: Record<
  'key' | 'queue' | 'dlq' | 'rule' | 'ledger' | 'stateMachine' | 'function' | 'role' | 'topic',
  string
>;

beforeAll(() => {
  ({ stack, template } = synthAutopatch({ props: {} }));
  autopatch = stack.autopatch;
  statements = policyStatements(stack, template);
  ids = {
    key: logicalIdOf(stack, autopatch.encryptionKey),
    queue: logicalIdOf(stack, autopatch.queue),
    dlq: logicalIdOf(stack, autopatch.deadLetterQueue),
    rule: logicalIdOf(stack, autopatch.rule),
    ledger: logicalIdOf(stack, autopatch.ledger),
    stateMachine: logicalIdOf(stack, autopatch.stateMachine),
    function: logicalIdOf(stack, autopatch.triageFunction),
    role: logicalIdOf(stack, autopatch.triageFunction.role ?? autopatch.triageFunction),
    topic: logicalIdOf(stack, autopatch.topic),
  };
});

const getAtt = (logicalId: string) => ({ 'Fn::GetAtt': [logicalId, 'Arn'] });
const resource = (logicalId: string) => template.toJSON().Resources[logicalId];
const triageStatements = () =>
  statements.filter((s) => s.kind === 'identity' && s.path.startsWith(`${autopatch.node.path}/Triage/`));

describe('intake', () => {
  test('the rule matches exactly active ECR image package vulnerabilities from Inspector in this account, on the default bus', () => {
    const toQueue = Object.entries(template.findResources('AWS::Events::Rule')).filter(([, r]) =>
      JSON.stringify(r.Properties.Targets).includes(ids.queue),
    );
    expect(toQueue.map(([id]) => id)).toEqual([ids.rule]);
    const rule = resource(ids.rule).Properties;
    expect(rule.EventPattern).toStrictEqual({
      source: ['aws.inspector2'],
      'detail-type': ['Inspector2 Finding'],
      detail: {
        type: ['PACKAGE_VULNERABILITY'],
        status: ['ACTIVE'],
        resources: { type: ['AWS_ECR_CONTAINER_IMAGE'] },
      },
      account: [{ Ref: 'AWS::AccountId' }],
    });
    expect(rule.EventBusName).toBeUndefined();
    expect(rule.State).toBe('ENABLED');
    expect(rule.Targets).toEqual([
      expect.objectContaining({ Arn: getAtt(ids.queue), DeadLetterConfig: { Arn: getAtt(ids.dlq) } }),
    ]);
  });

  test('the queue is encrypted with the customer key, keeps messages 14 days and redrives to the DLQ after 5 receives', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      KmsMasterKeyId: getAtt(ids.key),
      MessageRetentionPeriod: 14 * 24 * 3600,
      RedrivePolicy: { deadLetterTargetArn: getAtt(ids.dlq), maxReceiveCount: 5 },
    });
  });

  test('the dead-letter queue is encrypted with the customer key too', () => {
    expect(resource(ids.dlq).Properties).toMatchObject({
      KmsMasterKeyId: getAtt(ids.key),
      MessageRetentionPeriod: 14 * 24 * 3600,
    });
  });

  test('the visibility timeout is at least six times the triage timeout', () => {
    const visibility = resource(ids.queue).Properties.VisibilityTimeout as number;
    const timeout = resource(ids.function).Properties.Timeout as number;
    expect(visibility).toBeGreaterThanOrEqual(6 * timeout);
  });

  test.each(['queue', 'dlq'] as const)('the %s denies every request that is not TLS', (which) => {
    const policy = statements.filter(
      (s) =>
        s.type === 'AWS::SQS::QueuePolicy' &&
        s.resources.some((r) => JSON.stringify(r) === JSON.stringify(getAtt(ids[which]))),
    );
    expect(policy).toContainEqual(
      expect.objectContaining({
        effect: 'Deny',
        actions: ['sqs:*'],
        principal: { AWS: '*' },
        condition: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
  });

  test.each(['queue', 'dlq'] as const)(
    'only EventBridge, for the intake rule, may send to the %s',
    (which) => {
      const allows = statements.filter(
        (s) =>
          s.type === 'AWS::SQS::QueuePolicy' &&
          s.effect === 'Allow' &&
          s.resources.some((r) => JSON.stringify(r) === JSON.stringify(getAtt(ids[which]))),
      );
      expect(allows).toHaveLength(1);
      expect(allows[0]).toMatchObject({
        actions: ['sqs:SendMessage'],
        principal: { Service: 'events.amazonaws.com' },
      });
      expect(JSON.stringify(allows[0]?.condition)).toContain(`:rule/${resource(ids.rule).Properties.Name}`);
      expect(Object.keys(allows[0]?.condition as object)).toEqual(['ArnEquals']);
    },
  );

  test('the key policy lets EventBridge encrypt messages for the intake rule only', () => {
    const forIntake = statements.filter((s) => s.sid === 'AllowAutopatchIntakeRuleToEncryptMessages');
    expect(forIntake).toHaveLength(1);
    expect(forIntake[0]).toMatchObject({
      logicalId: ids.key,
      principal: { Service: 'events.amazonaws.com' },
    });
    expect(forIntake[0]?.actions.sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
    expect(JSON.stringify(forIntake[0]?.condition)).toContain(`:rule/${resource(ids.rule).Properties.Name}`);
    // No statement lets EventBridge use the key for any rule or bus whatsoever.
    for (const s of statements.filter(
      (x) => x.logicalId === ids.key && JSON.stringify(x.principal).includes('events.'),
    )) {
      expect(JSON.stringify(s.condition)).toMatch(/aws:Source(Arn|Account)/);
    }
  });

  test('the key rotates and the key policy lets CloudWatch Logs use it only for log groups of this account', () => {
    expect(resource(ids.key).Properties.EnableKeyRotation).toBe(true);
    const forLogs = statements.filter(
      (s) => s.logicalId === ids.key && JSON.stringify(s.principal).includes('logs.'),
    );
    expect(forLogs.length).toBeGreaterThan(0);
    for (const s of forLogs) expect(JSON.stringify(s.condition)).toContain(':log-group:*');
  });
});

describe('triage function', () => {
  test('runs on ARM64 with the newest Node.js runtime, X-Ray active and no reserved concurrency', () => {
    const fn = resource(ids.function).Properties;
    expect(fn.Architectures).toEqual(['arm64']);
    expect(Number(/^nodejs(\d+)/.exec(fn.Runtime)?.[1])).toBeGreaterThanOrEqual(22);
    expect(fn.TracingConfig).toEqual({ Mode: 'Active' });
    // Reserving concurrency fails the deploy in accounts whose Lambda concurrency quota is 10: the
    // event source's maximum concurrency caps triage instead.
    expect(fn).not.toHaveProperty('ReservedConcurrentExecutions');
  });

  test('consumes the queue in batches of 100 with a 10-30 s window and reports partial batch failures', () => {
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping')).filter(
      (m) => m.Properties.FunctionName.Ref === ids.function,
    );
    expect(mappings).toHaveLength(1);
    const mapping = mappings[0]?.Properties;
    expect(mapping).toMatchObject({
      EventSourceArn: getAtt(ids.queue),
      FunctionName: { Ref: ids.function },
      BatchSize: 500,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      // The cap on triage: pollers never invoke more than this many at once (triageConcurrency, default 5).
      ScalingConfig: { MaximumConcurrency: 5 },
    });
    expect(mapping.MaximumBatchingWindowInSeconds).toBeGreaterThanOrEqual(10);
    expect(mapping.MaximumBatchingWindowInSeconds).toBeLessThanOrEqual(30);
  });

  test('logs to its own KMS-encrypted log group with a retention', () => {
    const logGroupId = logicalIdOf(stack, autopatch.triageLogGroup);
    expect(resource(ids.function).Properties.LoggingConfig).toEqual({ LogGroup: { Ref: logGroupId } });
    expect(resource(logGroupId).Properties).toMatchObject({
      KmsKeyId: getAtt(ids.key),
      RetentionInDays: 365,
    });
  });

  test('gets the ledger, state machine and Powertools settings in its environment', () => {
    expect(resource(ids.function).Properties.Environment.Variables).toMatchObject({
      LEDGER_TABLE: { Ref: ids.ledger },
      STATE_MACHINE_ARN: { Ref: ids.stateMachine },
      POWERTOOLS_SERVICE_NAME: 'autopatch-triage',
      POWERTOOLS_METRICS_NAMESPACE: 'Autopatch',
    });
  });

  test('AUTOPATCH_CONFIG is what the handler parses: the runtime schema and the policy both accept it', () => {
    const raw = resource(ids.function).Properties.Environment.Variables.AUTOPATCH_CONFIG;
    expect(typeof raw).toBe('string');
    const config = triageRuntimeConfigSchema.parse(JSON.parse(raw));
    expect(config).toMatchObject({
      targets: [],
      discoverByTag: { key: 'autopatch:enabled', value: 'true' },
      dryRun: false,
      defaults: { bakeTimeMinutes: 60 },
    });
    expect(() => parsePolicy(config.policy)).not.toThrow();
  });

  test('uses its own role, without AWS managed policies', () => {
    expect(resource(ids.function).Properties.Role).toEqual(getAtt(ids.role));
    expect(resource(ids.role).Properties.ManagedPolicyArns).toBeUndefined();
  });

  test('is created after its ECS policy, so the first batches are not denied', () => {
    const ecsPolicy = Object.entries(template.findResources('AWS::IAM::Policy')).find(([, r]) =>
      JSON.stringify(r).includes('ecs:ListClusters'),
    )?.[0];
    expect(resource(ids.function).DependsOn).toContain(ecsPolicy);
  });
});

describe('least privilege', () => {
  /** Allow statements with a wildcard action, except the CDK default key-administration statement. */
  const wildcardAllows = (found: FoundStatement[]) =>
    found
      .filter(
        (s) =>
          s.effect === 'Allow' &&
          s.actions.some((a) => a.includes('*')) &&
          // The account root administers the key, which is what lets IAM policies grant its use. It is
          // CDK's default key policy and grants nothing to a service or role by itself.
          !(
            s.type === 'AWS::KMS::Key' &&
            s.actions.join() === 'kms:*' &&
            JSON.stringify(s.principal).includes(':root')
          ),
      )
      .map((s) => ({ path: s.path, sid: s.sid, actions: s.actions.filter((a) => a.includes('*')) }));

  test('no statement this construct writes grants a wildcard action', () => {
    const own = statements.filter((s) =>
      s.type === 'AWS::KMS::Key'
        ? s.sid !== undefined
        : !s.path.startsWith(`${autopatch.workflow.node.path}/`),
    );
    expect(own.length).toBeGreaterThan(10);
    expect(wildcardAllows(own)).toEqual([]);
  });

  // The brief's bar for the whole template; a failure lists each offending statement and its path.
  test('no Allow statement in any policy of the template grants a wildcard action', () => {
    expect(wildcardAllows(statements)).toEqual([]);
  });

  test('wildcard Deny statements only enforce TLS', () => {
    for (const s of statements.filter((x) => x.effect === 'Deny')) {
      expect(s.condition).toEqual({ Bool: { 'aws:SecureTransport': 'false' } });
    }
  });

  test('triage may start executions of the remediation state machine, and end a window wait by its token, nothing else in Step Functions', () => {
    const sfnStatements = triageStatements().filter((s) => s.actions.some((a) => a.startsWith('states:')));
    expect(sfnStatements).toHaveLength(2);
    expect(sfnStatements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          actions: ['states:StartExecution'],
          resources: [{ Ref: ids.stateMachine }],
        }),
        // Pre-emption: SendTaskSuccess has no resource-level permissions; the task token is the capability.
        expect.objectContaining({ actions: ['states:SendTaskSuccess'], resources: ['*'] }),
      ]),
    );
  });

  test('triage reads and writes the ledger only, without Scan or table management', () => {
    const ddb = triageStatements().filter((s) => s.actions.some((a) => a.startsWith('dynamodb:')));
    expect(ddb).toHaveLength(1);
    expect(ddb[0]?.resources).toEqual([getAtt(ids.ledger)]);
    expect(ddb[0]?.actions).toEqual(
      expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']),
    );
    expect(ddb[0]?.actions).not.toContain('dynamodb:Scan');
    expect(ddb[0]?.actions.some((a) => /Table|Stream/.test(a))).toBe(false);
  });

  test('triage uses the key only through statements scoped to that key', () => {
    const kmsStatements = triageStatements().filter((s) => s.actions.some((a) => a.startsWith('kms:')));
    expect(kmsStatements.length).toBeGreaterThan(0);
    for (const s of kmsStatements) expect(s.resources).toEqual([getAtt(ids.key)]);
  });

  test('ECS access is read-only, and only actions IAM cannot scope get Resource "*"', () => {
    const ecs = triageStatements().filter((s) => s.actions.some((a) => a.startsWith('ecs:')));
    for (const s of ecs) {
      for (const a of s.actions) expect(a).toMatch(/^ecs:(List|Describe)/);
    }
    const anyResource = ecs.filter((s) => s.resources.includes('*')).flatMap((s) => s.actions);
    expect(anyResource.sort()).toEqual([
      'ecs:DescribeTaskDefinition',
      'ecs:ListClusters',
      'ecs:ListServices',
      'ecs:ListTasks',
    ]);
    const scoped = Object.fromEntries(
      ecs
        .filter((s) => !s.resources.includes('*'))
        .map((s) => [s.actions.join(), JSON.stringify(s.resources)]),
    );
    expect(scoped['ecs:DescribeServices']).toContain(':service/*');
    expect(scoped['ecs:DescribeTasks']).toContain(':task/*');
  });

  test('Resource "*" appears only for X-Ray, the unscopable ECS reads and Inspector finding details', () => {
    const anyResource = triageStatements()
      .filter((s) => s.effect === 'Allow' && s.resources.includes('*'))
      .flatMap((s) => s.actions);
    expect(anyResource.sort()).toEqual([
      'ecs:DescribeTaskDefinition',
      'ecs:ListClusters',
      'ecs:ListServices',
      'ecs:ListTasks',
      'inspector2:BatchGetFindingDetails',
      'states:SendTaskSuccess',
      'xray:PutTelemetryRecords',
      'xray:PutTraceSegments',
    ]);
  });
});

describe('ledger', () => {
  test('is keyed pk/sk, on demand, encrypted with the customer key, with PITR and TTL on expiresAt', () => {
    expect(resource(ids.ledger).Properties).toMatchObject({
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: expect.arrayContaining([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
      BillingMode: 'PAY_PER_REQUEST',
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: getAtt(ids.key) },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
    });
  });

  test('is retained when the stack is deleted', () => {
    expect(resource(ids.ledger)).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });
});

describe('notifications', () => {
  test('the topic is encrypted with the customer key and accepts TLS only', () => {
    expect(resource(ids.topic).Properties.KmsMasterKeyId).toEqual(getAtt(ids.key));
    const topicPolicy = statements.filter((s) => s.type === 'AWS::SNS::TopicPolicy');
    expect(topicPolicy).toContainEqual(
      expect.objectContaining({ effect: 'Deny', condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    );
  });

  test('has no subscriptions unless emails are given', () => {
    template.resourceCountIs('AWS::SNS::Subscription', 0);
  });
});

describe('construct surface', () => {
  test('exposes every resource it creates, the state machine being the workflow one', () => {
    expect(autopatch.stateMachine).toBe(autopatch.workflow.stateMachine);
    for (const name of [
      'encryptionKey',
      'queue',
      'deadLetterQueue',
      'triageFunction',
      'ledger',
      'topic',
      'rule',
    ] as const) {
      expect(autopatch[name]).toBeDefined();
    }
  });

  test('keeps its construct ids stable (they are part of the public contract)', () => {
    expect(autopatch.node.children.map((c) => c.node.id)).toEqual(
      expect.arrayContaining(['Key', 'Intake', 'Ledger', 'Notifications', 'Workflow', 'Triage']),
    );
  });

  test('the stack is environment-agnostic and tagged', () => {
    expect(stack.resolve(stack.account)).toEqual({ Ref: 'AWS::AccountId' });
    expect(resource(ids.queue).Properties.Tags).toEqual(
      expect.arrayContaining([{ Key: 'application', Value: 'autopatch' }]),
    );
  });
});

describe('cdk-nag AwsSolutions', () => {
  const inWorkflow = (path: string) => path.includes('/Autopatch/Workflow/');
  let findings: NagFinding[];
  beforeAll(() => {
    findings = unacknowledgedNagFindings(stack);
  });

  test('no unacknowledged finding on the resources this construct builds', () => {
    expect(findings.filter((f) => !inWorkflow(f.path))).toEqual([]);
  });

  // Separate, so a finding in the workflow (built in lib/workflow.ts) is reported as the workflow's.
  test('no unacknowledged finding on the remediation workflow', () => {
    expect(findings.filter((f) => inWorkflow(f.path))).toEqual([]);
  });

  test('every acknowledgement names a precise finding and gives a reason', () => {
    const acks = stack.node
      .findAll()
      .flatMap((c) =>
        c.node.metadata
          .filter((m) => m.type === 'aws:cdk:acknowledged-rules')
          .flatMap((m) =>
            Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({ id, reason, c })),
          ),
      );
    expect(acks.length).toBeGreaterThan(0);
    for (const { id, reason, c } of acks) {
      // Rules that report several findings per resource (IAM4, IAM5) are acknowledged one finding at a time.
      if (/AwsSolutions-IAM[45]/.test(id)) expect(id).toMatch(/AwsSolutions-IAM[45]\[.+\]$/);
      expect(reason.length).toBeGreaterThan(20);
      // On the construct that carries the finding, never on a stack or on Autopatch as a whole,
      // where it would also hide findings added later.
      expect(c).not.toBeInstanceOf(Stack);
      expect(c).not.toBe(autopatch);
    }
  });
});

// The other test synths skip CloudFormation's template validation (test/support/synth.ts testApp: it
// costs ~10 s of CPU per file and there only prints warnings). Here it runs as `cdk synth` runs it,
// but strictly: any error or warning fails the synth.
describe("CloudFormation's template validation, strict", () => {
  test("cdk.json's example: the hub stack of an organization, every spoke stack and both StackSet templates", () => {
    const cdkJson = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8'));
    const app = validatingApp(cdkJson.context);
    buildOrganizationApp(app, organizationFromContext(app));
    expect(() => app.synth()).not.toThrow();
  });

  // After the organization, so the engine is reused: it restarts for resource types it has not seen.
  test('the smallest deployment', () => {
    expect(() => synthAutopatch({ props: {}, cfnValidation: true })).not.toThrow();
  });

  test('a template CloudFormation would reject fails the synth', () => {
    const invalid = new Stack(validatingApp(), 'Invalid');
    new sqs.CfnQueue(invalid, 'Queue', { delaySeconds: 100_000 });
    expect(() => Template.fromStack(invalid)).toThrow(/DelaySeconds|delaySeconds|Validation/);
  });
});
