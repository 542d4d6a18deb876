import { Logger } from '@aws-lambda-powertools/logger';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SFNClient } from '@aws-sdk/client-sfn';
import { Ledger } from '../../shared/ledger';
import { startWatch, type WatchDeploymentInput } from '../watch-deployment';
import { WatchRegistry } from '../watch-registry';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const dynamodb = new DynamoDBClient({});
const deps = {
  ecs: new ECSClient({}),
  cloudwatch: new CloudWatchClient({}),
  sfn: new SFNClient({}),
  ledger: new Ledger({ client: dynamodb, tableName: env.LEDGER_TABLE }),
  registry: new WatchRegistry({ client: dynamodb, tableName: env.LEDGER_TABLE }),
};

/** "Watch the deployment through the bake time" (invoked with a task token; returns at once). */
export const handler = async (event: WatchDeploymentInput) => {
  const out = await startWatch(event, deps);
  logger.info('watching', { executionName: event.executionName, service: event.service.key, ...out });
  return out;
};
