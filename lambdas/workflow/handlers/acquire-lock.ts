import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Ledger } from '../../shared/ledger';
import { type AcquireLockInput, type AcquireLockOutput, acquireLock } from '../lock';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ledger = new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE });

/** "Acquire the service lock". */
export const handler = async (event: AcquireLockInput): Promise<AcquireLockOutput> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.serviceKey });
  const result = await acquireLock(ledger, event);
  logger.info('lock', { ...result });
  return result;
};
