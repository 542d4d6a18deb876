import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Ledger } from '../../shared/ledger';
import {
  type AcquireLockInput,
  type AcquireLockOutput,
  acquireLock,
  type TakeFindingsInput,
  takeGatheredFindings,
} from '../lock';
import { requireEnv } from './env';

const env = requireEnv(['LEDGER_TABLE']);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ledger = new Ledger({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE });

/**
 * The service lock: "Acquire the service lock", and "Take the findings gathered meanwhile" (step
 * `take-findings`), which seals it. One function for both: they are one ledger item's transitions.
 */
export const handler = async (
  event: AcquireLockInput | TakeFindingsInput,
): Promise<AcquireLockOutput | Awaited<ReturnType<typeof takeGatheredFindings>>> => {
  logger.appendKeys({ executionName: event.executionName, serviceKey: event.serviceKey });
  if ('step' in event && event.step === 'take-findings') {
    const state = await takeGatheredFindings(ledger, event);
    logger.info(state.gathering ? 'findings still arriving' : 'findings taken', {
      images: state.images.length,
      cves: new Set(state.images.flatMap((i) => i.cves)).size,
      findings: state.findingsCount,
    });
    return state;
  }
  const result = await acquireLock(ledger, event as AcquireLockInput);
  logger.info('lock', { ...result });
  return result;
};
