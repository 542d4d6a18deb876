import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER } from '../contracts';
import { AutopatchError } from '../errors';
import type { Key, LedgerTable } from './table';

/**
 * Task tokens. Items: `TOKEN#<executionName>` / `approval|watch`: the task token a paused execution
 * waits on (TTL 30 days).
 */

export type TaskTokenPurpose = 'approval' | 'watch' | 'window' | 'slot';

const TOKEN_TTL_DAYS = 30;

const tokenKey = (executionName: string, purpose: TaskTokenPurpose): Key => ({
  pk: `TOKEN#${executionName}`,
  sk: purpose,
});

export class TaskTokens {
  constructor(private readonly table: LedgerTable) {}

  /** Store the token a paused execution waits on. A new wait replaces the previous token of the same purpose. */
  async putTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
    token: string,
    serviceKey: string,
  ): Promise<void> {
    const ok = await this.table.conditional('putTaskToken', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            ...tokenKey(executionName, purpose),
            token,
            serviceKey,
            createdAt: this.table.now().toISOString(),
            [LEDGER.ttlAttribute]: this.table.ttl(TOKEN_TTL_DAYS),
          },
          // Execution names embed the service, so a clash means a bug somewhere: refuse to cross wires.
          ConditionExpression: 'attribute_not_exists(pk) OR serviceKey = :serviceKey',
          ExpressionAttributeValues: { ':serviceKey': serviceKey },
        }),
      ),
    );
    if (!ok) {
      throw new AutopatchError(
        `ledger putTaskToken: a ${purpose} token for ${executionName} already belongs to another service than ${serviceKey}`,
      );
    }
  }

  /** The stored token, unless it expired (DynamoDB deletes expired items only eventually). */
  async getTaskToken(
    executionName: string,
    purpose: TaskTokenPurpose,
  ): Promise<{ token: string; serviceKey: string } | undefined> {
    const item = (await this.table.get(tokenKey(executionName, purpose), 'getTaskToken')) as
      | { token: string; serviceKey: string; expiresAt?: number }
      | undefined;
    if (!item) return undefined;
    if (item.expiresAt !== undefined && item.expiresAt * 1000 <= this.table.now().getTime()) return undefined;
    return { token: item.token, serviceKey: item.serviceKey };
  }

  /** Idempotent. */
  async deleteTaskToken(executionName: string, purpose: TaskTokenPurpose): Promise<void> {
    await this.table.send('deleteTaskToken', () =>
      this.table.doc.send(
        new DeleteCommand({ TableName: this.table.tableName, Key: tokenKey(executionName, purpose) }),
      ),
    );
  }
}
