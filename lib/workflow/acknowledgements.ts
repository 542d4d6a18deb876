import { type CfnElement, Stack, Token, Validations } from 'aws-cdk-lib';
import type * as codebuild from 'aws-cdk-lib/aws-codebuild';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';

export interface WorkflowFindings {
  readonly stateMachineName: string;
  readonly functions: readonly lambda.IFunction[];
  readonly projects: readonly codebuild.IProject[];
  /** The S3 buckets of the targets' source rebuilds. */
  readonly sourceBuckets: readonly string[];
  /** Whether the builds may push to any repository (an explicit target names no repository). */
  readonly pushToAnyRepository: boolean;
  /** The ECR repository prefixes of the pull-through cache rules the source builds pull through. */
  readonly pullThroughPrefixes?: readonly string[];
  /** The roles iam:PassRole is narrowed to (taskRoleArns); absent: any role of the account. */
  readonly taskRoleArns?: readonly string[];
  /** Other Regions whose registries of the account the builds pull from and push to. */
  readonly registryRegions?: readonly string[];
}

/**
 * A role ARN as cdk-nag prints it: the partition and (for a name given without an ARN) the account
 * are tokens of the stack.
 */
const nagRendered = (roleArn: string, account: string): string =>
  roleArn
    .replace(/\$\{Token\[AWS\.Partition\.\d+\]\}/g, '<AWS::Partition>')
    .replace(/\$\{Token\[AWS\.AccountId\.\d+\]\}/g, account);

/**
 * The cdk-nag findings of the workflow that are the design, each with its reason, acknowledged on
 * the workflow construct (so they cover its resources only). lib/nag.ts holds the shared ones.
 */
export const acknowledgeWorkflowFindings = (workflow: Construct, findings: WorkflowFindings): void => {
  const stack = Stack.of(workflow);
  // cdk-nag names a finding after the rendered resource: literal region/account when the stack has
  // them, <AWS::Region>/<AWS::AccountId> otherwise, and <LogicalId.Attr> for references.
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  const arn = (service: string, rest: string, inRegion = true) =>
    `arn:<AWS::Partition>:${service}:${inRegion ? region : ''}:${account}:${rest}`;
  const logicalId = (c: Construct) => stack.getLogicalId(c.node.defaultChild as CfnElement);
  const resources = (ids: string[], reason: string) =>
    ids.map((id) => ({ id: `AwsSolutions-IAM5[Resource::${id}]`, reason }));
  Validations.of(workflow).acknowledge(
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'Only actions without resource-level permissions: ecr:GetAuthorizationToken, inspector2 List*, ' +
        'ecs:DescribeTaskDefinition, states:SendTaskSuccess, codedeploy:ListApplications, ' +
        'codedeploy:StopDeployment, X-Ray and Step Functions log ' +
        'delivery (Autopatch-IAMAnyResource checks each action against that list).',
    },
    ...resources(
      [arn('states', `execution:${findings.stateMachineName}:*`)],
      "The sweep's reconciler describes the executions service locks name (named at run time), of this state machine only.",
    ),
    ...resources(
      [arn('cloudwatch', 'alarm:*')],
      "cloudwatch:DescribeAlarms and DescribeAlarmHistory of the watched alarms: the service's deployment alarms and the target's, named at run time.",
    ),
    ...resources(
      [arn('ecs', 'service/*')],
      'Services are also discovered by tag at run time; UpdateService is conditioned on the Autopatch service tag.',
    ),
    ...resources(
      [arn('ecs', 'service-deployment/*')],
      'Service deployment ids are created by ECS at run time and carry no tags; the workflow stops only the deployment it started (a rollback to the previous revision).',
    ),
    ...resources(
      [arn('ecs', 'task-definition/*')],
      'New task definition revisions (of the running family, known at run time) are registered at run time; TagResource only as part of RegisterTaskDefinition.',
    ),
    ...resources(
      [
        arn('ecr', 'repository/*'),
        ...(findings.registryRegions ?? [])
          .filter((r) => r !== stack.region)
          .map((r) => `arn:<AWS::Partition>:ecr:${r}:${account}:repository/*`),
      ],
      findings.pushToAnyRepository
        ? 'Reads (pull, DescribeImages) of the image a service runs, in any repository of the account (services are discovered by tag). Pushes too: an explicit target names no repository (targets[].repositories), so its images may be in any of them.'
        : 'Reads (pull, DescribeImages) of the image a service runs, in any repository of the account (services are discovered by tag). Pushes only to repositories carrying the Autopatch service tag (aws:ResourceTag condition) and those targets[].repositories name.',
    ),
    ...(findings.taskRoleArns === undefined
      ? resources(
          [arn('iam', 'role/*', false)],
          "iam:PassRole of the running task definition's own task/execution roles (any role name: taskRoleArns is not set), only to ecs-tasks.amazonaws.com (iam:PassedToService); docs/deploy.md (Narrowing iam:PassRole) says how to narrow it.",
        )
      : resources(
          findings.taskRoleArns.filter((r) => r.includes('*')).map((r) => nagRendered(r, account)),
          'iam:PassRole of the task/execution roles taskRoleArns names by pattern, only to ecs-tasks.amazonaws.com (iam:PassedToService).',
        )),
    ...resources(
      (findings.pullThroughPrefixes ?? []).map((p) => arn('ecr', `repository/${p}/*`)),
      'The source builds pull base images through these ECR pull-through cache rules: the first pull of an image imports it (BatchImportUpstreamImage) and creates its repository (CreateRepository), named after the upstream image, under the rule prefix only.',
    ),
    ...resources(
      [arn('codedeploy', 'deploymentgroup:*'), arn('codedeploy', 'application:*')],
      'CODE_DEPLOY services: the CodeDeploy application and deployment group that deploy a service are found at run time (named by the target, by the ECS console convention, or by their ecsServices); only deployments of ECS services are created, read or stopped.',
    ),
    ...resources(
      [arn('codedeploy', 'deploymentconfig:*')],
      'CreateDeployment reads the deployment configuration the deployment group names (its own or a CodeDeployDefault.*).',
    ),
    ...resources(
      [arn('ssm', 'parameter/autopatch/*')],
      'One drift parameter per patched container, named at run time under /autopatch/.',
    ),
    ...resources(
      findings.sourceBuckets.map((b) => `arn:<AWS::Partition>:s3:::${b}/*`),
      "Source archives of the targets' 'source' rebuilds (objects named by the target's sourceLocation).",
    ),
    ...resources(
      findings.functions.map((fn) => `<${logicalId(fn)}.Arn>:*`),
      'grantInvoke covers the function versions and aliases (CDK default).',
    ),
    ...resources(
      findings.projects.flatMap((p) => [
        arn('logs', `log-group:/aws/codebuild/<${logicalId(p)}>:*`),
        arn('codebuild', `report-group/<${logicalId(p)}>-*`),
      ]),
      "CodeBuild's default project policy (its own log streams and report groups); builds log to the KMS-encrypted group.",
    ),
    {
      id: 'AwsSolutions-CB3',
      reason: 'docker build needs the Docker daemon, which CodeBuild runs only in privileged mode.',
    },
    {
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter queue of the deployment-events rules.',
    },
  );
};
