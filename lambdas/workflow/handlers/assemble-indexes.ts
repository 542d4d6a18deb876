import { Logger } from '@aws-lambda-powertools/logger';
import { ECRClient } from '@aws-sdk/client-ecr';
import { type AssembleIndexesInput, assembleIndexes } from '../assemble-indexes';
import type { PatchedImage } from '../state';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const ecr = new ECRClient({});

/** "Assemble the patched image indexes". */
export const handler = async (event: AssembleIndexesInput): Promise<{ patched: PatchedImage[] }> => {
  const out = await assembleIndexes(event, { ecr });
  logger.info('assembled', {
    executionName: event.executionName,
    indexes: out.patched
      .filter((p) => p.platforms !== undefined)
      .map((p) => ({ repository: p.repository, oldDigest: p.oldDigest, newDigest: p.newDigest })),
  });
  return out;
};
