import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { LEDGER, type ServiceRef } from '../shared/contracts';
import { ledgerDocumentClient } from '../shared/ledger/document-client';
import { awsCall } from './aws';

/**
 * Which deployment each watching remediation follows, and which services watch each alarm, kept in
 * the ledger table next to the task tokens. An alarm event names only the alarm; this index turns it
 * into the services to look at, in one Query. Items expire with the deployment timeout (TTL), and
 * a stale one is harmless: the events Lambda only resumes an execution that is in flight for the
 * service and holds a watch token.
 *
 * Keys (proposed for LEDGER in shared/contracts.ts):
 * - `WATCH#<serviceKey>` / `DEPLOYMENT`: the WatchRecord
 * - `ALARM#<alarmName>` / `SERVICE#<serviceKey>`: executionName
 * - `WATCHES` / `SERVICE#<serviceKey>`: the WatchRecord again, with lastAssessedAt (the heartbeat
 *   lists every wait, whole, with one Query)
 */
export interface WatchRecord {
  readonly serviceKey: string;
  /** The service itself (absent in records written before it existed). */
  readonly service?: ServiceRef;
  readonly executionName: string;
  readonly deploymentArn: string;
  /** The revision the watch expects the service to end on (patched for a bake, last good for a rollback). */
  readonly taskDefinitionArn: string;
  readonly alarmNames: readonly string[];
  /** Identifies this wait (a hash of its task token): later waits of the same execution replace it. */
  readonly watchId?: string;
  /** bake (absent in records written before it existed) or rollback. */
  readonly mode?: 'bake' | 'rollback';
  /** The configured bake, in seconds (bake mode). */
  readonly bakeSeconds?: number;
  /** ISO-8601: when the watch began. */
  readonly watchingSince?: string;
  /** ISO-8601: the last time the deployment and its alarms were read successfully. */
  readonly lastAssessedAt?: string;
}

/** A stored item → the record (fields added later are optional). */
const recordOf = (item: Record<string, unknown>): WatchRecord => {
  const w = item as unknown as WatchRecord;
  return {
    serviceKey: w.serviceKey,
    executionName: w.executionName,
    deploymentArn: w.deploymentArn,
    taskDefinitionArn: w.taskDefinitionArn,
    alarmNames: w.alarmNames ?? [],
    ...(w.service ? { service: w.service } : {}),
    ...(w.watchId ? { watchId: w.watchId } : {}),
    ...(w.mode ? { mode: w.mode } : {}),
    ...(w.bakeSeconds !== undefined ? { bakeSeconds: w.bakeSeconds } : {}),
    ...(w.watchingSince ? { watchingSince: w.watchingSince } : {}),
    ...(w.lastAssessedAt ? { lastAssessedAt: w.lastAssessedAt } : {}),
  };
};

const watchKey = (serviceKey: string) => ({ pk: `WATCH#${serviceKey}`, sk: 'DEPLOYMENT' });
const indexKey = (serviceKey: string) => ({ pk: 'WATCHES', sk: `SERVICE#${serviceKey}` });
const alarmKey = (alarmName: string, serviceKey: string) => ({
  pk: `ALARM#${alarmName}`,
  sk: `SERVICE#${serviceKey}`,
});

export class WatchRegistry {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;

  constructor(options: { client: DynamoDBClient; tableName: string; now?: () => Date }) {
    this.doc = ledgerDocumentClient(options.client);
    this.tableName = options.tableName;
    this.now = options.now ?? (() => new Date());
  }

  /** Record a watch for `ttlSeconds` (the deployment timeout plus a margin). Idempotent. */
  async register(watch: WatchRecord, ttlSeconds: number): Promise<void> {
    const expiresAt = Math.floor(this.now().getTime() / 1000) + ttlSeconds;
    const items = [
      { ...watchKey(watch.serviceKey), ...watch, alarmNames: [...watch.alarmNames] },
      { ...indexKey(watch.serviceKey), ...watch, alarmNames: [...watch.alarmNames] },
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
    return recordOf(item as unknown as Record<string, unknown>);
  }

  /** Note a successful look at the watched deployment (the heartbeat's fail-closed clock starts again). */
  async touch(serviceKey: string, watchId: string, at: Date): Promise<void> {
    try {
      await awsCall('dynamodb UpdateItem', () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: indexKey(serviceKey),
            UpdateExpression: 'SET lastAssessedAt = :at',
            ConditionExpression: 'watchId = :w',
            ExpressionAttributeValues: { ':at': at.toISOString(), ':w': watchId },
          }),
        ),
      );
    } catch (error) {
      // Another watch replaced this one meanwhile: nothing to note.
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    }
  }

  /**
   * Forget a wait once its execution was resumed, unless a later wait replaced it meanwhile (the
   * alarm index expires by TTL; it is checked against the in-flight execution anyway).
   */
  async forget(serviceKey: string, watchId: string): Promise<void> {
    for (const key of [indexKey(serviceKey), watchKey(serviceKey)]) {
      try {
        await awsCall('dynamodb DeleteItem', () =>
          this.doc.send(
            new DeleteCommand({
              TableName: this.tableName,
              Key: key,
              ConditionExpression: 'watchId = :w',
              ExpressionAttributeValues: { ':w': watchId },
            }),
          ),
        );
      } catch (error) {
        if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      }
    }
  }

  /** The live (not expired) items of one partition, every page. */
  private async partition(pk: string): Promise<Array<Record<string, unknown>>> {
    const items: Array<Record<string, unknown>> = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await awsCall('dynamodb Query', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk' },
            ExpressionAttributeValues: { ':pk': pk },
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      const nowSeconds = this.now().getTime() / 1000;
      for (const item of out.Items ?? []) {
        if (typeof item.serviceKey !== 'string') continue;
        if (typeof item.expiresAt === 'number' && item.expiresAt <= nowSeconds) continue;
        items.push(item);
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  /** The services whose in-flight remediation watches this alarm. */
  async servicesWatching(alarmName: string): Promise<string[]> {
    const items = await this.partition(`ALARM#${alarmName}`);
    return [...new Set(items.map((item) => item.serviceKey as string))].sort();
  }

  /** Every wait in force, whole: what the heartbeat sweep looks at (one Query). */
  async list(): Promise<WatchRecord[]> {
    const items = await this.partition('WATCHES');
    return items.filter((item) => typeof item.executionName === 'string').map(recordOf);
  }
}
