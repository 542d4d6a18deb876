import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ArnFormat, type CfnElement, Duration, Fn, Stack, Token, Validations } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TargetConfig, WorkflowDefaults } from '../lambdas/shared/config';
import { ConfigurationError } from '../lambdas/shared/errors';
import { OUTCOME_EVENT } from '../lambdas/shared/outcome-event';
import { ABANDONING_STATUSES } from '../lambdas/workflow/execution-ended';
import { SCAN_COMPLETE_STATUSES } from '../lambdas/workflow/verify-rescan';
import { patchOsBuildSpec } from '../statemachines/buildspecs/patch-os';
import { sourceBuildSpec } from '../statemachines/buildspecs/source';
import { BUILD_KEY_ACTIONS, grantLedgerReadWrite, grantTopicPublish, LEDGER_KEY_ACTIONS } from './grants';

export interface RemediationWorkflowProps {
  /** The ledger table (shared with triage): locks, history, task tokens. */
  readonly ledger: dynamodb.ITable;
  /** Notifications (approval requests, outcomes). */
  readonly topic: sns.ITopic;
  /** The key that encrypts Autopatch's data (logs, topic, queue, table). */
  readonly encryptionKey: kms.IKey;
  /** Explicit targets, for scoping IAM and choosing build projects. */
  readonly targets: readonly TargetConfig[];
  /** Tag that marks services Autopatch may deploy (used in IAM conditions). */
  readonly serviceTag: { readonly key: string; readonly value: string };
  readonly defaults: WorkflowDefaults;
  /**
   * The state machine's name. Fixed (not generated) so the finish Lambda may start the next queued
   * execution of the same state machine without a circular reference between the two.
   * @default `<stackName>-Remediation`
   */
  readonly stateMachineName?: string;
  /** @default logs.RetentionDays.ONE_YEAR */
  readonly logRetention?: logs.RetentionDays;
  /** Shown next to the account id in approval requests and outcome notifications. @default - the id only */
  readonly accountAlias?: string;
  /**
   * Create the arm64 CodeBuild projects (which patch and rebuild arm64 images). CodeBuild offers
   * ARM_CONTAINER in some Regions only ({@link CODEBUILD_ARM_REGIONS}) and creating such a project
   * elsewhere fails the deployment.
   * @default - when the stack's Region is known at synth, whether CodeBuild offers ARM_CONTAINER
   * there; when it is not (an environment-agnostic stack), true
   */
  readonly armBuilds?: boolean;
}

/**
 * Regions where CodeBuild offers the ARM_CONTAINER environment type, as the CodeBuild API reference
 * (ProjectEnvironment/Fleet `environmentType`, in @aws-sdk/client-codebuild's model) lists them.
 * Not checked against every Region's console: pass `armBuilds: true` where CodeBuild offers it and
 * this list does not say so yet.
 */
export const CODEBUILD_ARM_REGIONS: readonly string[] = [
  'us-east-1',
  'us-east-2',
  'us-west-2',
  'eu-west-1',
  'eu-central-1',
  'ap-south-1',
  'ap-northeast-1',
  'ap-southeast-1',
  'ap-southeast-2',
  'sa-east-1',
];

/**
 * Whether the arm64 build projects are created: as asked, else by the stack's Region. A Region that is
 * a token (environment-agnostic stack, the default `cdk deploy`) keeps them: a CfnCondition on the
 * Region would turn every reference to the arm64 projects (the state machine's StartBuild statement,
 * plan-builds' environment) into an Fn::If that the simulation and its IAM evaluator do not read. A
 * wrong guess is loud either way: in a Region without ARM_CONTAINER the deploy fails at the arm64
 * project (expected from the CodeBuild API reference, not verified), and the fix is
 * `armBuilds: false` or a stack with an explicit Region; docs/deploy.md says so.
 */
export const createsArmBuilds = (region: string, armBuilds?: boolean): boolean =>
  armBuilds ?? (Token.isUnresolved(region) || CODEBUILD_ARM_REGIONS.includes(region));

/**
 * What plan-builds receives as the arm64 project name when there is none: a name no project has,
 * so an arm64 image's build fails at StartBuild (BuildCouldNotRun) with a Cause that names the reason.
 */
export const NO_ARM_BUILDER = 'Autopatch-no-arm64-CodeBuild-in-this-Region';

const ROOT = path.join(__dirname, '..');
const DEFINITION_FILE = path.join(ROOT, 'statemachines', 'remediation.asl.json');

/** The Lambdas of the workflow, by role. Each entry is lambdas/workflow/handlers/<file>.ts. */
const FUNCTIONS = {
  acquireLock: { file: 'acquire-lock', timeout: 30, description: 'Autopatch: acquire the service lock' },
  planBuilds: { file: 'plan-builds', timeout: 30, description: 'Autopatch: plan the image builds' },
  requestApproval: { file: 'request-approval', timeout: 30, description: 'Autopatch: request approval' },
  verifyRescan: {
    file: 'verify-rescan',
    timeout: 120,
    description: 'Autopatch: wait for the rescan that verifies the patch',
  },
  registerTaskDefinition: {
    file: 'register-task-definition',
    timeout: 60,
    description: 'Autopatch: register the patched task definition',
  },
  watchDeployment: {
    file: 'watch-deployment',
    timeout: 60,
    description: 'Autopatch: start watching a deployment',
  },
  restore: {
    file: 'restore',
    timeout: 60,
    description: 'Autopatch: put a service back on its last good revision',
  },
  finish: { file: 'finish', timeout: 90, description: 'Autopatch: record the outcome and release the lock' },
  deploymentEvents: {
    file: 'deployment-events',
    timeout: 60,
    description: 'Autopatch: resume waiting executions on ECS deployment, alarm and Inspector scan events',
  },
  gate: {
    file: 'gate',
    timeout: 60,
    description: 'Autopatch: check that a service can be deployed and watched before building and deploying',
  },
  sweep: {
    file: 'sweep',
    timeout: 120,
    description: 'Autopatch: every minute, re-assess every watched deployment, bake, rollback and rescan',
  },
} as const;
type FunctionRole = keyof typeof FUNCTIONS;

/**
 * The remediation workflow: the Step Functions state machine (statemachines/remediation.asl.json),
 * the Lambdas its Tasks call, the CodeBuild projects that rebuild images, and the EventBridge rules
 * that resume a watching execution when its deployment or alarms change.
 */
export class RemediationWorkflow extends Construct {
  public readonly stateMachine: sfn.StateMachine;
  /** The state machine's fixed name (see props.stateMachineName). */
  public readonly stateMachineName: string;
  public readonly stateMachineLogGroup: logs.LogGroup;
  public readonly functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>;
  public readonly functionLogGroups: Readonly<Record<FunctionRole, logs.LogGroup>>;
  public readonly acquireLockFunction: nodejs.NodejsFunction;
  public readonly planBuildsFunction: nodejs.NodejsFunction;
  public readonly requestApprovalFunction: nodejs.NodejsFunction;
  public readonly verifyRescanFunction: nodejs.NodejsFunction;
  public readonly registerTaskDefinitionFunction: nodejs.NodejsFunction;
  public readonly watchDeploymentFunction: nodejs.NodejsFunction;
  public readonly restoreFunction: nodejs.NodejsFunction;
  public readonly finishFunction: nodejs.NodejsFunction;
  public readonly deploymentEventsFunction: nodejs.NodejsFunction;
  /** The scheduled sweep: the heartbeat under every event-driven wait. */
  public readonly sweepFunction: nodejs.NodejsFunction;
  /** Runs the sweep every minute. */
  public readonly sweepSchedule: events.Rule;
  /** OS patch layer builds, per CPU architecture (no arm64 project where CodeBuild offers no ARM, see props.armBuilds). */
  public readonly patchOsProjects: { readonly x86: codebuild.Project; readonly arm?: codebuild.Project };
  /** Rebuilds from source, per CPU architecture (no arm64 project where CodeBuild offers no ARM, see props.armBuilds). */
  public readonly sourceProjects: { readonly x86: codebuild.Project; readonly arm?: codebuild.Project };
  public readonly buildLogGroup: logs.LogGroup;
  public readonly deploymentStateRule: events.Rule;
  public readonly alarmStateRule: events.Rule;
  /** Inspector2 Scan events: answer the waits for a rescan of the scanned digest (issue #15). */
  public readonly inspectorScanRule: events.Rule;
  /** The state machine's own executions that ended ABORTED, TIMED_OUT or FAILED: release their lock. */
  public readonly executionEndedRule: events.Rule;
  /** Events the deployment-events Lambda could not handle after EventBridge's retries. */
  public readonly eventsDeadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: RemediationWorkflowProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.stateMachineName = props.stateMachineName ?? `${stack.stackName}-Remediation`.slice(0, 80);
    validate(props, this.stateMachineName);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const key = props.encryptionKey;
    const arn = (
      service: string,
      resource: string,
      resourceName?: string,
      arnFormat = ArnFormat.SLASH_RESOURCE_NAME,
    ) =>
      stack.formatArn({
        service,
        resource,
        ...(resourceName !== undefined ? { resourceName } : {}),
        arnFormat,
      });
    const stateMachineArn = arn(
      'states',
      'stateMachine',
      this.stateMachineName,
      ArnFormat.COLON_RESOURCE_NAME,
    );

    const logGroup = (logId: string) => new logs.LogGroup(this, logId, { encryptionKey: key, retention });

    // ---------------------------------------------------------------- Lambdas
    const functionLogGroups = {} as Record<FunctionRole, logs.LogGroup>;
    const functions = {} as Record<FunctionRole, nodejs.NodejsFunction>;
    for (const [role, spec] of Object.entries(FUNCTIONS) as [
      FunctionRole,
      (typeof FUNCTIONS)[FunctionRole],
    ][]) {
      const name = pascal(role);
      const lg = logGroup(`${name}Logs`);
      // Own role without the AWS managed basic-execution policy: it may write to its own log group only.
      const fnRole = new iam.Role(this, `${name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      });
      lg.grantWrite(fnRole);
      functionLogGroups[role] = lg;
      functions[role] = new nodejs.NodejsFunction(this, `${name}Function`, {
        entry: path.join(ROOT, 'lambdas', 'workflow', 'handlers', `${spec.file}.ts`),
        handler: 'handler',
        projectRoot: ROOT,
        depsLockFilePath: path.join(ROOT, 'package-lock.json'),
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 256,
        timeout: Duration.seconds(spec.timeout),
        description: spec.description,
        role: fnRole,
        logGroup: lg,
        loggingFormat: lambda.LoggingFormat.JSON,
        tracing: lambda.Tracing.ACTIVE,
        environment: {
          LEDGER_TABLE: props.ledger.tableName,
          TOPIC_ARN: props.topic.topicArn,
          POWERTOOLS_SERVICE_NAME: 'autopatch-workflow',
          NODE_OPTIONS: '--enable-source-maps',
          ...(props.accountAlias ? { ACCOUNT_ALIAS: props.accountAlias } : {}),
        },
        // The SDK is bundled (not taken from the runtime): the ECS service-deployment APIs need the
        // pinned client versions, and TOOLCHAIN.md measured no load-time cost.
        bundling: { minify: true, sourceMap: true, target: 'node22', externalModules: [] },
      });
    }
    this.functions = functions;
    this.functionLogGroups = functionLogGroups;
    this.acquireLockFunction = functions.acquireLock;
    this.planBuildsFunction = functions.planBuilds;
    this.requestApprovalFunction = functions.requestApproval;
    this.verifyRescanFunction = functions.verifyRescan;
    this.registerTaskDefinitionFunction = functions.registerTaskDefinition;
    this.watchDeploymentFunction = functions.watchDeployment;
    this.restoreFunction = functions.restore;
    this.finishFunction = functions.finish;
    this.deploymentEventsFunction = functions.deploymentEvents;
    this.sweepFunction = functions.sweep;

    // ---------------------------------------------------------------- CodeBuild
    this.buildLogGroup = logGroup('BuildLogs');
    const encryptedProject = (p: codebuild.Project): codebuild.Project => {
      // Set on the L1 resource: the L2 encryptionKey prop grants kms:ReEncrypt* and kms:GenerateDataKey*.
      (p.node.defaultChild as codebuild.CfnProject).encryptionKey = key.keyArn;
      key.grant(p, ...BUILD_KEY_ACTIONS);
      return p;
    };
    const project = (projectId: string, buildSpec: object, arm: boolean, what: string) =>
      encryptedProject(
        new codebuild.Project(this, projectId, {
          description: `Autopatch: ${what} (${arm ? 'arm64' : 'x86_64'})`,
          buildSpec: codebuild.BuildSpec.fromObjectToYaml(buildSpec as Record<string, unknown>),
          environment: {
            buildImage: arm
              ? codebuild.LinuxArmBuildImage.AMAZON_LINUX_2_STANDARD_3_0
              : codebuild.LinuxBuildImage.STANDARD_7_0,
            computeType: arm ? codebuild.ComputeType.LARGE : codebuild.ComputeType.MEDIUM,
            // docker build needs the Docker daemon, which needs privileged mode.
            privileged: true,
          },
          timeout: Duration.minutes(60),
          queuedTimeout: Duration.hours(2),
          logging: { cloudWatch: { logGroup: this.buildLogGroup } },
        }),
      );
    const arm = createsArmBuilds(stack.region, props.armBuilds);
    this.patchOsProjects = {
      x86: project('PatchOsX86Project', patchOsBuildSpec, false, 'OS patch layer'),
      ...(arm ? { arm: project('PatchOsArmProject', patchOsBuildSpec, true, 'OS patch layer') } : {}),
    };
    this.sourceProjects = {
      x86: project('SourceX86Project', sourceBuildSpec, false, 'rebuild from source'),
      ...(arm ? { arm: project('SourceArmProject', sourceBuildSpec, true, 'rebuild from source') } : {}),
    };
    const ownProjects = [...Object.values(this.patchOsProjects), ...Object.values(this.sourceProjects)];
    const repositories = arn('ecr', 'repository', '*');
    for (const p of ownProjects) {
      // Images live in any repository of the account (services are also discovered by tag).
      p.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
      );
      p.addToRolePolicy(
        new iam.PolicyStatement({
          actions: [
            'ecr:BatchCheckLayerAvailability',
            'ecr:BatchGetImage',
            'ecr:GetDownloadUrlForLayer',
            'ecr:InitiateLayerUpload',
            'ecr:UploadLayerPart',
            'ecr:CompleteLayerUpload',
            'ecr:PutImage',
          ],
          resources: [repositories],
        }),
      );
    }
    const sources = props.targets.flatMap((t) =>
      t.rebuild.mode === 'source' ? [t.rebuild.sourceLocation] : [],
    );
    const buckets = [...new Set(sources.flatMap((s) => /^s3:\/\/([^/]+)\//.exec(s)?.[1] ?? []))];
    const codecommit = [
      ...new Set(
        sources.flatMap((s) => /^https:\/\/git-codecommit\.[^/]+\/v1\/repos\/([^/#]+)/.exec(s)?.[1] ?? []),
      ),
    ];
    for (const p of Object.values(this.sourceProjects)) {
      if (buckets.length > 0) {
        p.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['s3:GetObject'],
            resources: buckets.map((b) => `arn:${stack.partition}:s3:::${b}/*`),
          }),
        );
      }
      if (codecommit.length > 0) {
        p.addToRolePolicy(
          new iam.PolicyStatement({
            actions: ['codecommit:GitPull'],
            resources: codecommit.map((r) => arn('codecommit', r, undefined, ArnFormat.NO_RESOURCE_NAME)),
          }),
        );
      }
    }
    const targetProjects = [
      ...new Set(props.targets.flatMap((t) => (t.rebuild.mode === 'project' ? [t.rebuild.projectName] : []))),
    ].map((name) => arn('codebuild', 'project', name));

    functions.planBuilds.addEnvironment('PATCH_OS_PROJECT_X86', this.patchOsProjects.x86.projectName);
    functions.planBuilds.addEnvironment(
      'PATCH_OS_PROJECT_ARM',
      this.patchOsProjects.arm?.projectName ?? NO_ARM_BUILDER,
    );
    functions.planBuilds.addEnvironment('SOURCE_PROJECT_X86', this.sourceProjects.x86.projectName);
    functions.planBuilds.addEnvironment(
      'SOURCE_PROJECT_ARM',
      this.sourceProjects.arm?.projectName ?? NO_ARM_BUILDER,
    );

    // ---------------------------------------------------------------- Lambda permissions
    const services = arn('ecs', 'service', '*');
    const serviceDeployments = arn('ecs', 'service-deployment', '*');
    const taggedService = {
      StringEquals: { [`aws:ResourceTag/${props.serviceTag.key}`]: props.serviceTag.value },
    };
    const describeEcs = new iam.PolicyStatement({
      actions: ['ecs:DescribeServices', 'ecs:DescribeServiceDeployments'],
      resources: [services, serviceDeployments],
    });
    // The watched alarms are named at run time (the service's deployment alarms and the target's).
    const describeAlarms = new iam.PolicyStatement({
      actions: ['cloudwatch:DescribeAlarms'],
      resources: [arn('cloudwatch', 'alarm', '*', ArnFormat.COLON_RESOURCE_NAME)],
    });
    // SendTaskSuccess has no resource-level permissions (the Service Authorization Reference lists no
    // resource type): IAM evaluates it against "*", so a state machine ARN never matches. The task
    // token itself is the capability: only a holder of a live token can answer a task. The watchers
    // never fail a task (SendTaskFailure is not granted).
    const taskResponse = new iam.PolicyStatement({
      actions: ['states:SendTaskSuccess'],
      resources: ['*'],
    });
    // Before calling a bake done, an alarm that fired and recovered between two looks counts too.
    const alarmHistory = new iam.PolicyStatement({
      actions: ['cloudwatch:DescribeAlarmHistory'],
      resources: [arn('cloudwatch', 'alarm', '*', ArnFormat.COLON_RESOURCE_NAME)],
    });
    // Services discovered by tag may be deployed while they carry the tag; explicit targets are
    // remediated tagged or not, so they are named by ARN (and only them).
    const deploy = new iam.PolicyStatement({
      actions: ['ecs:UpdateService'],
      resources: [services],
      conditions: taggedService,
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
    const deployTargets =
      targetServices.length > 0
        ? new iam.PolicyStatement({ actions: ['ecs:UpdateService'], resources: targetServices })
        : undefined;
    // Service deployments are not taggable resources, so a condition on the service's tag would
    // deny every rollback. The workflow only stops the deployment it started itself (the ARN comes
    // from its own watch), and stopping one can only roll it back to the previous revision.
    const stopDeployment = new iam.PolicyStatement({
      actions: ['ecs:StopServiceDeployment'],
      resources: [serviceDeployments],
    });

    grantLedgerReadWrite(props.ledger, key, functions.acquireLock);

    grantLedgerReadWrite(props.ledger, key, functions.requestApproval);
    grantTopicPublish(props.topic, key, functions.requestApproval);

    functions.registerTaskDefinition.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ecs:DescribeServices'], resources: [services] }),
    );
    functions.registerTaskDefinition.addToRolePolicy(
      // DescribeTaskDefinition has no resource-level permissions; RegisterTaskDefinition is on the
      // task-definition resource type, whose family (the running one's) is known only at run time.
      new iam.PolicyStatement({ actions: ['ecs:DescribeTaskDefinition'], resources: ['*'] }),
    );
    functions.registerTaskDefinition.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ecs:RegisterTaskDefinition'],
        resources: [arn('ecs', 'task-definition', '*')],
      }),
    );
    functions.registerTaskDefinition.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ecs:TagResource'],
        resources: [arn('ecs', 'task-definition', '*')],
        conditions: { StringEquals: { 'ecs:CreateAction': 'RegisterTaskDefinition' } },
      }),
    );
    functions.registerTaskDefinition.addToRolePolicy(
      // The new revision keeps the running one's task and execution roles; they may only go to ECS tasks.
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [stack.formatArn({ service: 'iam', region: '', resource: 'role', resourceName: '*' })],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );

    for (const watcher of [functions.watchDeployment, functions.deploymentEvents, functions.sweep]) {
      grantLedgerReadWrite(props.ledger, key, watcher);
      watcher.addToRolePolicy(describeEcs);
      watcher.addToRolePolicy(describeAlarms);
      watcher.addToRolePolicy(alarmHistory);
      watcher.addToRolePolicy(taskResponse);
    }

    // ---- Rescan waits (issue #15): "Verify the patched image by rescan" registers a task-token wait
    // in the ledger (lambdas/workflow/rescan-registry.ts) and answers it when the verdict is known at
    // once; the Inspector2 Scan event (deployment-events) and the sweep answer it otherwise. All three
    // assess the rescan (Inspector's coverage and findings, ECR's push time) and answer with
    // SendTaskSuccess only; the watchers already read and write the ledger. The registering step only
    // writes, queries and deletes rescan waits (least privilege: no GetItem, no batches).
    props.ledger.grant(
      functions.verifyRescan,
      'dynamodb:PutItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem',
    );
    key.grant(functions.verifyRescan, ...LEDGER_KEY_ACTIONS);
    functions.verifyRescan.addToRolePolicy(taskResponse);
    for (const assessor of [functions.verifyRescan, functions.deploymentEvents, functions.sweep]) {
      assessor.addToRolePolicy(
        // Inspector has no resource-level permissions for these reads.
        new iam.PolicyStatement({
          actions: ['inspector2:ListCoverage', 'inspector2:ListFindings'],
          resources: ['*'],
        }),
      );
      assessor.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['ecr:DescribeImages'], resources: [repositories] }),
      );
    }
    // ---- end of rescan waits

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
    functions.gate.addToRolePolicy(describeAlarms);
    functions.restore.addToRolePolicy(describeEcs);
    functions.restore.addToRolePolicy(deploy);
    if (deployTargets) functions.restore.addToRolePolicy(deployTargets);
    functions.restore.addToRolePolicy(stopDeployment);

    grantLedgerReadWrite(props.ledger, key, functions.finish);
    grantTopicPublish(props.topic, key, functions.finish);
    functions.finish.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['ssm:PutParameter'],
        resources: [arn('ssm', 'parameter', 'autopatch/*')],
      }),
    );
    // The sweep announces outcomes the finish step recorded but could not announce.
    grantTopicPublish(props.topic, key, functions.sweep);
    functions.sweep.addEnvironment('TOPIC_ARN', props.topic.topicArn);
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
    functions.finish.addToRolePolicy(
      // By name, not by reference: the state machine refers to this function already.
      new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn] }),
    );

    // ---------------------------------------------------------------- State machine
    this.stateMachineLogGroup = new logs.LogGroup(this, 'StateMachineLogs', {
      logGroupName: stateMachineLogGroupName(this.stateMachineName, stack),
      encryptionKey: key,
      retention,
    });
    /** Each ${…FunctionArn} the definition invokes, and the function behind it. */
    const invokedByDefinition: Record<string, nodejs.NodejsFunction> = {
      AcquireLockFunctionArn: functions.acquireLock,
      RequestApprovalFunctionArn: functions.requestApproval,
      PlanBuildsFunctionArn: functions.planBuilds,
      VerifyRescanFunctionArn: functions.verifyRescan,
      RegisterTaskDefinitionFunctionArn: functions.registerTaskDefinition,
      WatchDeploymentFunctionArn: functions.watchDeployment,
      RollbackFunctionArn: functions.restore,
      GateFunctionArn: functions.gate,
      FinishFunctionArn: functions.finish,
    };
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: this.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      // Inline (fromString, not fromFile): fromFile uploads the file as an S3 asset and the template then
      // holds only its S3 location; inline, `cdk diff` shows definition changes and tests read the exact
      // definition that deploys. The file stays the source of truth (see renderDefinition).
      definitionBody: sfn.DefinitionBody.fromString(renderDefinition()),
      definitionSubstitutions: Object.fromEntries(
        Object.entries(invokedByDefinition).map(([name, fn]) => [name, fn.functionArn]),
      ),
      logs: { destination: this.stateMachineLogGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
      tracingEnabled: true,
    });
    // The grants follow from the substitutions the definition invokes: one list, so they cannot drift.
    for (const fn of Object.values(invokedByDefinition)) fn.grantInvoke(this.stateMachine);
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['codebuild:StartBuild', 'codebuild:StopBuild', 'codebuild:BatchGetBuilds'],
        resources: [...ownProjects.map((p) => p.projectArn), ...targetProjects],
      }),
    );
    this.stateMachine.addToRolePolicy(
      // The .sync integration follows builds with this managed rule.
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [arn('events', 'rule', 'StepFunctionsGetEventForCodeBuildStartBuildRule')],
      }),
    );
    this.stateMachine.addToRolePolicy(deploy);
    if (deployTargets) this.stateMachine.addToRolePolicy(deployTargets);
    this.stateMachine.addToRolePolicy(stopDeployment);

    // ---------------------------------------------------------------- Deployment and alarm events
    this.eventsDeadLetterQueue = new sqs.Queue(this, 'EventsDeadLetterQueue', {
      // SQS-managed encryption, not the shared key: EventBridge writes here for every events rule, and a
      // KMS key policy naming them by ARN would need fixed rule names (a Key -> Rule -> Queue -> Key
      // cycle otherwise). Without key access EventBridge could not dead-letter an event at all.
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    // A handler that keeps failing on an event (after Lambda's own two retries) sends the event to the
    // same alarmed queue instead of dropping it; the heartbeat re-assesses the watch meanwhile.
    functions.deploymentEvents.configureAsyncInvoke({
      onFailure: new destinations.SqsDestination(this.eventsDeadLetterQueue),
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
    });
    const eventsTarget = () =>
      new targets.LambdaFunction(functions.deploymentEvents, {
        deadLetterQueue: this.eventsDeadLetterQueue,
        maxEventAge: Duration.hours(1),
        retryAttempts: 8,
      });
    this.deploymentStateRule = new events.Rule(this, 'DeploymentStateRule', {
      description: 'Autopatch: ECS deployment state changes resume the watching remediation',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Deployment State Change'],
        detail: { eventName: events.Match.anythingBut('SERVICE_DEPLOYMENT_IN_PROGRESS') },
      },
      targets: [eventsTarget()],
    });
    this.alarmStateRule = new events.Rule(this, 'AlarmStateRule', {
      description: 'Autopatch: an alarm going to ALARM resumes the remediation watching it (rollback)',
      eventPattern: {
        source: ['aws.cloudwatch'],
        detailType: ['CloudWatch Alarm State Change'],
        detail: { state: { value: ['ALARM'] } },
      },
      targets: [eventsTarget()],
    });

    // ---- Rescan waits (issue #15): Inspector's scan of a digest answers the waits for it at once; the
    // sweep is the safety net for a lost event. Same target settings (retries, DLQ) as the rules above.
    this.inspectorScanRule = new events.Rule(this, 'InspectorScanRule', {
      description: "Autopatch: Inspector's scan of a rebuilt image answers the remediation waiting for it",
      eventPattern: {
        source: ['aws.inspector2'],
        detailType: ['Inspector2 Scan'],
        detail: { 'scan-status': [...SCAN_COMPLETE_STATUSES] },
      },
      targets: [eventsTarget()],
    });
    // ---- end of rescan waits

    this.executionEndedRule = new events.Rule(this, 'ExecutionEndedRule', {
      description:
        'Autopatch: a remediation stopped by hand, timed out or failed outside its catch path releases its service lock',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { status: [...ABANDONING_STATUSES], stateMachineArn: [stateMachineArn] },
      },
      targets: [eventsTarget()],
    });
    functions.deploymentEvents.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn] }),
    );

    // The heartbeat: events first, this as the safety net (a lost event, the end of a bake, a state
    // that stays unreadable). A failed run is simply the next minute's run.
    this.sweepSchedule = new events.Rule(this, 'SweepSchedule', {
      description:
        'Autopatch: every minute, re-assess every deployment, bake and rollback a remediation waits on',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(functions.sweep, { retryAttempts: 0 })],
    });
    // The reconciler half of the sweep: is the execution a lock names still running; start a claim
    // that never started (and the run queued behind a released lock).
    functions.sweep.addEnvironment('STATE_MACHINE_ARN', stateMachineArn);
    functions.sweep.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['states:DescribeExecution'],
        resources: [arn('states', 'execution', `${this.stateMachineName}:*`, ArnFormat.COLON_RESOURCE_NAME)],
      }),
    );
    functions.sweep.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn] }),
    );

    this.acknowledge(buckets);
  }

  /** cdk-nag findings that are the design, each with its reason. */
  private acknowledge(buckets: readonly string[]): void {
    const stack = Stack.of(this);
    // cdk-nag names a finding after the rendered resource: literal region/account when the stack has
    // them, <AWS::Region>/<AWS::AccountId> otherwise, and <LogicalId.Attr> for references.
    const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
    const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
    const arn = (service: string, rest: string, inRegion = true) =>
      `arn:<AWS::Partition>:${service}:${inRegion ? region : ''}:${account}:${rest}`;
    const logicalId = (c: Construct) => stack.getLogicalId(c.node.defaultChild as CfnElement);
    const resources = (ids: string[], reason: string) =>
      ids.map((id) => ({ id: `AwsSolutions-IAM5[Resource::${id}]`, reason }));
    const v = Validations.of(this);
    v.acknowledge(
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Only actions without resource-level permissions: ecr:GetAuthorizationToken, inspector2 List*, ' +
          'ecs:DescribeTaskDefinition, states:SendTaskSuccess, X-Ray and Step Functions log ' +
          'delivery (Autopatch-IAMAnyResource checks each action against that list).',
      },
      ...resources(
        [arn('states', `execution:${this.stateMachineName}:*`)],
        "The sweep's reconciler describes the executions service locks name (named at run time), of this state machine only.",
      ),
      ...resources(
        [arn('cloudwatch', 'alarm:*')],
        "cloudwatch:DescribeAlarms of the watched alarms: the service's deployment alarms, named at run time.",
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
        [arn('ecr', 'repository/*')],
        'Vulnerable images can be in any repository of the account (services are discovered by tag).',
      ),
      ...resources(
        [arn('iam', 'role/*', false)],
        "iam:PassRole of the running task definition's own task/execution roles, unknown at synth; only to ecs-tasks.amazonaws.com.",
      ),
      ...resources(
        [arn('states', `execution:${this.stateMachineName}:*`)],
        "The sweep's reconciler describes the executions service locks name (named at run time), of this state machine only.",
      ),
      ...resources(
        [arn('cloudwatch', 'alarm:*')],
        'DescribeAlarmHistory of the watched alarms, which are named per target and by each service at run time (its deployment alarms).',
      ),
      ...resources(
        [arn('ssm', 'parameter/autopatch/*')],
        'One drift parameter per patched container, named at run time under /autopatch/.',
      ),
      ...resources(
        buckets.map((b) => `arn:<AWS::Partition>:s3:::${b}/*`),
        "Source archives of the targets' 'source' rebuilds (objects named by the target's sourceLocation).",
      ),
      ...resources(
        Object.values(this.functions).map((fn) => `<${logicalId(fn)}.Arn>:*`),
        'grantInvoke covers the function versions and aliases (CDK default).',
      ),
      ...resources(
        [...Object.values(this.patchOsProjects), ...Object.values(this.sourceProjects)].flatMap((p) => [
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
      {
        id: 'AwsSolutions-L1',
        reason: 'Node.js 22 is the runtime the project is tested against (README); upgrade deliberately.',
      },
    );
  }
}

const pascal = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * `/aws/vendedlogs/states/<state machine name>-<first 8 hex digits of the stack's id>`.
 *
 * Every log group Autopatch creates is kept when the stack is deleted (the execution history is the
 * audit trail of what was deployed), so a fixed name would make the next `cdk deploy` after a
 * `cdk destroy` fail with "already exists". The other log groups have names CloudFormation generates;
 * this one keeps a name of its own for its prefix: Step Functions delivers logs through CloudWatch
 * Logs' vended-logs delivery, which adds each log group to the account's CloudWatch Logs resource
 * policy (limited to 5,120 characters) unless the name starts with `/aws/vendedlogs/`, which one
 * policy entry covers. The stack id's GUID is new for every stack created, so a recreated stack
 * writes to a new group next to the retained one; updates of the same stack keep the name.
 */
export const stateMachineLogGroupName = (stateMachineName: string, stack: Stack): string =>
  `/aws/vendedlogs/states/${stateMachineName}-${Fn.select(0, Fn.split('-', Fn.select(2, Fn.split('/', stack.stackId))))}`;

/**
 * The definition file as deployed, unchanged. (The rescan is a task-token wait whose timeout the Map
 * derives from the request with States.MathAdd: nothing is sized at synth any more.)
 */
const renderDefinition = (): string => readFileSync(DEFINITION_FILE, 'utf8');

/** All prop problems at once, each naming its field. */
const validate = (props: RemediationWorkflowProps, stateMachineName: string): void => {
  const problems: string[] = [];
  if (!Token.isUnresolved(stateMachineName) && !/^[A-Za-z0-9_-]{1,80}$/.test(stateMachineName)) {
    problems.push(`stateMachineName "${stateMachineName}" must be 1-80 letters, digits, '-' or '_'`);
  }
  if (!props.serviceTag.key || !props.serviceTag.value) problems.push('serviceTag needs a key and a value');
  for (const t of props.targets) {
    if (
      t.rebuild.mode === 'source' &&
      !/^(s3:\/\/|https:\/\/|git@|ssh:\/\/)/.test(t.rebuild.sourceLocation)
    ) {
      problems.push(
        `targets[${t.cluster}/${t.service}].rebuild.sourceLocation "${t.rebuild.sourceLocation}" must be s3://… or a git URL`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigurationError(`RemediationWorkflow: ${problems.join('; ')}`);
};
