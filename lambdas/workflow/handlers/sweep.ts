import { Logger } from '@aws-lambda-powertools/logger';
import { heartbeat } from '../deployment-events';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-sweep' });
const deps = watchDeps();

/**
 * The scheduled sweep (every minute): the safety net under the event-driven waits. It re-assesses
 * every deployment, bake and rollback a remediation waits on from the APIs, so a lost EventBridge
 * event delays a decision by at most one sweep, a bake ends without any event, and a state that stays
 * unreadable fails closed.
 */
export const handler = async () => {
  const handled = await heartbeat(deps);
  const counts: Record<string, number> = {};
  for (const h of handled) counts[h.action] = (counts[h.action] ?? 0) + 1;
  for (const h of handled) {
    if (h.action === 'resumed' || h.action === 'already-resumed')
      logger.info('watch decided', {
        service: h.serviceKey,
        status: h.result.status,
        reason: h.result.reason,
      });
    else if (h.action === 'unreadable')
      logger.warn('watch unreadable', { service: h.serviceKey, error: h.error });
  }
  logger.info('sweep', { watches: handled.length, ...counts });
  return { watches: handled.length, ...counts };
};
