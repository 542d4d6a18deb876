import {
  BatchGetDeploymentGroupsCommand,
  type DeploymentGroupInfo,
  GetDeploymentGroupCommand,
  ListApplicationsCommand,
  ListDeploymentGroupsCommand,
} from '@aws-sdk/client-codedeploy';
import type { ServiceRef } from '../../shared/contracts';
import { awsCall } from '../aws';
import { UnsupportedDeploymentError } from '../errors';
import type { CodeDeployApi } from './status';

/** Which deployment group deploys a service: named by the target, or found. */
export interface DeploymentGroupRef {
  readonly application: string;
  readonly deploymentGroup: string;
}

/** Applications and groups looked at when searching, at most: a bound on the reads of one search. */
const SEARCH_LIMIT = 200;

const clusterName = (clusterArn: string): string => clusterArn.slice(clusterArn.lastIndexOf('/') + 1);

const deploysService = (group: DeploymentGroupInfo | undefined, service: ServiceRef): boolean =>
  group?.computePlatform === 'ECS' &&
  (group.ecsServices ?? []).some(
    (s) => s.serviceName === service.serviceName && s.clusterName === clusterName(service.clusterArn),
  );

const getGroup = async (
  codedeploy: CodeDeployApi,
  ref: DeploymentGroupRef,
): Promise<DeploymentGroupInfo | undefined> => {
  try {
    const out = await awsCall('codedeploy GetDeploymentGroup', () =>
      codedeploy.send(
        new GetDeploymentGroupCommand({
          applicationName: ref.application,
          deploymentGroupName: ref.deploymentGroup,
        }),
      ),
    );
    return out.deploymentGroupInfo;
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    if (name === 'ApplicationDoesNotExistException' || name === 'DeploymentGroupDoesNotExistException')
      return undefined;
    throw error;
  }
};

/**
 * The CodeDeploy deployment group that deploys `service`, checked against its `ecsServices`:
 * 1. the one the target names (`codeDeploy` in the target), which must deploy the service;
 * 2. the names the ECS console gives the pair it creates (`AppECS-<cluster>-<service>`,
 *    `DgpECS-<cluster>-<service>`);
 * 3. a search of the account's applications and their ECS deployment groups (bounded).
 * Throws UnsupportedDeploymentError (the run fails before any build) when none deploys it.
 */
export const findDeploymentGroup = async (
  codedeploy: CodeDeployApi,
  service: ServiceRef,
  named?: DeploymentGroupRef,
): Promise<DeploymentGroupInfo & DeploymentGroupRef> => {
  const found = (g: DeploymentGroupInfo, ref: DeploymentGroupRef) => ({ ...g, ...ref });
  if (named) {
    const group = await getGroup(codedeploy, named);
    if (deploysService(group, service) && group) return found(group, named);
    throw new UnsupportedDeploymentError(
      `CodeDeploy deployment group ${named.application}/${named.deploymentGroup} (the target's codeDeploy) ${group ? `does not deploy ECS service ${service.key}` : 'does not exist'}.`,
    );
  }
  const cluster = clusterName(service.clusterArn);
  const conventional = {
    application: `AppECS-${cluster}-${service.serviceName}`,
    deploymentGroup: `DgpECS-${cluster}-${service.serviceName}`,
  };
  const byConvention = await getGroup(codedeploy, conventional);
  if (byConvention && deploysService(byConvention, service)) return found(byConvention, conventional);

  let looked = 0;
  let appToken: string | undefined;
  do {
    const apps = await awsCall('codedeploy ListApplications', () =>
      codedeploy.send(new ListApplicationsCommand(appToken ? { nextToken: appToken } : {})),
    );
    for (const application of apps.applications ?? []) {
      let groupToken: string | undefined;
      do {
        const groups = await awsCall('codedeploy ListDeploymentGroups', () =>
          codedeploy.send(
            new ListDeploymentGroupsCommand({
              applicationName: application,
              ...(groupToken ? { nextToken: groupToken } : {}),
            }),
          ),
        );
        const names = groups.deploymentGroups ?? [];
        for (let i = 0; i < names.length; i += 100) {
          const batch = await awsCall('codedeploy BatchGetDeploymentGroups', () =>
            codedeploy.send(
              new BatchGetDeploymentGroupsCommand({
                applicationName: application,
                deploymentGroupNames: names.slice(i, i + 100),
              }),
            ),
          );
          const match = (batch.deploymentGroupsInfo ?? []).find((g) => deploysService(g, service));
          if (match?.deploymentGroupName)
            return found(match, { application, deploymentGroup: match.deploymentGroupName });
        }
        looked += names.length;
        groupToken = groups.nextToken;
      } while (groupToken && looked < SEARCH_LIMIT);
      looked += 1;
      if (looked >= SEARCH_LIMIT) break;
    }
    appToken = apps.nextToken;
  } while (appToken && looked < SEARCH_LIMIT);
  throw new UnsupportedDeploymentError(
    `No CodeDeploy deployment group deploys ECS service ${service.key} (looked for ${conventional.application}/${conventional.deploymentGroup} and searched ${looked} applications and groups). Name it in the target's codeDeploy setting.`,
  );
};
