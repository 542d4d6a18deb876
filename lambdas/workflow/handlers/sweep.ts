import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { ACCOUNT_ALIASES_ENV, parseAccountAliases } from '../../shared/config';
import { METRICS } from '../../shared/metrics';
import { accountOf, regionOf } from '../aws';
import { DeadlineMarks, watchDeadline } from '../deadlines';
import { wakeDeploySlots } from '../deploy-slot';
import { heartbeat } from '../deployment-events';
import { announceLate } from '../late-announcement';
import { DEFAULT_NOTIFY_DIGEST_MINUTES, notifyDigestMinutes, sendDigests } from '../notify-digest';
import { reconcile } from '../reconcile';
import { sweepRescans } from '../verify-rescan';
import { requireEnv } from './env';
import { fleetEnv } from './fleet-env';
import { rescanDeps } from './rescan-deps';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-sweep' });
const deps = watchDeps();
const rescan = rescanDeps();
const env = requireEnv(['STATE_MACHINE_ARN', 'TOPIC_ARN', 'LEDGER_TABLE']);
const sfn = new SFNClient({});
const sns = new SNSClient({});
const events = new EventBridgeClient({});
const eventBusName = process.env.EVENT_BUS_NAME ?? 'default';
const fleet = { ...fleetEnv(), ssm: new SSMClient({}) };
const accountAliases = parseAccountAliases(process.env[ACCOUNT_ALIASES_ENV]);
const announce = announceLate({ sns, events, topicArn: env.TOPIC_ARN, eventBusName });
const digestMinutes = notifyDigestMinutes(process.env.NOTIFY_DIGEST_MINUTES, DEFAULT_NOTIFY_DIGEST_MINUTES);
const deadlines = {
  marks: new DeadlineMarks({ client: new DynamoDBClient({}), tableName: env.LEDGER_TABLE }),
  metrics: new Metrics({ namespace: METRICS.namespace, serviceName: METRICS.workflowService }),
  sns,
  topicArn: env.TOPIC_ARN,
};

/**
 * The scheduled sweep (every minute), the safety net under everything event-driven:
 * 1. the heartbeat: re-assess every deployment, bake and rollback a remediation waits on, from the
 *    APIs, so a lost event delays a decision by at most one sweep, a bake ends without any event, and
 *    a state that stays unreadable fails closed;
 * 2. the rescan heartbeat: re-assess every rescan wait (a bounded number a run), so a lost Inspector2
 *    Scan event delays a verdict by at most one sweep, and answer RescanTimedOut past the deadline;
 * 3. the reconciler: release locks whose execution ended without releasing them (a fault on the way),
 *    start claims that never started, and announce outcomes recorded but never announced;
 * 4. the notify digests: send each service's `notify` decisions, once per period, as one message;
 * 5. the fleet guardrails: let the runs waiting for a deployment slot go once the pause switch is
 *    off and the fleet has room for them (the reconciler gives back slots of runs that ended).
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
  try {
    for (const h of await sweepRescans(rescan)) {
      const action = `rescan-${h.action}`;
      counts[action] = (counts[action] ?? 0) + 1;
      if (h.action === 'answered' || h.action === 'already-answered')
        logger.info('rescan decided', {
          digest: h.digest,
          execution: h.executionName,
          verdict: h.verdict.verdict,
          ...(h.verdict.verdict === 'failed' ? { error: h.verdict.error } : {}),
        });
      else if (h.action === 'unreadable')
        logger.warn('rescan unreadable', { digest: h.digest, execution: h.executionName, error: h.error });
    }
  } catch (error) {
    logger.error('rescan sweep failed', { error });
  }
  const summary = await reconcile(
    {
      ledger: deps.ledger,
      sfn,
      stateMachineArn: env.STATE_MACHINE_ARN,
      announce,
      // Approaching and missed deadlines: a metric per severity, a notification when missed.
      watchDeadline: (lock, now) => watchDeadline(deadlines, lock, now),
    },
    new Date(),
  );
  for (const a of summary.actions) logger.warn('lock reconciled', { ...a });
  for (const o of summary.unannounced)
    logger.warn('outcome announced late', {
      service: o.serviceKey,
      execution: o.executionName,
      outcome: o.outcome,
    });
  for (const d of summary.deadlines ?? []) logger.warn(`deadline ${d.state}`, { ...d });
  for (const e of summary.errors) logger.warn('reconcile error', e);
  try {
    for (const d of await sendDigests(
      {
        ledger: deps.ledger,
        sns,
        events,
        topicArn: env.TOPIC_ARN,
        eventBusName,
        periodMinutes: digestMinutes,
        home: { account: accountOf(env.STATE_MACHINE_ARN), region: regionOf(env.STATE_MACHINE_ARN) },
        accountAliases,
      },
      new Date(),
    )) {
      const action = `digest-${d.action}`;
      counts[action] = (counts[action] ?? 0) + 1;
      if (d.action === 'sent') logger.info('notify digest sent', { scope: d.scope, notices: d.notices });
      else logger.warn('notify digest not sent; retried next sweep', { scope: d.scope, error: d.error });
    }
  } catch (error) {
    logger.error('notify digests failed', { error });
  }
  try {
    const woken = await wakeDeploySlots({ ...fleet, ledger: deps.ledger, sfn });
    if (woken.length > 0) {
      counts['slot-woken'] = woken.length;
      logger.info('deployment slots: runs let go', { executions: woken });
    }
  } catch (error) {
    logger.error('waking the runs waiting for a deployment slot failed', { error });
  }
  for (const name of summary.slotsReleased ?? [])
    logger.warn('deployment slot given back for an ended run', { execution: name });
  logger.info('sweep', {
    ...counts,
    locks: summary.checked,
    reconciled: summary.actions.length,
    reannounced: summary.reannounced.length,
  });
  return {
    ...counts,
    locks: summary.checked,
    reconciled: summary.actions.length,
    errors: summary.errors.length,
  };
};
