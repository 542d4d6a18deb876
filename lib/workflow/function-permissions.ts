import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { OUTCOME_EVENT } from '../../lambdas/shared/outcome-event';
import { grantLedgerReadWrite, grantTopicPublish, LEDGER_KEY_ACTIONS, type LedgerTable } from '../grants';
import type { FunctionRole } from './functions';
import type { WorkflowStatements } from './iam';

export interface FunctionPermissionsProps {
  readonly ledger: LedgerTable;
  readonly topic: sns.ITopic;
  readonly encryptionKey: kms.IKey;
  readonly statements: WorkflowStatements;
  /** The state machine's ARN, built from its fixed name (a reference would be circular). */
  readonly stateMachineArn: string;
  readonly stateMachineName: string;
  /**
   * The task and execution roles (ARNs, `*` allowed in the name) the new task definition revisions
   * may carry: iam:PassRole on exactly these.
   * @default - any role of the account (role/*), still only to ecs-tasks.amazonaws.com
   */
  readonly taskRoleArns?: readonly string[];
  /** The pause switch's name (known at synth), which the deployment-slot step and the sweep read. */
  readonly pauseParameterName: string;
}

/**
 * What each task Lambda may call, beyond its own log group: the AWS calls its handler makes
 * (test/iam checks each one against the code). The state machine's own permissions are in
 * ./definition.ts, the build projects' in ./builders.ts.
 */
export const grantFunctionPermissions = (
  functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>,
  props: FunctionPermissionsProps,
): void => {
  const { ledger, topic, encryptionKey: key, statements: s, stateMachineArn } = props;
  const { arn, services } = s;
  const startExecution = () =>
    new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn] });

  grantLedgerReadWrite(ledger, key, functions.acquireLock);
  // "Wait for the maintenance window" answers its own wait when the window has already started.
  functions.acquireLock.addToRolePolicy(s.taskResponse);

  grantLedgerReadWrite(ledger, key, functions.requestApproval);
  grantTopicPublish(topic, key, functions.requestApproval);

  // Rescan waits: "Verify the patched image by rescan" registers a task-token wait in the ledger
  // (lambdas/workflow/rescan-registry.ts) and answers it when the verdict is known at once; the
  // Inspector2 Scan event (deployment-events) and the sweep answer it otherwise. All three assess the
  // rescan (Inspector's coverage and findings, ECR's push time) and answer with SendTaskSuccess only;
  // the watchers already read and write the ledger. The registering step only writes, queries and
  // deletes rescan waits (no GetItem, no batches).
  ledger.grant(
    functions.verifyRescan,
    'dynamodb:PutItem',
    'dynamodb:Query',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
  );
  key.grant(functions.verifyRescan, ...LEDGER_KEY_ACTIONS);
  functions.verifyRescan.addToRolePolicy(s.taskResponse);
  for (const assessor of [functions.verifyRescan, functions.deploymentEvents, functions.sweep]) {
    assessor.addToRolePolicy(
      // Inspector has no resource-level permissions for these reads.
      new iam.PolicyStatement({
        actions: ['inspector2:ListCoverage', 'inspector2:ListFindings'],
        resources: ['*'],
      }),
    );
    assessor.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ecr:DescribeImages'], resources: [...s.repositoryArns] }),
    );
  }

  const register = functions.registerTaskDefinition;
  register.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [services] }),
  );
  register.addToRolePolicy(
    // DescribeTaskDefinition has no resource-level permissions; RegisterTaskDefinition is on the
    // task-definition resource type, whose family (the running one's) is known only at run time.
    new iam.PolicyStatement({ actions: ['ecs:DescribeTaskDefinition'], resources: ['*'] }),
  );
  register.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['ecs:RegisterTaskDefinition'],
      resources: [arn('ecs', 'task-definition', '*')],
    }),
  );
  register.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['ecs:TagResource'],
      resources: [arn('ecs', 'task-definition', '*')],
      conditions: { StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' } },
    }),
  );
  register.addToRolePolicy(
    // The new revision keeps the running one's task and execution roles; they may only go to ECS
    // tasks. Which roles those are is known at synth only when taskRoleArns lists them; otherwise
    // any role of the account: docs/deploy.md, "Narrowing iam:PassRole".
    new iam.PolicyStatement({
      actions: ['iam:PassRole'],
      resources:
        props.taskRoleArns !== undefined && props.taskRoleArns.length > 0
          ? [...new Set(props.taskRoleArns)]
          : [
              Stack.of(register).formatArn({
                service: 'iam',
                region: '',
                resource: 'role',
                resourceName: '*',
              }),
            ],
      conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
    }),
  );

  for (const watcher of [functions.watchDeployment, functions.deploymentEvents, functions.sweep]) {
    grantLedgerReadWrite(ledger, key, watcher);
    watcher.addToRolePolicy(s.describeEcs);
    watcher.addToRolePolicy(s.describeAlarms);
    watcher.addToRolePolicy(s.alarmHistory);
    watcher.addToRolePolicy(s.taskResponse);
  }

  functions.gate.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [services] }),
  );
  // Follow-ups act on what runs now: the take step reads the digests the service's containers run.
  functions.acquireLock.addEnvironment('RESOLVE_RUNNING_IMAGES', 'true');
  functions.acquireLock.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [services] }),
  );
  functions.acquireLock.addToRolePolicy(
    // DescribeTaskDefinition has no resource-level permissions.
    new iam.PolicyStatement({ actions: ['ecs:DescribeTaskDefinition'], resources: ['*'] }),
  );
  functions.gate.addToRolePolicy(s.describeAlarms);
  functions.restore.addToRolePolicy(s.describeEcs);
  functions.restore.addToRolePolicy(s.deploy);
  if (s.deployTargets) functions.restore.addToRolePolicy(s.deployTargets);
  functions.restore.addToRolePolicy(s.stopDeployment);

  grantLedgerReadWrite(ledger, key, functions.finish);
  grantTopicPublish(topic, key, functions.finish);
  functions.finish.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['ssm:PutParameter'],
      resources: [arn('ssm', 'parameter', 'autopatch/*')],
    }),
  );
  // The sweep announces outcomes the finish step recorded but could not announce.
  grantTopicPublish(topic, key, functions.sweep);
  functions.sweep.addEnvironment('TOPIC_ARN', topic.topicArn);
  for (const announcer of [functions.finish, functions.sweep])
    announcer.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['events:PutEvents'],
        resources: [arn('events', 'event-bus', 'default')],
        // events:source is multivalued (one PutEvents call carries several entries): every entry's
        // source must be Autopatch's, and there must be one.
        conditions: {
          'ForAllValues:StringEquals': { 'events:source': [OUTCOME_EVENT.source] },
          Null: { 'events:source': 'false' },
        },
      }),
    );
  // By name, not by reference: the state machine refers to this function already.
  functions.finish.addToRolePolicy(startExecution());

  // The deployment-events function also handles the execution-ended rule: it starts the run queued
  // behind a lock it releases.
  functions.deploymentEvents.addToRolePolicy(startExecution());

  // The reconciler half of the sweep: is the execution a lock names still running; start a claim
  // that never started (and the run queued behind a released lock).
  functions.sweep.addEnvironment('STATE_MACHINE_ARN', stateMachineArn);
  functions.sweep.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['states:DescribeExecution'],
      resources: [arn('states', 'execution', `${props.stateMachineName}:*`, ArnFormat.COLON_RESOURCE_NAME)],
    }),
  );
  functions.sweep.addToRolePolicy(startExecution());

  // Fleet guardrails: the deployment slots live in the ledger; the pause switch is read, never
  // written; the service's tags place it in a stage.
  grantLedgerReadWrite(ledger, key, functions.takeDeploySlot);
  // The pause switch is read with GetParameter only (grantRead adds GetParameters, the history and
  // DescribeParameters, which nothing here calls). Its name is fixed at synth: /autopatch-control/….
  const readPauseSwitch = new iam.PolicyStatement({
    actions: ['ssm:GetParameter'],
    resources: [arn('ssm', 'parameter', props.pauseParameterName.replace(/^\//, ''))],
  });
  functions.takeDeploySlot.addToRolePolicy(readPauseSwitch);
  functions.takeDeploySlot.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [services] }),
  );
  // "Wait for a deployment slot" answers its own wait when room appeared while it registered it.
  functions.takeDeploySlot.addToRolePolicy(s.taskResponse);
  // A run that ends gives its slot back (finish). The sweep lets waiting runs go (it reads the pause
  // switch; it already answers task tokens) and gives back the slots of runs that ended without
  // finishing (it already reads the ledger and DescribeExecution).
  functions.sweep.addToRolePolicy(readPauseSwitch);

  // Services in other accounts or Regions: the same UpdateService and StopServiceDeployment the state
  // machine makes for the hub's services. In a spoke the spoke role's own grants apply (the
  // organization prop lets this function assume it); these hub grants keep the same scope as the
  // state machine's, for a service in another Region of the hub's account.
  functions.deployWithEcs.addToRolePolicy(s.deploy);
  if (s.deployTargets) functions.deployWithEcs.addToRolePolicy(s.deployTargets);
  functions.deployWithEcs.addToRolePolicy(s.stopDeployment);

  grantCodeDeployPermissions(functions, s);
  grantImageIndexPermissions(functions, s);
};

// ---------------------------------------------------------------- Multi-architecture images (issue #15)

/**
 * "Assemble the patched image indexes" reads the patched platform manifests (BatchGetImage) and
 * pushes the new index that references them (PutImage of the index manifest alone: its platforms'
 * layers are already in the repository), where the image builds may push.
 */
const grantImageIndexPermissions = (
  functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>,
  s: WorkflowStatements,
): void => {
  const assemble = functions.assembleIndexes;
  assemble.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecr:BatchGetImage'], resources: [...s.repositoryArns] }),
  );
  for (const statement of s.putImageIndex) assemble.addToRolePolicy(statement);
};
// ---------------------------------------------------------------- end of multi-architecture images

/**
 * CODE_DEPLOY services: the gate finds the deployment group, "Deploy the patched revision with
 * CodeDeploy" creates the deployment, the watchers read it, restore stops it or deploys the last good
 * revision. Deployment groups are found at run time (the target's codeDeploy, the names the ECS
 * console gives them, or by their ecsServices), so group and application ARNs are wildcards within
 * this account and Region.
 */
const grantCodeDeployPermissions = (
  functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>,
  s: WorkflowStatements,
): void => {
  const { arn } = s;
  const groups = arn('codedeploy', 'deploymentgroup', '*', ArnFormat.COLON_RESOURCE_NAME);
  const applications = arn('codedeploy', 'application', '*', ArnFormat.COLON_RESOURCE_NAME);
  const findGroup = [
    new iam.PolicyStatement({
      actions: ['codedeploy:GetDeploymentGroup', 'codedeploy:BatchGetDeploymentGroups'],
      resources: [groups],
    }),
    new iam.PolicyStatement({ actions: ['codedeploy:ListDeploymentGroups'], resources: [applications] }),
    // ListApplications has no resource-level permissions.
    new iam.PolicyStatement({ actions: ['codedeploy:ListApplications'], resources: ['*'] }),
  ];
  const readDeployment = new iam.PolicyStatement({
    actions: ['codedeploy:GetDeployment'],
    resources: [groups],
  });
  // CreateDeployment is authorized on the deployment group. The deployer policies AWS shows also grant
  // reading the group's deployment configuration and registering the AppSpec revision with it.
  const createDeployment = [
    new iam.PolicyStatement({ actions: ['codedeploy:CreateDeployment'], resources: [groups] }),
    new iam.PolicyStatement({
      actions: ['codedeploy:GetDeploymentConfig'],
      resources: [arn('codedeploy', 'deploymentconfig', '*', ArnFormat.COLON_RESOURCE_NAME)],
    }),
    new iam.PolicyStatement({
      actions: ['codedeploy:RegisterApplicationRevision'],
      resources: [applications],
    }),
  ];
  for (const statement of [...findGroup, ...createDeployment])
    functions.deployWithCodeDeploy.addToRolePolicy(statement);
  functions.deployWithCodeDeploy.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [s.services] }),
  );
  for (const statement of [...findGroup, ...createDeployment, readDeployment])
    functions.restore.addToRolePolicy(statement);
  functions.restore.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['codedeploy:ListDeployments'], resources: [groups] }),
  );
  // Putting the last good revision back turns the group's alarm polling off for that deployment
  // (overrideAlarmConfiguration), which CreateDeployment authorizes as UpdateDeploymentGroup.
  functions.restore.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['codedeploy:UpdateDeploymentGroup'], resources: [groups] }),
  );
  // StopDeployment has no resource-level permissions (the Service Authorization Reference lists no
  // resource type): restore stops only the deployment of the patched task definition it found itself.
  functions.restore.addToRolePolicy(
    new iam.PolicyStatement({ actions: ['codedeploy:StopDeployment'], resources: ['*'] }),
  );
  for (const statement of findGroup) functions.gate.addToRolePolicy(statement);
  for (const watcher of [functions.watchDeployment, functions.deploymentEvents, functions.sweep])
    watcher.addToRolePolicy(readDeployment);
};
