import { Logger } from '@aws-lambda-powertools/logger';
import { serviceClients } from '../clients';
import { checkGate, type GateInput, type GateResult } from '../gate';

const logger = new Logger({ serviceName: 'autopatch-workflow' });

/** "Check the service can be watched" / "Check the alarms before deploying". */
export const handler = async (event: GateInput): Promise<GateResult> => {
  // The clients of the service's own account and Region (the spoke role's outside the hub's account).
  const out = await checkGate(event, serviceClients(event.service));
  logger.info('gate', {
    service: event.service.key,
    stage: event.stage,
    verdict: out.verdict,
    reason: out.reason,
  });
  return out;
};
