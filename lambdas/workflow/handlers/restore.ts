import { Logger } from '@aws-lambda-powertools/logger';
import { serviceClients } from '../clients';
import { type RestoreInput, restoreLastGoodRevision } from '../restore';
import type { RecoveryResult } from '../state';

const logger = new Logger({ serviceName: 'autopatch-workflow' });

/** "Put the service back on its last good revision". */
export const handler = async (event: RestoreInput): Promise<RecoveryResult> => {
  // The service's own account and Region (the spoke role's outside the hub's account).
  const { ecs, codedeploy } = serviceClients(event.service);
  const out = await restoreLastGoodRevision(event, ecs, codedeploy);
  logger.warn('restored', { service: event.service.key, ...out });
  return out;
};
