import { DescribeImagesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import {
  type CoveredResource,
  type Finding,
  type Inspector2Client,
  ListCoverageCommand,
  ListFindingsCommand,
} from '@aws-sdk/client-inspector2';
import type { AffectedImage } from '../shared/contracts';
import { awsCall as call } from './aws';
import {
  BuildOutputError,
  PatchIneffectiveError,
  RescanPendingError,
  RescanTimedOutError,
  RescanUnavailableError,
} from './errors';
import type { PatchedImage } from './state';

export interface VerifyRescanInput {
  readonly image: AffectedImage;
  readonly targetTag: string;
  /** The CodeBuild build as the startBuild.sync integration returns it (`Build`). */
  readonly build: unknown;
  readonly rescanTimeoutSeconds: number;
}

export interface VerifyRescanDeps {
  readonly inspector: Pick<Inspector2Client, 'send'>;
  readonly ecr: Pick<ECRClient, 'send'>;
  readonly now?: () => Date;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const WORSE_THAN_MEDIUM = new Set(['CRITICAL', 'HIGH']);
/** Coverage states that mean "a scan is coming": keep polling. */
const PENDING_REASONS = new Set(['PENDING_INITIAL_SCAN', 'SCAN_IN_PROGRESS', 'PENDING_REVIVAL_SCAN']);

type Record_ = Readonly<Record<string, unknown>>;
const isRecord = (v: unknown): v is Record_ => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
// Step Functions hands the build back in PascalCase; accept camelCase too (the CodeBuild API's own casing).
const field = (o: Record_, name: string): unknown =>
  o[name] ?? o[name.charAt(0).toLowerCase() + name.slice(1)];

/** What the build reports about itself: the pushed digest (exported IMAGE_DIGEST), its id and log link. */
export const readBuild = (build: unknown): { digest?: string; id?: string; logLink?: string } => {
  if (!isRecord(build)) return {};
  const exported = field(build, 'ExportedEnvironmentVariables');
  const vars = Array.isArray(exported) ? exported.filter(isRecord) : [];
  const digest = str(field(vars.find((v) => field(v, 'Name') === 'IMAGE_DIGEST') ?? {}, 'Value'));
  const logs = field(build, 'Logs');
  const id = str(field(build, 'Id'));
  const logLink = isRecord(logs) ? str(field(logs, 'DeepLink')) : undefined;
  return { ...(digest ? { digest } : {}), ...(id ? { id } : {}), ...(logLink ? { logLink } : {}) };
};

const listFindings = async (
  inspector: VerifyRescanDeps['inspector'],
  repository: string,
  digest: string,
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
            findingStatus: [{ comparison: 'EQUALS', value: 'ACTIVE' }],
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

const list = (ids: readonly string[]): string => ids.join(', ');

/**
 * "Verify the patched image by rescan": prove with Amazon Inspector that the rebuilt digest no longer
 * has the CVEs that triggered the remediation and brings no new CRITICAL/HIGH finding. Throws
 * RescanPendingError while Inspector has not scanned it (the state's Retry is the poll loop) until
 * target.rescanTimeoutSeconds after the push, then RescanTimedOutError.
 */
export const verifyRescan = async (
  input: VerifyRescanInput,
  deps: VerifyRescanDeps,
): Promise<PatchedImage> => {
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
  const status = coverage?.scanStatus;
  const scanned = status?.statusCode === 'ACTIVE' && status.reason === 'SUCCESSFUL';
  if (!scanned) {
    if (status?.statusCode === 'INACTIVE' && status.reason && !PENDING_REASONS.has(status.reason)) {
      throw new RescanUnavailableError(
        `Inspector cannot scan ${image.repository}@${newDigest} (${status.reason}), so the fix cannot be proven. ` +
          'Check enhanced scanning for this repository.',
      );
    }
    const pushed = await call('ecr DescribeImages', () =>
      deps.ecr.send(
        new DescribeImagesCommand({
          repositoryName: image.repository,
          registryId: image.registry,
          imageIds: [{ imageDigest: newDigest }],
        }),
      ),
    );
    const pushedAt = pushed.imageDetails?.[0]?.imagePushedAt ?? now();
    const waited = Math.round((now().getTime() - pushedAt.getTime()) / 1000);
    const what = `${image.repository}:${input.targetTag} (${newDigest})`;
    const state = status ? `${status.statusCode}/${status.reason}` : 'not in Inspector coverage yet';
    if (waited >= input.rescanTimeoutSeconds) {
      throw new RescanTimedOutError(
        `Inspector had not scanned ${what} ${waited} s after the push (limit ${input.rescanTimeoutSeconds} s; coverage: ${state}).`,
      );
    }
    throw new RescanPendingError(`Waiting for Inspector to scan ${what}: ${state} after ${waited} s.`);
  }

  const findings = await listFindings(deps.inspector, image.repository, newDigest);
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
  return { ...described, cvesClosed: [...image.cves] };
};
