import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../../shared/contracts';
import { Ledger } from '../../shared/ledger';
import {
  type AcquireLockInput,
  type AcquireLockOutput,
  acquireLock,
  type TakeFindingsInput,
  takeGatheredFindings,
} from '../lock';
import { runningImages } from '../running-images';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ledger = new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE });
// A sealed request is re-resolved against the digests the service's containers run now (the
// construct sets RESOLVE_RUNNING_IMAGES=true and grants ecs:DescribeServices / DescribeTaskDefinition);
// without it, against the ledger's history of the service's Patched runs only.
const ecs = process.env.RESOLVE_RUNNING_IMAGES === 'true' ? new ECSClient({}) : undefined;
const running = ecs ? (service: ServiceRef) => runningImages(ecs, service) : undefined;

/**
 * The service lock: "Acquire the service lock", and "Take the findings gathered meanwhile" (step
 * `take-findings`), which seals it. One function for both: they are one ledger item's transitions.
 */
export const handler = async (
  event: AcquireLockInput | TakeFindingsInput,
): Promise<AcquireLockOutput | Awaited<ReturnType<typeof takeGatheredFindings>>> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.serviceKey });
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
