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
 * "Deploy the patched revision" / "Roll back the deployment" (step 'roll-back') for a service in
 * another account or Region, with that account's and Region's ECS client. Not wired yet: see
 * ../ecs-deploy.ts.
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
