import { createHash } from 'node:crypto';
import { DescribeImagesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import {
  type CoveredResource,
  type Finding,
  type Inspector2Client,
  ListCoverageCommand,
  ListFindingsCommand,
  type ScanStatus,
} from '@aws-sdk/client-inspector2';
import { SendTaskSuccessCommand, type SFNClient } from '@aws-sdk/client-sfn';
import * as z from 'zod';
import type { AffectedImage } from '../shared/contracts';
import { awsCall as call } from './aws';
import {
  BuildOutputError,
  PatchIneffectiveError,
  RescanPendingError,
  RescanTimedOutError,
  RescanUnavailableError,
  WORKFLOW_ERRORS,
} from './errors';
import type { RescanRegistry, RescanWait } from './rescan-registry';
import { buildTime, type PatchedImage } from './state';

export interface VerifyRescanInput {
  readonly image: AffectedImage;
  readonly targetTag: string;
  /** The CodeBuild build as the startBuild.sync integration returns it (`Build`). */
  readonly build: unknown;
  readonly rescanTimeoutSeconds: number;
  /**
   * The `Inspector2 Scan` event that resumed the wait for this rescan, if one did: evidence that
   * Inspector scanned the digest, accepted while ListCoverage has not caught up (see
   * {@link scanEvidenceFromEvent}). Anything else here is ignored.
   */
  readonly scanEvent?: unknown;
  /**
   * ISO-8601: when ECR received the rebuilt digest, when the caller knows it already (the registered
   * wait keeps it), so the assessment does not ask ECR again.
   */
  readonly pushedAt?: string;
}

export interface VerifyRescanDeps {
  readonly inspector: Pick<Inspector2Client, 'send'>;
  readonly ecr: Pick<ECRClient, 'send'>;
  /**
   * The Inspector and ECR clients of an image's own registry account and Region (the handlers'
   * `imageClients`): the rescan reads the finding's own account. Without it, the clients above.
   */
  readonly clientsFor?: (
    image: Pick<AffectedImage, 'registry' | 'repositoryUri'>,
  ) => Pick<VerifyRescanDeps, 'inspector' | 'ecr'>;
  readonly now?: () => Date;
}

/** The deps with the clients of the image's own account and Region, when the caller resolves them. */
const forImage = <D extends VerifyRescanDeps>(deps: D, image: AffectedImage): D =>
  deps.clientsFor ? { ...deps, ...deps.clientsFor(image) } : deps;

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const WORSE_THAN_MEDIUM = new Set(['CRITICAL', 'HIGH']);

type Record_ = Readonly<Record<string, unknown>>;
const isRecord = (v: unknown): v is Record_ => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
// Step Functions hands the build back in PascalCase; accept camelCase too (the CodeBuild API's own casing).
const field = (o: Record_, name: string): unknown =>
  o[name] ?? o[name.charAt(0).toLowerCase() + name.slice(1)];

/** What the build reports about itself: the pushed digest (exported IMAGE_DIGEST), its id, log link and times. */
export const readBuild = (
  build: unknown,
): { digest?: string; id?: string; logLink?: string; startedAt?: string; endedAt?: string } => {
  if (!isRecord(build)) return {};
  const exported = field(build, 'ExportedEnvironmentVariables');
  const vars = Array.isArray(exported) ? exported.filter(isRecord) : [];
  const digest = str(field(vars.find((v) => field(v, 'Name') === 'IMAGE_DIGEST') ?? {}, 'Value'));
  const logs = field(build, 'Logs');
  const id = str(field(build, 'Id'));
  const logLink = isRecord(logs) ? str(field(logs, 'DeepLink')) : undefined;
  const startedAt = buildTime(field(build, 'StartTime'));
  const endedAt = buildTime(field(build, 'EndTime'));
  return {
    ...(digest ? { digest } : {}),
    ...(id ? { id } : {}),
    ...(logLink ? { logLink } : {}),
    ...(startedAt ? { startedAt } : {}),
    ...(endedAt ? { endedAt } : {}),
  };
};

// ---------------------------------------------------------------- Evidence of a scan

/** What an `Inspector2 Scan` event says about one image. */
export interface ScanEvidence {
  /** The event's `detail.repository-name`, which is the repository's ARN. */
  readonly repositoryArn: string;
  /** The repository's name, from its ARN (`…:repository/<name>`); may hold slashes. */
  readonly repository: string;
  /** The registry (account id) in the repository's ARN. */
  readonly registry: string;
  readonly digest: string;
  /** `detail.scan-status`, e.g. INITIAL_SCAN_COMPLETE. */
  readonly scanStatus: string;
  /** When the scan was reported (the event's `time`). */
  readonly scannedAt: Date;
  /** `detail.finding-severity-counts`; TOTAL is the number of findings the scan produced. */
  readonly severityCounts: Readonly<Record<string, number>>;
}

/** `scan-status` values that say a scan of the image finished. */
import { SCAN_COMPLETE_STATUSES } from '../shared/workflow-constants';

export { SCAN_COMPLETE_STATUSES };

const REPOSITORY_ARN = /^arn:[\w-]+:ecr:[\w-]+:(\d{12}):repository\/(.+)$/;

/**
 * The evidence in an `Inspector2 Scan` event (source aws.inspector2) that Inspector finished scanning
 * an ECR image; undefined for anything else: another event, a scan that did not complete, a detail
 * without a repository ARN, a digest or a time. Pure: the workflow can hand the event that resumed
 * its wait straight to the verify step, which still checks that it names the rebuilt digest.
 */
export const scanEvidenceFromEvent = (event: unknown): ScanEvidence | undefined => {
  if (!isRecord(event) || event.source !== 'aws.inspector2' || event['detail-type'] !== 'Inspector2 Scan')
    return undefined;
  const detail = event.detail;
  if (!isRecord(detail)) return undefined;
  const scanStatus = str(detail['scan-status']);
  const repositoryArn = str(detail['repository-name']);
  const digest = str(detail['image-digest']);
  const time = str(event.time);
  const scannedAt = time ? new Date(time) : undefined;
  const arn = repositoryArn ? REPOSITORY_ARN.exec(repositoryArn) : null;
  if (!scanStatus || !SCAN_COMPLETE_STATUSES.includes(scanStatus) || !repositoryArn || !arn) return undefined;
  if (!digest || !DIGEST.test(digest) || !scannedAt || Number.isNaN(scannedAt.getTime())) return undefined;
  const counts = isRecord(detail['finding-severity-counts']) ? detail['finding-severity-counts'] : {};
  const severityCounts = Object.fromEntries(
    Object.entries(counts).filter(
      (entry): entry is [string, number] => Number.isInteger(entry[1]) && (entry[1] as number) >= 0,
    ),
  );
  return {
    repositoryArn,
    repository: arn[2] as string,
    registry: arn[1] as string,
    digest,
    scanStatus,
    scannedAt,
    severityCounts,
  };
};

/**
 * Coverage reasons of an image Inspector scanned once and does not keep monitoring: scan on push,
 * a repository set to manual scanning (enhanced scanning does not scan it again), a scan duration
 * that lapsed. They prove a scan only with a scan time at or after the push.
 */
const SCANNED_ONCE_REASONS = new Set([
  'SCAN_FREQUENCY_SCAN_ON_PUSH',
  'SCAN_FREQUENCY_MANUAL',
  'SCAN_ELIGIBILITY_EXPIRED',
]);
/** Coverage reasons that mean "a scan is coming": keep waiting. INTERNAL_ERROR: Inspector resumes by itself. */
const PENDING_REASONS = new Set([
  'PENDING_INITIAL_SCAN',
  'SCAN_IN_PROGRESS',
  'PENDING_REVIVAL_SCAN',
  'INTERNAL_ERROR',
]);

/** What to do about an image Inspector will never scan, by coverage reason. */
const NEVER_ADVICE: Readonly<Record<string, string>> = {
  UNSUPPORTED_OS:
    "Inspector does not support the image's operating system, architecture or manifest type: rebuild it on a supported base image.",
  UNSUPPORTED_MEDIA_TYPE:
    "Inspector does not support the image's media type: push it as a Docker v2 or OCI image.",
  IMAGE_SIZE_EXCEEDED: 'The image is larger than Inspector scans.',
  EXCLUDED_BY_TAG: 'The image is excluded from scanning by a tag.',
  SCAN_FREQUENCY_MANUAL:
    "The repository's scan frequency is manual, and Inspector's enhanced scanning does not scan such images: add the repository to a continuous or on-push scan filter.",
  SCAN_ELIGIBILITY_EXPIRED:
    "The image's scan duration lapsed before Inspector scanned it: lengthen the ECR re-scan duration in Inspector's settings.",
  ACCESS_DENIED: 'A repository or registry policy denies Inspector access to the image.',
  ACCESS_DENIED_TO_ENCRYPTION_KEY:
    "The repository's KMS key policy does not let Inspector decrypt the image.",
  IMAGE_ARCHIVED: 'The image was archived in ECR.',
  RESOURCE_TERMINATED: 'The image was deleted.',
  PENDING_DISABLE: 'Inspector is being disabled for this account or resource type.',
};

export type CoverageVerdict =
  /** Inspector scanned the digest: its findings are the answer. `closedCount`: a finding CLOSED by the coverage state still counts. */
  | {
      readonly kind: 'scanned';
      readonly evidence: string;
      readonly closedCount: boolean;
      readonly byEventOnly: boolean;
    }
  | { readonly kind: 'pending'; readonly state: string }
  | { readonly kind: 'never'; readonly reason: string; readonly advice: string };

export interface CoverageFacts {
  /** The image's coverage (ListCoverage), if Inspector lists it yet. */
  readonly status?: ScanStatus | undefined;
  readonly lastScannedAt?: Date | undefined;
  /** When ECR received the digest. */
  readonly pushedAt: Date;
  /** An `Inspector2 Scan` event for this digest (already matched to it). */
  readonly event?: ScanEvidence | undefined;
}

/** Event times have whole seconds, push times milliseconds: a scan reported in the push's second counts. */
const CLOCK_SLACK_MS = 1_000;

/**
 * Has Inspector scanned this digest since it was pushed, is a scan still coming, or will it never
 * come? Pure; one rule per documented coverage state:
 * - ACTIVE/SUCCESSFUL: monitored continually, scanned.
 * - scanned once (SCAN_FREQUENCY_SCAN_ON_PUSH, SCAN_FREQUENCY_MANUAL, SCAN_ELIGIBILITY_EXPIRED) with
 *   `lastScannedAt` at or after the push: scanned; findings that the state closed still count.
 * - an Inspector2 Scan event for the digest, reported at or after the push, while coverage lags
 *   (not listed yet, pending, scan on push): scanned.
 * - PENDING_INITIAL_SCAN, SCAN_IN_PROGRESS, PENDING_REVIVAL_SCAN, INTERNAL_ERROR, scan on push not
 *   done yet, or not listed yet: pending.
 * - any other INACTIVE state (UNSUPPORTED_OS, IMAGE_SIZE_EXCEEDED, manual or expired without a scan,
 *   ACCESS_DENIED, ...): never, with what to do.
 * - ACTIVE with a reason this code does not know: pending (the timeout ends the wait).
 */
export const coverageVerdict = (facts: CoverageFacts): CoverageVerdict => {
  const { status, lastScannedAt, pushedAt, event } = facts;
  const code = status?.statusCode;
  const reason = status?.reason;
  const state = status ? `${code}/${reason}` : 'not in Inspector coverage yet';
  const sincePush = (at: Date | undefined): boolean =>
    at !== undefined && at.getTime() + CLOCK_SLACK_MS >= pushedAt.getTime();

  if (code === 'ACTIVE' && reason === 'SUCCESSFUL')
    return { kind: 'scanned', evidence: state, closedCount: false, byEventOnly: false };
  if (reason && SCANNED_ONCE_REASONS.has(reason) && sincePush(lastScannedAt)) {
    return {
      kind: 'scanned',
      evidence: `${state}, last scanned ${lastScannedAt?.toISOString()}`,
      closedCount: true,
      byEventOnly: false,
    };
  }
  const lagging =
    !status ||
    (reason !== undefined && (PENDING_REASONS.has(reason) || reason === 'SCAN_FREQUENCY_SCAN_ON_PUSH'));
  if (event && sincePush(event.scannedAt) && (lagging || code === 'ACTIVE')) {
    return {
      kind: 'scanned',
      evidence: `Inspector2 Scan event ${event.scanStatus} at ${event.scannedAt.toISOString()} (coverage: ${state})`,
      closedCount: true,
      byEventOnly: true,
    };
  }
  if (lagging || code !== 'INACTIVE' || !reason) return { kind: 'pending', state };
  return {
    kind: 'never',
    reason,
    advice: NEVER_ADVICE[reason] ?? 'Check that enhanced scanning covers this repository.',
  };
};

// ---------------------------------------------------------------- Inspector queries

const listFindings = async (
  inspector: VerifyRescanDeps['inspector'],
  repository: string,
  digest: string,
  statuses: readonly string[] = ['ACTIVE'],
): Promise<Finding[]> => {
  const findings: Finding[] = [];
  let nextToken: string | undefined;
  do {
    const out = await call('inspector2 ListFindings', () =>
      inspector.send(
        new ListFindingsCommand({
          filterCriteria: {
            ecrImageRepositoryName: [{ comparison: 'EQUALS', value: repository }],
            ecrImageHash: [{ comparison: 'EQUALS', value: digest }],
            // Values of one criterion are ORed.
            findingStatus: statuses.map((value) => ({ comparison: 'EQUALS', value })),
            findingType: [{ comparison: 'EQUALS', value: 'PACKAGE_VULNERABILITY' }],
          },
          maxResults: 100,
          ...(nextToken ? { nextToken } : {}),
        }),
      ),
    );
    findings.push(...(out.findings ?? []));
    nextToken = out.nextToken;
  } while (nextToken);
  return findings;
};

const vulnerabilityId = (f: Finding): string | undefined => f.packageVulnerabilityDetails?.vulnerabilityId;

const findCoverage = async (
  inspector: VerifyRescanDeps['inspector'],
  repository: string,
  tag: string,
  digest: string,
): Promise<CoveredResource | undefined> => {
  let nextToken: string | undefined;
  do {
    const out = await call('inspector2 ListCoverage', () =>
      inspector.send(
        new ListCoverageCommand({
          filterCriteria: {
            resourceType: [{ comparison: 'EQUALS', value: 'AWS_ECR_CONTAINER_IMAGE' }],
            ecrRepositoryName: [{ comparison: 'EQUALS', value: repository }],
            ecrImageTags: [{ comparison: 'EQUALS', value: tag }],
          },
          maxResults: 200,
          ...(nextToken ? { nextToken } : {}),
        }),
      ),
    );
    // The resource id of an image ends with its digest (…:repository/<name>/sha256:<hex>).
    const hit = (out.coveredResources ?? []).find((r) => r.resourceId?.endsWith(digest));
    if (hit) return hit;
    nextToken = out.nextToken;
  } while (nextToken);
  return undefined;
};

/** When ECR received the digest; now when ECR does not say, so the wait is measured from now (fail closed). */
const imagePushedAt = async (
  deps: VerifyRescanDeps,
  image: AffectedImage,
  digest: string,
  now: () => Date,
): Promise<Date> => {
  const { ecr } = forImage(deps, image);
  const out = await call('ecr DescribeImages', () =>
    ecr.send(
      new DescribeImagesCommand({
        repositoryName: image.repository,
        registryId: image.registry,
        imageIds: [{ imageDigest: digest }],
      }),
    ),
  );
  return out.imageDetails?.[0]?.imagePushedAt ?? now();
};

const list = (ids: readonly string[]): string => ids.join(', ');

/**
 * Prove with Amazon Inspector that the rebuilt digest no longer has the CVEs that triggered the
 * remediation and brings no new CRITICAL/HIGH finding. Throws RescanPendingError while Inspector has
 * not scanned it (the wait goes on: see {@link assessRescan}) until target.rescanTimeoutSeconds after
 * the push, then RescanTimedOutError.
 */
export const verifyRescan = async (
  input: VerifyRescanInput,
  given: VerifyRescanDeps,
): Promise<PatchedImage> => {
  const deps = forImage(given, input.image);
  const now = deps.now ?? (() => new Date());
  const { image } = input;
  const build = readBuild(input.build);
  if (!build.digest || !DIGEST.test(build.digest)) {
    throw new BuildOutputError(
      `The build of ${image.repository} (${build.id ?? 'unknown build'}) succeeded but did not export IMAGE_DIGEST ` +
        `(got ${JSON.stringify(build.digest ?? null)}). A project-mode buildspec must push the image and declare ` +
        'env.exported-variables: [IMAGE_DIGEST].',
    );
  }
  const newDigest = build.digest;
  const described = {
    repository: image.repository,
    registry: image.registry,
    repositoryUri: image.repositoryUri,
    containers: image.containers,
    cves: image.cves,
    severity: image.severity,
    oldDigest: image.imageDigest,
    newDigest,
    targetTag: input.targetTag,
    ...(build.id ? { buildId: build.id } : {}),
    ...(build.logLink ? { buildLogLink: build.logLink } : {}),
  };
  if (newDigest === image.imageDigest) {
    throw new PatchIneffectiveError(
      `Rebuilding ${image.repository}@${image.imageDigest} produced the same image: no package update was ` +
        `available for ${list(image.cves)}. The fix needs a newer base image or a source change.`,
    );
  }

  const coverage = await findCoverage(deps.inspector, image.repository, input.targetTag, newDigest);
  const continual =
    coverage?.scanStatus?.statusCode === 'ACTIVE' && coverage.scanStatus.reason === 'SUCCESSFUL';
  // ACTIVE/SUCCESSFUL settles it without the push time: no ECR call on the common path.
  const known = input.pushedAt === undefined ? undefined : new Date(input.pushedAt);
  const knownPush = known && !Number.isNaN(known.getTime()) ? known : undefined;
  const pushedAt = knownPush ?? (continual ? now() : await imagePushedAt(deps, image, newDigest, now));
  const event = input.scanEvent === undefined ? undefined : scanEvidenceFromEvent(input.scanEvent);
  const verdict = coverageVerdict({
    status: coverage?.scanStatus,
    lastScannedAt: coverage?.lastScannedAt,
    pushedAt,
    event:
      event &&
      event.digest === newDigest &&
      event.repository === image.repository &&
      event.registry === image.registry
        ? event
        : undefined,
  });
  const what = `${image.repository}:${input.targetTag} (${newDigest})`;
  const waited = Math.round((now().getTime() - pushedAt.getTime()) / 1000);
  const pending = (state: string): Error =>
    waited >= input.rescanTimeoutSeconds
      ? new RescanTimedOutError(
          `Inspector had not scanned ${what} ${waited} s after the push (limit ${input.rescanTimeoutSeconds} s; coverage: ${state}).`,
        )
      : new RescanPendingError(`Waiting for Inspector to scan ${what}: ${state} after ${waited} s.`);
  if (verdict.kind === 'never') {
    throw new RescanUnavailableError(
      `Inspector cannot scan ${image.repository}@${newDigest} (${verdict.reason}), so the fix cannot be proven. ${verdict.advice}`,
    );
  }
  if (verdict.kind === 'pending') throw pending(verdict.state);

  const findings = await listFindings(
    deps.inspector,
    image.repository,
    newDigest,
    verdict.closedCount ? ['ACTIVE', 'CLOSED'] : ['ACTIVE'],
  );
  const reported = event?.severityCounts.TOTAL;
  if (verdict.byEventOnly && reported !== undefined && findings.length < reported) {
    // The scan event can arrive before ListFindings shows what the scan found: an empty list then
    // would pass a patch nobody checked. Wait until the findings (or the coverage) catch up.
    throw pending(`${verdict.evidence}; it reported ${reported} findings, ${findings.length} listed so far`);
  }
  const present = new Set(findings.map(vulnerabilityId).filter((id): id is string => id !== undefined));
  const remaining = image.cves.filter((cve) => present.has(cve));
  const severe = [
    ...new Set(
      findings
        .filter((f) => WORSE_THAN_MEDIUM.has(f.severity ?? ''))
        .map(vulnerabilityId)
        .filter((id): id is string => id !== undefined && !image.cves.includes(id)),
    ),
  ];
  let introduced: string[] = [];
  if (severe.length > 0) {
    // "New" means not on the image being replaced: the old digest's own CRITICAL/HIGH findings that
    // the remediation did not target are not the patch's fault.
    const before = new Set(
      (await listFindings(deps.inspector, image.repository, image.imageDigest)).map(vulnerabilityId),
    );
    introduced = severe.filter((id) => !before.has(id)).sort();
  }
  if (remaining.length > 0 || introduced.length > 0) {
    const parts = [
      remaining.length > 0 ? `still has ${list(remaining)}` : '',
      introduced.length > 0 ? `has new CRITICAL/HIGH findings ${list(introduced)}` : '',
    ].filter(Boolean);
    throw new PatchIneffectiveError(
      `Inspector's rescan of ${image.repository}@${newDigest} (rebuilt from ${image.imageDigest}) ${parts.join(' and ')}.`,
    );
  }
  // The push time for time to verification: ECR's when read, else the build's end (it pushes last);
  // the `now()` the continual-coverage path measures the wait from is not a push time.
  const pushTime = knownPush !== undefined || !continual ? pushedAt.toISOString() : build.endedAt;
  return {
    ...described,
    cvesClosed: [...image.cves],
    timing: {
      ...(build.startedAt ? { buildStartedAt: build.startedAt } : {}),
      ...(build.endedAt ? { buildEndedAt: build.endedAt } : {}),
      ...(pushTime ? { pushedAt: pushTime } : {}),
      verifiedAt: now().toISOString(),
    },
  };
};

// ---------------------------------------------------------------- The wait: events first, the sweep as the safety net

/** The errors a rescan verdict can name: the Choice after the wait raises each from a Fail state. */
export const RESCAN_FAILURES = [
  WORKFLOW_ERRORS.patchIneffective,
  WORKFLOW_ERRORS.rescanTimedOut,
  WORKFLOW_ERRORS.rescanUnavailable,
  WORKFLOW_ERRORS.buildOutput,
] as const;
export type RescanFailure = (typeof RESCAN_FAILURES)[number];

/**
 * What "Verify the patched image by rescan" resumes with (SendTaskSuccess only: the watchers are not
 * granted SendTaskFailure), read by "Did the rescan prove the fix?". `cause` is the error's message, as
 * the Lambda used to throw it, so every outcome and Cause reads as before.
 */
export type RescanVerdict =
  | { readonly verdict: 'verified'; readonly image: PatchedImage }
  | { readonly verdict: 'failed'; readonly error: RescanFailure; readonly cause: string }
  /**
   * The rescan could not be assessed, for a reason no retry cures (access denied, a bad request): the
   * error's own name and message, raised as is (ErrorPath), so the remediation fails as it did when
   * the verify Lambda threw it.
   */
  | { readonly verdict: 'error'; readonly error: string; readonly cause: string };

/** A verdict, or not yet: Inspector has not scanned the digest and the deadline has not passed. */
export type RescanAssessment = RescanVerdict | { readonly verdict: 'pending'; readonly reason: string };

const isFailure = (name: string): name is RescanFailure =>
  (RESCAN_FAILURES as readonly string[]).includes(name);

/**
 * One look at the rescan: {@link verifyRescan}, its outcome as a value. Errors that are no verdict (an
 * AWS call that failed, after the SDK's retries) propagate: the caller decides whether to look again.
 */
export const assessRescan = async (
  input: VerifyRescanInput,
  deps: VerifyRescanDeps,
): Promise<RescanAssessment> => {
  try {
    return { verdict: 'verified', image: await verifyRescan(input, deps) };
  } catch (error) {
    if (error instanceof RescanPendingError) return { verdict: 'pending', reason: error.message };
    if (error instanceof Error && isFailure(error.name))
      return { verdict: 'failed', error: error.name, cause: error.message };
    throw error;
  }
};

/**
 * The wait's own bound on top of the rescan timeout: its TimeoutSeconds is the timeout plus this
 * (States.MathAdd in the Map's ItemSelector), so it ends even if the sweep never runs. Ten sweeps.
 */
export const RESCAN_WAIT_MARGIN_SECONDS = 600;

/** The sweep assesses at most this many waits a minute, least recently assessed first (past their deadline before all). */
export const RESCAN_SWEEP_LIMIT = 25;

export interface RescanWaitInput extends VerifyRescanInput {
  readonly taskToken: string;
  readonly executionName: string;
}

export interface RescanWaitDeps extends VerifyRescanDeps {
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly registry: Pick<RescanRegistry, 'register' | 'forget' | 'touch' | 'waitsFor' | 'list'>;
}

export type RescanHandled = {
  readonly digest: string;
  readonly executionName: string;
} & (
  | { readonly action: 'answered' | 'already-answered'; readonly verdict: RescanVerdict }
  | { readonly action: 'pending'; readonly reason: string }
  | { readonly action: 'unreadable'; readonly error: string }
);

/** Errors that mean the execution no longer waits on this token: already answered, or ended. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/** Answer the wait; false if the token was already used or its execution is gone (first answer wins). */
export const answerRescan = async (
  sfn: Pick<SFNClient, 'send'>,
  token: string,
  verdict: RescanVerdict,
): Promise<boolean> => {
  try {
    await call('sfn SendTaskSuccess', () =>
      sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(verdict) })),
    );
    return true;
  } catch (error) {
    if (error instanceof Error && GONE.has(error.name)) return false;
    throw error;
  }
};

/** A wait's identity: a hash of its task token. */
export const rescanWaitIdOf = (taskToken: string): string =>
  createHash('sha256').update(taskToken).digest('hex').slice(0, 24);

const describeError = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

/** The build as the wait keeps it: only what readBuild reads (the whole CodeBuild build is large). */
const keptBuild = (build: ReturnType<typeof readBuild>) => ({
  ...(build.id ? { Id: build.id } : {}),
  ...(build.startedAt ? { StartTime: build.startedAt } : {}),
  ...(build.endedAt ? { EndTime: build.endedAt } : {}),
  ...(build.logLink ? { Logs: { DeepLink: build.logLink } } : {}),
  ExportedEnvironmentVariables: build.digest ? [{ Name: 'IMAGE_DIGEST', Value: build.digest }] : [],
});

/**
 * "Verify the patched image by rescan", invoked with a task token; returns at once. Registers the
 * wait first (so the Inspector2 Scan event, and the sweep, can answer it from now on), then looks
 * once: the image may be scanned already, and a build that exported no digest or rebuilt the same
 * image needs no Inspector at all. A known verdict answers the token here. A look that fails in a way
 * worth retrying is not fatal (the sweep looks again within a minute); any other error forgets the
 * wait and fails the Task, as the verify Lambda always did.
 */
export const startRescanWait = async (
  input: RescanWaitInput,
  deps: RescanWaitDeps,
): Promise<{ decided: boolean; verdict: RescanAssessment['verdict'] | 'unknown'; reason?: string }> => {
  const now = deps.now ?? (() => new Date());
  const { taskToken, executionName, ...verify } = input;
  const build = readBuild(input.build);
  const digest = build.digest;
  if (!digest || !DIGEST.test(digest) || digest === input.image.imageDigest) {
    // Nothing for Inspector to scan: verifyRescan decides without an AWS call.
    const assessment = await assessRescan(verify, deps);
    if (assessment.verdict !== 'pending') await answerRescan(deps.sfn, taskToken, assessment);
    return { decided: assessment.verdict !== 'pending', verdict: assessment.verdict };
  }
  // ECR unreachable (after the SDK's retries): measure the wait from now, as when ECR gives no push
  // time (fail closed: the deadline moves later by at most the outage, never earlier).
  const pushedAt = await imagePushedAt(deps, input.image, digest, now).catch((error: unknown) => {
    if ((error as Error).name === WORKFLOW_ERRORS.transient) return now();
    throw error;
  });
  const registeredAt = now();
  const wait: RescanWait = {
    waitId: rescanWaitIdOf(taskToken),
    taskToken,
    executionName,
    digest,
    repository: input.image.repository,
    registry: input.image.registry,
    pushedAt: pushedAt.toISOString(),
    deadline: new Date(pushedAt.getTime() + input.rescanTimeoutSeconds * 1000).toISOString(),
    registeredAt: registeredAt.toISOString(),
    input: {
      image: input.image,
      targetTag: input.targetTag,
      build: keptBuild(build),
      rescanTimeoutSeconds: input.rescanTimeoutSeconds,
      pushedAt: pushedAt.toISOString(),
    },
  };
  await deps.registry.register(wait);
  let assessment: RescanAssessment;
  try {
    assessment = await assessRescan(wait.input, deps);
  } catch (error) {
    if ((error as Error).name === WORKFLOW_ERRORS.transient)
      return {
        decided: false,
        verdict: 'unknown',
        reason: `the first look failed (${describeError(error)}); the sweep looks again`,
      };
    await deps.registry.forget(wait);
    throw error;
  }
  if (assessment.verdict === 'pending')
    return { decided: false, verdict: 'pending', reason: assessment.reason };
  await answerRescan(deps.sfn, taskToken, assessment);
  await deps.registry.forget(wait);
  return { decided: true, verdict: assessment.verdict };
};

/** One wait, looked at now: answered when there is a verdict, noted when not. */
const checkWait = async (
  wait: RescanWait,
  deps: RescanWaitDeps,
  options: { readonly scanEvent?: unknown; readonly sweep?: boolean; readonly now: Date },
): Promise<RescanHandled> => {
  const { digest, executionName } = wait;
  let assessment: RescanAssessment;
  try {
    assessment = await assessRescan(
      { ...wait.input, ...(options.scanEvent === undefined ? {} : { scanEvent: options.scanEvent }) },
      { ...deps, now: () => options.now },
    );
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    if (e.name !== WORKFLOW_ERRORS.transient) {
      // No retry cures it: the remediation fails with this error, as when the verify Lambda threw it.
      assessment = { verdict: 'error', error: e.name || 'Error', cause: e.message };
    } else if (!options.sweep) {
      // An event rethrows: EventBridge delivers it again (and the sweep looks every minute).
      throw error;
    } else if (options.now.getTime() < Date.parse(wait.deadline)) {
      return { digest, executionName, action: 'unreadable', error: describeError(error) };
    } else {
      // Past the deadline, Inspector unreadable is no proof: the wait ends as timed out.
      assessment = {
        verdict: 'failed',
        error: WORKFLOW_ERRORS.rescanTimedOut,
        cause: `Autopatch could not read whether Inspector scanned ${wait.repository}@${digest} by the deadline ${wait.deadline} (rescan timeout ${wait.input.rescanTimeoutSeconds} s after the push): ${describeError(error)}.`,
      };
    }
  }
  if (assessment.verdict === 'pending') {
    if (options.sweep) await deps.registry.touch(wait, options.now);
    return { digest, executionName, action: 'pending', reason: assessment.reason };
  }
  const answered = await answerRescan(deps.sfn, wait.taskToken, assessment);
  await deps.registry.forget(wait);
  return { digest, executionName, action: answered ? 'answered' : 'already-answered', verdict: assessment };
};

/** The `Inspector2 Scan` event (source aws.inspector2) as the events Lambda routes it: the digest it names. */
export const inspectorScanEventSchema = z.looseObject({
  source: z.literal('aws.inspector2'),
  'detail-type': z.literal('Inspector2 Scan'),
  // Loose: the whole event is the evidence the assessment reads (scanEvidenceFromEvent).
  detail: z.looseObject({ 'image-digest': z.string().regex(DIGEST) }),
});
export type InspectorScanEvent = z.infer<typeof inspectorScanEventSchema>;

/**
 * An `Inspector2 Scan` event resumes the waits on its digest: each is assessed now, with the event as
 * evidence of the scan while ListCoverage catches up (scanEvidenceFromEvent, which also checks that
 * the event names the wait's repository and registry), and answered once there is a verdict. The
 * event only says "look now": a duplicate, late or foreign event cannot mislead the verdict.
 */
export const resumeRescanWaits = async (
  event: InspectorScanEvent,
  deps: RescanWaitDeps,
  now: Date = new Date(),
): Promise<RescanHandled[]> => {
  const handled: RescanHandled[] = [];
  for (const wait of await deps.registry.waitsFor(event.detail['image-digest']))
    handled.push(await checkWait(wait, deps, { scanEvent: event, now }));
  return handled;
};

/**
 * The sweep's part (every minute): re-assess the waits in force, at most RESCAN_SWEEP_LIMIT a run,
 * those past their deadline first, then the least recently assessed, so a lost event delays a verdict
 * by at most one sweep and a wait ends as RescanTimedOut once past its deadline. One wait's failure
 * never stops the others.
 */
export const sweepRescans = async (
  deps: RescanWaitDeps,
  now: Date = new Date(),
): Promise<RescanHandled[]> => {
  const due = (w: RescanWait) => (Date.parse(w.deadline) <= now.getTime() ? 0 : 1);
  const last = (w: RescanWait) => Date.parse(w.lastAssessedAt ?? w.registeredAt) || 0;
  const waits = (await deps.registry.list())
    .sort((a, b) => due(a) - due(b) || last(a) - last(b))
    .slice(0, RESCAN_SWEEP_LIMIT);
  const handled: RescanHandled[] = [];
  for (const wait of waits) {
    try {
      handled.push(await checkWait(wait, deps, { sweep: true, now }));
    } catch (error) {
      handled.push({
        digest: wait.digest,
        executionName: wait.executionName,
        action: 'unreadable',
        error: describeError(error),
      });
    }
  }
  return handled;
};
