import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
} from '@aws-sdk/lib-dynamodb';
import { AutopatchError, isTransient, TransientError } from '../errors';

/**
 * The ledger's table and the few ways every part of the ledger talks to it: one document client,
 * errors named after the ledger operation (throttling becomes TransientError), conditional writes
 * that report a failed condition as `false`, and batch reads retried with backoff.
 */

export type Key = { pk: string; sk: string };

export interface TableOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** @default () => new Date() */
  readonly now?: () => Date;
  /**
   * Retries of unprocessed batch items (BatchGetItem / BatchWriteItem under throttling), with
   * exponential backoff and full jitter.
   * @default { attempts: 8, baseDelayMs: 50, maxDelayMs: 2000 }
   */
  readonly batchRetry?: {
    readonly attempts?: number;
    readonly baseDelayMs?: number;
    readonly maxDelayMs?: number;
  };
}

export const DAY_SECONDS = 86_400;
export const BATCH_GET_MAX = 100;
export const BATCH_WRITE_MAX = 25;
export const BATCH_CONCURRENCY = 4;

export const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

import { mapLimit } from '../concurrency';
import { ledgerDocumentClient } from './document-client';

export { mapLimit };

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const isConditionFailure = (error: unknown): boolean =>
  error instanceof Error && error.name === 'ConditionalCheckFailedException';

export class LedgerTable {
  readonly doc: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly now: () => Date;
  private readonly retry: { attempts: number; baseDelayMs: number; maxDelayMs: number };

  constructor(options: TableOptions) {
    // Created once: the document client shares the injected client's connection pool and middleware.
    this.doc = ledgerDocumentClient(options.client);
    this.tableName = options.tableName;
    this.now = options.now ?? (() => new Date());
    this.retry = {
      attempts: options.batchRetry?.attempts ?? 8,
      baseDelayMs: options.batchRetry?.baseDelayMs ?? 50,
      maxDelayMs: options.batchRetry?.maxDelayMs ?? 2_000,
    };
  }

  /** Epoch seconds `days` from now, for the TTL attribute. */
  ttl(days: number): number {
    return Math.floor(this.now().getTime() / 1000) + days * DAY_SECONDS;
  }

  /** Pause before retrying unprocessed batch items; TransientError once the attempts are used up. */
  async backoff(attempt: number, op: string, pending: number): Promise<void> {
    if (attempt >= this.retry.attempts) {
      throw new TransientError(
        `ledger ${op}: ${pending} items still unprocessed after ${this.retry.attempts} attempts (table ${this.tableName} throttled)`,
      );
    }
    const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    await sleep(Math.random() * cap);
  }

  /** Run a conditional write: true if written, false if its condition failed. */
  async conditional(op: string, write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw this.wrap(op, error);
    }
  }

  async send<T>(op: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.wrap(op, error);
    }
  }

  /** Throttling and 5xx become TransientError (the caller retries the batch item); anything else keeps its cause. */
  wrap(op: string, error: unknown): Error {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const message = `ledger ${op} on table ${this.tableName} failed: ${detail}`;
    return isTransient(error)
      ? new TransientError(message, { cause: error })
      : new AutopatchError(message, { cause: error });
  }

  /** One item, strongly consistent. */
  async get(key: Key, op: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.send(op, () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return out.Item;
  }

  /**
   * Items by key, strongly consistent, in BatchGetItem chunks (unprocessed keys retried with
   * backoff). The keys must be unique (BatchGetItem rejects a request that names one twice).
   */
  async batchGet(
    op: string,
    keys: readonly Key[],
    projection: readonly string[],
  ): Promise<Record<string, unknown>[]> {
    const names = Object.fromEntries(projection.map((attribute, i) => [`#a${i}`, attribute]));
    const found: Record<string, unknown>[] = [];
    await mapLimit(chunk(keys, BATCH_GET_MAX), BATCH_CONCURRENCY, async (part) => {
      let pending: Key[] = part;
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 0) await this.backoff(attempt, op, pending.length);
        const out = await this.send(op, () =>
          this.doc.send(
            new BatchGetCommand({
              RequestItems: {
                [this.tableName]: {
                  Keys: pending,
                  ConsistentRead: true,
                  ProjectionExpression: Object.keys(names).join(', '),
                  ExpressionAttributeNames: names,
                },
              },
            }),
          ),
        );
        found.push(...(out.Responses?.[this.tableName] ?? []));
        pending = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
      }
    });
    return found;
  }

  /** Delete items by key, in BatchWriteItem chunks (unprocessed keys retried with backoff). */
  async batchDelete(op: string, keys: readonly Key[]): Promise<void> {
    const unique = [...new Map(keys.map((k) => [`${k.pk}\n${k.sk}`, k])).values()];
    await mapLimit(chunk(unique, BATCH_WRITE_MAX), BATCH_CONCURRENCY, async (part) => {
      let pending: Key[] = part;
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > 0) await this.backoff(attempt, op, pending.length);
        const out = await this.send(op, () =>
          this.doc.send(
            new BatchWriteCommand({
              RequestItems: { [this.tableName]: pending.map((Key) => ({ DeleteRequest: { Key } })) },
            }),
          ),
        );
        pending = (out.UnprocessedItems?.[this.tableName] ?? []).flatMap((r) =>
          r.DeleteRequest?.Key ? [r.DeleteRequest.Key as Key] : [],
        );
      }
    });
  }

  /** Every item of one partition, or of its sort keys starting with `prefix`. */
  async query(
    op: string,
    pk: string,
    options: { readonly prefix?: string; readonly consistent?: boolean } = {},
  ): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    const prefixed = options.prefix !== undefined;
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.send(op, () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: prefixed ? '#pk = :pk AND begins_with(#sk, :prefix)' : '#pk = :pk',
            ExpressionAttributeNames: prefixed ? { '#pk': 'pk', '#sk': 'sk' } : { '#pk': 'pk' },
            ExpressionAttributeValues: prefixed ? { ':pk': pk, ':prefix': options.prefix } : { ':pk': pk },
            ...(options.consistent === false ? {} : { ConsistentRead: true }),
            ExclusiveStartKey: startKey,
          }),
        ),
      );
      items.push(...(out.Items ?? []));
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return items;
  }
}
