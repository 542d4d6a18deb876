import { Logger } from '@aws-lambda-powertools/logger';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { ECSClient } from '@aws-sdk/client-ecs';
import {
  type CodeDeployDeployInput,
  type CodeDeployDeployResult,
  deployWithCodeDeploy,
} from '../codedeploy/deploy';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const clients = { ecs: new ECSClient({}), codedeploy: new CodeDeployClient({}) };

/** "Deploy the patched revision with CodeDeploy". */
export const handler = async (event: CodeDeployDeployInput): Promise<CodeDeployDeployResult> => {
  const out = await deployWithCodeDeploy(event, clients);
  logger.info('codedeploy deployment started', { service: event.service.key, ...out });
  return out;
};
