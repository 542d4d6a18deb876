import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { type Outcome, placeOfServiceKey, type Severity, severityRank } from '../shared/contracts';
import { SPOKE_ACCESS_ERROR } from '../shared/errors';
import type { HoldRequest, Ledger } from '../shared/ledger';
import { METRIC_DIMENSIONS, METRICS, type MetricDatum } from '../shared/metrics';
import { remediationId } from '../shared/remediation';
import { rejectedBy } from './approver';
import { accountOf, awsCall, links, regionOf } from './aws';
import { WORKFLOW_ERRORS } from './errors';
import { publishNotification } from './notify';
import { putOutcomeEvent } from './put-outcome-event';
import { startNext } from './start-next';
import {
  type BuildTiming,
  buildTime,
  type PatchedImage,
  type PatchedPlatform,
  type StateError,
  type WorkflowState,
} from './state';

export { startNext } from './start-next';

import { OUTCOME_EVENT } from '../shared/outcome-event';

export { OUTCOME_EVENT };

export interface FinishInput {
  readonly outcome: Outcome;
  /** The whole workflow state ($) at the end. */
  readonly state: WorkflowState;
  readonly executionName: string;
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly startedAt: string;
  /** Recording or announcing failed: only release the lock and start the queued remediation. */
  readonly releaseOnly?: boolean;
}

export interface ImageChange {
  readonly repository: string;
  readonly containers: readonly string[];
  readonly oldDigest: string;
  readonly newDigest?: string;
}

/** The execution's final output (Succeed) and the outcome event's detail: a few readable fields. */
export interface Summary {
  readonly outcome: Outcome;
  readonly service: string;
  readonly remediationId: string;
  readonly executionName: string;
  readonly cves: readonly string[];
  readonly cvesClosed: readonly string[];
  readonly images: readonly ImageChange[];
  readonly reason: string;
  readonly taskDefinition?: { readonly previous: string; readonly patched?: string };
  /** Patched only: where the owner's IaC can pick the patched digests up. */
  readonly driftParameters?: readonly string[];
  /** The remediation queued behind this one, started on release. */
  readonly next?: string;
  /** Where it ran: the account (with its alias when the construct was given one) and Region. */
  readonly account: { readonly id: string; readonly alias?: string };
  readonly region: string;
  /** Worst severity among the findings. */
  readonly severity?: Severity;
  /** Console links: the execution, the service, each build (or its project's history) and each image's findings. */
  readonly links: {
    readonly execution: string;
    readonly service: string;
    readonly builds: readonly string[];
    readonly findings: readonly string[];
  };
}

export interface FinishResult {
  readonly summary: Summary;
  /** The Fail state's Cause: what happened, what state the service is in, what to do. */
  readonly cause: string;
}

export interface FinishDeps {
  readonly ledger: Pick<Ledger, 'recordOutcome' | 'release' | 'markStarted'> &
    Partial<Pick<Ledger, 'markAnnounced' | 'hold' | 'clearHolds' | 'fleet'>>;
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly ssm: Pick<SSMClient, 'send'>;
  readonly events: Pick<EventBridgeClient, 'send'>;
  readonly sns: Pick<SNSClient, 'send'>;
  readonly topicArn: string;
  /** @default 'default' */
  readonly eventBusName?: string;
  /** The account's alias, shown next to its id in notifications. @default - the id only */
  readonly accountAlias?: string;
  /**
   * Aliases of other accounts (spokes) by id (config `accountAliases`, env ACCOUNT_ALIASES), shown next
   * to the id of a service's account outside the hub. @default - ids only
   */
  readonly accountAliases?: Readonly<Record<string, string>>;
  readonly now?: () => Date;
}

const MAX_CAUSE = 4_000;
const clip = (text: string, max: number): string =>
  text.length > max ? `${text.slice(0, max - 3)}...` : text;
const uniq = (xs: readonly string[]): string[] => [...new Set(xs)].sort();

type Json = Readonly<Record<string, unknown>>;
const parseJson = (text: string | undefined): Json | undefined => {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
  } catch {
    return undefined;
  }
};
const asRecord = (v: unknown): Json | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
const asString = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/**
 * A caught error as one readable line. Lambda errors arrive with a JSON Cause
 * ({ errorType, errorMessage, trace }); service integrations with a plain sentence.
 */
export const errorText = (error: StateError | undefined): string => {
  if (!error) return 'an unknown error';
  const parsed = parseJson(error.Cause);
  const message = asString(parsed?.errorMessage);
  if (message) return `${asString(parsed?.errorType) ?? error.Error}: ${message}`;
  return error.Cause ? `${error.Error}: ${clip(error.Cause, 1_500)}` : error.Error;
};

/** A failed CodeBuild build, from the startBuild.sync failure Cause (the build as JSON). */
export const describeBuildFailure = (
  cause: string | undefined,
): { text: string; logLink?: string; buildId?: string } => {
  const build = asRecord(parseJson(cause)?.Build);
  if (!build) return { text: `the build failed: ${clip(cause ?? 'no details', 1_000)}` };
  const logs = asRecord(build.Logs);
  const logLink = asString(logs?.DeepLink);
  const phases = Array.isArray(build.Phases) ? build.Phases.map(asRecord) : [];
  const failed = phases.find(
    (p) => p?.PhaseStatus !== undefined && p.PhaseStatus !== 'SUCCEEDED' && p.PhaseType !== 'COMPLETED',
  );
  const contexts = Array.isArray(failed?.Contexts) ? failed.Contexts.map(asRecord) : [];
  const message = contexts.map((c) => asString(c?.Message)).find(Boolean);
  const buildId = asString(build.Id);
  const text = [
    `build ${buildId ?? asString(build.Arn) ?? '(unknown id)'} ended ${asString(build.BuildStatus) ?? 'FAILED'}`,
    failed ? ` in phase ${asString(failed.PhaseType)}` : '',
    message ? `: ${clip(message, 500)}` : '',
  ].join('');
  return { text, ...(logLink ? { logLink } : {}), ...(buildId ? { buildId } : {}) };
};

/** CodeBuild bills a build's duration rounded up to the whole minute (on-demand). */
const billedMinutes = (seconds: number): number => Math.max(1, Math.ceil(seconds / 60));

/**
 * What the run's builds and rescans took, for the history record (docs/metrics.md: time to
 * verification, cost per rollout). Pure. The builds timed are those whose result the state keeps:
 * every verified image's (an index's platforms'), and the build that failed (its Cause is the build).
 * A build whose image then failed the rescan, or that a failing Map cancelled, is planned but not
 * timed (`builds` < `buildsPlanned`). `verificationSeconds`: push → verdict of the slowest image
 * (the run waits for all of them), when every verified image has both times.
 */
export const runTimings = (state: WorkflowState): Record<string, number> => {
  // Defensive: the state is data (an older version's, or hand-made); recording must not fail on it.
  const patched: readonly PatchedImage[] = Array.isArray(state.patched) ? state.patched : [];
  const timings: Array<BuildTiming | undefined> = patched.flatMap((p) =>
    Array.isArray(p.platforms)
      ? p.platforms.map((platform: PatchedPlatform | undefined) => platform?.timing)
      : [p.timing],
  );
  const builds: Array<{ startedAt?: string; endedAt?: string }> = timings.map((t) => ({
    ...(t?.buildStartedAt ? { startedAt: t.buildStartedAt } : {}),
    ...(t?.buildEndedAt ? { endedAt: t.buildEndedAt } : {}),
  }));
  if (state.error?.Error === 'BuildFailed') {
    const failed = asRecord(parseJson(state.error.Cause)?.Build);
    if (failed) {
      const startedAt = buildTime(failed.StartTime);
      const endedAt = buildTime(failed.EndTime);
      builds.push({ ...(startedAt ? { startedAt } : {}), ...(endedAt ? { endedAt } : {}) });
    }
  }
  const seconds = builds
    .map((b) => secondsBetween(b.startedAt, b.endedAt))
    .filter((s): s is number => s !== undefined);
  const verification = timings.map((t) => secondsBetween(t?.pushedAt, t?.verifiedAt));
  return {
    buildSeconds: seconds.reduce((a, b) => a + b, 0),
    buildMinutes: seconds.reduce((a, b) => a + billedMinutes(b), 0),
    builds: seconds.length,
    buildsPlanned: state.plan?.builds.length ?? 0,
    ...(verification.length > 0 && verification.every((v) => v !== undefined)
      ? { verificationSeconds: Math.max(...(verification as number[])) }
      : {}),
  };
};

/** The account an ARN lives in (arn:partition:service:region:account:...). */
/** Links to every build of this remediation: the build itself when known, else its project's history. */
const buildLinks = (state: WorkflowState, region: string, account: string): string[] => {
  const found = new Set<string>();
  const projectsWithBuild = new Set<string>();
  const addBuild = (buildId: string) => {
    found.add(links.build(region, account, buildId));
    projectsWithBuild.add(buildId.split(':')[0] ?? buildId);
  };
  for (const p of state.patched ?? []) if (p.buildId) addBuild(p.buildId);
  const failed = state.error?.Error === 'BuildFailed' ? describeBuildFailure(state.error.Cause) : undefined;
  if (failed?.buildId) addBuild(failed.buildId);
  for (const b of state.plan?.builds ?? []) {
    if (!projectsWithBuild.has(b.projectName)) found.add(links.buildHistory(region, account, b.projectName));
  }
  return [...found];
};

const hours = (seconds: number): string => {
  const h = seconds / 3600;
  return h >= 1 ? `${Math.round(h * 10) / 10} hours` : `${Math.round(seconds / 60)} minutes`;
};

/** Where the owner's IaC can read the patched image: one SSM parameter per container. */
export const driftParameterName = (serviceKey: string, container: string): string =>
  `/autopatch/${serviceKey}/${container}/image`;

const imageChanges = (state: WorkflowState): ImageChange[] =>
  state.images.map((image) => {
    const patched = state.patched?.find(
      (p) => p.oldDigest === image.imageDigest && p.repository === image.repository,
    );
    return {
      repository: image.repository,
      containers: image.containers,
      oldDigest: image.imageDigest,
      ...(patched ? { newDigest: patched.newDigest } : {}),
    };
  });

/** A CodeDeploy deployment id (`d-XXXXXXXXX`), where ECS names a service deployment by its ARN. */
const CODEDEPLOY_DEPLOYMENT_ID = /^d-[A-Z0-9]{9}$/;

/** Whether CodeDeploy deploys the service (ECS refuses UpdateService with a task definition then). */
const deployedByCodeDeploy = (state: WorkflowState): boolean =>
  state.gate?.controller === 'CODE_DEPLOY' ||
  state.watch?.controller === 'CODE_DEPLOY' ||
  CODEDEPLOY_DEPLOYMENT_ID.test(state.deployment?.deploymentArn ?? state.watch?.deploymentArn ?? '');

/**
 * The command that puts the service back on its last good revision by hand: the one the restore step
 * worked out (it knows the deployment group and the AppSpec), else one from what the state knows.
 */
const manualRestore = (state: WorkflowState, previousArn: string): string => {
  if (state.recovery?.manualCommand) return state.recovery.manualCommand;
  if (deployedByCodeDeploy(state)) {
    const id = state.deployment?.deploymentArn ?? state.watch?.deploymentArn;
    const stop = id
      ? `aws deploy stop-deployment --deployment-id ${id} --auto-rollback-enabled while it is in progress; once it has succeeded, `
      : '';
    return `${stop}a CodeDeploy deployment of ${previousArn} (aws deploy create-deployment with an AppSpec naming it, the service's container and port; see the runbook, RollbackIncomplete)`;
  }
  return `aws ecs update-service --cluster ${state.service.clusterArn} --service ${state.service.serviceName} --task-definition ${previousArn}`;
};

/** What state the service was left in, for a failure. */
const serviceState = (state: WorkflowState): string => {
  const td = state.taskDefinition;
  const neverDeployed = !state.deployment && !state.watch && !state.recovery && !state.recoveryError;
  if (!td || !state.error || state.error.Error === 'TaskDefinitionMismatchError' || neverDeployed) {
    return 'Nothing was deployed: the service still runs its previous revision.';
  }
  const manual = manualRestore(state, td.previousArn);
  if (state.recoveryError?.Error === WORKFLOW_ERRORS.putBackFailed) {
    // Its message ends with the command, worked out by the restore step.
    return `Autopatch could NOT put the service back on its last good revision ${td.previousArn}, retrying for half an hour (${errorText(state.recoveryError)}). Check the service now.`;
  }
  if (state.recoveryError) {
    return `Autopatch could NOT confirm the service is back on its last good revision (${errorText(state.recoveryError)}). Check the service now; to go back by hand: ${manual}`;
  }
  if (state.recovery) {
    const confirmed = state.recovery.action === 'nothing-to-do' || state.rollback?.status === 'ROLLED_BACK';
    return confirmed
      ? `${state.recovery.detail} The service runs its last good revision ${td.previousArn} again.`
      : `${state.recovery.detail} Autopatch did not see it complete; check the service; to go back by hand: ${manual}`;
  }
  return `The patched revision ${td.patchedArn} may be deployed. Check the service; to go back by hand: ${manual}`;
};

/** Where the remediation was when it failed. */
const stage = (state: WorkflowState): string => {
  if (!state.lock) return 'while acquiring the service lock';
  if (!state.plan)
    return state.decision.action === 'approve' ? 'while waiting for approval' : 'while planning the builds';
  if (!state.patched) return 'while rebuilding or verifying the images';
  if (!state.taskDefinition) return 'while registering the patched task definition';
  if (!state.watch) return 'while deploying the patched revision';
  if (state.watch.status === 'ALARM') return 'while rolling back after an alarm';
  return 'after the deployment';
};

/**
 * The reason (one sentence, in the summary) and the Cause (the Fail state's, for on-call: what
 * happened, in what state the service is, what to do) of an outcome. Pure.
 */
export const explain = (
  input: FinishInput,
  accountAliases: Readonly<Record<string, string>> = {},
): { reason: string; cause: string } => {
  const { state, outcome } = input;
  const cves = uniq(state.images.flatMap((i) => i.cves));
  const service = state.service.key;
  const unchanged = `Nothing was deployed: ${service} still runs its previous revision.`;
  const retry = `Findings that are still open start a new remediation when Inspector reports them again; to retry now, start a new execution of this state machine with this execution's input and a new name.`;
  switch (outcome) {
    case 'Patched': {
      const closed = uniq((state.patched ?? []).flatMap((p) => p.cvesClosed));
      const reason = `Patched ${service}: closed ${closed.join(', ')} in ${state.images.length} image(s); the service runs ${state.taskDefinition?.patchedArn ?? 'the patched revision'} and baked without alarms.`;
      return { reason, cause: reason };
    }
    case 'Superseded': {
      // The pre-emption's own reason says what made the queued finding urgent (KEV, CRITICAL, deadline).
      const why =
        state.approval?.reason?.match(/^(An urgent finding(?: \([^)]*\))?)/)?.[1] ?? 'An urgent finding';
      const reason = state.approval?.preempted
        ? `${why} for ${service} pre-empted this remediation while it waited for approval: the urgent fix runs now, and this request is queued right behind it and asks for approval again. Nothing was changed; the approval request sent for this execution no longer applies.`
        : (state.lock?.reason ??
          `Another remediation is in flight for ${service}; this request was queued behind it.`);
      return { reason, cause: reason };
    }
    case 'Rejected': {
      const reason = `${asString(state.error?.Cause) ?? 'Rejected'}. Nothing was changed.`;
      return { reason, cause: reason };
    }
    case 'ApprovalExpired': {
      const reason = `Nobody approved the remediation of ${cves.join(', ')} on ${service} within ${hours(state.target.approvalTimeoutSeconds)}. Nothing was changed.`;
      return { reason, cause: `${reason} ${retry}` };
    }
    case 'BuildFailed': {
      const build = describeBuildFailure(state.error?.Cause);
      const reason = `The image rebuild failed: ${build.text}.${build.logLink ? ` Build log: ${build.logLink}` : ''}`;
      return {
        reason,
        cause: `${reason} ${unchanged} What to do: read the build log. A patch-os build fails when the image's package manager cannot upgrade (no network, no repository, distroless image): rebuild that image from source instead (target rebuild mode 'source' or 'project'). ${retry}`,
      };
    }
    case 'PatchIneffective': {
      const reason = `The rebuilt image did not fix the findings: ${errorText(state.error)}`;
      return {
        reason,
        cause: `${reason} ${unchanged} What to do: the fix needs more than an OS package upgrade (a newer base image, a language dependency bump or a source change). The rebuilt image was pushed but not deployed.`,
      };
    }
    case 'RescanTimedOut': {
      const exhausted = state.error?.Error === 'RescanPendingError';
      const reason = `Amazon Inspector did not rescan the rebuilt image in time${exhausted ? ' (the verify step ran out of retries)' : ''}: ${errorText(state.error)}`;
      return {
        reason,
        cause: `${reason} ${unchanged} What to do: check that Inspector enhanced scanning covers the repository (continuous or on-push), then retry. ${retry}`,
      };
    }
    case 'RolledBack': {
      const watch = state.watch;
      const previous = state.taskDefinition?.previousArn ?? 'its previous revision';
      const reason =
        watch?.status === 'ALARM'
          ? `${watch.reason ?? `Alarm ${watch.alarmName ?? '(unnamed)'} fired during the bake of deployment ${watch.deploymentArn}.`} Autopatch ${watch.ecsCompleted ? 'redeployed' : 'rolled'} ${service} back to ${previous}, and it runs that revision again.`
          : `${deployedByCodeDeploy(state) ? 'CodeDeploy' : 'ECS'} rolled the deployment of the patched revision back by itself${watch?.reason ? ` (${watch.reason})` : ''}; ${service} runs ${previous}.`;
      return {
        reason,
        cause: `${reason} The CVEs (${cves.join(', ')}) are still open. What to do: find out why the patched image misbehaves (the alarm, the service events, the new tasks' logs) before remediating again; the patched image stays in ECR.`,
      };
    }
    case 'AlreadyFixed': {
      const resolution = (state as { resolution?: { reason?: string } }).resolution;
      const reason = `Nothing left to fix on ${service}: ${resolution?.reason ?? 'an earlier remediation already fixed every finding of this request'}. Nothing was built or deployed.`;
      return { reason, cause: reason };
    }
    case 'Deferred': {
      const reason = `${state.gate?.reason ?? 'A watched alarm was already in ALARM before anything was deployed and did not clear in time.'}`;
      return {
        reason,
        cause: `${reason} ${unchanged} What to do: an alarm that fires without the patch is not the patch's doing (nothing was deployed): fix what it reports, or the alarm; a service scaled to 0 is patched once it runs again. Then retry. ${retry}`,
      };
    }
    default: {
      if (state.error?.Error === SPOKE_ACCESS_ERROR) {
        // The hub could not assume a spoke's role: no retry cures it, an operator deploys the spoke.
        const text = errorText(state.error);
        const account =
          /arn:aws[a-z-]*:iam::(\d{12}):role/.exec(text)?.[1] ??
          placeOfServiceKey(service)?.account ??
          accountOf(state.service.clusterArn);
        const alias = accountAliases[account];
        const reason = `Autopatch cannot reach account ${account}${alias ? ` (${alias})` : ''} ${stage(state)}: ${text}`;
        return {
          reason,
          cause: `${reason} ${serviceState(state)} What to do: deploy the Autopatch spoke in account ${account} with this hub as its hub (docs/organizations.md), or check that its role's trust and the organization's SCPs let this hub assume it; then retry. ${retry}`,
        };
      }
      const reason = `The remediation failed ${stage(state)}: ${errorText(state.error)}`;
      return {
        reason,
        cause: `${reason} ${serviceState(state)} What to do: read the failed step's error in this execution, fix the cause, then retry. ${retry}`,
      };
    }
  }
};

const worstSeverity = (state: WorkflowState): Severity | undefined =>
  [...state.images].sort((a, b) => severityRank(a.severity) - severityRank(b.severity))[0]?.severity;

/** The summary of an outcome, without `next` (known only after the release). Pure. */
/**
 * The id of this run's history record: the request's own, unless the execution runs under another
 * name (a re-run from the console with a copy of the input), which must not overwrite the original's.
 */
export const historyId = (input: Pick<FinishInput, 'state' | 'executionName'>): string =>
  input.state.executionName === input.executionName
    ? input.state.remediationId
    : remediationId(input.state.service.key, input.executionName);

export const summarise = (
  input: FinishInput,
  accountAlias?: string,
  accountAliases: Readonly<Record<string, string>> = {},
): FinishResult => {
  const { state } = input;
  const { reason, cause } = explain(input, accountAliases);
  const patched = input.outcome === 'Patched';
  // The hub's account and Region (where the execution and the builds ran)...
  const region = regionOf(input.executionArn);
  const account = accountOf(input.executionArn);
  // ...and the service's, which differ for a service outside the hub (its key names them).
  const away = placeOfServiceKey(state.service.key);
  const serviceAccount = away?.account ?? account;
  const alias = away ? accountAliases[away.account] : (accountAliases[account] ?? accountAlias);
  const severity = worstSeverity(state);
  const summary: Summary = {
    outcome: input.outcome,
    service: state.service.key,
    remediationId: historyId(input),
    executionName: input.executionName,
    cves: uniq(state.images.flatMap((i) => i.cves)),
    cvesClosed: patched ? uniq((state.patched ?? []).flatMap((p) => p.cvesClosed)) : [],
    images: imageChanges(state),
    reason,
    ...(state.taskDefinition
      ? {
          taskDefinition: {
            previous: state.taskDefinition.previousArn,
            ...(patched ? { patched: state.taskDefinition.patchedArn } : {}),
          },
        }
      : {}),
    ...(patched
      ? {
          driftParameters: (state.patched ?? []).flatMap((p) =>
            p.containers.map((c) => driftParameterName(state.service.key, c)),
          ),
        }
      : {}),
    account: { id: serviceAccount, ...(alias ? { alias } : {}) },
    region: away?.region ?? region,
    ...(severity ? { severity } : {}),
    links: {
      execution: links.execution(input.executionArn),
      service: links.service(state.service.clusterArn, state.service.serviceName),
      builds: buildLinks(state, region, account),
      findings: state.images.map((i) => links.imageFindings(region, i.repository, i.imageDigest)),
    },
  };
  return { summary, cause: clip(cause, MAX_CAUSE) };
};

/** Outcomes whose reason says it all; the others get the full Cause (what happened, the service's state, what to do). */
const SELF_EXPLAINED: ReadonlySet<Outcome> = new Set(['Patched', 'Rejected', 'Superseded', 'AlreadyFixed']);

/**
 * The notification people read: one per remediation outcome, however many findings it covered. It
 * carries the context to act without opening anything first (account, Region, service, CVEs with
 * severity, old and new digests, outcome and reason) and the console links to open next. Pure.
 */
export const outcomeMessage = (
  input: FinishInput,
  result: FinishResult,
): { subject: string; message: string } => {
  const { summary } = result;
  const { state } = input;
  const account = summary.account.alias
    ? `${summary.account.id} (${summary.account.alias})`
    : summary.account.id;
  const lines = [
    `Outcome: ${summary.outcome}`,
    `Service: ${summary.service}`,
    `Account: ${account}`,
    `Region:  ${summary.region}`,
    `CVEs:    ${summary.cves.join(', ')}${summary.severity ? ` (worst ${summary.severity})` : ''}`,
    `Closed:  ${summary.cvesClosed.length > 0 ? summary.cvesClosed.join(', ') : 'none'}`,
    '',
    SELF_EXPLAINED.has(summary.outcome) ? summary.reason : result.cause,
    '',
    'Images (old digest -> new digest):',
    ...summary.images.flatMap((change, i) => {
      const image = state.images[i];
      return [
        `- ${change.repository} (${change.containers.join(', ')}): ${change.oldDigest} -> ${change.newDigest ?? 'unchanged'}`,
        ...(image
          ? [
              `  ${image.severity}: ${image.cves.join(', ')} (${image.cves.length} finding${image.cves.length === 1 ? '' : 's'})`,
            ]
          : []),
      ];
    }),
  ];
  if (summary.driftParameters && summary.driftParameters.length > 0) {
    lines.push(
      '',
      'DRIFT: if the service is deployed from IaC that pins an image tag, the next deploy of that IaC puts the ' +
        'vulnerable image back. Pin the patched digest instead; it is published in SSM Parameter Store:',
      ...summary.driftParameters.map((p) => `- ${p}`),
      "(CDK: ecs.ContainerImage.fromRegistry(ssm.StringParameter.valueForStringParameter(this, '<parameter>')))",
    );
  }
  if (summary.next) lines.push('', `Started the remediation queued behind this one: ${summary.next}`);
  lines.push(
    '',
    `Execution: ${summary.links.execution}`,
    `Service:   ${summary.links.service}`,
    ...summary.links.builds.map((l) => `Build:     ${l}`),
    ...summary.links.findings.map((l) => `Findings:  ${l}`),
    `Runbook:   docs/runbook.md#${summary.outcome.toLowerCase()}`,
  );
  // A service outside the hub is named by its key, which starts with its account: the alias says whose.
  const subject = `[Autopatch] ${summary.outcome}: ${summary.service}${placeOfServiceKey(summary.service) && summary.account.alias ? ` (${summary.account.alias})` : ''}`;
  return { subject: clip(subject, 100), message: lines.join('\n') };
};

const secondsBetween = (from: string | undefined, to: string | Date | undefined): number | undefined => {
  if (!from || !to) return undefined;
  const start = Date.parse(from);
  const end = typeof to === 'string' ? Date.parse(to) : to.getTime();
  if (Number.isNaN(start) || Number.isNaN(end) || end < start) return undefined;
  return Math.round((end - start) / 1000);
};

/**
 * A rollback was needed and Autopatch did not see the service get back to its previous revision: ECS
 * was still rolling back when the wait ran out, putting the service back failed, or Autopatch started
 * putting it back (a rollback or a redeploy of the previous revision) and ended without confirmation.
 * Pure.
 */
export const rollbackIncomplete = (state: WorkflowState): boolean => {
  if (state.recoveryError) return true;
  if (state.recovery === undefined || state.recovery.action === 'nothing-to-do') return false;
  return state.rollback?.status !== 'ROLLED_BACK';
};

/**
 * The metrics of one outcome (namespace Autopatch, service autopatch-workflow): the outcome count,
 * the run's duration (execution start → now, by outcome and severity), finding → patched, alarm → rollback decision, and whether a rollback was left incomplete (0 or 1,
 * so the alarm on it has data). Pure.
 */
export const outcomeMetrics = (input: FinishInput, now: Date): MetricDatum[] => {
  const { state, outcome } = input;
  const data: MetricDatum[] = [
    {
      name: METRICS.remediations,
      unit: 'Count',
      value: 1,
      dimensions: { [METRIC_DIMENSIONS.outcome]: outcome },
    },
  ];
  const duration = secondsBetween(input.startedAt, now);
  if (duration !== undefined) {
    const severity = worstSeverity(state) ?? 'UNTRIAGED';
    data.push({
      name: METRICS.remediationDuration,
      unit: 'Seconds',
      value: duration,
      dimensions: { [METRIC_DIMENSIONS.outcome]: outcome, [METRIC_DIMENSIONS.severity]: severity },
    });
    if (outcome !== 'Superseded')
      data.push({
        name: METRICS.remediationDuration,
        unit: 'Seconds',
        value: duration,
        dimensions: { [METRIC_DIMENSIONS.severity]: severity },
      });
  }
  if (outcome === 'Patched') {
    const seconds = secondsBetween(state.requestedAt, now);
    if (seconds !== undefined) data.push({ name: METRICS.timeToPatched, unit: 'Seconds', value: seconds });
  }
  const watch = state.watch;
  if (watch?.status === 'ALARM') {
    const seconds = secondsBetween(watch.alarmAt, watch.decidedAt);
    if (seconds !== undefined) data.push({ name: METRICS.alarmToRollback, unit: 'Seconds', value: seconds });
  }
  data.push({
    name: METRICS.rollbacksIncomplete,
    unit: 'Count',
    value: rollbackIncomplete(state) ? 1 : 0,
  });
  return data;
};

/**
 * Outcomes after which the same (service, CVE) is held: rebuilding on every finding update would
 * roll back, fail the rescan or fail the build again. A new image digest or a new fixed version lifts
 * the hold for that finding; `npm run release-hold` lifts it by hand.
 */
export const HOLDING_OUTCOMES: ReadonlySet<Outcome> = new Set([
  'RolledBack',
  'PatchIneffective',
  'BuildFailed',
]);

/** One hold per CVE of the run, on the digests it was found on (and the fixed version, when known). Pure. */
export const holdRequests = (state: Pick<WorkflowState, 'images'>): HoldRequest[] => {
  const byCve = new Map<string, { digests: Set<string>; fixedIn: Set<string> }>();
  for (const image of state.images) {
    for (const cve of image.cves) {
      const entry = byCve.get(cve) ?? { digests: new Set<string>(), fixedIn: new Set<string>() };
      entry.digests.add(image.imageDigest);
      const fixedIn = image.fixedInVersions?.[cve];
      if (fixedIn !== undefined) entry.fixedIn.add(fixedIn);
      byCve.set(cve, entry);
    }
  }
  return [...byCve].map(([cve, { digests, fixedIn }]) => ({
    cve,
    digests: [...digests].sort(),
    // One fixed version only: with several, any new finding's version would look "newer" anyway.
    ...(fixedIn.size === 1 ? { fixedInVersion: [...fixedIn][0] as string } : {}),
  }));
};

/**
 * Who answered the approval, for the history record: the approver's identity the workflow kept in
 * `$.approval.by`, or the one the rejection's cause names. Pure.
 */
export const answeredBy = (
  input: Pick<FinishInput, 'outcome' | 'state'>,
): { approvedBy?: string; rejectedBy?: string } => {
  const { approval, error } = input.state;
  if (approval?.approved === true && approval.by) return { approvedBy: approval.by };
  const by = input.outcome === 'Rejected' ? rejectedBy(error?.Cause) : undefined;
  return by ? { rejectedBy: by } : {};
};

/**
 * "Record the outcome and release the lock". In an order that makes a retry safe: the history record
 * and the SSM parameters are overwrites; release is idempotent (a repeated release returns the same
 * queued request until it is started, and StartExecution with its deterministic name cannot start it
 * twice); the announcements go last, so they can say what was started (a retry may announce twice).
 * A Superseded run releases nothing: the lock is the other remediation's.
 */
export const finish = async (input: FinishInput, deps: FinishDeps): Promise<FinishResult> => {
  const now = deps.now ?? (() => new Date());
  const { state, outcome } = input;
  const base = summarise(input, deps.accountAlias, deps.accountAliases);

  if (!input.releaseOnly) {
    const finishedAt = now().toISOString();
    const started = Date.parse(input.startedAt);
    await deps.ledger.recordOutcome({
      serviceKey: state.service.key,
      remediationId: historyId(input),
      executionName: input.executionName,
      outcome,
      reason: base.summary.reason,
      images: base.summary.images.map((change, i) => ({
        repository: change.repository,
        oldDigest: change.oldDigest,
        ...(change.newDigest ? { newDigest: change.newDigest } : {}),
        cves: [...(state.images[i]?.cves ?? [])],
      })),
      cvesClosed: base.summary.cvesClosed,
      ...(state.taskDefinition ? { oldTaskDefinition: state.taskDefinition.previousArn } : {}),
      ...(state.taskDefinition && outcome === 'Patched'
        ? { newTaskDefinition: state.taskDefinition.patchedArn }
        : {}),
      startedAt: input.startedAt,
      finishedAt,
      // What the patching programme's report measures (npm run report, docs/metrics.md).
      ...(base.summary.severity ? { severity: base.summary.severity } : {}),
      ...(state.requestedAt ? { requestedAt: state.requestedAt } : {}),
      ...(state.decision.deadline ? { deadlineAt: state.decision.deadline } : {}),
      ...(state.gate?.alarmNames ? { watchedAlarms: [...state.gate.alarmNames] } : {}),
      ...(state.watch?.status === 'ALARM' && state.watch.alarmName
        ? {
            alarm: {
              name: state.watch.alarmName,
              ...(state.watch.alarmAt ? { at: state.watch.alarmAt } : {}),
            },
          }
        : {}),
      timings: {
        ...(Number.isNaN(started) ? {} : { totalSeconds: Math.round((now().getTime() - started) / 1000) }),
        ...runTimings(state),
      },
      ...answeredBy(input),
    });
    if (HOLDING_OUTCOMES.has(outcome)) {
      // Before the release: a follow-up queued for the same findings must not rebuild them again.
      await deps.ledger.hold?.(state.service.key, holdRequests(state), {
        outcome,
        reason: base.summary.reason,
        executionName: input.executionName,
      });
    } else if (outcome === 'Patched' && base.summary.cvesClosed.length > 0) {
      // A newer fix worked: holds left by earlier failures of these CVEs have nothing left to guard.
      await deps.ledger.clearHolds?.(state.service.key, base.summary.cvesClosed);
    }
    if (outcome === 'Patched') {
      for (const image of state.patched ?? []) {
        for (const container of image.containers) {
          await awsCall('ssm PutParameter', () =>
            deps.ssm.send(
              new PutParameterCommand({
                Name: driftParameterName(state.service.key, container),
                Value: `${image.repositoryUri}@${image.newDigest}`,
                Type: 'String',
                Overwrite: true,
                Description: `Autopatch: patched image of container ${container} of ${state.service.key} (${input.executionName})`,
              }),
            ),
          );
        }
      }
    }
  }

  // The deployment slot (fleet guardrails), if this run took one: the next deployment may go.
  await deps.ledger.fleet?.release(input.executionName);

  let nextName: string | undefined;
  // A run pre-empted while it waited for approval holds the lock (unlike one superseded at the
  // start): it releases it, and its own request runs after the urgent one.
  const preempted = outcome === 'Superseded' && state.approval?.preempted === true;
  if (outcome !== 'Superseded' || preempted) {
    const { next } = preempted
      ? await deps.ledger.release(state.service.key, input.executionName, { requeueOwn: true })
      : await deps.ledger.release(state.service.key, input.executionName);
    if (next) {
      await startNext(next, input.stateMachineArn, deps);
      nextName = next.executionName;
    }
  }
  const result: FinishResult = {
    ...base,
    summary: { ...base.summary, ...(nextName ? { next: nextName } : {}) },
  };
  if (input.releaseOnly) return result;

  await putOutcomeEvent(
    deps.events,
    {
      ...result.summary,
      cause: result.cause,
      executionArn: input.executionArn,
      startedAt: input.startedAt,
      findingsCount: state.findingsCount,
      decision: state.decision,
    },
    { ...(deps.eventBusName ? { eventBusName: deps.eventBusName } : {}), resources: [input.executionArn] },
  );
  if (outcome !== 'Superseded' || preempted) {
    await publishNotification(deps.sns, deps.topicArn, {
      ...outcomeMessage(input, result),
      attributes: {
        kind: 'outcome',
        outcome,
        service: state.service.key,
        severity: result.summary.severity,
        account: result.summary.account.id || undefined,
        region: result.summary.region || undefined,
      },
    });
  }
  try {
    await deps.ledger.markAnnounced?.(state.service.key, historyId(input));
  } catch {
    // Announced, but not marked: the reconciler re-sends it once (an outcome announced twice beats
    // failing this step now, whose retry would announce it again anyway).
  }
  return result;
};
