import {
  DescribeTaskDefinitionCommand,
  type ECSClient,
  RegisterTaskDefinitionCommand,
  type RegisterTaskDefinitionCommandInput,
  type Tag,
  type TaskDefinition,
} from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall as call } from './aws';
import { describeService } from './ecs-service';
import { TaskDefinitionMismatchError } from './errors';
import type { PatchedImage } from './state';

export { runningImages } from './running-images';

export interface RegisterTaskDefinitionInput {
  readonly service: ServiceRef;
  readonly images: readonly Pick<PatchedImage, 'repositoryUri' | 'containers' | 'oldDigest' | 'newDigest'>[];
  readonly executionName: string;
}

export interface RegisterTaskDefinitionOutput {
  readonly previousTaskDefinitionArn: string;
  readonly taskDefinitionArn: string;
  /** container name → new image reference, for the console. */
  readonly replaced: Readonly<Record<string, string>>;
}

/** True when `image` names the repository (by tag, by digest or bare). */
const sameRepository = (image: string, repositoryUri: string): boolean =>
  image === repositoryUri || image.startsWith(`${repositoryUri}:`) || image.startsWith(`${repositoryUri}@`);

/**
 * The RegisterTaskDefinition input that re-registers `current` with only the given containers'
 * images replaced. Everything DescribeTaskDefinition returns about the revision itself (ARN, revision,
 * status, registeredAt/By, compatibilities, requiresAttributes) is dropped: RegisterTaskDefinition
 * rejects or recomputes it. Pure, so the simulation and the tests exercise exactly this.
 */
export const patchedRegistration = (
  current: TaskDefinition,
  tags: readonly Tag[],
  images: RegisterTaskDefinitionInput['images'],
  executionName: string,
): { input: RegisterTaskDefinitionCommandInput; replaced: Record<string, string> } => {
  // A container can have several patched images when the gathering merged findings on an older and
  // a newer digest of it (the owner deployed meanwhile): the one the container runs is the one to use.
  const wanted = new Map<string, Array<RegisterTaskDefinitionInput['images'][number]>>();
  for (const image of images) {
    for (const container of image.containers)
      wanted.set(container, [...(wanted.get(container) ?? []), image]);
  }
  const replaced: Record<string, string> = {};
  const containerDefinitions = (current.containerDefinitions ?? []).map((container) => {
    const candidates = container.name ? wanted.get(container.name) : undefined;
    if (!candidates || !container.name) return container;
    const running = container.image ?? '';
    const pinned = /@(sha256:[a-f0-9]{64})$/.exec(running)?.[1];
    const image =
      candidates.find((i) => pinned !== undefined && (i.oldDigest === pinned || i.newDigest === pinned)) ??
      candidates.at(-1);
    if (!image || !running || !sameRepository(running, image.repositoryUri)) {
      throw new TaskDefinitionMismatchError(
        `Container ${container.name} of ${current.taskDefinitionArn} runs ${container.image ?? 'no image'}, not ` +
          `${image?.repositoryUri ?? 'the patched repository'}: the service changed since the finding. Nothing was deployed.`,
      );
    }
    // Pinned by digest to another image than the one the patch was built from: the owner deployed a
    // newer version meanwhile (during a long approval, window or queue wait). Deploying the patch
    // would roll their change back.
    if (pinned !== undefined && pinned !== image.oldDigest && pinned !== image.newDigest) {
      throw new TaskDefinitionMismatchError(
        `Container ${container.name} of ${current.taskDefinitionArn} now runs ${container.image}, not the image the ` +
          `patch was built from (${image.oldDigest}): the service was redeployed since the finding. Nothing was deployed.`,
      );
    }
    const reference = `${image.repositoryUri}@${image.newDigest}`;
    replaced[container.name] = reference;
    return { ...container, image: reference };
  });
  const missing = [...wanted.keys()].filter((name) => !(name in replaced));
  if (missing.length > 0) {
    throw new TaskDefinitionMismatchError(
      `${current.taskDefinitionArn} has no container named ${missing.join(', ')}: the service changed since the finding. Nothing was deployed.`,
    );
  }
  const {
    taskDefinitionArn: _arn,
    revision: _revision,
    status: _status,
    requiresAttributes: _requiresAttributes,
    compatibilities: _compatibilities,
    registeredAt: _registeredAt,
    registeredBy: _registeredBy,
    deregisteredAt: _deregisteredAt,
    containerDefinitions: _containers,
    ...rest
  } = current;
  const userTags = tags.filter((t) => t.key !== 'autopatch:execution');
  return {
    input: {
      ...rest,
      family: current.family,
      containerDefinitions,
      // Tags are not part of the revision: carry them over, and say which remediation made it.
      tags: [...userTags, { key: 'autopatch:execution', value: executionName }].slice(0, 50),
    } as RegisterTaskDefinitionCommandInput,
    replaced,
  };
};

/** "Register the patched task definition". */
export const registerPatchedTaskDefinition = async (
  input: RegisterTaskDefinitionInput,
  ecs: Pick<ECSClient, 'send'>,
): Promise<RegisterTaskDefinitionOutput> => {
  const service = await describeService(ecs, input.service);
  if (!service?.taskDefinition) {
    throw new TaskDefinitionMismatchError(
      `Service ${input.service.key} was not found (or is inactive) in ${input.service.clusterArn}. Nothing was deployed.`,
    );
  }
  const current = await call('ecs DescribeTaskDefinition', () =>
    ecs.send(
      new DescribeTaskDefinitionCommand({ taskDefinition: service.taskDefinition, include: ['TAGS'] }),
    ),
  );
  if (!current.taskDefinition) {
    throw new TaskDefinitionMismatchError(
      `Task definition ${service.taskDefinition} could not be described.`,
    );
  }
  const { input: registration, replaced } = patchedRegistration(
    current.taskDefinition,
    current.tags ?? [],
    input.images,
    input.executionName,
  );
  const registered = await call('ecs RegisterTaskDefinition', () =>
    ecs.send(new RegisterTaskDefinitionCommand(registration)),
  );
  const arn = registered.taskDefinition?.taskDefinitionArn;
  if (!arn) throw new Error('ecs RegisterTaskDefinition returned no taskDefinitionArn');
  return { previousTaskDefinitionArn: service.taskDefinition, taskDefinitionArn: arn, replaced };
};
