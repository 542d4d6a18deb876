import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { accountClients, HOME_ACCOUNT_ENV } from '../../shared/accounts';
import { ConfigurationError } from '../../shared/errors';
import { FLEET_ENV, fleetSchema, PAUSE_PARAMETER_ENV } from '../../shared/fleet';
import { Ledger } from '../../shared/ledger';
import { formatProblems, issueProblems } from '../../triage/schema/issues';
import { type DeploySlotInput, type DeploySlotResult, takeDeploySlot } from '../deploy-slot';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const parsed = fleetSchema.safeParse(JSON.parse(process.env[FLEET_ENV] ?? '{}'));
if (!parsed.success)
  throw new ConfigurationError(`${FLEET_ENV}: ${formatProblems(issueProblems(parsed.error.issues))}`);
const deps = {
  ledger: new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  ssm: new SSMClient({}),
  ecsFor: (place: { account: string; region: string }) => accountClients().clientFor(ECSClient, place),
  settings: parsed.data,
  ...(process.env[PAUSE_PARAMETER_ENV] ? { pauseParameter: process.env[PAUSE_PARAMETER_ENV] } : {}),
  home: { account: process.env[HOME_ACCOUNT_ENV] ?? '', region: process.env.AWS_REGION ?? 'us-east-1' },
};

/** "Take a deployment slot": the fleet guardrails (pause switch, caps, stages) right before deploying. */
export const handler = async (event: DeploySlotInput): Promise<DeploySlotResult> => {
  const out = await takeDeploySlot(event, deps);
  logger.info('deployment slot', {
    service: event.service.key,
    executionName: event.executionName,
    verdict: out.verdict,
    stage: out.stage,
    reason: out.reason,
  });
  return out;
};
