import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * The document client every reader and writer of the ledger table uses: created from the injected
 * client (sharing its connection pool and middleware), with undefined values left out of items.
 * No commands here, so importing it grants nothing a role does not use.
 */
export const ledgerDocumentClient = (client: DynamoDBClient): DynamoDBDocumentClient =>
  DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
