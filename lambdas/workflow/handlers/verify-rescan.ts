import { Logger } from '@aws-lambda-powertools/logger';
import { type RescanWaitInput, startRescanWait } from '../verify-rescan';
import { rescanDeps } from './rescan-deps';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const deps = rescanDeps();

/**
 * "Verify the patched image by rescan" (invoked with a task token; returns at once): registers the
 * wait and answers it itself when the verdict is already known. Errors that are no verdict propagate
 * by name (the state's Retry and the Map's Catch handle them).
 */
export const handler = async (event: RescanWaitInput) => {
  logger.appendKeys({
    executionName: event.executionName,
    repository: event.image.repository,
    tag: event.targetTag,
  });
  const out = await startRescanWait(event, deps);
  logger.info(out.decided ? 'rescan decided at once' : 'waiting for the rescan', { ...out });
  return out;
};
