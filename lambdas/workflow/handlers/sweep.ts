import { Logger } from '@aws-lambda-powertools/logger';
import { SFNClient } from '@aws-sdk/client-sfn';
import { heartbeat } from '../deployment-events';
import { reconcile } from '../reconcile';
import { requireEnv } from './env';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-sweep' });
const deps = watchDeps();
const env = requireEnv(['STATE_MACHINE_ARN']);
const sfn = new SFNClient({});

/**
 * The scheduled sweep (every minute), the safety net under everything event-driven:
 * 1. the heartbeat: re-assess every deployment, bake and rollback a remediation waits on, from the
 *    APIs, so a lost event delays a decision by at most one sweep, a bake ends without any event, and
 *    a state that stays unreadable fails closed;
 * 2. the reconciler: release locks whose execution ended without releasing them (a fault on the way),
 *    start claims that never started, and list outcomes recorded but never announced.
 * Each part runs whatever the other did; a failure is the next minute's retry.
 */
export const handler = async () => {
  const counts: Record<string, number> = {};
  try {
    const handled = await heartbeat(deps);
    for (const h of handled) {
      counts[h.action] = (counts[h.action] ?? 0) + 1;
      if (h.action === 'resumed' || h.action === 'already-resumed')
        logger.info('watch decided', {
          service: h.serviceKey,
          status: h.result.status,
          reason: h.result.reason,
        });
      else if (h.action === 'unreadable')
        logger.warn('watch unreadable', { service: h.serviceKey, error: h.error });
    }
  } catch (error) {
    logger.error('heartbeat failed', { error });
  }
  const summary = await reconcile(
    { ledger: deps.ledger, sfn, stateMachineArn: env.STATE_MACHINE_ARN },
    new Date(),
  );
  for (const a of summary.actions) logger.warn('lock reconciled', { ...a });
  for (const o of summary.unannounced)
    logger.error('outcome never announced', {
      service: o.serviceKey,
      execution: o.executionName,
      outcome: o.outcome,
    });
  for (const e of summary.errors) logger.warn('reconcile error', e);
  logger.info('sweep', { ...counts, locks: summary.checked, reconciled: summary.actions.length });
  return {
    ...counts,
    locks: summary.checked,
    reconciled: summary.actions.length,
    errors: summary.errors.length,
  };
};
