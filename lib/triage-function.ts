import * as path from 'node:path';
import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as eventSources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TriageRuntimeConfig } from '../lambdas/shared/config';
import { ConfigurationError } from '../lambdas/shared/errors';
import { grantLedgerReadWrite, type LedgerTable } from './grants';
import { acknowledge, ecsArnPattern, IAM5_ANY_RESOURCE, iam5Resource, NAG_REASONS } from './nag';
import { LAMBDA_ARCHITECTURE, LAMBDA_BUNDLING, LAMBDA_RUNTIME } from './workflow/lambda-runtime';

/** How long one batch may take; the intake queue's visibility timeout is derived from it. */
export const TRIAGE_TIMEOUT = Duration.minutes(2);
/** How long Lambda gathers messages before invoking triage with a batch. */
export const TRIAGE_BATCHING_WINDOW = Duration.seconds(20);
/**
 * Up to 500 findings a batch: the ledger's per-batch costs (the duplicate check, one claim per
 * service) spread over more findings in a burst. Inspector finding events are typically 4-8 KB, so a
 * full batch stays well under Lambda's 6 MB invocation payload (Lambda sends fewer records if not).
 */
export const TRIAGE_BATCH_SIZE = 500;

/** Lambda's environment variables are limited to 4 KB in total (names and values). */
const LAMBDA_ENVIRONMENT_LIMIT_BYTES = 4096;

const triageEnvironment = (
  config: TriageRuntimeConfig,
  tableName: string,
  stateMachineArn: string,
): Record<string, string> => ({
  AUTOPATCH_CONFIG: JSON.stringify(config),
  LEDGER_TABLE: tableName,
  STATE_MACHINE_ARN: stateMachineArn,
  POWERTOOLS_SERVICE_NAME: 'autopatch-triage',
  POWERTOOLS_METRICS_NAMESPACE: 'Autopatch',
  // Stack traces point at the TypeScript source through the bundled source map.
  NODE_OPTIONS: '--enable-source-maps',
});

export interface TriageFunctionProps {
  readonly queue: sqs.IQueue;
  readonly ledger: LedgerTable;
  readonly stateMachine: sfn.IStateMachine;
  /** Encrypts the function's log group and the ledger. */
  readonly encryptionKey: kms.IKey;
  /** Validated configuration, passed to the function as AUTOPATCH_CONFIG. */
  readonly config: TriageRuntimeConfig;
  readonly logRetention: logs.RetentionDays;
  /**
   * Upper bound on concurrent triage invocations (the SQS event source's maximum concurrency), so a
   * burst of findings cannot stampede the ECS and Step Functions APIs. Not reserved concurrency:
   * Lambda refuses a reservation that would bring the account's unreserved concurrency below its
   * minimum (100; all of it in a new account whose quota is 10), so `cdk deploy` failed there. The
   * event source's cap takes nothing from the quota and keeps the pollers from invoking more than
   * this many at once, so Lambda does not throttle triage (a throttled batch counts as a receive and
   * would push findings to the DLQ early) unless the whole account runs out of concurrency.
   */
  readonly maxConcurrency: number;
}

/**
 * The triage Lambda: reads findings from the intake queue in batches, decides by policy, resolves
 * the ECS services that run the image and starts one remediation per service.
 */
export class TriageFunction extends Construct {
  public readonly function: nodejs.NodejsFunction;
  public readonly logGroup: logs.LogGroup;
  public readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: TriageFunctionProps) {
    super(scope, id);
    const { config, encryptionKey } = props;
    const stack = Stack.of(this);

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      encryptionKey,
      retention: props.logRetention,
    });
    // Our own role instead of Lambda's default: the default attaches the AWSLambdaBasicExecutionRole
    // managed policy, which may write to any log group.
    this.role = new iam.Role(this, 'ServiceRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description:
        'Autopatch triage: reads findings, inventories ECS, records the ledger, starts remediations.',
    });
    this.logGroup.grantWrite(this.role);

    const problem = triageEnvironmentProblem(config);
    if (problem) throw new ConfigurationError(problem);
    const environment = triageEnvironment(config, props.ledger.tableName, props.stateMachine.stateMachineArn);
    environment.AUTOPATCH_CONFIG = stack.toJsonString(config);
    // The hub's account: triage answers from the inventory index once its account and Region are indexed.
    environment.AUTOPATCH_HOME_ACCOUNT = stack.account;

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      description:
        'Autopatch triage: Inspector findings -> policy decision -> one remediation per ECS service.',
      entry: path.join(__dirname, '..', 'lambdas', 'triage', 'handler.ts'),
      handler: 'handler',
      runtime: LAMBDA_RUNTIME,
      architecture: LAMBDA_ARCHITECTURE,
      memorySize: 512,
      timeout: TRIAGE_TIMEOUT,
      role: this.role,
      logGroup: this.logGroup,
      tracing: lambda.Tracing.ACTIVE,
      environment,
      // One runtime and bundling policy for every Autopatch Lambda (SDK bundled at the pinned versions).
      bundling: LAMBDA_BUNDLING,
    });

    this.function.addEventSource(
      new eventSources.SqsEventSource(props.queue, {
        batchSize: TRIAGE_BATCH_SIZE,
        maxBatchingWindow: TRIAGE_BATCHING_WINDOW,
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency,
      }),
    );

    grantLedgerReadWrite(props.ledger, encryptionKey, this.role);
    // In dry-run mode triage decides and reports but starts nothing: IAM enforces that too.
    if (!config.dryRun) {
      props.stateMachine.grantStartExecution(this.role);
      // An urgent finding ends the maintenance-window wait of the run it queues behind (pre-emption).
      // SendTaskSuccess has no resource-level permissions: the task token is the capability.
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['states:SendTaskSuccess'], resources: ['*'] }),
      );
    }

    this.grantEcsInventory();
    this.grantFindingDetails();
    // Lambda adds the X-Ray statement (Resource "*") to the role's default policy.
    const defaultPolicy = this.role.node.tryFindChild('DefaultPolicy');
    if (defaultPolicy) acknowledge(defaultPolicy, IAM5_ANY_RESOURCE, NAG_REASONS.xray);
  }

  /**
   * Read-only ECS inventory: which services run an image digest. A separate policy so that its
   * cdk-nag acknowledgements cover these statements and nothing else.
   */
  private grantEcsInventory(): void {
    const stack = Stack.of(this);
    const policy = new iam.Policy(this, 'EcsInventoryPolicy', {
      statements: [
        new iam.PolicyStatement({
          sid: 'EcsListAndDescribeTaskDefinitions',
          actions: ['ecs:ListClusters', 'ecs:ListServices', 'ecs:ListTasks', 'ecs:DescribeTaskDefinition'],
          resources: ['*'],
        }),
        new iam.PolicyStatement({
          sid: 'EcsDescribeServices',
          actions: ['ecs:DescribeServices'],
          resources: [stack.formatArn({ service: 'ecs', resource: 'service', resourceName: '*' })],
        }),
        new iam.PolicyStatement({
          sid: 'EcsDescribeTasks',
          actions: ['ecs:DescribeTasks'],
          resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: '*' })],
        }),
        // Multi-architecture images: which image index a platform digest belongs to (the index
        // manifests of the images services reference), read with BatchGetImage.
        new iam.PolicyStatement({
          sid: 'EcrReadImageIndexes',
          actions: ['ecr:BatchGetImage'],
          resources: [stack.formatArn({ service: 'ecr', resource: 'repository', resourceName: '*' })],
        }),
      ],
    });
    policy.attachToRole(this.role);
    // The event source can invoke the function as soon as both exist: attach the policy first, so the
    // first batches are not failed by AccessDenied.
    this.function.node.addDependency(policy);
    acknowledge(policy, IAM5_ANY_RESOURCE, NAG_REASONS.ecsUnscopable);
    acknowledge(policy, iam5Resource(this.ecsArnPattern('service')), NAG_REASONS.ecsServices);
    acknowledge(policy, iam5Resource(this.ecsArnPattern('task')), NAG_REASONS.ecsTasks);
    acknowledge(
      policy,
      iam5Resource(this.ecsArnPattern('repository').replace(':ecs:', ':ecr:')),
      NAG_REASONS.ecrIndexes,
    );
  }

  /**
   * Exploitation facts of findings (CISA KEV membership and due date, observed exploitation), for
   * policy rules that match on them. Read-only; granted whatever the policy, so that a policy change
   * needs no IAM change. A policy of its own, so that its acknowledgement covers it alone.
   */
  private grantFindingDetails(): void {
    const policy = new iam.Policy(this, 'FindingDetailsPolicy', {
      statements: [
        new iam.PolicyStatement({
          sid: 'InspectorFindingDetails',
          actions: ['inspector2:BatchGetFindingDetails'],
          resources: ['*'],
        }),
      ],
    });
    policy.attachToRole(this.role);
    this.function.node.addDependency(policy);
    acknowledge(policy, IAM5_ANY_RESOURCE, NAG_REASONS.inspectorFindingDetails);
  }

  /**
   * The finding's ARN as cdk-nag renders it: like nag.ts's ecsArnPattern in an environment-agnostic
   * stack, with the literal Region and account of a stack that has them (`env`), which cdk-nag prints
   * instead of `<AWS::Region>`/`<AWS::AccountId>`.
   */
  private ecsArnPattern(resource: string): string {
    const { region, account } = Stack.of(this);
    return ecsArnPattern(resource)
      .replace('<AWS::Region>', Token.isUnresolved(region) ? '<AWS::Region>' : region)
      .replace('<AWS::AccountId>', Token.isUnresolved(account) ? '<AWS::AccountId>' : account);
  }
}

/** The table name and state machine ARN are only known at deploy: counted at a generous estimate. */
const DEPLOY_TIME_VALUE_BYTES = 256;

/**
 * Why this configuration cannot be deployed, if it cannot: Lambda limits a function's environment
 * to 4 KB and the policy and targets travel in it. Checked at synth so it fails there, not in
 * CloudFormation.
 */
export const triageEnvironmentProblem = (config: TriageRuntimeConfig): string | undefined => {
  const environment = triageEnvironment(config, '', '');
  const size = Object.entries(environment).reduce(
    (total, [name, value]) => total + Buffer.byteLength(name) + Buffer.byteLength(value),
    2 * DEPLOY_TIME_VALUE_BYTES,
  );
  return size > LAMBDA_ENVIRONMENT_LIMIT_BYTES
    ? `the triage function's environment would be about ${size} bytes with this policy and these ` +
        `targets; Lambda allows ${LAMBDA_ENVIRONMENT_LIMIT_BYTES}: shorten the policy or the target list`
    : undefined;
};
