import { Logger } from '@aws-lambda-powertools/logger';
import { serviceClients } from '../clients';
import {
  type RegisterTaskDefinitionInput,
  type RegisterTaskDefinitionOutput,
  registerPatchedTaskDefinition,
} from '../register-task-definition';

const logger = new Logger({ serviceName: 'autopatch-workflow' });

/** "Register the patched task definition". */
export const handler = async (event: RegisterTaskDefinitionInput): Promise<RegisterTaskDefinitionOutput> => {
  // Registered in the service's own account and Region (the spoke role's outside the hub's account).
  const out = await registerPatchedTaskDefinition(event, serviceClients(event.service).ecs);
  logger.info('registered', { service: event.service.key, executionName: event.executionName, ...out });
  return out;
};
