import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CfnOutput, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import * as z from 'zod';
import type { TargetConfigInput } from '../lambdas/shared/config';
import { ConfigurationError } from '../lambdas/shared/errors';
import type { FleetSettingsInput } from '../lambdas/shared/fleet';
import { formatProblems, issueProblems } from '../lambdas/triage/schema/issues';
import { Autopatch, type AutopatchProps, type ServiceTag, type WorkflowDefaultsInput } from './autopatch';
import type { AutopatchAlarmsOptions } from './dashboard';
import type { AutopatchOrganization } from './organization';
import type { PullThroughCache, RegistryCredentials } from './workflow/registries';

/** Context key holding the settings (cdk.json `context.autopatch`, or `-c autopatch='{...}'`). */
export const CONTEXT_KEY = 'autopatch';
/** Context key naming a JSON policy file, e.g. `-c autopatchPolicyFile=policy.json`. */
export const POLICY_FILE_CONTEXT_KEY = 'autopatchPolicyFile';

/**
 * The shape of `context.autopatch`. Only its keys are checked here: the values are handed to the
 * Autopatch construct, which validates all of them at once and names each bad field.
 */
const contextSchema = z.strictObject({
  policy: z.unknown().optional(),
  targets: z.custom<readonly TargetConfigInput[]>().optional(),
  discoverByTag: z.custom<ServiceTag>().optional(),
  notificationEmails: z.custom<readonly string[]>().optional(),
  dryRun: z.custom<boolean>().optional(),
  workflowDefaults: z.custom<WorkflowDefaultsInput>().optional(),
  logRetentionDays: z.custom<logs.RetentionDays>().optional(),
  triageConcurrency: z.custom<number>().optional(),
  alarms: z.custom<AutopatchAlarmsOptions>().optional(),
  accountAlias: z.custom<string>().optional(),
  accountAliases: z.custom<Record<string, string>>().optional(),
  findingAccounts: z.custom<readonly string[]>().optional(),
  armBuilds: z.custom<boolean>().optional(),
  pushToTaggedRepositoriesOnly: z.custom<boolean>().optional(),
  registryCredentials: z.custom<RegistryCredentials>().optional(),
  pullThroughCache: z.custom<PullThroughCache>().optional(),
  createPullThroughCacheRules: z.custom<boolean>().optional(),
  taskRoleArns: z.custom<readonly string[]>().optional(),
  organization: z.custom<AutopatchOrganization>().optional(),
  fleet: z.custom<FleetSettingsInput>().optional(),
});

const readJsonFile = (file: string, what: string): unknown => {
  const resolved = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(resolved, 'utf8');
  } catch (error) {
    throw new ConfigurationError(`${what}: cannot read ${resolved}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigurationError(`${what}: ${resolved} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
};

/**
 * Autopatch's props from the CDK context: `autopatch` (an object in cdk.json, or a JSON string on the
 * command line) and `autopatchPolicyFile` (a JSON policy file, relative to the working directory).
 */
export const autopatchPropsFromContext = (scope: Construct): AutopatchProps => {
  let raw: unknown = scope.node.tryGetContext(CONTEXT_KEY) ?? {};
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (error) {
      throw new ConfigurationError(`context ${CONTEXT_KEY} is not JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  const parsed = contextSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigurationError(
      `context ${CONTEXT_KEY} is invalid: ${formatProblems(issueProblems(parsed.error.issues, { root: CONTEXT_KEY, messages: 'zod' }))}`,
    );
  }
  const context = parsed.data;

  const policyFile: unknown = scope.node.tryGetContext(POLICY_FILE_CONTEXT_KEY);
  if (policyFile !== undefined && typeof policyFile !== 'string') {
    throw new ConfigurationError(`context ${POLICY_FILE_CONTEXT_KEY} must be a file path`);
  }
  if (policyFile !== undefined && context.policy !== undefined) {
    throw new ConfigurationError(
      `both context ${CONTEXT_KEY}.policy and ${POLICY_FILE_CONTEXT_KEY} give a policy: keep one`,
    );
  }
  const policy =
    policyFile !== undefined ? readJsonFile(policyFile, POLICY_FILE_CONTEXT_KEY) : context.policy;

  return {
    ...(policy !== undefined ? { policy } : {}),
    ...(context.targets !== undefined ? { targets: context.targets } : {}),
    ...(context.discoverByTag !== undefined ? { discoverByTag: context.discoverByTag } : {}),
    ...(context.notificationEmails !== undefined
      ? { notifications: { emails: context.notificationEmails } }
      : {}),
    ...(context.dryRun !== undefined ? { dryRun: context.dryRun } : {}),
    ...(context.workflowDefaults !== undefined ? { workflowDefaults: context.workflowDefaults } : {}),
    ...(context.logRetentionDays !== undefined ? { logRetention: context.logRetentionDays } : {}),
    ...(context.triageConcurrency !== undefined ? { triageConcurrency: context.triageConcurrency } : {}),
    ...(context.alarms !== undefined ? { alarms: context.alarms } : {}),
    ...(context.accountAlias !== undefined ? { accountAlias: context.accountAlias } : {}),
    ...(context.accountAliases !== undefined ? { accountAliases: context.accountAliases } : {}),
    ...(context.findingAccounts !== undefined ? { findingAccounts: context.findingAccounts } : {}),
    ...(context.armBuilds !== undefined ? { armBuilds: context.armBuilds } : {}),
    ...(context.pushToTaggedRepositoriesOnly !== undefined
      ? { pushToTaggedRepositoriesOnly: context.pushToTaggedRepositoriesOnly }
      : {}),
    ...(context.registryCredentials !== undefined
      ? { registryCredentials: context.registryCredentials }
      : {}),
    ...(context.pullThroughCache !== undefined ? { pullThroughCache: context.pullThroughCache } : {}),
    ...(context.createPullThroughCacheRules !== undefined
      ? { createPullThroughCacheRules: context.createPullThroughCacheRules }
      : {}),
    ...(context.taskRoleArns !== undefined ? { taskRoleArns: context.taskRoleArns } : {}),
    ...(context.organization !== undefined ? { organization: context.organization } : {}),
    ...(context.fleet !== undefined ? { fleet: context.fleet } : {}),
  };
};

export interface AutopatchStackProps extends StackProps {
  /** @default - read from the CDK context, see {@link autopatchPropsFromContext} */
  readonly autopatch?: AutopatchProps;
}

/**
 * The deployable Autopatch: one Autopatch construct. Environment-agnostic (no account or Region at
 * synth), so it synthesizes offline and deploys wherever the CLI's credentials point.
 */
export class AutopatchStack extends Stack {
  public readonly autopatch: Autopatch;

  constructor(scope: Construct, id: string, props: AutopatchStackProps = {}) {
    super(scope, id, {
      description:
        'Autopatch: remediates vulnerable container images reported by Amazon Inspector for Amazon ECS.',
      ...props,
    });
    this.autopatch = new Autopatch(this, 'Autopatch', props.autopatch ?? autopatchPropsFromContext(this));
    // What `npm run approve -- <execution> --approve --table <LedgerTableName>` needs.
    new CfnOutput(this, 'LedgerTableName', {
      value: this.autopatch.ledger.tableName,
      description: 'Autopatch ledger table (npm run approve --table, or AUTOPATCH_LEDGER_TABLE)',
    });
    new CfnOutput(this, 'PauseSwitch', {
      value: this.autopatch.pauseParameter.parameterName,
      description:
        "Autopatch's pause switch: aws ssm put-parameter --overwrite --name <this> --value paused (or running)",
    });
    new CfnOutput(this, 'DashboardName', {
      value: this.autopatch.dashboard.dashboard.dashboardName,
      description: 'Autopatch on-call dashboard (CloudWatch console → Dashboards)',
    });
    Tags.of(this).add('application', 'autopatch');
    Tags.of(this).add('managed-by', 'aws-cdk');
  }
}
