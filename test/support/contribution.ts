import type { Contribution } from '../../lambdas/triage/aggregate';
import type { Finding } from '../../lambdas/triage/schema';

/** One finding's contribution to triage's aggregation, for prod/api (an ECS-deployed service). */
export const contribution = (f: Finding, over: Partial<Contribution> = {}): Contribution => ({
  finding: f,
  use: {
    service: {
      clusterArn: 'arn:aws:ecs:eu-central-1:123456789012:cluster/prod',
      serviceName: 'api',
      key: 'prod/api',
    },
    containers: ['app'],
    taskDefinitionArn: 'arn:aws:ecs:eu-central-1:123456789012:task-definition/api:1',
    tags: {},
    deploymentController: 'ECS',
  },
  action: 'remediate',
  reason: 'HIGH',
  rebuild: { mode: 'patch-os' },
  itemIds: [f.findingArn],
  ...over,
});
