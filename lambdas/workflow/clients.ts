import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import { type AccountClients, accountClients, HOME_ACCOUNT_ENV, type Place } from '../shared/accounts';
import {
  type AffectedImage,
  regionOfRepositoryUri,
  type ServiceRef,
  serviceKeyOf,
} from '../shared/contracts';

/**
 * The clients a workflow step uses for one service or one image: those of the resource's own account
 * and Region (issue 13). A service's place is read from its cluster ARN; an image's from its registry
 * (the account id) and its repository URI's Region. In the hub's account the clients carry the hub's
 * own credentials (no STS call), in the resource's Region; in any other account, the spoke role's
 * (`AccountClients`), and a spoke whose role cannot be assumed fails the call with SpokeAccessError.
 *
 * A single-account install (no AUTOPATCH_HOME_ACCOUNT) behaves as before: every place is home.
 */

/** The hub's account and Region, from the Lambda's environment; parts not set are unknown (home). */
export const homePlace = (env: NodeJS.ProcessEnv = process.env): Partial<Place> => ({
  ...(env[HOME_ACCOUNT_ENV] ? { account: env[HOME_ACCOUNT_ENV] } : {}),
  ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
});

const ARN = /^arn:aws[a-z-]*:[a-z0-9-]+:([a-z0-9-]*):(\d{12}|):/;

/** Where an ECS service lives: its cluster ARN's account and Region (a cluster name: the hub's). */
export const placeOfService = (service: Pick<ServiceRef, 'clusterArn'>): Partial<Place> => {
  const match = ARN.exec(service.clusterArn);
  const home = homePlace();
  const account = match?.[2] || home.account;
  const region = match?.[1] || home.region;
  return { ...(account ? { account } : {}), ...(region ? { region } : {}) };
};

/** Where an image lives: its registry's account, and the Region its repository URI names. */
export const placeOfImage = (image: Pick<AffectedImage, 'registry' | 'repositoryUri'>): Partial<Place> => {
  const home = homePlace();
  const account = image.registry || home.account;
  const region = regionOfRepositoryUri(image.repositoryUri) || home.region;
  return { ...(account ? { account } : {}), ...(region ? { region } : {}) };
};

/** The service key of an ECS service ARN (`…:service/<cluster>/<service>`), as triage keys it. */
export const serviceKeyOfServiceArn = (arn: string): string | undefined => {
  const match = /^(arn:[^:]+:ecs:[^:]*:[^:]*:)service\/([^/]+)\/([^/]+)$/.exec(arn);
  if (match) return serviceKeyOf(`${match[1]}cluster/${match[2]}`, match[3] as string, homePlace());
  // Not a full ARN: the cluster and service names only (a hub service).
  const short = /:service\/([^/]+)\/([^/]+)$/.exec(arn);
  return short ? `${short[1]}/${short[2]}` : undefined;
};

/** The ECS, CloudWatch and CodeDeploy clients of a service's account and Region. */
export interface ServiceClients {
  readonly ecs: ECSClient;
  readonly cloudwatch: CloudWatchClient;
  readonly codedeploy: CodeDeployClient;
}

/** A service's clients (cached by AccountClients: cheap to call per event). */
export const serviceClients = (
  service: Pick<ServiceRef, 'clusterArn'>,
  clients: AccountClients = accountClients(),
): ServiceClients => {
  const place = placeOfService(service);
  return {
    ecs: clients.clientFor(ECSClient, place),
    cloudwatch: clients.clientFor(CloudWatchClient, place),
    codedeploy: clients.clientFor(CodeDeployClient, place),
  };
};

/** The hub's own ECS, CloudWatch and CodeDeploy clients (its account and Region). */
export const homeServiceClients = (clients: AccountClients = accountClients()): ServiceClients =>
  serviceClients({ clusterArn: '' }, clients);

/** The ECR and Inspector clients of an image's registry account and Region (the finding's own account). */
export interface ImageClients {
  readonly ecr: ECRClient;
  readonly inspector: Inspector2Client;
}

export const imageClients = (
  image: Pick<AffectedImage, 'registry' | 'repositoryUri'>,
  clients: AccountClients = accountClients(),
): ImageClients => {
  const place = placeOfImage(image);
  return {
    ecr: clients.clientFor(ECRClient, place),
    inspector: clients.clientFor(Inspector2Client, place),
  };
};
