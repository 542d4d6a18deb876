import { Logger } from '@aws-lambda-powertools/logger';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { ECSClient } from '@aws-sdk/client-ecs';
import { type RestoreInput, restoreLastGoodRevision } from '../restore';
import type { RecoveryResult } from '../state';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ecs = new ECSClient({});
const codedeploy = new CodeDeployClient({});

/** "Put the service back on its last good revision". */
export const handler = async (event: RestoreInput): Promise<RecoveryResult> => {
  const out = await restoreLastGoodRevision(event, ecs, codedeploy);
  logger.warn('restored', { service: event.service.key, ...out });
  return out;
};
