import { Stack, Token } from 'aws-cdk-lib';
import type * as codebuild from 'aws-cdk-lib/aws-codebuild';
import type * as ecr from 'aws-cdk-lib/aws-ecr';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TargetConfig, WorkflowDefaults } from '../../lambdas/shared/config';
import { ConfigurationError } from '../../lambdas/shared/errors';
import { FLEET_ENV, type FleetSettings, fleetSchema, PAUSE_PARAMETER_ENV } from '../../lambdas/shared/fleet';
import type { LedgerTable } from '../grants';
import { acknowledgeWorkflowFindings } from './acknowledgements';
import { type ArchitectureProjects, createBuildProjects, namePlannedProjects } from './builders';
import { createStateMachine, stateMachineArnOf } from './definition';
import { createWorkflowEvents } from './events';
import { grantFunctionPermissions } from './function-permissions';
import { createWorkflowFunctions, type FunctionRole, functionsBySubstitution } from './functions';
import { ecrPushScope, WorkflowStatements } from './iam';
import type { BuildRegistriesProps } from './registries';

export interface RemediationWorkflowProps extends BuildRegistriesProps {
  /** The ledger table (shared with triage): locks, history, task tokens. */
  readonly ledger: LedgerTable;
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
  /**
   * Let the image builds push only to ECR repositories carrying the service tag (and those the
   * explicit targets list). Off by default so that deployments made before this option keep working
   * (their repositories were never tagged); synth warns while it is off. docs/deploy.md, "IAM".
   * @default false
   */
  readonly pushToTaggedRepositoriesOnly?: boolean;
  /**
   * Other Regions whose ECR registries, in the hub's account, hold images of the services Autopatch
   * patches (an organization's `regions`): the builds pull and push there, the rescan and the index
   * assembly read there, each on that Region's repositories by ARN.
   * @default - the hub's Region only
   */
  readonly registryRegions?: readonly string[];
  /**
   * The task and execution roles (ARNs; `*` allowed in the role name) the patched task definitions
   * may pass to ECS: iam:PassRole on exactly these. docs/deploy.md, "Narrowing iam:PassRole".
   * @default - any role of the account, only to ecs-tasks.amazonaws.com
   */
  readonly taskRoleArns?: readonly string[];
  /** Fleet guardrails: caps, stages, poll period (see lambdas/shared/fleet.ts). @default - none */
  readonly fleet?: FleetSettings;
}

/**
 * The remediation workflow: the Step Functions state machine (statemachines/remediation.asl.json),
 * the Lambdas its Tasks call, the CodeBuild projects that rebuild images, and the EventBridge rules
 * that resume a watching execution when its deployment or alarms change.
 *
 * Where a change belongs (all in lib/workflow/, each part creating its resources in this construct,
 * so construct paths and logical ids do not depend on how the code is split):
 * - functions.ts: the task Lambdas (runtime and bundling: lambda-runtime.ts);
 * - function-permissions.ts: what each task Lambda may call;
 * - builders.ts: the CodeBuild projects and their roles;
 * - definition.ts: the rendered definition, the state machine and its role (retry-policy.ts: the
 *   Lambda retry every Lambda Task gets);
 * - events.ts: the EventBridge rules, their dead-letter queue, the sweep's schedule;
 * - iam.ts: statements several principals share; acknowledgements.ts: the cdk-nag acknowledgements.
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
  /** Assembles the patched platforms of an image index into a new index (multi-architecture images). */
  public readonly assembleIndexesFunction: nodejs.NodejsFunction;
  public readonly registerTaskDefinitionFunction: nodejs.NodejsFunction;
  public readonly watchDeploymentFunction: nodejs.NodejsFunction;
  public readonly restoreFunction: nodejs.NodejsFunction;
  public readonly finishFunction: nodejs.NodejsFunction;
  public readonly deploymentEventsFunction: nodejs.NodejsFunction;
  /** The scheduled sweep: the heartbeat under every event-driven wait. */
  public readonly sweepFunction: nodejs.NodejsFunction;
  /** The pause switch: `paused` stops new deployments at once, `running` lets them go. */
  public readonly pauseParameter: ssm.StringParameter;
  /** Runs the sweep every minute. */
  public readonly sweepSchedule: events.Rule;
  /** OS patch layer builds, per CPU architecture (no arm64 project where CodeBuild offers no ARM, see props.armBuilds). */
  public readonly patchOsProjects: { readonly x86: codebuild.Project; readonly arm?: codebuild.Project };
  /** Rebuilds from source, per CPU architecture (no arm64 project where CodeBuild offers no ARM, see props.armBuilds). */
  public readonly sourceProjects: { readonly x86: codebuild.Project; readonly arm?: codebuild.Project };
  /** The projects that check targets' repositories out through CodeConnections, by sourceLocation. */
  public readonly connectedSourceProjects: ReadonlyMap<string, ArchitectureProjects>;
  /** The ECR pull-through cache rules created for `pullThroughCache` (`createPullThroughCacheRules`). */
  public readonly pullThroughCacheRules: readonly ecr.CfnPullThroughCacheRule[];
  public readonly buildLogGroup: logs.LogGroup;
  public readonly deploymentStateRule: events.Rule;
  public readonly alarmStateRule: events.Rule;
  /** CodeDeploy deployment state changes (CODE_DEPLOY services). */
  public readonly codeDeployStateRule: events.Rule;
  /** Inspector2 Scan events: answer the waits for a rescan of the scanned digest. */
  public readonly inspectorScanRule: events.Rule;
  /** The state machine's own executions that ended ABORTED, TIMED_OUT or FAILED: release their lock. */
  public readonly executionEndedRule: events.Rule;
  /** Events the deployment-events Lambda could not handle after EventBridge's retries. */
  public readonly eventsDeadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: RemediationWorkflowProps) {
    super(scope, id);
    this.stateMachineName = props.stateMachineName ?? `${Stack.of(this).stackName}-Remediation`.slice(0, 80);
    validate(props, this.stateMachineName);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const { encryptionKey } = props;
    const stateMachineArn = stateMachineArnOf(this, this.stateMachineName);
    const statements = new WorkflowStatements(this, props);

    const { functions, logGroups } = createWorkflowFunctions(this, { ...props, logRetention });
    this.functions = functions;
    this.functionLogGroups = logGroups;
    this.acquireLockFunction = functions.acquireLock;
    this.planBuildsFunction = functions.planBuilds;
    this.requestApprovalFunction = functions.requestApproval;
    this.verifyRescanFunction = functions.verifyRescan;
    this.assembleIndexesFunction = functions.assembleIndexes;
    this.registerTaskDefinitionFunction = functions.registerTaskDefinition;
    this.watchDeploymentFunction = functions.watchDeployment;
    this.restoreFunction = functions.restore;
    this.finishFunction = functions.finish;
    this.deploymentEventsFunction = functions.deploymentEvents;
    this.sweepFunction = functions.sweep;
    // How often the sweep sends each service's notify digest.
    functions.sweep.addEnvironment('NOTIFY_DIGEST_MINUTES', String(props.defaults.notifyDigestMinutes));

    // The pause switch. Outside /autopatch/*, where the finish step records patched images, so no
    // step can flip it; a stack update that leaves it unchanged keeps whatever value it was set to.
    const pauseParameterName = `/autopatch-control/${Stack.of(this).stackName}/deployments`;
    this.pauseParameter = new ssm.StringParameter(this, 'PauseSwitch', {
      parameterName: pauseParameterName,
      stringValue: 'running',
      description:
        "Autopatch's pause switch: 'paused' stops new deployments at once (runs already deploying finish or roll back); 'running' lets them go.",
    });
    const fleet = props.fleet ?? fleetSchema.parse({});
    for (const fn of [functions.takeDeploySlot, functions.sweep]) {
      fn.addEnvironment(FLEET_ENV, JSON.stringify(fleet));
      fn.addEnvironment(PAUSE_PARAMETER_ENV, pauseParameterName);
    }

    const builds = createBuildProjects(this, { ...props, logRetention, arn: statements.arn });
    this.buildLogGroup = builds.buildLogGroup;
    this.patchOsProjects = builds.patchOsProjects;
    this.sourceProjects = builds.sourceProjects;
    namePlannedProjects(functions.planBuilds, builds);
    this.connectedSourceProjects = builds.connectedSourceProjects;
    this.pullThroughCacheRules = builds.pullThroughCacheRules;

    grantFunctionPermissions(functions, {
      ...props,
      pauseParameterName: pauseParameterName,
      statements,
      stateMachineArn,
      stateMachineName: this.stateMachineName,
    });

    const machine = createStateMachine(this, {
      stateMachineName: this.stateMachineName,
      encryptionKey,
      logRetention,
      functions: functionsBySubstitution(functions),
      projects: builds.ownProjects,
      targetProjectArns: builds.targetProjectArns,
      statements,
    });
    this.stateMachine = machine.stateMachine;
    this.stateMachineLogGroup = machine.logGroup;

    const wakeUps = createWorkflowEvents(this, {
      deploymentEvents: functions.deploymentEvents,
      sweep: functions.sweep,
      stateMachineArn,
    });
    this.eventsDeadLetterQueue = wakeUps.eventsDeadLetterQueue;
    this.deploymentStateRule = wakeUps.deploymentStateRule;
    this.alarmStateRule = wakeUps.alarmStateRule;
    this.codeDeployStateRule = wakeUps.codeDeployStateRule;
    this.inspectorScanRule = wakeUps.inspectorScanRule;
    this.executionEndedRule = wakeUps.executionEndedRule;
    this.sweepSchedule = wakeUps.sweepSchedule;

    acknowledgeWorkflowFindings(this, {
      stateMachineName: this.stateMachineName,
      functions: Object.values(functions),
      projects: builds.ownProjects,
      sourceBuckets: builds.sourceBuckets,
      pushToAnyRepository: ecrPushScope(statements.arn, props).anyRepository,
      ...(props.registryRegions !== undefined ? { registryRegions: props.registryRegions } : {}),
      pullThroughPrefixes: builds.pullThroughPrefixes,
      ...(props.taskRoleArns !== undefined && props.taskRoleArns.length > 0
        ? { taskRoleArns: props.taskRoleArns }
        : {}),
    });
  }
}

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
  const connections = new Map<string, string>();
  for (const t of props.targets) {
    if (t.rebuild.mode !== 'source' || t.rebuild.connectionArn === undefined) continue;
    const { sourceLocation, connectionArn } = t.rebuild;
    if (Token.isUnresolved(sourceLocation)) {
      problems.push(
        `targets[${t.cluster}/${t.service}].rebuild.sourceLocation must be known at synth with a connectionArn (it names the repository's build project)`,
      );
      continue;
    }
    const other = connections.get(sourceLocation);
    if (other !== undefined && other !== connectionArn)
      problems.push(
        `targets[${t.cluster}/${t.service}].rebuild: ${sourceLocation} is checked out through two connections (${other} and ${connectionArn}); give it one`,
      );
    connections.set(sourceLocation, connectionArn);
  }
  if (problems.length > 0) throw new ConfigurationError(`RemediationWorkflow: ${problems.join('; ')}`);
};
