import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SNSClient } from '@aws-sdk/client-sns';
import { ACCOUNT_ALIASES_ENV, parseAccountAliases } from '../../shared/config';
import { Ledger } from '../../shared/ledger';
import { type RequestApprovalInput, requestApproval } from '../request-approval';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE', 'TOPIC_ARN']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const deps = {
  ledger: new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  sns: new SNSClient({}),
  topicArn: env.TOPIC_ARN,
  tableName: env.LEDGER_TABLE,
  ...(process.env.ACCOUNT_ALIAS ? { accountAlias: process.env.ACCOUNT_ALIAS } : {}),
  accountAliases: parseAccountAliases(process.env[ACCOUNT_ALIASES_ENV]),
};

/** "Wait for approval" (invoked with a task token; returns at once). */
export const handler = async (event: RequestApprovalInput): Promise<void> => {
  await requestApproval(event, deps);
  logger.info('approval requested', {
    executionName: event.executionName,
    service: event.request.service.key,
  });
};
