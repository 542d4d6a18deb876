import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECRClient } from '@aws-sdk/client-ecr';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import { SFNClient } from '@aws-sdk/client-sfn';
import { RescanRegistry } from '../rescan-registry';
import type { RescanWaitDeps } from '../verify-rescan';
import { requireEnv } from './env';

/**
 * What the three Lambdas that answer a rescan wait share (the verify step that registers it, the
 * events Lambda the Inspector2 Scan event resumes, the sweep): clients created once per execution
 * environment.
 */
export const rescanDeps = (): RescanWaitDeps => {
  const env = requireEnv(['LEDGER_TABLE']);
  return {
    inspector: new Inspector2Client({}),
    ecr: new ECRClient({}),
    sfn: new SFNClient({}),
    registry: new RescanRegistry({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  };
};
