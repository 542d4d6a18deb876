import { Logger } from '@aws-lambda-powertools/logger';
import { serviceClients } from '../clients';
import {
  deployWithEcs,
  type EcsDeployInput,
  type EcsRollbackInput,
  rollBackEcsDeployment,
} from '../ecs-deploy';

const logger = new Logger({ serviceName: 'autopatch-workflow' });

/**
 * "Deploy the patched revision in the service's account" / "Roll back the deployment in the
 * service's account" (step 'roll-back'), with that account's and Region's ECS client (../ecs-deploy.ts).
 */
export const handler = async (
  event: (EcsDeployInput & { step?: 'deploy' }) | (EcsRollbackInput & { step: 'roll-back' }),
): Promise<unknown> => {
  const { ecs } = serviceClients(event.service);
  if (event.step === 'roll-back') {
    const out = await rollBackEcsDeployment(event, ecs);
    logger.warn('rollback requested', { service: event.service.key, deploymentArn: event.deploymentArn });
    return out;
  }
  const out = await deployWithEcs(event, ecs);
  logger.info('deployment started', { service: event.service.key, ...out });
  return out;
};
