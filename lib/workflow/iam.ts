import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import type { TargetConfig } from '../../lambdas/shared/config';

/**
 * The IAM statements the workflow's principals share (task Lambdas, the state machine, the build
 * projects), built once from the configuration: which services may be deployed, which repositories
 * may be pushed to. Who gets which statement is decided in ./function-permissions.ts,
 * ./definition.ts and ./builders.ts.
 */

/** An ARN in the stack's account and Region (`formatArn`, token-aware). */
export type ArnOf = (
  service: string,
  resource: string,
  resourceName?: string,
  arnFormat?: ArnFormat,
) => string;

export const arnOf =
  (scope: IConstruct): ArnOf =>
  (service, resource, resourceName, arnFormat = ArnFormat.SLASH_RESOURCE_NAME) =>
    Stack.of(scope).formatArn({
      service,
      resource,
      ...(resourceName !== undefined ? { resourceName } : {}),
      arnFormat,
    });

/** The image push actions (docker push); BatchCheckLayerAvailability is a read and goes with the pulls. */
export const ECR_PUSH_ACTIONS = [
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
] as const;

/** The image pull actions (docker pull, and docker push's check for layers the registry has). */
export const ECR_PULL_ACTIONS = [
  'ecr:BatchCheckLayerAvailability',
  'ecr:BatchGetImage',
  'ecr:GetDownloadUrlForLayer',
] as const;

export interface WorkflowStatementsProps {
  readonly serviceTag: { readonly key: string; readonly value: string };
  readonly targets: readonly TargetConfig[];
  /**
   * Let the image builds push only to ECR repositories carrying the service tag (and those the
   * explicit targets list). Off by default so that deployments made before this option keep working
   * (their repositories were never tagged); synth warns while it is off. docs/deploy.md, "IAM".
   * @default false
   */
  readonly pushToTaggedRepositoriesOnly?: boolean;
  /**
   * Other Regions whose ECR registries of the hub's account the image builds pull from and push to
   * (an organization's `regions`): the repository grants get one ARN per Region, the hub's first.
   * @default - the hub's Region only
   */
  readonly registryRegions?: readonly string[];
}

/**
 * `repository/*` of the account's registry in the hub's Region and in each of `registryRegions`
 * (token-aware: a hub Region unknown at synth is kept, next to the listed ones).
 */
export const repositoryArns = (scope: IConstruct, regions: readonly string[] = []): string[] => {
  const stack = Stack.of(scope);
  const home = arnOf(scope)('ecr', 'repository', '*');
  const others = [...new Set(regions)].filter((r) => r !== stack.region);
  return [
    home,
    ...others.map((region) =>
      stack.formatArn({ service: 'ecr', region, resource: 'repository', resourceName: '*' }),
    ),
  ];
};

/** Shared statements, one object per statement (a statement object may be added to several roles). */
export class WorkflowStatements {
  readonly arn: ArnOf;
  /** Every ECS service / service deployment / ECR repository of the account and Region. */
  readonly services: string;
  readonly serviceDeployments: string;
  readonly repositories: string;
  /**
   * Every ECR repository of the account in the hub's Region and the `registryRegions`: where the
   * builds pull and push, the rescan reads, and the index assembly reads and pushes.
   */
  readonly repositoryArns: readonly string[];
  /** ECS services and service deployments, read (the watchers, restore). */
  readonly describeEcs: iam.PolicyStatement;
  /** The watched alarms: named at run time (the service's deployment alarms and the target's). */
  readonly describeAlarms: iam.PolicyStatement;
  /** Before calling a bake done, an alarm that fired and recovered between two looks counts too. */
  readonly alarmHistory: iam.PolicyStatement;
  /**
   * SendTaskSuccess has no resource-level permissions (the Service Authorization Reference lists no
   * resource type): IAM evaluates it against "*", so a state machine ARN never matches. The task
   * token itself is the capability: only a holder of a live token can answer a task. The watchers
   * never fail a task (SendTaskFailure is not granted).
   */
  readonly taskResponse: iam.PolicyStatement;
  /** Services discovered by tag may be deployed while they carry the tag. */
  readonly deploy: iam.PolicyStatement;
  /** Explicit targets are remediated tagged or not, so they are named by ARN (and only them). */
  readonly deployTargets?: iam.PolicyStatement;
  /**
   * Service deployments are not taggable resources, so a condition on the service's tag would deny
   * every rollback. The workflow only stops the deployment it started itself (the ARN comes from its
   * own watch), and stopping one can only roll it back to the previous revision.
   */
  readonly stopDeployment: iam.PolicyStatement;
  /**
   * ecr:PutImage of a new image index (multi-architecture images), where the image builds may push
   * (ecrPushScope): every repository, or tagged and named ones with pushToTaggedRepositoriesOnly.
   */
  readonly putImageIndex: readonly iam.PolicyStatement[];

  constructor(scope: IConstruct, props: WorkflowStatementsProps) {
    const arn = arnOf(scope);
    this.arn = arn;
    this.services = arn('ecs', 'service', '*');
    this.serviceDeployments = arn('ecs', 'service-deployment', '*');
    this.repositories = arn('ecr', 'repository', '*');
    this.repositoryArns = repositoryArns(scope, props.registryRegions);
    const push = ecrPushScope(arn, props);
    this.putImageIndex = push.anyRepository
      ? [new iam.PolicyStatement({ actions: ['ecr:PutImage'], resources: [...this.repositoryArns] })]
      : [
          new iam.PolicyStatement({
            actions: ['ecr:PutImage'],
            resources: [...this.repositoryArns],
            conditions: {
              StringEquals: { [`aws:ResourceTag/${props.serviceTag.key}`]: props.serviceTag.value },
            },
          }),
          ...(push.named.length > 0
            ? [new iam.PolicyStatement({ actions: ['ecr:PutImage'], resources: [...push.named] })]
            : []),
        ];
    this.describeEcs = new iam.PolicyStatement({
      actions: ['ecs:DescribeServices', 'ecs:DescribeServiceDeployments'],
      resources: [this.services, this.serviceDeployments],
    });
    this.describeAlarms = new iam.PolicyStatement({
      actions: ['cloudwatch:DescribeAlarms'],
      resources: [arn('cloudwatch', 'alarm', '*', ArnFormat.COLON_RESOURCE_NAME)],
    });
    this.taskResponse = new iam.PolicyStatement({ actions: ['states:SendTaskSuccess'], resources: ['*'] });
    this.alarmHistory = new iam.PolicyStatement({
      actions: ['cloudwatch:DescribeAlarmHistory'],
      resources: [arn('cloudwatch', 'alarm', '*', ArnFormat.COLON_RESOURCE_NAME)],
    });
    this.deploy = new iam.PolicyStatement({
      actions: ['ecs:UpdateService'],
      resources: [this.services],
      conditions: { StringEquals: { [`aws:ResourceTag/${props.serviceTag.key}`]: props.serviceTag.value } },
    });
    const targetServices = [
      ...new Set(
        props.targets.map((t) =>
          t.cluster.startsWith('arn:')
            ? `${t.cluster.replace(':cluster/', ':service/')}/${t.service}`
            : arn('ecs', 'service', `${t.cluster}/${t.service}`),
        ),
      ),
    ];
    if (targetServices.length > 0)
      this.deployTargets = new iam.PolicyStatement({
        actions: ['ecs:UpdateService'],
        resources: targetServices,
      });
    this.stopDeployment = new iam.PolicyStatement({
      actions: ['ecs:StopServiceDeployment'],
      resources: [this.serviceDeployments],
    });
  }
}

/**
 * Where the image builds may push (docs/deploy.md, "IAM"): repositories carrying the Autopatch
 * service tag (ECR's repository resource type supports `aws:ResourceTag/${TagKey}`, and the push
 * actions are on that resource type: Service Authorization Reference for Amazon ECR), plus the
 * repositories the explicit targets name (`targets[].repositories`). While an explicit target names
 * no repository, its images may be in any repository of the account (explicit targets need no tag),
 * so the builds may push to any of them, as before.
 */
export const ecrPushScope = (
  arn: ArnOf,
  props: WorkflowStatementsProps,
): { readonly anyRepository: boolean; readonly named: readonly string[] } => {
  const anyRepository =
    props.pushToTaggedRepositoriesOnly !== true || props.targets.some((t) => t.repositories.length === 0);
  const named = [
    ...new Set(
      props.targets.flatMap((t) =>
        t.repositories.map((r) => (r.startsWith('arn:') ? r : arn('ecr', 'repository', r))),
      ),
    ),
  ];
  return { anyRepository, named };
};
