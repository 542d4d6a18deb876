import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { App, CfnParameter, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { triageRuntimeConfigSchema } from '../../lambdas/shared/config';
import { ConfigurationError } from '../../lambdas/shared/errors';
import { DEFAULT_POLICY } from '../../lambdas/triage/policy';
import { Autopatch, type AutopatchProps } from '../../lib/autopatch';
import type { AutopatchStack } from '../../lib/stack';
import { autopatchPropsFromContext } from '../../lib/stack';
import { logicalIdOf, policyStatements, synthAutopatch, testApp } from '../support/synth';

/** A stack to build the construct in, without synthesizing: validation runs in the constructor. */
const newStack = (context: Record<string, unknown> = {}) => new Stack(testApp(context), 'Test');

/** The message of the ConfigurationError that building Autopatch with these props throws. */
const problemsWith = (props: AutopatchProps): string => {
  try {
    new Autopatch(newStack(), 'Autopatch', props);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return (error as Error).message;
  }
  throw new Error('expected the props to be rejected');
};

/** AUTOPATCH_CONFIG as the triage function will read it, from a built (not synthesized) construct. */
const configOf = (autopatch: Autopatch): unknown => {
  const fn = autopatch.triageFunction.node.defaultChild as lambda.CfnFunction;
  const environment = Stack.of(autopatch).resolve(fn.environment) as { variables: Record<string, unknown> };
  return environment.variables.AUTOPATCH_CONFIG;
};

describe('props validation', () => {
  test('a bad policy field fails with the field path', () => {
    const message = problemsWith({
      policy: {
        rules: [{ name: 'r', match: { severities: ['SEVERE'] }, action: 'remediate' }],
        defaultAction: 'notify',
      },
    });
    expect(message).toMatch(/policy\.rules\[0\]\.match\.severities.*SEVERE/);
  });

  test('account aliases: a bad one names its field; good ones reach the steps that write for people', () => {
    expect(problemsWith({ accountAliases: { '12345': 'prod' } })).toContain('accountAliases["12345"]');
    expect(problemsWith({ accountAliases: { '222222222222': 'has space' } })).toContain(
      'accountAliases["222222222222"]: letters, digits',
    );
    const autopatch = new Autopatch(newStack(), 'Autopatch', {
      accountAliases: { '222222222222': 'payments-prod' },
    });
    const envOf = (fn: lambda.IFunction) =>
      (
        Stack.of(autopatch).resolve((fn.node.defaultChild as lambda.CfnFunction).environment) as {
          variables: Record<string, unknown>;
        }
      ).variables;
    const { finish, requestApproval, sweep, gate } = autopatch.workflow.functions;
    for (const fn of [finish, requestApproval, sweep])
      expect(envOf(fn).ACCOUNT_ALIASES).toBe('{"222222222222":"payments-prod"}');
    expect(envOf(gate).ACCOUNT_ALIASES).toBeUndefined();
  });

  test('a bad target field fails with the field path', () => {
    const message = problemsWith({
      targets: [
        { cluster: 'prod', service: 'api' },
        { cluster: 'prod', service: 'web', bakeTimeMinutes: -1 },
      ],
    });
    expect(message).toContain('targets[1].bakeTimeMinutes');
    expect(message).not.toContain('targets[0]');
  });

  test('every problem is reported at once, one line per field', () => {
    const message = problemsWith({
      policy: { rules: [], defaultAction: 'explode' },
      targets: [
        { cluster: 'prod', service: 'api' },
        // @ts-expect-error a bake in the wrong shape must fail, not be ignored
        { cluster: 'prod', service: 'web', bakeTime: 30 },
        { cluster: 'arn:aws:ecs:eu-west-1:123456789012:cluster/prod', service: 'api' },
      ],
      discoverByTag: { key: '', value: 'true' },
      notifications: { emails: ['not-an-address'] },
      dryRun: 'yes' as unknown as boolean,
      workflowDefaults: { rescanTimeoutSeconds: 5 },
      triageConcurrency: 1,
    });
    const lines = message.split('\n').filter((l) => l.startsWith('  - '));
    expect(lines.map((l) => l.slice(4).split(':')[0])).toEqual([
      'policy.defaultAction',
      'targets[1].bakeTime',
      'targets[2]',
      'discoverByTag.key',
      'workflowDefaults.rescanTimeoutSeconds',
      'notifications.emails[0]',
      'dryRun',
      'triageConcurrency',
    ]);
    expect(message).toContain(`${lines.length} problems`);
    expect(message).toContain('targets[1].bakeTime: must be a Duration');
    expect(message).toContain('prod/api is already targets[0]');
  });

  test('nothing is created when the props are invalid', () => {
    const stack = newStack();
    expect(() => new Autopatch(stack, 'Autopatch', { targets: [{ cluster: '', service: 'x' }] })).toThrow(
      /targets\[0\]\.cluster/,
    );
    expect(stack.node.tryFindChild('Autopatch')?.node.children ?? []).toHaveLength(0);
  });

  test('tokens are accepted: they are validated at deploy, and reach the config as references', () => {
    const stack = newStack();
    const bake = new CfnParameter(stack, 'BakeMinutes', { type: 'Number' });
    const cluster = new CfnParameter(stack, 'Cluster');
    const autopatch = new Autopatch(stack, 'Autopatch', {
      targets: [{ cluster: cluster.valueAsString, service: 'api', bakeTimeMinutes: bake.valueAsNumber }],
    });
    const config = JSON.stringify(configOf(autopatch));
    expect(config).toContain('"Ref":"BakeMinutes"');
    expect(config).toContain('"Ref":"Cluster"');
  });

  test('a configuration too large for the Lambda environment fails at synth', () => {
    const exceptions = Array.from({ length: 60 }, (_, i) => ({
      cves: [`CVE-2024-${10_000 + i}`],
      reason: `RISK-${i}: accepted by the platform team after review`,
      expires: '2099-01-01',
    }));
    expect(problemsWith({ policy: { ...DEFAULT_POLICY, exceptions } })).toMatch(
      /environment would be about \d+ bytes.*4096/,
    );
  });
});

describe('the bake, one setting', () => {
  it('takes bakeTime as a CDK Duration, the same as bakeTimeMinutes in cdk.json', () => {
    const autopatch = new Autopatch(newStack(), 'Autopatch', {
      targets: [
        { cluster: 'prod', service: 'api', alarmNames: ['api-5xx'], bakeTime: Duration.minutes(45) },
        { cluster: 'prod', service: 'web', alarmNames: ['web-5xx'], bakeTimeMinutes: 45 },
      ],
    });
    const config = triageRuntimeConfigSchema.parse(JSON.parse(configOf(autopatch) as string));
    expect(config.targets.map((t) => t.bakeTimeMinutes)).toEqual([45, 45]);
  });

  it('rejects a bake given twice, or one that is not whole minutes', () => {
    expect(
      problemsWith({
        targets: [{ cluster: 'prod', service: 'api', bakeTime: Duration.minutes(30), bakeTimeMinutes: 30 }],
      }),
    ).toMatch(/targets\[0\]: give bakeTime or bakeTimeMinutes, not both/);
    expect(
      problemsWith({ targets: [{ cluster: 'prod', service: 'api', bakeTime: Duration.seconds(90) }] }),
    ).toMatch(/targets\[0\]\.bakeTime: must be whole minutes/);
  });
});

describe('runtime configuration', () => {
  let stack: AutopatchStack;
  let template: Template;
  beforeAll(() => {
    ({ stack, template } = synthAutopatch({
      props: {
        dryRun: true,
        targets: [{ cluster: 'prod', service: 'api', alarmNames: ['api-5xx'] }],
        discoverByTag: { key: 'team:autopatch', value: 'yes' },
        workflowDefaults: { bakeTimeMinutes: 15 },
        notifications: { emails: ['oncall@example.com', 'platform@example.com'] },
        triageConcurrency: 3,
        ledgerRemovalPolicy: RemovalPolicy.DESTROY,
      },
    }));
  });

  const config = () => {
    const fn = template.toJSON().Resources[logicalIdOf(stack, stack.autopatch.triageFunction)];
    return triageRuntimeConfigSchema.parse(JSON.parse(fn.Properties.Environment.Variables.AUTOPATCH_CONFIG));
  };

  test('dryRun, targets (with defaults applied), the tag and the workflow defaults pass through to triage', () => {
    expect(config()).toMatchObject({
      dryRun: true,
      targets: [
        {
          cluster: 'prod',
          service: 'api',
          alarmNames: ['api-5xx'],
          rebuild: { mode: 'patch-os' },
        },
      ],
      discoverByTag: { key: 'team:autopatch', value: 'yes' },
      defaults: { bakeTimeMinutes: 15, deploymentTimeoutSeconds: 7_200 },
    });
    // A target that sets no bake takes workflowDefaults' (15 here), not a second default of its own.
    expect(config().targets[0]?.bakeTimeMinutes).toBeUndefined();
    expect(config().policy).toEqual(DEFAULT_POLICY);
  });

  test('in dry-run mode triage may not start executions', () => {
    const triage = policyStatements(stack, template).filter((s) =>
      s.path.startsWith(`${stack.autopatch.node.path}/Triage/`),
    );
    expect(triage.flatMap((s) => s.actions)).toEqual(expect.arrayContaining(['dynamodb:PutItem']));
    expect(triage.flatMap((s) => s.actions).filter((a) => a.startsWith('states:'))).toEqual([]);
  });

  test('each email is subscribed to the topic', () => {
    template.resourceCountIs('AWS::SNS::Subscription', 2);
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'oncall@example.com',
    });
  });

  test("the concurrency cap is the SQS pollers' maximum concurrency, and reserves nothing", () => {
    const fn = template.toJSON().Resources[logicalIdOf(stack, stack.autopatch.triageFunction)];
    expect(fn.Properties).not.toHaveProperty('ReservedConcurrentExecutions');
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      ScalingConfig: { MaximumConcurrency: 3 },
    });
  });

  test('the ledger removal policy can be changed', () => {
    expect(template.toJSON().Resources[logicalIdOf(stack, stack.autopatch.ledger)].DeletionPolicy).toBe(
      'Delete',
    );
  });
});

describe('bring your own key and topic', () => {
  test('an imported key and topic are used as given, with warnings for the key policy it cannot change', () => {
    const stack = newStack();
    const key = kms.Key.fromKeyArn(
      stack,
      'Key',
      'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    );
    const topic = sns.Topic.fromTopicArn(stack, 'Topic', 'arn:aws:sns:eu-west-1:123456789012:oncall');
    const autopatch = new Autopatch(stack, 'Autopatch', {
      encryptionKey: key,
      notifications: { topic, emails: ['oncall@example.com'] },
    });
    // Inspected on the construct tree rather than synthesized: a synth of the whole app costs seconds.
    const all = stack.node.findAll();
    expect(autopatch.encryptionKey).toBe(key);
    expect(autopatch.topic).toBe(topic);
    expect(all.filter((c) => c instanceof kms.CfnKey)).toEqual([]);
    expect(all.filter((c) => c instanceof sns.CfnTopic)).toEqual([]);
    const subscriptions = all.filter((c): c is sns.CfnSubscription => c instanceof sns.CfnSubscription);
    expect(subscriptions.map((c) => [c.topicArn, c.endpoint])).toEqual([
      [topic.topicArn, 'oncall@example.com'],
    ]);
    expect((autopatch.queue.node.defaultChild as sqs.CfnQueue).kmsMasterKeyId).toBe(key.keyArn);
    const warnings = all.flatMap((c) =>
      c.node.metadata.filter(
        (m) => m.type === 'aws:cdk:warning' && /key policy cannot be changed/.test(String(m.data)),
      ),
    );
    expect(warnings).toHaveLength(2);
  });
});

describe('configuration from the CDK context', () => {
  const fromContext = (context: Record<string, unknown>) => autopatchPropsFromContext(new App({ context }));

  test('reads cdk.json settings into construct props', () => {
    expect(
      fromContext({
        autopatch: {
          dryRun: true,
          notificationEmails: ['oncall@example.com'],
          discoverByTag: { key: 'autopatch:enabled', value: 'true' },
          targets: [{ cluster: 'prod', service: 'api' }],
        },
      }),
    ).toEqual({
      dryRun: true,
      notifications: { emails: ['oncall@example.com'] },
      discoverByTag: { key: 'autopatch:enabled', value: 'true' },
      targets: [{ cluster: 'prod', service: 'api' }],
    });
  });

  test('accepts the settings as a JSON string (-c autopatch=...)', () => {
    expect(fromContext({ autopatch: '{"dryRun":true}' })).toEqual({ dryRun: true });
  });

  test('reads the policy from autopatchPolicyFile', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'autopatch-')), 'policy.json');
    writeFileSync(file, JSON.stringify({ ...DEFAULT_POLICY, defaultAction: 'ignore' }));
    expect(fromContext({ autopatchPolicyFile: file }).policy).toMatchObject({ defaultAction: 'ignore' });
  });

  test('rejects a policy given twice, an unreadable policy file and unknown settings', () => {
    expect(() => fromContext({ autopatch: { policy: {} }, autopatchPolicyFile: 'p.json' })).toThrow(
      /keep one/,
    );
    expect(() => fromContext({ autopatchPolicyFile: '/nonexistent/policy.json' })).toThrow(/cannot read/);
    expect(() => fromContext({ autopatch: { dryrun: true } })).toThrow(
      /autopatch: Unrecognized key: "dryrun"/,
    );
  });
});
