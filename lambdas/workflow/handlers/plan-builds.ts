import { Logger } from '@aws-lambda-powertools/logger';
import { type Architecture, type ConnectedSources, routeConnectedSources } from '../connected-sources';
import { type PlanBuildsInput, planBuilds, type RegistryAccess } from '../plan-builds';
import type { PlannedBuild } from '../state';
import { requireEnv } from './env';

const env = requireEnv([
  'PATCH_OS_PROJECT_X86',
  'PATCH_OS_PROJECT_ARM',
  'SOURCE_PROJECT_X86',
  'SOURCE_PROJECT_ARM',
]);
const logger = new Logger({ serviceName: 'autopatch-workflow' });
const projects = {
  patchOs: { x86: env.PATCH_OS_PROJECT_X86, arm: env.PATCH_OS_PROJECT_ARM },
  source: { x86: env.SOURCE_PROJECT_X86, arm: env.SOURCE_PROJECT_ARM },
};
// Set only when a target rebuilds its source through a CodeConnections connection.
const connected: ConnectedSources | undefined = process.env.CONNECTED_SOURCE_PREFIX
  ? {
      prefix: process.env.CONNECTED_SOURCE_PREFIX,
      architectures: (process.env.CONNECTED_SOURCE_ARCHITECTURES ?? 'x86').split(',') as Architecture[],
      sourceProjects: projects.source,
    }
  : undefined;

// A build pushes to the registry its image came from: in another account, through that account's
// spoke role, the one the hub assumes (shared/accounts.ts spokeRoleArn, written out here so this
// Lambda, which calls no AWS API, does not load the STS client).
const spokeRoleName = process.env.AUTOPATCH_SPOKE_ROLE_NAME || 'AutopatchSpoke';
const registries: RegistryAccess = {
  home: { account: process.env.AUTOPATCH_HOME_ACCOUNT || undefined, region: process.env.AWS_REGION },
  roleArnFor: (account) => `arn:aws:iam::${account}:role/autopatch/${spokeRoleName}`,
};

/** "Plan the image builds". */
export const handler = async (event: PlanBuildsInput): Promise<{ builds: PlannedBuild[] }> => {
  const planned = planBuilds(event, projects, registries);
  const plan = connected ? { builds: routeConnectedSources(planned.builds, connected) } : planned;
  logger.info('planned', {
    executionName: event.executionName,
    builds: plan.builds.map((b) => ({
      repository: b.image.repository,
      project: b.projectName,
      tag: b.targetTag,
    })),
  });
  return plan;
};
