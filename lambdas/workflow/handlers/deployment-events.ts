import { Logger } from '@aws-lambda-powertools/logger';
import { InvalidEventError } from '../../shared/errors';
import { deploymentEventSchema, type Handled, handleDeploymentEvent } from '../deployment-events';
import { executionEndedEventSchema, type ReleaseResult, releaseAbandonedLock } from '../execution-ended';
import { watchDeps } from './watch-deps';

const logger = new Logger({ serviceName: 'autopatch-deployment-events' });
const deps = watchDeps();

/**
 * EventBridge target for ECS Deployment State Change and CloudWatch Alarm State Change events (resume
 * the watching remediation), and for the state machine's own executions that ended ABORTED, TIMED_OUT
 * or FAILED (release a lock they may have left behind). Errors propagate, so EventBridge retries the
 * delivery (then its dead-letter queue).
 */
export const handler = async (event: unknown): Promise<Handled[] | ReleaseResult> => {
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
