import { DescribeServicesCommand, type ECSClient, type Service } from '@aws-sdk/client-ecs';
import type { ServiceRef } from '../shared/contracts';
import { awsCall } from './aws';

/**
 * One ECS service as DescribeServices reports it now, or undefined when it does not exist or is
 * INACTIVE (deleted). Every workflow step that looks at "the service now" reads it here. Errors
 * propagate (a throttle or 5xx as TransientError).
 */
export const describeService = async (
  ecs: Pick<ECSClient, 'send'>,
  service: ServiceRef,
  options: { readonly tags?: boolean } = {},
): Promise<Service | undefined> => {
  const out = await awsCall('ecs DescribeServices', () =>
    ecs.send(
      new DescribeServicesCommand({
        cluster: service.clusterArn,
        services: [service.serviceName],
        ...(options.tags ? { include: ['TAGS'] } : {}),
      }),
    ),
  );
  const found = out.services?.[0];
  return found && found.status !== 'INACTIVE' ? found : undefined;
};
