import { Logger } from '@aws-lambda-powertools/logger';
import { ECSClient } from '@aws-sdk/client-ecs';
import { type RestoreInput, restoreLastGoodRevision } from '../restore';
import type { RecoveryResult } from '../state';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ecs = new ECSClient({});

/** "Put the service back on its last good revision". */
export const handler = async (event: RestoreInput): Promise<RecoveryResult> => {
  const out = await restoreLastGoodRevision(event, ecs);
  logger.warn('restored', { service: event.service.key, ...out });
  return out;
};
