import { DescribeTaskDefinitionCommand, type ECSClient } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall as call } from './aws';
import { describeService } from './ecs-service';

/**
 * Container name → the image digest it runs now, for the containers of the service's current task
 * definition that are pinned by digest (a container pinned by tag has no digest here). Lets a
 * follow-up remediation rebuild what runs now (follow-up.ts). Needs ecs:DescribeServices and
 * ecs:DescribeTaskDefinition.
 */
export const runningImages = async (
  ecs: Pick<ECSClient, 'send'>,
  service: ServiceRef,
): Promise<Map<string, string>> => {
  const taskDefinition = (await describeService(ecs, service))?.taskDefinition;
  const running = new Map<string, string>();
  if (!taskDefinition) return running;
  const current = await call('ecs DescribeTaskDefinition', () =>
    ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition })),
  );
  for (const container of current.taskDefinition?.containerDefinitions ?? []) {
    const pinned = /@(sha256:[a-f0-9]{64})$/.exec(container.image ?? '')?.[1];
    if (container.name && pinned) running.set(container.name, pinned);
  }
  return running;
};
