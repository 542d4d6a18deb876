import { Annotations, Duration, Names, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

export interface IntakeProps {
  /** Encrypts both queues; EventBridge is allowed to use it for this rule only. */
  readonly encryptionKey: kms.IKey;
  /**
   * How long a message stays invisible once a consumer received it. Lambda's guidance for SQS event
   * sources is at least six times the function timeout plus the batching window.
   */
  readonly visibilityTimeout: Duration;
  /** Receives before a message moves to the dead-letter queue. @default 5 */
  readonly maxReceiveCount?: number;
  /**
   * The accounts whose Inspector finding events the rule accepts (the events' `account` field). Events
   * from other accounts can reach the default bus when a rule elsewhere forwards them.
   * @default - the stack's account only
   */
  readonly accounts?: readonly string[];
  /**
   * Accept findings from any account whose events reach the default bus (the hub of an organization
   * given by id: the bus policy admits the organization's accounts only). Overrides `accounts`.
   * @default false
   */
  readonly anyAccount?: boolean;
  /**
   * The Regions whose findings the rule accepts (the events' `region`).
   * @default - any Region (events from another Region arrive only if a rule there forwards them)
   */
  readonly regions?: readonly string[];
}

/**
 * Inspector findings Autopatch acts on: active package vulnerabilities in ECR container images. The
 * intake rule adds the accounts it accepts (`account`), see {@link IntakeProps.accounts}.
 */
export const INSPECTOR_FINDING_PATTERN: events.EventPattern = {
  source: ['aws.inspector2'],
  detailType: ['Inspector2 Finding'],
  detail: {
    type: ['PACKAGE_VULNERABILITY'],
    status: ['ACTIVE'],
    resources: { type: ['AWS_ECR_CONTAINER_IMAGE'] },
  },
};

/**
 * Intake: an EventBridge rule on the default bus that buffers Inspector findings in an encrypted SQS
 * queue. The queue absorbs bursts (a new CVE can raise thousands of findings at once) and gives triage
 * retries and a dead-letter queue for free.
 */
export class Intake extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: IntakeProps) {
    super(scope, id);
    const { encryptionKey } = props;
    const retentionPeriod = Duration.days(14);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: encryptionKey,
      enforceSSL: true,
      retentionPeriod,
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: encryptionKey,
      enforceSSL: true,
      retentionPeriod,
      visibilityTimeout: props.visibilityTimeout,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount ?? 5 },
    });

    // The rule's name is fixed at synth so its ARN can be written without a reference to the rule:
    // the key policy names the rule, the queue is encrypted with the key and the rule targets the
    // queue, so a Ref would make a circular dependency (Key -> Rule -> Queue -> Key).
    const ruleName = Names.uniqueResourceName(this, { maxLength: 64, separator: '-' });
    const ruleArn = Stack.of(this).formatArn({ service: 'events', resource: 'rule', resourceName: ruleName });
    this.rule = new events.Rule(this, 'Rule', {
      ruleName,
      description:
        'Autopatch intake: active Inspector package vulnerabilities in ECR container images, from the accounts Autopatch serves.',
      eventPattern: {
        ...INSPECTOR_FINDING_PATTERN,
        ...(props.anyAccount === true ? {} : { account: [...(props.accounts ?? [Stack.of(this).account])] }),
        ...(props.regions !== undefined ? { region: [...props.regions] } : {}),
      },
    });
    this.rule.addTarget({
      bind: () => ({
        arn: this.queue.queueArn,
        targetResource: this.queue,
        // Events EventBridge could not deliver (a key or queue policy gone wrong) land in the same DLQ,
        // where the DeadLetters alarm sees them, instead of being dropped after 24 hours of retries.
        deadLetterConfig: { arn: this.deadLetterQueue.queueArn },
        retryPolicy: { maximumEventAgeInSeconds: Duration.hours(24).toSeconds(), maximumRetryAttempts: 185 },
      }),
    });

    // Only this rule may send, on both queues (the DLQ receives the rule's undeliverable events).
    const fromThisRule = { ArnEquals: { 'aws:SourceArn': ruleArn } };
    for (const queue of [this.queue, this.deadLetterQueue]) {
      queue.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'AllowIntakeRuleToSend',
          principals: [new iam.ServicePrincipal('events.amazonaws.com')],
          actions: ['sqs:SendMessage'],
          resources: [queue.queueArn],
          conditions: fromThisRule,
        }),
      );
    }
    // SQS encrypts on EventBridge's behalf with EventBridge's permissions, so the key policy must let
    // events.amazonaws.com generate and decrypt data keys; the source ARN keeps it to this rule.
    const { statementAdded } = encryptionKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowAutopatchIntakeRuleToEncryptMessages',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: ['*'],
        conditions: fromThisRule,
      }),
    );
    if (!statementAdded) {
      Annotations.of(this).addWarningV2(
        'autopatch:intake-key-policy',
        `The encryption key is imported, so its key policy cannot be changed here. Allow ` +
          `events.amazonaws.com kms:GenerateDataKey and kms:Decrypt with aws:SourceArn ${ruleName}, ` +
          'or findings will not reach the intake queue.',
      );
    }
  }
}
