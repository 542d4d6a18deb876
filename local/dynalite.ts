import type { AddressInfo } from 'node:net';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';

export interface LocalDynamo {
  /** A client bound to the local server only: fake credentials, loopback endpoint, few retries. */
  readonly client: DynamoDBClient;
  /** The ledger table, created empty (pk S, sk S, on demand). */
  readonly tableName: string;
  /** `http://127.0.0.1:<port>`, for code that builds its own client. */
  readonly endpoint: string;
  /** Create another empty table with the ledger's key schema (isolation between test groups). */
  createTable(name: string): Promise<void>;
  /** Close the client and the server. */
  stop(): Promise<void>;
}

const createLedgerTable = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  // createTableMs: 0 still passes through CREATING on the next tick; wait for ACTIVE.
  await waitUntilTableExists(
    { client, maxWaitTime: 10, minDelay: 0.01, maxDelay: 0.05 },
    { TableName: tableName },
  );
  const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
  if (Table?.TableStatus !== 'ACTIVE') throw new Error(`table ${tableName} is ${Table?.TableStatus}`);
};

/**
 * Start dynalite in this process, in memory, on a free loopback port, with the ledger table created.
 * Call once per test file (beforeAll) and `stop()` in afterAll.
 */
export const startDynalite = async (options: { tableName?: string } = {}): Promise<LocalDynamo> => {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Port 0: the OS picks a free port, so test files can run in parallel.
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' },
    // Fail fast: against a local server a retry only hides a bug.
    maxAttempts: 2,
  });
  const stop = async (): Promise<void> => {
    client.destroy();
    // The SDK keeps sockets alive; without this, close() waits for them to time out.
    server.closeAllConnections();
    await new Promise<void>((resolve, reject) =>
      server.close((error) => (error ? reject(error) : resolve())),
    );
  };
  const tableName = options.tableName ?? 'autopatch-ledger';
  try {
    await createLedgerTable(client, tableName);
  } catch (error) {
    await stop();
    throw error;
  }
  return { client, tableName, endpoint, createTable: (name) => createLedgerTable(client, name), stop };
};
