import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { accountClients } from '../../shared/accounts';
import type { ServiceRef } from '../../shared/contracts';
import { Ledger } from '../../shared/ledger';
import { homeServiceClients, serviceClients } from '../clients';
import { WatchRegistry } from '../watch-registry';
import { requireEnv } from './env';

/**
 * What the two deployment watchers share (the Lambda that starts a watch and the one resumed by ECS
 * and alarm events): clients created once per execution environment. ECS, CloudWatch and CodeDeploy
 * are called in each service's own account and Region (`clientsFor`); the hub's own ones (home) are
 * the fallback the step logic's types ask for, and what a service in the hub's account gets anyway.
 */
export const watchDeps = () => {
  const env = requireEnv(['LEDGER_TABLE']);
  const dynamodb = new DynamoDBClient({});
  const clients = accountClients();
  return {
    ...homeServiceClients(clients),
    clientsFor: (service: Pick<ServiceRef, 'clusterArn'>) => serviceClients(service, clients),
    sfn: new SFNClient({}),
    ledger: new Ledger({ client: dynamodb, tableName: env.LEDGER_TABLE }),
    registry: new WatchRegistry({ client: dynamodb, tableName: env.LEDGER_TABLE }),
  };
};
