import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as sns from 'aws-cdk-lib/aws-sns';

/**
 * Grants with concrete actions only. CDK's grantReadWriteData, grantPublish and the CodeBuild
 * project's key grant ask for `kms:ReEncrypt*` and `kms:GenerateDataKey*`; Autopatch grants the calls
 * behind them that its clients actually make, so no role gets a wildcard action.
 */

/**
 * DynamoDB data-plane actions on the ledger: locks and dedup markers are read, written conditionally
 * and merged. No Scan, no streams, no table management.
 */
export const LEDGER_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:ConditionCheckItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
] as const;

/** What DynamoDB asks of the table's customer-managed key on behalf of a reader/writer. */
export const LEDGER_KEY_ACTIONS = [
  'kms:Decrypt',
  'kms:DescribeKey',
  'kms:Encrypt',
  'kms:GenerateDataKey',
] as const;

/** What SNS asks of the topic's key on behalf of a publisher. */
export const PUBLISH_KEY_ACTIONS = ['kms:Decrypt', 'kms:GenerateDataKey'] as const;

/** What CodeBuild asks of the project's key: artifacts, caches and logs written and read back. */
export const BUILD_KEY_ACTIONS = [
  'kms:Decrypt',
  'kms:DescribeKey',
  'kms:Encrypt',
  'kms:GenerateDataKey',
] as const;

/**
 * The ledger as Autopatch's constructs use it: its name and its grants. Any `dynamodb.ITable` is one.
 * Not `ITable` itself: with exactOptionalPropertyTypes a `Table` is not assignable to it (its
 * `tableStreamArn` getter is `string | undefined`, the interface's is `?: string`; aws/aws-cdk#37996).
 */
export type LedgerTable = Pick<dynamodb.ITable, 'tableName' | 'grant'>;

/** Read and write the ledger's items (and use its key), nothing else. */
export const grantLedgerReadWrite = (ledger: LedgerTable, key: kms.IKey, grantee: iam.IGrantable): void => {
  ledger.grant(grantee, ...LEDGER_ACTIONS);
  key.grant(grantee, ...LEDGER_KEY_ACTIONS);
};

/** Publish to the notification topic (and use its key), nothing else. */
export const grantTopicPublish = (topic: sns.ITopic, key: kms.IKey, grantee: iam.IGrantable): void => {
  iam.Grant.addToPrincipalOrResource({
    grantee,
    actions: ['sns:Publish'],
    resourceArns: [topic.topicArn],
    resource: topic,
  });
  key.grant(grantee, ...PUBLISH_KEY_ACTIONS);
};
