import { Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Every cdk-nag acknowledgement Autopatch makes, in one place, so a reviewer reads them together.
 *
 * cdk-nag v3 reads CDK's own acknowledged-rules metadata and walks up the construct tree, so an
 * acknowledgement applies to the construct it is put on and everything below it. Each one is put on
 * the narrowest construct that carries the finding (a single IAM policy, never the stack) and names
 * the finding precisely (`RuleId[FindingId]`), so a new wildcard added later still fails synth.
 */

/** The finding id cdk-nag reports for an IAM statement with `Resource: '*'`. */
export const IAM5_ANY_RESOURCE = 'AwsSolutions-IAM5[Resource::*]';

/** The finding id cdk-nag reports for a resource ARN pattern, as cdk-nag renders its tokens. */
export const iam5Resource = (arnPattern: string): string => `AwsSolutions-IAM5[Resource::${arnPattern}]`;

/** ECS ARNs in this account and Region, rendered the way cdk-nag prints `formatArn` tokens. */
export const ecsArnPattern = (resource: string): string =>
  `arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:${resource}/*`;

export const NAG_REASONS = {
  xray:
    'X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not support ' +
    'resource-level permissions, so IAM requires Resource "*".',
  ecsUnscopable:
    'Inventory discovery (services tagged for Autopatch may run in any cluster): ecs:ListClusters, ' +
    'ecs:ListServices, ecs:ListTasks and ecs:DescribeTaskDefinition are read-only and do not support ' +
    'resource-level permissions for an unfiltered listing, so IAM requires Resource "*".',
  ecsServices:
    'ecs:DescribeServices is read-only and scoped to ECS services in this account and Region; the ' +
    'cluster and service names are discovered at run time by tag, so they cannot be listed at synth.',
  ecsTasks:
    'ecs:DescribeTasks is read-only and scoped to ECS tasks in this account and Region; task ids are ' +
    'random and only known at run time.',
} as const;

/** Acknowledge one precise cdk-nag finding on one construct, with a reason a reviewer can check. */
export const acknowledge = (scope: IConstruct, id: string, reason: string): void => {
  Validations.of(scope).acknowledge({ id, reason });
};
