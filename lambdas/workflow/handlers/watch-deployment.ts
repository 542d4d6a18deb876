import { Logger } from '@aws-lambda-powertools/logger';
import { startWatch, type WatchDeploymentInput } from '../watch-deployment';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const deps = watchDeps();

/** "Watch the deployment through the bake time" (invoked with a task token; returns at once). */
export const handler = async (event: WatchDeploymentInput) => {
  // The service is watched in its own account and Region (the spoke role's outside the hub's account).
  const out = await startWatch(event, { ...deps, ...deps.clientsFor(event.service) });
  logger.info('watching', { executionName: event.executionName, service: event.service.key, ...out });
  return out;
};
