import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SFNClient } from '@aws-sdk/client-sfn';
import { Ledger } from '../../shared/ledger';
import { WatchRegistry } from '../watch-registry';
import { requireEnv } from './env';

/**
 * What the two deployment watchers share (the Lambda that starts a watch and the one resumed by ECS
 * and alarm events): clients created once per execution environment.
 */
export const watchDeps = () => {
  const env = requireEnv(['LEDGER_TABLE']);
  const dynamodb = new DynamoDBClient({});
  return {
    ecs: new ECSClient({}),
    cloudwatch: new CloudWatchClient({}),
    codedeploy: new CodeDeployClient({}),
    sfn: new SFNClient({}),
    ledger: new Ledger({ client: dynamodb, tableName: env.LEDGER_TABLE }),
    registry: new WatchRegistry({ client: dynamodb, tableName: env.LEDGER_TABLE }),
  };
};
