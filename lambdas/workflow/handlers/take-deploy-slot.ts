import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SSMClient } from '@aws-sdk/client-ssm';
import { accountClients, HOME_ACCOUNT_ENV, type Place } from '../../shared/accounts';
import { usesOrganizationalUnits } from '../../shared/fleet';
import { Ledger } from '../../shared/ledger';
import { OrganizationalUnitResolver } from '../../shared/org-units';
import { organizationsApi } from '../../shared/organizations-api';
import {
  type DeploySlotInput,
  type DeploySlotResult,
  type SlotWaitInput,
  takeDeploySlot,
  waitForDeploySlot,
} from '../deploy-slot';
import { requireEnv } from './env';
import { fleetEnv } from './fleet-env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const fleet = fleetEnv();
const deps = {
  ledger: new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  ssm: new SSMClient({}),
  sfn: new SFNClient({}),
  ecsFor: (place: Place) => accountClients().clientFor(ECSClient, place),
  ...fleet,
  home: { account: process.env[HOME_ACCOUNT_ENV] ?? '', region: process.env.AWS_REGION ?? 'us-east-1' },
  // Stages by organizational unit: fleet.accountOUs, else AWS Organizations (ListParents, granted
  // only when a stage names OUs), kept for the container's life (an hour per answer).
  ...(usesOrganizationalUnits(fleet.settings)
    ? {
        organizationalUnits: new OrganizationalUnitResolver({
          ...(fleet.settings.accountOUs !== undefined ? { configured: fleet.settings.accountOUs } : {}),
          api: organizationsApi(),
        }),
      }
    : {}),
};

/**
 * "Take a deployment slot" (the fleet guardrails right before deploying: pause switch, caps, stages)
 * and, with `step: 'wait'`, "Wait for a deployment slot" (registers the run's task token).
 */
export const handler = async (
  event: (DeploySlotInput & { readonly step?: 'take' }) | (SlotWaitInput & { readonly step: 'wait' }),
): Promise<DeploySlotResult | { readonly answered: boolean }> => {
  if (event.step === 'wait') {
    const out = await waitForDeploySlot(event, deps);
    logger.info('waiting for a deployment slot', {
      service: event.service.key,
      executionName: event.executionName,
      answeredAtOnce: out.answered,
    });
    return out;
  }
  const out = await takeDeploySlot(event, deps);
  logger.info('deployment slot', {
    service: event.service.key,
    executionName: event.executionName,
    verdict: out.verdict,
    stage: out.stage,
    reason: out.reason,
  });
  // Placed last, not by a match: on-call should give the account's OUs (fleet.accountOUs) or the permission.
  if (out.stageReason !== undefined)
    logger.warn('stage unknown: deploying after every stage', {
      service: event.service.key,
      executionName: event.executionName,
      stageReason: out.stageReason,
    });
  return out;
};
