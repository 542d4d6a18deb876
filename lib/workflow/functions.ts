import * as path from 'node:path';
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import type { LedgerTable } from '../grants';
import { LAMBDA_ARCHITECTURE, LAMBDA_BUNDLING, LAMBDA_RUNTIME } from './lambda-runtime';

export const ROOT = path.join(__dirname, '..', '..');

interface FunctionSpec {
  /** The handler: lambdas/workflow/handlers/<file>.ts. */
  readonly file: string;
  readonly timeout: number;
  readonly description: string;
  /**
   * The definition substitution (`${…}` in a Task's FunctionName) that stands for this function's
   * ARN, if the state machine invokes it. The state machine's invoke grants follow from the Tasks
   * that name it (./definition.ts), not from this field.
   */
  readonly substitution?: string;
}

/** The Lambdas of the workflow, by role. */
export const FUNCTIONS = {
  acquireLock: {
    file: 'acquire-lock',
    timeout: 30,
    description: 'Autopatch: acquire the service lock',
    substitution: 'AcquireLockFunctionArn',
  },
  planBuilds: {
    file: 'plan-builds',
    timeout: 30,
    description: 'Autopatch: plan the image builds',
    substitution: 'PlanBuildsFunctionArn',
  },
  requestApproval: {
    file: 'request-approval',
    timeout: 30,
    description: 'Autopatch: request approval',
    substitution: 'RequestApprovalFunctionArn',
  },
  verifyRescan: {
    file: 'verify-rescan',
    timeout: 120,
    description: 'Autopatch: wait for the rescan that verifies the patch',
    substitution: 'VerifyRescanFunctionArn',
  },
  assembleIndexes: {
    file: 'assemble-indexes',
    timeout: 60,
    description: 'Autopatch: assemble the patched platforms of an image index into a new index',
    substitution: 'AssembleIndexesFunctionArn',
  },
  registerTaskDefinition: {
    file: 'register-task-definition',
    timeout: 60,
    description: 'Autopatch: register the patched task definition',
    substitution: 'RegisterTaskDefinitionFunctionArn',
  },
  watchDeployment: {
    file: 'watch-deployment',
    timeout: 60,
    description: 'Autopatch: start watching a deployment',
    substitution: 'WatchDeploymentFunctionArn',
  },
  restore: {
    file: 'restore',
    timeout: 60,
    description: 'Autopatch: put a service back on its last good revision',
    substitution: 'RollbackFunctionArn',
  },
  finish: {
    file: 'finish',
    timeout: 90,
    description: 'Autopatch: record the outcome and release the lock',
    substitution: 'FinishFunctionArn',
  },
  deploymentEvents: {
    file: 'deployment-events',
    timeout: 60,
    description: 'Autopatch: resume waiting executions on ECS deployment, alarm and Inspector scan events',
  },
  gate: {
    file: 'gate',
    timeout: 60,
    description: 'Autopatch: check that a service can be deployed and watched before building and deploying',
    substitution: 'GateFunctionArn',
  },
  takeDeploySlot: {
    file: 'take-deploy-slot',
    timeout: 30,
    description: 'Autopatch: the fleet guardrails before a deployment (pause switch, caps, stages)',
    substitution: 'TakeDeploySlotFunctionArn',
  },
  deployWithEcs: {
    file: 'deploy-with-ecs',
    timeout: 60,
    description:
      'Autopatch: deploy or roll back an ECS service in another account or Region, with its spoke role',
    substitution: 'DeployWithEcsFunctionArn',
  },
  deployWithCodeDeploy: {
    file: 'deploy-with-code-deploy',
    timeout: 60,
    description: 'Autopatch: deploy the patched revision of a CODE_DEPLOY service through CodeDeploy',
    substitution: 'DeployWithCodeDeployFunctionArn',
  },
  sweep: {
    file: 'sweep',
    timeout: 120,
    description: 'Autopatch: every minute, re-assess every watched deployment, bake, rollback and rescan',
  },
} as const satisfies Record<string, FunctionSpec>;
export type FunctionRole = keyof typeof FUNCTIONS;

export interface WorkflowFunctionsProps {
  readonly ledger: LedgerTable;
  readonly topic: sns.ITopic;
  readonly encryptionKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly accountAlias?: string;
}

export interface WorkflowFunctions {
  readonly functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>;
  readonly logGroups: Readonly<Record<FunctionRole, logs.LogGroup>>;
}

/**
 * The workflow's task Lambdas, each with its own role and its own encrypted log group, created in
 * `scope` (the workflow: construct ids `<Role>Logs`, `<Role>Role`, `<Role>Function`). Permissions
 * beyond their logs are granted by ./function-permissions.ts.
 */
export const createWorkflowFunctions = (
  scope: Construct,
  props: WorkflowFunctionsProps,
): WorkflowFunctions => {
  const logGroups = {} as Record<FunctionRole, logs.LogGroup>;
  const functions = {} as Record<FunctionRole, nodejs.NodejsFunction>;
  for (const [role, spec] of Object.entries(FUNCTIONS) as [FunctionRole, FunctionSpec][]) {
    const name = pascal(role);
    const logGroup = new logs.LogGroup(scope, `${name}Logs`, {
      encryptionKey: props.encryptionKey,
      retention: props.logRetention,
    });
    // Own role without the AWS managed basic-execution policy: it may write to its own log group only.
    const fnRole = new iam.Role(scope, `${name}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    });
    logGroup.grantWrite(fnRole);
    logGroups[role] = logGroup;
    functions[role] = new nodejs.NodejsFunction(scope, `${name}Function`, {
      entry: path.join(ROOT, 'lambdas', 'workflow', 'handlers', `${spec.file}.ts`),
      handler: 'handler',
      projectRoot: ROOT,
      depsLockFilePath: path.join(ROOT, 'package-lock.json'),
      runtime: LAMBDA_RUNTIME,
      architecture: LAMBDA_ARCHITECTURE,
      memorySize: 256,
      timeout: Duration.seconds(spec.timeout),
      description: spec.description,
      role: fnRole,
      logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      environment: {
        LEDGER_TABLE: props.ledger.tableName,
        TOPIC_ARN: props.topic.topicArn,
        POWERTOOLS_SERVICE_NAME: 'autopatch-workflow',
        NODE_OPTIONS: '--enable-source-maps',
        ...(props.accountAlias ? { ACCOUNT_ALIAS: props.accountAlias } : {}),
      },
      bundling: LAMBDA_BUNDLING,
    });
  }
  return { functions, logGroups };
};

/** The functions the state machine may name, by their definition substitution. */
export const functionsBySubstitution = (
  functions: Readonly<Record<FunctionRole, nodejs.NodejsFunction>>,
): ReadonlyMap<string, nodejs.NodejsFunction> =>
  new Map(
    (Object.entries(FUNCTIONS) as [FunctionRole, FunctionSpec][]).flatMap(([role, spec]) =>
      spec.substitution ? [[spec.substitution, functions[role]] as const] : [],
    ),
  );

const pascal = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
