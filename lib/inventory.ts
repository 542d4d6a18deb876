import * as path from 'node:path';
import { Duration, Stack, Token } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as eventSources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { LEDGER_KEY_ACTIONS } from './grants';
import { acknowledge, IAM5_ANY_RESOURCE, iam5Resource, NAG_REASONS } from './nag';
import { LAMBDA_ARCHITECTURE, LAMBDA_BUNDLING, LAMBDA_RUNTIME } from './workflow/lambda-runtime';

/**
 * The image inventory index (lambdas/inventory/): which ECS services, in which account and Region,
 * run which repository's images, kept current by ECS events and a periodic reconcile, so that triage
 * answers a finding with one DynamoDB Query instead of scanning ECS.
 *
 * - Events: ECS deployment state changes and service actions (the hub's own, and those spokes forward
 *   to the hub's default bus), and the ECS API calls CloudTrail records (create, update, delete, tag a
 *   service; only where a trail records management events) go to a queue; the indexer re-describes
 *   each named service once per batch. ECS sends no event for a task definition registration, and a
 *   registration changes no service until an UpdateService, which these events cover.
 * - Reconcile: every hour, each known account and Region whose last complete walk is older than
 *   `reconcileInterval` is walked again (all of them within the first hour after deploy; until then
 *   triage scans ECS as before, so nothing changes for a new installation).
 *
 * The index lives in the ledger table under its own keys (IMAGE#…, INVENTORY#…): the indexer's
 * grant is limited to those keys.
 */

// The indexer and the reconciler may assume the spoke roles only when the hub serves an
// organization: Autopatch's `organization` prop grants it to them with the other hub roles.

/** detail-types and eventNames that can change what a service runs. */
export const INVENTORY_ECS_EVENT_PATTERN: events.EventPattern = {
  source: ['aws.ecs'],
  detailType: ['ECS Deployment State Change', 'ECS Service Action'],
  detail: {
    eventName: [
      'SERVICE_DEPLOYMENT_IN_PROGRESS',
      'SERVICE_DEPLOYMENT_COMPLETED',
      'SERVICE_DEPLOYMENT_FAILED',
      // Blue/green task sets (CODE_DEPLOY, EXTERNAL) settle.
      'TASKSET_STEADY_STATE',
    ],
  },
};

/** The ECS API calls (CloudTrail) that create, change, delete or re-tag a service. */
export const INVENTORY_API_CALL_PATTERN: events.EventPattern = {
  source: ['aws.ecs'],
  detailType: ['AWS API Call via CloudTrail'],
  detail: {
    eventSource: ['ecs.amazonaws.com'],
    eventName: ['CreateService', 'UpdateService', 'DeleteService', 'TagResource', 'UntagResource'],
  },
};

/** The ledger actions the index needs: read, write (the generation counter is an update) and delete its own items. */
const INDEX_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
];

export const INVENTORY_NAG_REASONS = {
  ecsAnyRegion:
    'ecs:DescribeServices and ecs:DescribeTasks (read-only) of services in any Region of this account: ' +
    'the index covers every Region the hub serves, and cluster and service names are only known from ' +
    'the events and listings at run time.',
  ecrAnyRegion:
    'ecr:BatchGetImage (read-only) in any Region of this account: the indexer reads the image index ' +
    'manifests of the images services run, once per digest, so triage maps a platform digest to the ' +
    'services without reading ECR; the repositories are those of task definitions seen at run time.',
} as const;

export interface InventoryIndexProps {
  /** The ledger table that holds the index items. */
  readonly ledger: Pick<dynamodb.ITable, 'tableName' | 'tableArn'>;
  /** Encrypts the ledger and the log groups. */
  readonly encryptionKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  /**
   * Accounts and Regions the reconcile walks even before an event came from them.
   * @default - the hub's own account and Region only
   */
  readonly places?: ReadonlyArray<{ readonly account: string; readonly region: string }>;
  /** @default 6 hours */
  readonly reconcileInterval?: Duration;
  /** Concurrent indexer invocations (ECS Describe* calls stay under the rate limits). @default 2 */
  readonly maxConcurrency?: number;
}

export class InventoryIndex extends Construct {
  public readonly indexer: nodejs.NodejsFunction;
  public readonly reconciler: nodejs.NodejsFunction;
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly ecsEventRule: events.Rule;
  public readonly apiCallRule: events.Rule;
  public readonly reconcileSchedule: events.Rule;

  constructor(scope: Construct, id: string, props: InventoryIndexProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const indexerTimeout = Duration.minutes(1);

    // SQS-managed encryption: ECS event metadata, and EventBridge can send without a key policy that
    // names the rules (which would make a Key -> Rule -> Queue -> Key cycle).
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(4),
      visibilityTimeout: Duration.seconds(6 * indexerTimeout.toSeconds() + 10),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
    });
    const toQueue = () =>
      new targets.SqsQueue(this.queue, {
        deadLetterQueue: this.deadLetterQueue,
        maxEventAge: Duration.hours(6),
        retryAttempts: 20,
      });
    this.ecsEventRule = new events.Rule(this, 'EcsEventRule', {
      description:
        "Autopatch inventory: ECS deployments and task set changes (the hub's and its spokes') re-index the service",
      eventPattern: INVENTORY_ECS_EVENT_PATTERN,
      targets: [toQueue()],
    });
    this.apiCallRule = new events.Rule(this, 'ApiCallRule', {
      description:
        'Autopatch inventory: ECS services created, updated, deleted or re-tagged (CloudTrail) re-index the service',
      eventPattern: INVENTORY_API_CALL_PATTERN,
      targets: [toQueue()],
    });

    const environment = {
      LEDGER_TABLE: props.ledger.tableName,
      AUTOPATCH_HOME_ACCOUNT: stack.account,
      INVENTORY_RECONCILE_HOURS: String((props.reconcileInterval ?? Duration.hours(6)).toHours()),
      INVENTORY_PLACES: (props.places ?? []).map((p) => `${p.account}:${p.region}`).join(','),
      POWERTOOLS_SERVICE_NAME: 'autopatch-inventory',
      NODE_OPTIONS: '--enable-source-maps',
    };
    const make = (name: string, handler: string, timeout: Duration, description: string) => {
      const logGroup = new logs.LogGroup(this, `${name}LogGroup`, {
        encryptionKey: props.encryptionKey,
        retention: props.logRetention,
      });
      const role = new iam.Role(this, `${name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description,
      });
      logGroup.grantWrite(role);
      const fn = new nodejs.NodejsFunction(this, name, {
        description,
        entry: path.join(__dirname, '..', 'lambdas', 'inventory', 'handler.ts'),
        handler,
        runtime: LAMBDA_RUNTIME,
        architecture: LAMBDA_ARCHITECTURE,
        memorySize: 512,
        timeout,
        role,
        logGroup,
        tracing: lambda.Tracing.ACTIVE,
        environment,
        bundling: LAMBDA_BUNDLING,
      });
      this.grantIndex(fn, role, props);
      const defaultPolicy = role.node.tryFindChild('DefaultPolicy');
      if (defaultPolicy) acknowledge(defaultPolicy, IAM5_ANY_RESOURCE, NAG_REASONS.xray);
      return fn;
    };

    this.indexer = make(
      'Indexer',
      'handler',
      indexerTimeout,
      'Autopatch inventory: re-indexes the ECS service an event names (images -> services).',
    );
    this.indexer.addEventSource(
      new eventSources.SqsEventSource(this.queue, {
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(10),
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency ?? 2,
      }),
    );

    this.reconciler = make(
      'Reconciler',
      'reconcileHandler',
      Duration.minutes(15),
      'Autopatch inventory: walks each account and Region and rewrites the image index (hourly, when due).',
    );
    // A failed run is the next hour's run: no retries, nothing to dead-letter.
    this.reconcileSchedule = new events.Rule(this, 'ReconcileSchedule', {
      description: 'Autopatch inventory: every hour, reconcile the accounts and Regions whose index is due',
      schedule: events.Schedule.rate(Duration.hours(1)),
      targets: [new targets.LambdaFunction(this.reconciler, { retryAttempts: 0 })],
    });
  }

  /**
   * The index items of the ledger (leading keys IMAGE#… and INVENTORY#… only), ECS reads in this
   * account in any Region, and the spoke roles of the organization. A policy of its own, so its
   * acknowledgements cover these statements and nothing else.
   */
  private grantIndex(fn: lambda.IFunction, role: iam.Role, props: InventoryIndexProps): void {
    const stack = Stack.of(this);
    const ecsArn = (resource: string) =>
      stack.formatArn({ service: 'ecs', region: '*', resource, resourceName: '*' });
    const policy = new iam.Policy(this, `${fn.node.id}IndexPolicy`, {
      statements: [
        new iam.PolicyStatement({
          sid: 'IndexItems',
          actions: INDEX_ACTIONS,
          resources: [props.ledger.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['IMAGE#*', 'INVENTORY#*'] } },
        }),
        new iam.PolicyStatement({
          sid: 'LedgerKey',
          actions: [...LEDGER_KEY_ACTIONS],
          resources: [props.encryptionKey.keyArn],
        }),
        new iam.PolicyStatement({
          sid: 'EcsListAndDescribeTaskDefinitions',
          actions: ['ecs:ListClusters', 'ecs:ListServices', 'ecs:ListTasks', 'ecs:DescribeTaskDefinition'],
          resources: ['*'],
        }),
        new iam.PolicyStatement({
          sid: 'EcsDescribeServices',
          actions: ['ecs:DescribeServices'],
          resources: [ecsArn('service')],
        }),
        new iam.PolicyStatement({
          sid: 'EcsDescribeTasks',
          actions: ['ecs:DescribeTasks'],
          resources: [ecsArn('task')],
        }),
        // Multi-architecture images: which platform manifests each image index holds (written to the
        // index once per digest, so triage needs no ECR read).
        new iam.PolicyStatement({
          sid: 'EcrReadImageIndexes',
          actions: ['ecr:BatchGetImage'],
          resources: [
            stack.formatArn({ service: 'ecr', region: '*', resource: 'repository', resourceName: '*' }),
          ],
        }),
      ],
    });
    policy.attachToRole(role);
    fn.node.addDependency(policy);
    acknowledge(policy, IAM5_ANY_RESOURCE, NAG_REASONS.ecsUnscopable);
    // cdk-nag prints a stack's literal account (`env`) instead of <AWS::AccountId>.
    const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
    for (const resource of ['service', 'task'])
      acknowledge(
        policy,
        iam5Resource(`arn:<AWS::Partition>:ecs:*:${account}:${resource}/*`),
        INVENTORY_NAG_REASONS.ecsAnyRegion,
      );
    acknowledge(
      policy,
      iam5Resource(`arn:<AWS::Partition>:ecr:*:${account}:repository/*`),
      INVENTORY_NAG_REASONS.ecrAnyRegion,
    );
  }
}
