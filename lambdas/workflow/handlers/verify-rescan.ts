import { Logger } from '@aws-lambda-powertools/logger';
import { ECRClient } from '@aws-sdk/client-ecr';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import type { PatchedImage } from '../state';
import { type VerifyRescanInput, verifyRescan } from '../verify-rescan';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const deps = { inspector: new Inspector2Client({}), ecr: new ECRClient({}) };

/** "Verify the patched image by rescan". Errors are the workflow's contract: they propagate by name. */
export const handler = async (event: VerifyRescanInput): Promise<PatchedImage> => {
  logger.appendKeys({
    repository: event.image.repository,
    tag: event.targetTag,
    // Whether an Inspector2 Scan event resumed this check (it counts as evidence of the scan).
    scanEvent: event.scanEvent !== undefined,
  });
  try {
    const verified = await verifyRescan(event, deps);
    logger.info('verified', { newDigest: verified.newDigest, cvesClosed: verified.cvesClosed });
    return verified;
  } catch (error) {
    logger.info('not verified', { error: (error as Error).name, message: (error as Error).message });
    throw error;
  }
};
