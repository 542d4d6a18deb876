import { Logger } from '@aws-lambda-powertools/logger';
import { type AssembleIndexesInput, assembleIndexes } from '../assemble-indexes';
import { imageClients } from '../clients';
import type { PatchedImage } from '../state';

const logger = new Logger({ serviceName: 'autopatch-workflow' });
const home = imageClients({ registry: '', repositoryUri: '' });

/** "Assemble the patched image indexes". */
export const handler = async (event: AssembleIndexesInput): Promise<{ patched: PatchedImage[] }> => {
  // Each index is read and pushed in its image's own registry (account and Region).
  const out = await assembleIndexes(event, { ecr: home.ecr, ecrFor: (image) => imageClients(image).ecr });
  logger.info('assembled', {
    executionName: event.executionName,
    indexes: out.patched
      .filter((p) => p.platforms !== undefined)
      .map((p) => ({ repository: p.repository, oldDigest: p.oldDigest, newDigest: p.newDigest })),
  });
  return out;
};
