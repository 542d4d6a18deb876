import { Logger } from '@aws-lambda-powertools/logger';
import { InvalidEventError } from '../../shared/errors';
import { deploymentEventSchema, type Handled, handleDeploymentEvent } from '../deployment-events';
import { executionEndedEventSchema, type ReleaseResult, releaseAbandonedLock } from '../execution-ended';
import { inspectorScanEventSchema, type RescanHandled, resumeRescanWaits } from '../verify-rescan';
import { rescanDeps } from './rescan-deps';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-deployment-events' });
const deps = watchDeps();
const rescan = rescanDeps();

/**
 * EventBridge target for ECS Deployment State Change and CloudWatch Alarm State Change events (resume
 * the watching remediation), for Inspector2 Scan events (answer the waits for a rescan of the digest), and for the state machine's own executions that ended ABORTED, TIMED_OUT
 * or FAILED (release a lock they may have left behind). Errors propagate, so EventBridge retries the
 * delivery (then its dead-letter queue).
 */
export const handler = async (event: unknown): Promise<Handled[] | ReleaseResult | RescanHandled[]> => {
  const scan = inspectorScanEventSchema.safeParse(event);
  if (scan.success) {
    const handled = await resumeRescanWaits(scan.data, rescan);
    logger.info('scan event', { digest: scan.data.detail['image-digest'], handled });
    return handled;
  }
  const ended = executionEndedEventSchema.safeParse(event);
  if (ended.success) {
    const result = await releaseAbandonedLock(ended.data, deps);
    logger.info('execution ended', {
      execution: ended.data.detail.executionArn,
      status: ended.data.detail.status,
      result,
    });
    return result;
  }
  const parsed = deploymentEventSchema.safeParse(event);
  if (!parsed.success) {
    // A rule pattern mismatch, not worth retrying: log it and drop it.
    logger.error('unexpected event', { error: new InvalidEventError(parsed.error.message), event });
    return [];
  }
  const handled = await handleDeploymentEvent(parsed.data, deps);
  logger.info('handled', { source: parsed.data.source, handled });
  return handled;
};
