import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { accountClients } from '../../shared/accounts';
import { imageClients } from '../clients';
import { RescanRegistry } from '../rescan-registry';
import type { RescanWaitDeps } from '../verify-rescan';
import { requireEnv } from './env';

/**
 * What the three Lambdas that answer a rescan wait share (the verify step that registers it, the
 * events Lambda the Inspector2 Scan event resumes, the sweep): clients created once per execution
 * environment. Inspector and ECR are read in each image's own registry account and Region
 * (`clientsFor`: the finding's own account); the hub's own clients are the fallback.
 */
export const rescanDeps = (): RescanWaitDeps => {
  const env = requireEnv(['LEDGER_TABLE']);
  const clients = accountClients();
  return {
    ...imageClients({ registry: '', repositoryUri: '' }, clients),
    clientsFor: (image) => imageClients(image, clients),
    sfn: new SFNClient({}),
    registry: new RescanRegistry({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  };
};
