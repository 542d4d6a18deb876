import { Logger } from '@aws-lambda-powertools/logger';
import { ECSClient } from '@aws-sdk/client-ecs';
import {
  type RegisterTaskDefinitionInput,
  type RegisterTaskDefinitionOutput,
  registerPatchedTaskDefinition,
} from '../register-task-definition';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ecs = new ECSClient({});

/** "Register the patched task definition". */
export const handler = async (event: RegisterTaskDefinitionInput): Promise<RegisterTaskDefinitionOutput> => {
  const out = await registerPatchedTaskDefinition(event, ecs);
  logger.info('registered', { service: event.service.key, executionName: event.executionName, ...out });
  return out;
};
