import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import type { ServiceRef } from '../../shared/contracts';
import { Ledger } from '../../shared/ledger';
import { serviceClients } from '../clients';
import {
  type AcquireLockInput,
  acquireLock,
  type TakeFindingsInput,
  type TakeUrgentInput,
  takeGatheredFindings,
  takeUrgentFindings,
  type WaitForWindowInput,
  type WindowResult,
  waitForWindow,
} from '../lock';
import { runningImages } from '../running-images';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ledger = new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE });
// A sealed request is re-resolved against the digests the service's containers run now (the
// construct sets RESOLVE_RUNNING_IMAGES=true and grants ecs:DescribeServices / DescribeTaskDefinition);
// without it, against the ledger's history of the service's Patched runs only.
// The service is read in its own account and Region (the spoke role's outside the hub's account).
const running =
  process.env.RESOLVE_RUNNING_IMAGES === 'true'
    ? (service: ServiceRef) => runningImages(serviceClients(service).ecs, service)
    : undefined;
const sfn = new SFNClient({});

/** Answer the window wait; false when it was answered already (the sweep, triage and this race). */
const resume = async (token: string, result: WindowResult): Promise<boolean> => {
  try {
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(result) }));
    return true;
  } catch (error) {
    if (error instanceof Error && ['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken'].includes(error.name))
      return false;
    throw error;
  }
};

/**
 * The service lock: "Acquire the service lock", and "Take the findings gathered meanwhile" (step
 * `take-findings`), which seals it. One function for both: they are one ledger item's transitions.
 */
export const handler = async (
  event: AcquireLockInput | TakeFindingsInput | WaitForWindowInput | TakeUrgentInput,
): Promise<unknown> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.serviceKey });
  if ('step' in event && event.step === 'wait-for-window') {
    const out = await waitForWindow({ ledger, resume }, event);
    logger.info('maintenance window', { ...out });
    return out;
  }
  if ('step' in event && event.step === 'take-urgent') {
    const state = await takeUrgentFindings(ledger, event);
    logger.info('pre-empted', { ...state.preemption, images: state.images.length });
    return state;
  }
  if ('step' in event && event.step === 'take-findings') {
    const state = await takeGatheredFindings(ledger, event, new Date(), running ? { running } : {});
    logger.info(state.gathering ? 'findings still arriving' : 'findings taken', {
      images: state.images.length,
      cves: new Set(state.images.flatMap((i) => i.cves)).size,
      findings: state.findingsCount,
      ...(state.resolution ? { resolution: state.resolution.reason } : {}),
    });
    return state;
  }
  const result = await acquireLock(ledger, event as AcquireLockInput);
  logger.info('lock', { ...result });
  return result;
};
