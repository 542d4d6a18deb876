import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Ledger } from '../../shared/ledger';
import { type FinishInput, type FinishResult, finish } from '../finish';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE', 'TOPIC_ARN']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const deps = {
  ledger: new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  sfn: new SFNClient({}),
  ssm: new SSMClient({}),
  events: new EventBridgeClient({}),
  sns: new SNSClient({}),
  topicArn: env.TOPIC_ARN,
  eventBusName: process.env.EVENT_BUS_NAME ?? 'default',
};

/** "Record the outcome and release the lock" (and "Release the lock anyway" with releaseOnly). */
export const handler = async (event: FinishInput): Promise<FinishResult> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.state.service.key });
  const result = await finish(event, deps);
  logger.info('finished', {
    outcome: result.summary.outcome,
    next: result.summary.next,
    releaseOnly: event.releaseOnly,
  });
  return result;
};
