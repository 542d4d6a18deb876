import { isTransient, TransientError } from '../shared/errors';

/**
 * Run one AWS call; an error worth retrying (throttling, 5xx, timeouts) becomes TransientError, which
 * the workflow's Retry matches, and names the call so the console says which one failed.
 */
export const awsCall = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (error) {
    if (isTransient(error))
      throw new TransientError(`${what}: ${(error as Error).message}`, { cause: error });
    throw error;
  }
};

/** The region an ARN lives in (arn:partition:service:region:account:...). */
export const regionOf = (arn: string): string => arn.split(':')[3] || process.env.AWS_REGION || 'us-east-1';

/** The account an ARN belongs to (arn:partition:service:region:account:...). */
export const accountOf = (arn: string): string => arn.split(':')[4] ?? '';

/** The console host for a region (commercial partition; other partitions still get a usable path). */
const consoleHost = (region: string): string => `https://${region}.console.aws.amazon.com`;

export const links = {
  execution: (executionArn: string): string => {
    const region = regionOf(executionArn);
    return `${consoleHost(region)}/states/home?region=${region}#/v2/executions/details/${executionArn}`;
  },
  service: (clusterArn: string, serviceName: string): string => {
    const region = regionOf(clusterArn);
    const cluster = clusterArn.split('/').pop() ?? clusterArn;
    return `${consoleHost(region)}/ecs/v2/clusters/${cluster}/services/${serviceName}/deployments?region=${region}`;
  },
  image: (region: string, registry: string, repository: string, digest: string): string =>
    `${consoleHost(region)}/ecr/repositories/private/${registry}/${repository}/_/image/${digest}/details?region=${region}`,
  /** A CodeBuild build, from its id (`<project>:<uuid>`). */
  build: (region: string, account: string, buildId: string): string => {
    const project = buildId.split(':')[0] ?? buildId;
    return `${consoleHost(region)}/codesuite/codebuild/${account}/projects/${encodeURIComponent(project)}/build/${encodeURIComponent(buildId)}/?region=${region}`;
  },
  /** A CodeBuild project's build history, when the build's id is not known. */
  buildHistory: (region: string, account: string, projectName: string): string =>
    `${consoleHost(region)}/codesuite/codebuild/${account}/projects/${encodeURIComponent(projectName)}/history?region=${region}`,
  /** Amazon Inspector's findings for one container image (repository and digest). */
  imageFindings: (region: string, repository: string, digest: string): string =>
    `${consoleHost(region)}/inspector/v2/home?region=${region}#/findings/container-image/${encodeURIComponent(`${repository}/${digest}`)}`,
};
