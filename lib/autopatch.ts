import { Annotations, ArnFormat, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { z } from 'zod';
import {
  ACCOUNT_ALIASES_ENV,
  accountAliasesSchema,
  discoverByTagSchema,
  type TargetConfig,
  type TargetConfigInput,
  type TriageRuntimeConfig,
  targetSchema,
  type WorkflowDefaults,
  workflowDefaultsSchema,
} from '../lambdas/shared/config';
import { LEDGER } from '../lambdas/shared/contracts';
import { ConfigurationError } from '../lambdas/shared/errors';
import {
  type FleetSettings,
  type FleetSettingsInput,
  fleetSchema,
  usesOrganizationalUnits,
} from '../lambdas/shared/fleet';
import { checkPolicy, DEFAULT_POLICY } from '../lambdas/triage/policy';
import { type AutopatchAlarmsOptions, AutopatchDashboard } from './dashboard';
import { Intake } from './intake';
import { InventoryIndex } from './inventory';
import { Notifications } from './notifications';
import {
  type AutopatchOrganization,
  allowSpokesToSendEvents,
  checkOrganization,
  eventAccounts,
  eventRegions,
  grantAssumeSpokeRole,
  grantListParents,
  HOME_ACCOUNT_ENV,
  type ResolvedOrganization,
  SPOKE_ROLE_ENV,
} from './organization';
import { TRIAGE_BATCHING_WINDOW, TRIAGE_TIMEOUT, TriageFunction } from './triage-function';
import { containsToken, parseTokenAware } from './validation';
import { RemediationWorkflow } from './workflow';
import { limitSpokeEventAccounts } from './workflow/events';
import { checkBuildRegistries, type PullThroughCache, type RegistryCredentials } from './workflow/registries';

/** The input form of the workflow defaults: every field optional, defaults applied by the schema. */
export type WorkflowDefaultsInput = z.input<typeof workflowDefaultsSchema>;

/**
 * One ECS service to protect: the cdk.json `targets[]` entry, plus `bakeTime` as a CDK Duration (the
 * same setting as `bakeTimeMinutes`, whole minutes; give one of them).
 */
export type AutopatchTarget = TargetConfigInput & {
  /**
   * How long the patched revision must run, after production traffic reached it, with every watched
   * alarm OK before it counts as patched.
   * @default - `bakeTimeMinutes`, else `workflowDefaults.bakeTimeMinutes` (60 minutes)
   */
  readonly bakeTime?: Duration;
};

/** The tag that marks ECS services Autopatch protects without listing them as targets. */
export interface ServiceTag {
  readonly key: string;
  readonly value: string;
}

export interface AutopatchNotifications {
  /**
   * Email addresses subscribed to the notification topic. Each address receives a confirmation
   * email from SNS and gets nothing until it confirms.
   * @default - no subscriptions
   */
  readonly emails?: readonly string[];
  /**
   * An existing topic to notify instead of creating one. Its encryption and access policy are the
   * owner's; `emails` are subscribed to it.
   * @default - a new topic encrypted with `encryptionKey` that only accepts TLS
   */
  readonly topic?: sns.ITopic;
}

export interface AutopatchProps {
  /**
   * The policy document (policy-as-code): which findings are remediated, need approval, are only
   * notified or ignored. Validated at synth; an invalid policy fails with the bad field's path.
   * @default - DEFAULT_POLICY: remediate CRITICAL and HIGH findings that have a fix, notify for the rest
   */
  readonly policy?: unknown;
  /**
   * ECS services to protect explicitly, with per-service settings (alarms watched during the bake,
   * bake time, how to rebuild the image).
   * @default - none: only services found by `discoverByTag` are protected
   */
  readonly targets?: readonly AutopatchTarget[];
  /**
   * Services carrying this tag are protected too, with the workflow defaults.
   * @default { key: 'autopatch:enabled', value: 'true' }
   */
  readonly discoverByTag?: ServiceTag;
  /**
   * Where approval requests and outcomes are sent.
   * @default - a new encrypted topic with no subscriptions
   */
  readonly notifications?: AutopatchNotifications;
  /**
   * Decide and report, start nothing: triage logs each decision and the remediations it would start,
   * and is not allowed to start executions.
   * @default false
   */
  readonly dryRun?: boolean;
  /**
   * Defaults for services that have no target entry (bake time, deployment, rescan and approval
   * timeouts).
   * @default - the schema defaults: 60 min bake, 2 h deployment, 1 h rescan, 24 h approval
   */
  readonly workflowDefaults?: WorkflowDefaultsInput;
  /**
   * Fleet guardrails: caps on deployments in flight (in the organization, per account, per Region),
   * the rollout order (`stages`: staging before production, by account, Region or service tag), and
   * how often a waiting run asks again. The pause switch (see {@link Autopatch.pauseParameter})
   * always exists. docs/deploy.md, "Fleet guardrails".
   * @default - no caps and no stages: only the pause switch applies
   */
  readonly fleet?: FleetSettingsInput;
  /**
   * Encrypts Autopatch's data: queues, ledger, topic and logs. When you pass a key imported with
   * `fromKeyArn`, its key policy cannot be changed here: allow EventBridge and CloudWatch Logs
   * yourself (see the synth warnings).
   * @default - a new customer-managed key with automatic rotation
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * How long the logs of triage and of the workflow (executions, functions, builds) are kept.
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Most triage invocations that run at once (the SQS event source's maximum concurrency), so a
   * burst of findings cannot stampede the ECS and Step Functions APIs. Nothing is reserved from the
   * account's Lambda concurrency, so this deploys in accounts with a low concurrency quota.
   * Between 2 and 1000.
   * @default 5
   */
  readonly triageConcurrency?: number;
  /**
   * More accounts whose Inspector finding events Autopatch accepts (the events' `account`), on top
   * of the account it is deployed in. Only events that reach this account's default event bus count
   * (another account's arrive only if a rule there forwards them), and the images must be ones this
   * account's ECS services run and Autopatch may rebuild (its build projects push to this account's
   * repositories only).
   * @default - the deploying account only
   */
  readonly findingAccounts?: readonly string[];
  /**
   * Create the arm64 CodeBuild projects that patch and rebuild arm64 images. CodeBuild offers arm64
   * builds (ARM_CONTAINER) in some Regions only, and creating one elsewhere fails the deployment.
   * Set false to deploy an environment-agnostic stack in such a Region (arm64 images then end
   * BuildCouldNotRun), or true where CodeBuild offers ARM but `CODEBUILD_ARM_REGIONS` does not list it.
   * @default - when the stack's Region is known at synth, whether it is in `CODEBUILD_ARM_REGIONS`;
   * otherwise true
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
   * Registries the source rebuilds log in to before they pull base images: registry host
   * (`docker.io`, `ghcr.io`, `registry.example.com:5000`) → the complete ARN of a Secrets Manager
   * secret holding `{"username": "…", "accessToken": "…"}`. The builds may read exactly these
   * secrets. docs/deploy.md, "Base images from other registries".
   * @default - none: base images are pulled anonymously
   */
  readonly registryCredentials?: RegistryCredentials;
  /**
   * Pull base images through the account's ECR pull-through cache: upstream registry host
   * (`docker.io`, `ghcr.io`, `quay.io`, …) → the ECR repository prefix of its rule. The source
   * rebuild rewrites the FROM lines of its copy of the Dockerfile to the cache
   * (`FROM node:20` → `FROM <account>.dkr.ecr.<region>.amazonaws.com/<prefix>/library/node:20`).
   * @default - none: base images are pulled from their registries
   */
  readonly pullThroughCache?: PullThroughCache;
  /**
   * Create the pull-through cache rules `pullThroughCache` names, with the credentials
   * `registryCredentials` gives (Docker Hub, GitHub and GitLab need them; the secret's name must
   * start with `ecr-pullthroughcache/`).
   * @default false
   */
  readonly createPullThroughCacheRules?: boolean;
  /**
   * The task and execution roles the services' task definitions use: role ARNs, or role names in
   * this account, `*` allowed in the name (`ecs-task-*`). iam:PassRole (registering the patched
   * revision) is granted on exactly these. docs/deploy.md, "Narrowing iam:PassRole".
   * @default - any role of the account, only to ecs-tasks.amazonaws.com
   */
  readonly taskRoleArns?: readonly string[];
  /**
   * What happens to the ledger (locks and remediation history) when the stack is deleted.
   * @default RemovalPolicy.RETAIN
   */
  readonly ledgerRemovalPolicy?: RemovalPolicy;
  /**
   * The alarms on Autopatch itself (dead letters, triage errors, failed executions, incomplete
   * rollbacks), sent to the notification topic. Each links to its docs/runbook.md entry.
   * @default - every alarm, with its default threshold
   */
  readonly alarms?: AutopatchAlarmsOptions;
  /**
   * Name of the on-call CloudWatch dashboard.
   * @default - a name CloudFormation generates
   */
  readonly dashboardName?: string;
  /**
   * The account's alias (or the short name people know it by), shown next to the account id in
   * approval requests and outcome notifications.
   * @default - the account id only
   */
  readonly accountAlias?: string;
  /**
   * Aliases of the other accounts the hub serves (account id → alias), shown next to a spoke
   * service's account id in approval requests, outcome notifications and digests.
   * @default - account ids only
   */
  readonly accountAliases?: Readonly<Record<string, string>>;
  /**
   * Run as the hub of an organization (docs/organizations.md): the default bus accepts the events
   * the spokes (`AutopatchSpoke`) forward, the intake accepts findings of the organization's
   * accounts, and the hub's Lambdas and builds may assume the spoke role in them.
   * @default - one account: the deploying account's findings and services only
   */
  readonly organization?: AutopatchOrganization;
}

/** Tag looked for when `discoverByTag` is not given. */
export const DEFAULT_SERVICE_TAG: ServiceTag = { key: 'autopatch:enabled', value: 'true' };
const DEFAULT_TRIAGE_CONCURRENCY = 5;
/** How much of the slot step's 4 KB environment the fleet settings (AUTOPATCH_FLEET) may take. */
const FLEET_ENVIRONMENT_BUDGET_BYTES = 3072;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const ACCOUNT_ID = /^\d{12}$/;
/** An IAM role ARN; `*` and `?` allowed in the path and name (IAM matches them as wildcards). */
const ROLE_ARN = /^arn:aws(-[a-z]+)*:iam::\d{12}:role\/[\w+=,.@/*?-]{1,512}$/;
/** A role name, with its path if it has one (`service-role/ecs-task`); `*` and `?` allowed. */
const ROLE_NAME = /^[\w+=,.@*?-]+(\/[\w+=,.@*?-]+)*$/;

/** Props after validation, with every default applied. */
interface ResolvedProps {
  readonly policy: unknown;
  readonly targets: TargetConfig[];
  readonly discoverByTag: ServiceTag;
  readonly defaults: WorkflowDefaults;
  readonly fleet: FleetSettings;
  readonly accountAliases: Readonly<Record<string, string>>;
  readonly dryRun: boolean;
  readonly emails: readonly string[];
  readonly logRetention: logs.RetentionDays;
  readonly triageConcurrency: number;
  /** The deploying account first, then `findingAccounts`, without duplicates. */
  readonly findingAccounts: readonly string[];
  /** `taskRoleArns` as ARNs (names made ARNs of this account); undefined when not given. */
  readonly taskRoleArns?: readonly string[];
  readonly organization?: ResolvedOrganization;
}

/**
 * Autopatch: remediates vulnerable container images that Amazon Inspector reports for ECS services.
 *
 * Inspector findings (EventBridge) are buffered in an encrypted SQS queue; the triage Lambda decides
 * by policy and starts one remediation workflow (Step Functions) per affected service; outcomes go
 * to an SNS topic. The smallest deployment is `new Autopatch(this, 'Autopatch')`.
 */
export class Autopatch extends Construct {
  /** Encrypts the queues, the ledger, the topic (when created here) and the logs. */
  public readonly encryptionKey: kms.IKey;
  /** Intake queue of Inspector findings, consumed by triage. */
  public readonly queue: sqs.Queue;
  /** Findings triage failed on five times, and events EventBridge could not deliver. */
  public readonly deadLetterQueue: sqs.Queue;
  /** The EventBridge rule that sends Inspector findings to the intake queue. */
  public readonly rule: events.Rule;
  public readonly triageFunction: nodejs.NodejsFunction;
  public readonly triageLogGroup: logs.LogGroup;
  /** Locks (one remediation in flight per service), remediation history, duplicate-delivery markers. */
  public readonly ledger: dynamodb.Table;
  /** Approval requests and outcomes. */
  public readonly topic: sns.ITopic;
  public readonly workflow: RemediationWorkflow;
  /** The inventory index: which services run which images, kept current by ECS events. */
  public readonly inventory: InventoryIndex;
  /**
   * The pause switch: an SSM String parameter. Set it to `paused` and no new deployment starts
   * anywhere (runs already deploying finish their bake, or roll back); set it to `running` to go on.
   * No redeploy needed.
   */
  public readonly pauseParameter: ssm.StringParameter;
  /** The remediation state machine (`workflow.stateMachine`). */
  public readonly stateMachine: sfn.StateMachine;
  /** The on-call dashboard and the alarms on Autopatch itself (`dashboard.alarms`). */
  public readonly dashboard: AutopatchDashboard;

  constructor(scope: Construct, id: string, props: AutopatchProps = {}) {
    super(scope, id);
    const resolved = this.validate(props);

    this.encryptionKey =
      props.encryptionKey ??
      new kms.Key(this, 'Key', {
        description: 'Autopatch: encrypts the intake queues, ledger, notifications and logs.',
        enableKeyRotation: true,
      });
    this.allowLogsToUseKey();

    const intake = new Intake(this, 'Intake', {
      encryptionKey: this.encryptionKey,
      // Lambda's guidance for SQS event sources: at least six times the function timeout, plus the
      // batching window, so a message is not redelivered while a retried batch still holds it.
      visibilityTimeout: Duration.seconds(
        6 * TRIAGE_TIMEOUT.toSeconds() + TRIAGE_BATCHING_WINDOW.toSeconds(),
      ),
      ...intakeAccounts(this, resolved),
    });
    this.queue = intake.queue;
    this.deadLetterQueue = intake.deadLetterQueue;
    this.rule = intake.rule;

    this.ledger = new dynamodb.Table(this, 'Ledger', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.encryptionKey,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: LEDGER.ttlAttribute,
      removalPolicy: props.ledgerRemovalPolicy ?? RemovalPolicy.RETAIN,
    });

    this.topic = new Notifications(this, 'Notifications', {
      encryptionKey: this.encryptionKey,
      emails: resolved.emails,
      ...(props.notifications?.topic ? { topic: props.notifications.topic } : {}),
    }).topic;

    this.workflow = new RemediationWorkflow(this, 'Workflow', {
      ledger: this.ledger,
      topic: this.topic,
      encryptionKey: this.encryptionKey,
      targets: resolved.targets,
      serviceTag: resolved.discoverByTag,
      defaults: resolved.defaults,
      fleet: resolved.fleet,
      logRetention: resolved.logRetention,
      ...(props.accountAlias ? { accountAlias: props.accountAlias } : {}),
      ...(props.armBuilds !== undefined ? { armBuilds: props.armBuilds } : {}),
      pushToTaggedRepositoriesOnly: props.pushToTaggedRepositoriesOnly === true,
      ...(props.registryCredentials !== undefined ? { registryCredentials: props.registryCredentials } : {}),
      ...(props.pullThroughCache !== undefined ? { pullThroughCache: props.pullThroughCache } : {}),
      ...(props.createPullThroughCacheRules !== undefined
        ? { createPullThroughCacheRules: props.createPullThroughCacheRules }
        : {}),
      ...(resolved.taskRoleArns !== undefined ? { taskRoleArns: resolved.taskRoleArns } : {}),
      // An organization's Regions: the builds push to the hub account's registry there too.
      ...(resolved.organization?.regions !== undefined
        ? { registryRegions: resolved.organization.regions }
        : {}),
    });
    this.pauseParameter = this.workflow.pauseParameter;
    // Spoke accounts by alias in what people read: the finish step, approval requests, digests.
    if (Object.keys(resolved.accountAliases).length > 0) {
      const { finish, requestApproval, sweep } = this.workflow.functions;
      for (const fn of [finish, requestApproval, sweep])
        fn.addEnvironment(ACCOUNT_ALIASES_ENV, JSON.stringify(resolved.accountAliases));
    }
    if (props.pushToTaggedRepositoriesOnly !== true) {
      Annotations.of(this).addWarningV2(
        'autopatch:ecr-push-any-repository',
        `The image builds may push to every ECR repository of the account. Tag the repositories of the services Autopatch patches with ${resolved.discoverByTag.key}=${resolved.discoverByTag.value} (or list them in targets[].repositories) and set pushToTaggedRepositoriesOnly: true to narrow it; it will become the default in the next major version (docs/deploy.md, "IAM").`,
      );
    }
    this.stateMachine = this.workflow.stateMachine;

    const triage = new TriageFunction(this, 'Triage', {
      queue: this.queue,
      ledger: this.ledger,
      stateMachine: this.stateMachine,
      encryptionKey: this.encryptionKey,
      config: runtimeConfig(resolved),
      logRetention: resolved.logRetention,
      maxConcurrency: resolved.triageConcurrency,
    });
    this.triageFunction = triage.function;
    this.triageLogGroup = triage.logGroup;

    // Inventory index (issue #13): ECS events and an hourly reconcile keep IMAGE#/INVENTORY# items in
    // the ledger current; triage reads them (its ledger grant covers them) and scans ECS until the
    // first reconcile has completed.
    // The reconcile walks every listed spoke account in every served Region from the start, so a
    // service that has not deployed since its spoke went in is indexed too (spokes forward ECS
    // events, not the API calls that created the service).
    const spokePlaces = (resolved.organization?.accounts ?? []).flatMap((account) =>
      (resolved.organization?.regions ?? [Stack.of(this).region]).map((region) => ({ account, region })),
    );
    this.inventory = new InventoryIndex(this, 'Inventory', {
      ledger: this.ledger,
      encryptionKey: this.encryptionKey,
      logRetention: resolved.logRetention,
      ...(spokePlaces.length > 0 ? { places: spokePlaces } : {}),
    });

    // Where a resource lives: the hub's account is home (its own credentials), any other is a spoke.
    for (const fn of this.hubFunctions()) fn.addEnvironment(HOME_ACCOUNT_ENV, Stack.of(this).account);
    if (resolved.organization !== undefined) this.serveOrganization(resolved.organization);
    // Fleet stages by organizational unit: the slot step asks Organizations for an account's OUs.
    const slotRole = this.workflow.functions.takeDeploySlot.role;
    if (usesOrganizationalUnits(resolved.fleet) && slotRole !== undefined)
      grantListParents(this, resolved.organization, slotRole);

    this.dashboard = new AutopatchDashboard(this, 'Dashboard', {
      queue: this.queue,
      deadLetterQueue: this.deadLetterQueue,
      eventsDeadLetterQueue: this.workflow.eventsDeadLetterQueue,
      triageFunction: this.triageFunction,
      stateMachine: this.stateMachine,
      topic: this.topic,
      finishLogGroup: this.workflow.functionLogGroups.finish,
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
      ...(props.alarms ? { alarms: props.alarms } : {}),
    });
  }

  /**
   * The hub of an organization: the default bus accepts the spokes' events, the workflow's event
   * rules accept them from the listed accounts, and the hub's roles that act in workload accounts
   * (triage's inventory, the workflow steps that read or change services, alarms, deployments,
   * images and scans, and the image builds) may assume the spoke role. The steps that only use the
   * ledger, the topic or Step Functions (plan builds, request approval, finish) may not.
   */
  /** Every Lambda of the hub: triage, the inventory's and the workflow's. */
  private hubFunctions(): nodejs.NodejsFunction[] {
    return [
      this.triageFunction,
      this.inventory.indexer,
      this.inventory.reconciler,
      ...Object.values(this.workflow.functions),
    ];
  }

  private serveOrganization(organization: ResolvedOrganization): void {
    allowSpokesToSendEvents(this, organization);
    const accounts = eventAccounts(this, organization);
    if (accounts !== undefined) limitSpokeEventAccounts(this.workflow, accounts);
    const {
      planBuilds: _plan,
      requestApproval: _approval,
      finish: _finish,
      ...inSpokes
    } = this.workflow.functions;
    const projects = [
      this.workflow.patchOsProjects,
      this.workflow.sourceProjects,
      ...this.workflow.connectedSourceProjects.values(),
    ].flatMap((p) => [p.x86, ...(p.arm ? [p.arm] : [])]);
    const roles = [
      this.triageFunction.role,
      this.inventory.indexer.role,
      this.inventory.reconciler.role,
      ...Object.values(inSpokes).map((fn) => fn.role),
      ...projects.map((p) => p.role),
    ].filter((r): r is iam.IRole => r !== undefined);
    grantAssumeSpokeRole(this, organization, [...new Set(roles)]);
    if (organization.spokeRoleNameGiven)
      for (const fn of this.hubFunctions()) fn.addEnvironment(SPOKE_ROLE_ENV, organization.spokeRoleName);
  }

  /**
   * Check every prop before creating anything and report every problem at once, each naming its
   * field, so a bad configuration takes one synth to fix rather than one per mistake.
   */
  private validate(props: AutopatchProps): ResolvedProps {
    const errors: string[] = [];

    let policy = props.policy ?? DEFAULT_POLICY;
    if (containsToken(policy)) {
      Annotations.of(this).addWarningV2(
        'autopatch:policy-tokens',
        'The policy holds deploy-time values (tokens), so it is validated when triage starts, not at synth.',
      );
    } else {
      try {
        // Validate, and hand triage, exactly what it will receive: the policy after a trip through JSON.
        policy = JSON.parse(JSON.stringify(policy));
        // Each bad field on a line of its own ("policy.rules[0].action: ...").
        for (const problem of checkPolicy(policy).problems ?? []) {
          errors.push(`${problem.path}: ${problem.message}`);
        }
      } catch (error) {
        errors.push(
          `policy: cannot be written as JSON (${error instanceof Error ? error.message : String(error)})`,
        );
      }
    }

    const targets: TargetConfig[] = [];
    if (props.targets !== undefined && !Array.isArray(props.targets)) {
      errors.push('targets: must be a list of targets');
    } else {
      const seen = new Map<string, number>();
      (props.targets ?? []).forEach((target, index) => {
        const { bakeTime, ...input } = target;
        if (bakeTime !== undefined) {
          if (!(bakeTime instanceof Duration)) {
            errors.push(
              `targets[${index}].bakeTime: must be a Duration (Duration.minutes(n)); in cdk.json, use bakeTimeMinutes`,
            );
            return;
          }
          if (input.bakeTimeMinutes !== undefined) {
            errors.push(`targets[${index}]: give bakeTime or bakeTimeMinutes, not both`);
            return;
          }
          if (!Token.isUnresolved(bakeTime.toSeconds()) && bakeTime.toSeconds() % 60 !== 0) {
            errors.push(
              `targets[${index}].bakeTime: must be whole minutes (got ${bakeTime.toHumanString()})`,
            );
            return;
          }
          (input as { bakeTimeMinutes?: number }).bakeTimeMinutes = bakeTime.toMinutes();
        }
        const parsed = parseTokenAware(targetSchema, input, `targets[${index}]`);
        if (parsed.errors) {
          errors.push(...parsed.errors);
          return;
        }
        targets.push(parsed.value);
        const { cluster, service } = parsed.value;
        if (Token.isUnresolved(cluster) || Token.isUnresolved(service)) return;
        const key = `${cluster.replace(/^arn:.*:cluster\//, '')}/${service}`;
        const first = seen.get(key);
        if (first === undefined) seen.set(key, index);
        else errors.push(`targets[${index}]: ${key} is already targets[${first}]`);
      });
    }

    const tag = parseTokenAware(
      discoverByTagSchema,
      props.discoverByTag ?? DEFAULT_SERVICE_TAG,
      'discoverByTag',
    );
    if (tag.errors) errors.push(...tag.errors);

    const defaults = parseTokenAware(
      workflowDefaultsSchema,
      props.workflowDefaults ?? {},
      'workflowDefaults',
    );
    if (defaults.errors) errors.push(...defaults.errors);
    const fleet = parseTokenAware(fleetSchema, props.fleet ?? {}, 'fleet');
    if (fleet.errors) errors.push(...fleet.errors);
    // The slot step and the sweep carry the fleet settings in their environment (Lambda: 4 KB in all,
    // names and values); 3 KB of it for the settings leaves room for the other variables.
    const fleetBytes = fleet.value !== undefined ? Buffer.byteLength(JSON.stringify(fleet.value)) : 0;
    if (fleetBytes > FLEET_ENVIRONMENT_BUDGET_BYTES)
      errors.push(
        `fleet: ${fleetBytes} bytes as JSON, more than the ${FLEET_ENVIRONMENT_BUDGET_BYTES} the slot step's environment has room for (Lambda allows 4096 in all): list fewer accounts in fleet.accountOUs and let the hub look the others up (organizations:ListParents), or name fewer stage criteria`,
      );
    const aliases = parseTokenAware(accountAliasesSchema, props.accountAliases ?? {}, 'accountAliases');
    if (aliases.errors) errors.push(...aliases.errors);

    const emails = props.notifications?.emails ?? [];
    if (!Array.isArray(emails)) {
      errors.push('notifications.emails: must be a list of email addresses');
    } else {
      emails.forEach((email: unknown, index) => {
        if (Token.isUnresolved(email)) return;
        if (typeof email !== 'string' || !EMAIL.test(email)) {
          errors.push(`notifications.emails[${index}]: ${JSON.stringify(email)} is not an email address`);
        }
      });
    }

    if (props.dryRun !== undefined && typeof props.dryRun !== 'boolean') {
      errors.push(`dryRun: must be true or false, got ${JSON.stringify(props.dryRun)}`);
    }
    if (
      props.pushToTaggedRepositoriesOnly !== undefined &&
      typeof props.pushToTaggedRepositoriesOnly !== 'boolean'
    ) {
      errors.push(
        `pushToTaggedRepositoriesOnly: must be true or false, got ${JSON.stringify(props.pushToTaggedRepositoriesOnly)}`,
      );
    }
    if (props.armBuilds !== undefined && typeof props.armBuilds !== 'boolean') {
      errors.push(`armBuilds: must be true or false, got ${JSON.stringify(props.armBuilds)}`);
    }

    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    // A numeric enum also maps names back to numbers: only the numbers are retention periods.
    if (
      !Object.values(logs.RetentionDays).some((days) => typeof days === 'number' && days === logRetention)
    ) {
      errors.push(
        `logRetention: ${JSON.stringify(logRetention)} is not one of CloudWatch Logs' retention periods`,
      );
    }

    const triageConcurrency = props.triageConcurrency ?? DEFAULT_TRIAGE_CONCURRENCY;
    if (
      !Token.isUnresolved(triageConcurrency) &&
      !(Number.isInteger(triageConcurrency) && triageConcurrency >= 2 && triageConcurrency <= 1000)
    ) {
      // 2 is the SQS event source's lowest maximum concurrency.
      errors.push(
        `triageConcurrency: must be an integer from 2 to 1000, got ${JSON.stringify(triageConcurrency)}`,
      );
    }

    const findingAccounts = [Stack.of(this).account];
    if (props.findingAccounts !== undefined && !Array.isArray(props.findingAccounts)) {
      errors.push('findingAccounts: must be a list of 12-digit AWS account ids');
    } else {
      (props.findingAccounts ?? []).forEach((account: unknown, index) => {
        if (Token.isUnresolved(account)) {
          findingAccounts.push(account as string);
        } else if (typeof account !== 'string' || !ACCOUNT_ID.test(account)) {
          errors.push(
            `findingAccounts[${index}]: ${JSON.stringify(account)} is not a 12-digit AWS account id`,
          );
        } else if (!findingAccounts.includes(account)) {
          findingAccounts.push(account);
        }
      });
    }

    errors.push(
      ...checkBuildRegistries({
        ...(props.registryCredentials !== undefined
          ? { registryCredentials: props.registryCredentials }
          : {}),
        ...(props.pullThroughCache !== undefined ? { pullThroughCache: props.pullThroughCache } : {}),
        ...(props.createPullThroughCacheRules !== undefined
          ? { createPullThroughCacheRules: props.createPullThroughCacheRules }
          : {}),
      }),
    );

    let taskRoleArns: string[] | undefined;
    if (props.taskRoleArns !== undefined) {
      if (!Array.isArray(props.taskRoleArns) || props.taskRoleArns.length === 0) {
        errors.push(
          'taskRoleArns: must list the task and execution roles (ARNs or names); leave it out to allow any role',
        );
      } else {
        taskRoleArns = [];
        props.taskRoleArns.forEach((role: unknown, index) => {
          if (Token.isUnresolved(role)) taskRoleArns?.push(role as string);
          else if (typeof role !== 'string' || !(role.startsWith('arn:') ? ROLE_ARN : ROLE_NAME).test(role))
            errors.push(
              `taskRoleArns[${index}]: ${JSON.stringify(role)} is neither a role ARN (arn:aws:iam::<account>:role/<name>) nor a role name`,
            );
          else if (role === '*' || /:role\/\*$/.test(role))
            errors.push(
              `taskRoleArns[${index}]: ${JSON.stringify(role)} is every role; leave taskRoleArns out for that`,
            );
          else
            taskRoleArns?.push(
              role.startsWith('arn:')
                ? role
                : Stack.of(this).formatArn({
                    service: 'iam',
                    region: '',
                    resource: 'role',
                    resourceName: role,
                  }),
            );
        });
      }
    }

    let organization: ResolvedOrganization | undefined;
    if (props.organization !== undefined) {
      const checked = checkOrganization(props.organization);
      errors.push(...checked.errors);
      organization = checked.value;
    }

    if (errors.length === 0 && tag.value && defaults.value && fleet.value && aliases.value) {
      const resolved: ResolvedProps = {
        policy,
        targets,
        discoverByTag: tag.value,
        defaults: defaults.value,
        fleet: fleet.value,
        accountAliases: aliases.value,
        dryRun: props.dryRun ?? false,
        emails,
        logRetention,
        triageConcurrency,
        findingAccounts,
        ...(taskRoleArns !== undefined ? { taskRoleArns } : {}),
        ...(organization !== undefined ? { organization } : {}),
      };
      // Whether policy and targets fit the Lambda environment (4 KB) is checked once, by the
      // TriageFunction that builds that environment.
      return resolved;
    }
    throw new ConfigurationError(
      `Invalid Autopatch configuration (${this.node.path}), ${errors.length} problem${errors.length === 1 ? '' : 's'}:\n` +
        errors.map((e) => `  - ${e}`).join('\n'),
    );
  }

  /**
   * CloudWatch Logs encrypts with the key on the log groups' behalf (triage's, and the workflow's),
   * so the key policy must allow it, limited to log groups in this account and Region.
   */
  private allowLogsToUseKey(): void {
    const stack = Stack.of(this);
    const { statementAdded } = this.encryptionKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchLogsForAutopatchLogGroups',
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        // The concrete actions behind the Encrypt*, Decrypt*, ReEncrypt*, GenerateDataKey* and
        // Describe* that the CloudWatch Logs guide lists for an encrypted log group.
        actions: [
          'kms:Encrypt',
          'kms:Decrypt',
          'kms:ReEncryptFrom',
          'kms:ReEncryptTo',
          'kms:GenerateDataKey',
          'kms:GenerateDataKeyWithoutPlaintext',
          'kms:DescribeKey',
        ],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': stack.formatArn({
              service: 'logs',
              resource: 'log-group',
              resourceName: '*',
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
        },
      }),
    );
    if (!statementAdded) {
      Annotations.of(this).addWarningV2(
        'autopatch:logs-key-policy',
        'The encryption key is imported, so its key policy cannot be changed here. Allow ' +
          'logs.<region>.amazonaws.com to use it for log groups in this account, or the log groups ' +
          'cannot be created.',
      );
    }
  }
}

/**
 * The intake rule's filters: the deploying account and `findingAccounts`; as a hub, those and the
 * listed spoke accounts, or any account of the organization (the bus policy admits only those) when
 * it is given by id alone, and the listed Regions.
 */
const intakeAccounts = (
  scope: Construct,
  resolved: ResolvedProps,
): { accounts: readonly string[]; anyAccount?: boolean; regions?: readonly string[] } => {
  const { organization } = resolved;
  if (organization === undefined) return { accounts: resolved.findingAccounts };
  const regions = eventRegions(scope, organization);
  return {
    accounts: eventAccounts(scope, organization, resolved.findingAccounts) ?? resolved.findingAccounts,
    ...(organization.accounts === undefined ? { anyAccount: true } : {}),
    ...(regions !== undefined ? { regions } : {}),
  };
};

/** What triage receives as AUTOPATCH_CONFIG (see triageRuntimeConfigSchema). */
const runtimeConfig = (resolved: ResolvedProps): TriageRuntimeConfig => ({
  policy: resolved.policy,
  targets: resolved.targets,
  discoverByTag: resolved.discoverByTag,
  defaults: resolved.defaults,
  dryRun: resolved.dryRun,
});
