import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, DynamoDBDocumentClient, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER } from '../shared/contracts';
import { awsCall } from './aws';

/**
 * Which deployment each watching remediation follows, and which services watch each alarm, kept in
 * the ledger table next to the task tokens. An alarm event names only the alarm; this index turns it
 * into the services to look at, in one Query. Items expire with the deployment timeout (TTL), and
 * a stale one is harmless: the events Lambda only resumes an execution that is in flight for the
 * service and holds a watch token.
 *
 * Keys (proposed for LEDGER in shared/contracts.ts):
 * - `WATCH#<serviceKey>` / `DEPLOYMENT`: executionName, deploymentArn, taskDefinitionArn, alarmNames
 * - `ALARM#<alarmName>` / `SERVICE#<serviceKey>`: executionName
 */
export interface WatchRecord {
  readonly serviceKey: string;
  readonly executionName: string;
  readonly deploymentArn: string;
  readonly taskDefinitionArn: string;
  readonly alarmNames: readonly string[];
}

const watchKey = (serviceKey: string) => ({ pk: `WATCH#${serviceKey}`, sk: 'DEPLOYMENT' });
const alarmKey = (alarmName: string, serviceKey: string) => ({
  pk: `ALARM#${alarmName}`,
  sk: `SERVICE#${serviceKey}`,
});

export class WatchRegistry {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;

  constructor(options: { client: DynamoDBClient; tableName: string; now?: () => Date }) {
    this.doc = DynamoDBDocumentClient.from(options.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
    this.tableName = options.tableName;
    this.now = options.now ?? (() => new Date());
  }

  /** Record a watch for `ttlSeconds` (the deployment timeout plus a margin). Idempotent. */
  async register(watch: WatchRecord, ttlSeconds: number): Promise<void> {
    const expiresAt = Math.floor(this.now().getTime() / 1000) + ttlSeconds;
    const items = [
      { ...watchKey(watch.serviceKey), ...watch, alarmNames: [...watch.alarmNames] },
      ...watch.alarmNames.map((name) => ({
        ...alarmKey(name, watch.serviceKey),
        serviceKey: watch.serviceKey,
        executionName: watch.executionName,
      })),
    ].map((item) => ({ PutRequest: { Item: { ...item, [LEDGER.ttlAttribute]: expiresAt } } }));
    for (let i = 0; i < items.length; i += 25) {
      let pending = items.slice(i, i + 25);
      // Unprocessed items (throttling) are retried a few times; the watch still works without the
      // alarm index (the one check on entry and ECS events), so do not fail the deployment for it.
      for (let attempt = 0; pending.length > 0 && attempt < 5; attempt++) {
        const out = await awsCall('dynamodb BatchWriteItem', () =>
          this.doc.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } })),
        );
        pending = (out.UnprocessedItems?.[this.tableName] ?? []) as typeof pending;
      }
    }
  }

  async get(serviceKey: string): Promise<WatchRecord | undefined> {
    const out = await awsCall('dynamodb GetItem', () =>
      this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: watchKey(serviceKey), ConsistentRead: true }),
      ),
    );
    const item = out.Item as (WatchRecord & { expiresAt?: number }) | undefined;
    if (!item || (item.expiresAt !== undefined && item.expiresAt * 1000 <= this.now().getTime()))
      return undefined;
    return {
      serviceKey: item.serviceKey,
      executionName: item.executionName,
      deploymentArn: item.deploymentArn,
      taskDefinitionArn: item.taskDefinitionArn,
      alarmNames: item.alarmNames ?? [],
    };
  }

  /** The services whose in-flight remediation watches this alarm. */
  async servicesWatching(alarmName: string): Promise<string[]> {
    const keys: string[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await awsCall('dynamodb Query', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk' },
            ExpressionAttributeValues: { ':pk': `ALARM#${alarmName}` },
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      const nowSeconds = this.now().getTime() / 1000;
      for (const item of out.Items ?? []) {
        if (
          typeof item.serviceKey === 'string' &&
          !(typeof item.expiresAt === 'number' && item.expiresAt <= nowSeconds)
        ) {
          keys.push(item.serviceKey);
        }
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return [...new Set(keys)].sort();
  }
}
