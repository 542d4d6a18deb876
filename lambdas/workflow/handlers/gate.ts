import { Logger } from '@aws-lambda-powertools/logger';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { ECSClient } from '@aws-sdk/client-ecs';
import { checkGate, type GateInput, type GateResult } from '../gate';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const clients = {
  ecs: new ECSClient({}),
  cloudwatch: new CloudWatchClient({}),
  codedeploy: new CodeDeployClient({}),
};

/** "Check the service can be watched" / "Check the alarms before deploying". */
export const handler = async (event: GateInput): Promise<GateResult> => {
  const out = await checkGate(event, clients);
  logger.info('gate', {
    service: event.service.key,
    stage: event.stage,
    verdict: out.verdict,
    reason: out.reason,
  });
  return out;
};
