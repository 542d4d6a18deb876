import { Logger } from '@aws-lambda-powertools/logger';
import { serviceClients } from '../clients';
import {
  type CodeDeployDeployInput,
  type CodeDeployDeployResult,
  deployWithCodeDeploy,
} from '../codedeploy/deploy';

const logger = new Logger({ serviceName: 'autopatch-workflow' });

/** "Deploy the patched revision with CodeDeploy". */
export const handler = async (event: CodeDeployDeployInput): Promise<CodeDeployDeployResult> => {
  // The clients of the service's own account and Region (the spoke role's outside the hub's account).
  const out = await deployWithCodeDeploy(event, serviceClients(event.service));
  logger.info('codedeploy deployment started', { service: event.service.key, ...out });
  return out;
};
