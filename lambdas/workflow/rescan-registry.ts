import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { LEDGER } from '../shared/contracts';
import { ledgerDocumentClient } from '../shared/ledger/document-client';
import { awsCall } from './aws';
import type { VerifyRescanInput } from './verify-rescan';

/**
 * The rescans the workflow waits on, kept in the ledger table next to the deployment watches (see
 * watch-registry.ts). An `Inspector2 Scan` event names only the image digest: this index turns it into
 * the waits to answer, in one Query; the sweep lists every wait with the same Query on the whole
 * partition. One item per wait, so there is nothing to keep consistent between items.
 *
 * Keys: `RESCANS` / `DIGEST#<digest>#WAIT#<waitId>`: the RescanWait. Several waits may share a digest
 * (two executions whose builds produced the same image); each is answered on its own.
 *
 * The item holds the task token: it is the capability to answer the wait, as the approval and watch
 * tokens the ledger keeps already are. Items expire (TTL) a day after the wait's deadline; an expired
 * or stale one is harmless: answering a token the execution no longer waits on only answers
 * TaskDoesNotExist, and the wait is forgotten.
 */
export interface RescanWait {
  /** Identifies this wait (a hash of its task token). */
  readonly waitId: string;
  readonly taskToken: string;
  readonly executionName: string;
  /** The rebuilt digest Inspector must scan. */
  readonly digest: string;
  readonly repository: string;
  readonly registry: string;
  /** ISO-8601: when ECR received the digest. */
  readonly pushedAt: string;
  /** ISO-8601: pushedAt + rescanTimeoutSeconds, when the wait ends with RescanTimedOut. */
  readonly deadline: string;
  /** ISO-8601: when the wait was registered. */
  readonly registeredAt: string;
  /** ISO-8601: the last time the rescan was assessed without an error. */
  readonly lastAssessedAt?: string;
  /** What an assessment needs: the verify input as the workflow gave it (the build reduced to what it reads). */
  readonly input: VerifyRescanInput;
}

/** Waits are kept this long after their deadline (TTL deletes lazily anyway). */
const TTL_AFTER_DEADLINE_SECONDS = 86_400;
const PARTITION = 'RESCANS';
const sortKey = (digest: string, waitId?: string) => `DIGEST#${digest}#WAIT#${waitId ?? ''}`;

const isWait = (item: Record<string, unknown>): boolean =>
  typeof item.waitId === 'string' &&
  typeof item.taskToken === 'string' &&
  typeof item.digest === 'string' &&
  typeof item.deadline === 'string' &&
  typeof item.input === 'object' &&
  item.input !== null;

/** A stored item → the wait (the key and TTL attributes dropped). */
const waitOf = (item: Record<string, unknown>): RescanWait => {
  const { pk: _pk, sk: _sk, [LEDGER.ttlAttribute]: _ttl, ...wait } = item;
  return wait as unknown as RescanWait;
};

export class RescanRegistry {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly now: () => Date;

  constructor(options: { client: DynamoDBClient; tableName: string; now?: () => Date }) {
    this.doc = ledgerDocumentClient(options.client);
    this.tableName = options.tableName;
    this.now = options.now ?? (() => new Date());
  }

  /** Record a wait until a day after its deadline. Idempotent (the same token writes the same item). */
  async register(wait: RescanWait): Promise<void> {
    const expiresAt = Math.floor(Date.parse(wait.deadline) / 1000) + TTL_AFTER_DEADLINE_SECONDS;
    await awsCall('dynamodb PutItem', () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            pk: PARTITION,
            sk: sortKey(wait.digest, wait.waitId),
            ...wait,
            [LEDGER.ttlAttribute]: expiresAt,
          },
        }),
      ),
    );
  }

  /** Note a successful assessment (the sweep assesses the least recently assessed waits first). */
  async touch(wait: Pick<RescanWait, 'digest' | 'waitId'>, at: Date): Promise<void> {
    try {
      await awsCall('dynamodb UpdateItem', () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { pk: PARTITION, sk: sortKey(wait.digest, wait.waitId) },
            UpdateExpression: 'SET lastAssessedAt = :at',
            ConditionExpression: 'attribute_exists(pk)',
            ExpressionAttributeValues: { ':at': at.toISOString() },
          }),
        ),
      );
    } catch (error) {
      // Answered and forgotten meanwhile: nothing to note.
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
    }
  }

  /** Forget a wait once it was answered (or its execution no longer waits). */
  async forget(wait: Pick<RescanWait, 'digest' | 'waitId'>): Promise<void> {
    await awsCall('dynamodb DeleteItem', () =>
      this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pk: PARTITION, sk: sortKey(wait.digest, wait.waitId) },
        }),
      ),
    );
  }

  /** The live waits whose sort key starts with `prefix` (every page; consistent: a wait just registered counts). */
  private async query(prefix: string): Promise<RescanWait[]> {
    const waits: RescanWait[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await awsCall('dynamodb Query', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
            ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
            ExpressionAttributeValues: { ':pk': PARTITION, ':prefix': prefix },
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      const nowSeconds = this.now().getTime() / 1000;
      for (const item of out.Items ?? []) {
        if (!isWait(item)) continue;
        const expiresAt = item[LEDGER.ttlAttribute];
        if (typeof expiresAt === 'number' && expiresAt <= nowSeconds) continue;
        waits.push(waitOf(item));
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return waits;
  }

  /** The waits on one digest: what an `Inspector2 Scan` event for it answers. */
  async waitsFor(digest: string): Promise<RescanWait[]> {
    return this.query(sortKey(digest));
  }

  /** Every wait in force: what the sweep re-assesses. */
  async list(): Promise<RescanWait[]> {
    return this.query('DIGEST#');
  }
}
