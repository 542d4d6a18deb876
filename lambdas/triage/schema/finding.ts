import * as z from 'zod';
import { SEVERITIES, type Severity } from '../../shared/contracts';
import { EventBridgeSchema, ecrRepositoryUri, FINDING_DETAIL_TYPE, INSPECTOR_SOURCE } from './envelope';
import { quote } from './issues';
import { isoTimestamp, rawAndIsoTimestamp } from './timestamps';
import {
  accountIdSchema,
  FINDING_ARN,
  imageDigestSchema,
  imageTagSchema,
  LIMITS,
  matching,
  plainText,
  regionSchema,
  registryIdSchema,
  repositoryNameSchema,
  tokenSchema,
  vulnerabilityIdSchema,
} from './values';

export const FINDING_STATUSES = ['ACTIVE', 'SUPPRESSED', 'CLOSED'] as const;
export type FindingStatus = (typeof FINDING_STATUSES)[number];
export const FINDING_TYPES = ['PACKAGE_VULNERABILITY', 'CODE_VULNERABILITY', 'NETWORK_REACHABILITY'] as const;
export type FindingType = (typeof FINDING_TYPES)[number];
export const FIX_AVAILABILITIES = ['YES', 'NO', 'PARTIAL'] as const;
export type FixAvailable = (typeof FIX_AVAILABILITIES)[number];
export const EXPLOIT_AVAILABILITIES = ['YES', 'NO'] as const;
export type ExploitAvailable = (typeof EXPLOIT_AVAILABILITIES)[number];
export const ECR_IMAGE_RESOURCE = 'AWS_ECR_CONTAINER_IMAGE';

const vulnerablePackageSchema = z.object({
  name: plainText(LIMITS.text).pipe(z.string().min(1)),
  version: plainText(LIMITS.text),
  // Inspector writes "NotAvailable" when no fixed version exists; kept as reported.
  fixedInVersion: plainText(LIMITS.text).optional(),
  packageManager: tokenSchema.optional(),
  arch: plainText(LIMITS.text).optional(),
  release: plainText(LIMITS.text).optional(),
  epoch: z.number().optional(),
  filePath: plainText(LIMITS.text).optional(),
  remediation: plainText(LIMITS.text).optional(),
});

/** `awsEcrContainerImage`: the long-documented ECR shape (digest in `imageHash`). */
const ecrImageDetailsSchema = z.object({
  repositoryName: repositoryNameSchema.optional(),
  registry: registryIdSchema.optional(),
  imageHash: imageDigestSchema.optional(),
  imageTags: z.array(imageTagSchema).max(LIMITS.imageTags).optional(),
  platform: tokenSchema.optional(),
  architecture: tokenSchema.optional(),
  pushedAt: isoTimestamp.optional(),
});

/** `image`: the newer provider-neutral shape (digest in `imageDigest`). */
const neutralImageDetailsSchema = z.object({
  repositoryName: repositoryNameSchema.optional(),
  registry: registryIdSchema.optional(),
  imageDigest: imageDigestSchema.optional(),
  imageTags: z.array(imageTagSchema).max(LIMITS.imageTags).optional(),
  platform: tokenSchema.optional(),
  architecture: tokenSchema.optional(),
  pushedAt: isoTimestamp.optional(),
});

const resourceSchema = z.object({
  id: plainText(LIMITS.text).pipe(z.string().min(1)),
  // Any identifier: EC2 instances, Lambda functions and resource types Inspector adds later are
  // parsed (so they can be reported and ignored by policy), not rejected as poison.
  type: tokenSchema,
  region: regionSchema.optional(),
  partition: tokenSchema.optional(),
  details: z
    .object({
      awsEcrContainerImage: ecrImageDetailsSchema.optional(),
      image: neutralImageDetailsSchema.optional(),
    })
    .optional(),
  tags: z
    .record(plainText(LIMITS.token), plainText(LIMITS.text))
    .refine((tags) => Object.keys(tags).length <= LIMITS.resourceTags, {
      message: `must have at most ${LIMITS.resourceTags} tags`,
    })
    .optional(),
});

const findingDetailSchema = z.object({
  awsAccountId: accountIdSchema,
  findingArn: matching(
    FINDING_ARN,
    'an Inspector finding ARN ("arn:aws:inspector2:<region>:<account>:finding/<id>")',
    LIMITS.findingArn,
  ),
  title: plainText(LIMITS.title),
  description: z.string().max(LIMITS.description).optional(),
  severity: z.enum(SEVERITIES),
  status: z.enum(FINDING_STATUSES),
  type: z.enum(FINDING_TYPES),
  updatedAt: rawAndIsoTimestamp,
  firstObservedAt: isoTimestamp.optional(),
  lastObservedAt: isoTimestamp.optional(),
  inspectorScore: z.number().min(0).max(10).optional(),
  epss: z.object({ score: z.number().min(0).max(1) }).optional(),
  exploitAvailable: z.enum(EXPLOIT_AVAILABILITIES).optional(),
  fixAvailable: z.enum(FIX_AVAILABILITIES).optional(),
  packageVulnerabilityDetails: z
    .object({
      vulnerabilityId: vulnerabilityIdSchema,
      vulnerablePackages: z.array(vulnerablePackageSchema).max(LIMITS.packages).default([]),
      source: tokenSchema.optional(),
    })
    .optional(),
  codeVulnerabilityDetails: z.object({ detectorId: tokenSchema.optional() }).optional(),
  resources: z.array(resourceSchema).min(1).max(LIMITS.resources),
});

export interface FindingPackage {
  readonly name: string;
  readonly version: string;
  readonly fixedInVersion?: string;
  readonly packageManager?: string;
}

export interface FindingImage {
  /** Registry (account id) that holds the repository. */
  readonly registry: string;
  /** ECR repository name, e.g. "payments/api". */
  readonly repository: string;
  /** "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" */
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
  readonly platform?: string;
  readonly architecture?: string;
  /** ISO-8601. */
  readonly pushedAt?: string;
}

/** An Inspector finding, normalised. Times are ISO-8601 in UTC. */
export interface Finding {
  readonly findingArn: string;
  /** `updatedAt` exactly as Inspector wrote it: with `findingArn`, the deduplication key. */
  readonly updatedAtRaw: string;
  readonly updatedAt: string;
  readonly firstObservedAt?: string;
  readonly lastObservedAt?: string;
  /** Account that owns the resource (`detail.awsAccountId`). */
  readonly account: string;
  /** Region of the resource (falls back to the event's region). */
  readonly region: string;
  readonly severity: Severity;
  readonly status: FindingStatus;
  readonly type: FindingType;
  readonly title: string;
  /**
   * CVE or vendor id (e.g. "CVE-2024-6119") for package vulnerabilities; for other finding types,
   * which carry no CVE, the code detector id or the finding type.
   */
  readonly vulnerabilityId: string;
  readonly inspectorScore?: number;
  readonly epssScore?: number;
  readonly exploitAvailable?: ExploitAvailable;
  readonly fixAvailable?: FixAvailable;
  /** Sorted, unique package managers of the vulnerable packages, e.g. ["NPM", "OS"]. */
  readonly packageManagers: readonly string[];
  readonly packages: readonly FindingPackage[];
  readonly resourceType: string;
  readonly resourceId: string;
  /** Present only for ECR container images. */
  readonly image?: FindingImage;
}

type FindingDetail = z.output<typeof findingDetailSchema>;

/**
 * The resource a finding is about. Inspector lists one resource per finding today, but nothing in the
 * format says the image comes first: the first ECR image resource wherever it is listed, else the first.
 */
const subjectIndex = (resources: FindingDetail['resources']): number =>
  Math.max(
    0,
    resources.findIndex((r) => r.type === ECR_IMAGE_RESOURCE),
  );

/** The digest and repository one ECR resource names (either shape), for comparing resources. */
const imageIdentity = (resource: FindingDetail['resources'][number]): string => {
  const ecr = resource.details?.awsEcrContainerImage;
  const neutral = resource.details?.image;
  return `${ecr?.repositoryName ?? neutral?.repositoryName}@${ecr?.imageHash ?? neutral?.imageDigest}`;
};

/**
 * Cross-field facts the shape alone cannot express. Checked before normalising, so that `toFinding`
 * can rely on them.
 */
const checkFinding = (detail: FindingDetail, ctx: z.core.$RefinementCtx<FindingDetail>): void => {
  if (detail.type === 'PACKAGE_VULNERABILITY' && detail.packageVulnerabilityDetails === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['packageVulnerabilityDetails'],
      message: 'expected object for a PACKAGE_VULNERABILITY finding, but the field is missing',
    });
  }
  const index = subjectIndex(detail.resources);
  const resource = detail.resources[index];
  if (resource?.type !== ECR_IMAGE_RESOURCE) return;
  // Two different images in one finding: patching either could be patching the wrong one.
  const images = new Set(
    detail.resources.filter((r) => r.type === ECR_IMAGE_RESOURCE).map((r) => imageIdentity(r)),
  );
  if (images.size > 1) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources'],
      message: `names ${images.size} different ECR images (${[...images].slice(0, 3).map(quote).join(', ')}); a finding is about one image`,
    });
  }
  const ecr = resource.details?.awsEcrContainerImage;
  const neutral = resource.details?.image;
  if (!ecr && !neutral) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details'],
      message: `an ${ECR_IMAGE_RESOURCE} resource needs details.awsEcrContainerImage or details.image`,
    });
    return;
  }
  const where = ecr ? 'awsEcrContainerImage' : 'image';
  if (!ecr?.imageHash && !neutral?.imageDigest) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details', where, ecr ? 'imageHash' : 'imageDigest'],
      message: 'expected an image digest, but the field is missing',
    });
  }
  // Both shapes describe the same image: when they disagree, either could be the wrong one.
  for (const [field, a, b] of [
    ['imageHash and image.imageDigest', ecr?.imageHash, neutral?.imageDigest],
    ['repositoryName and image.repositoryName', ecr?.repositoryName, neutral?.repositoryName],
    ['registry and image.registry', ecr?.registry, neutral?.registry],
  ] as const) {
    if (a && b && a !== b) {
      ctx.addIssue({
        code: 'custom',
        path: ['resources', index, 'details'],
        message: `awsEcrContainerImage.${field.replace(' and ', ` ${quote(a, 80)} and `)} ${quote(b, 80)} disagree`,
      });
    }
  }
  if (!ecr?.repositoryName && !neutral?.repositoryName) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details', where, 'repositoryName'],
      message: 'expected string, but the field is missing',
    });
  }
};

const toFinding = (event: { region: string; detail: FindingDetail }): Finding => {
  const d = event.detail;
  const resource = d.resources[subjectIndex(d.resources)] as FindingDetail['resources'][number];
  const region = resource.region ?? event.region;
  const vulnerablePackages = d.packageVulnerabilityDetails?.vulnerablePackages ?? [];
  const packages: FindingPackage[] = vulnerablePackages.map((p) => ({
    name: p.name,
    version: p.version,
    ...(p.fixedInVersion === undefined ? {} : { fixedInVersion: p.fixedInVersion }),
    ...(p.packageManager === undefined ? {} : { packageManager: p.packageManager }),
  }));
  const packageManagers = [
    ...new Set(vulnerablePackages.flatMap((p) => (p.packageManager ? [p.packageManager] : []))),
  ].sort();

  let image: FindingImage | undefined;
  if (resource.type === ECR_IMAGE_RESOURCE) {
    // Both shapes describe the same image: take each field from whichever has it (checked above
    // that the digests agree), the long-documented ECR shape first.
    const ecr = resource.details?.awsEcrContainerImage;
    const neutral = resource.details?.image;
    const registry = ecr?.registry ?? neutral?.registry ?? d.awsAccountId;
    const repository = (ecr?.repositoryName ?? neutral?.repositoryName) as string;
    const platform = ecr?.platform ?? neutral?.platform;
    const architecture = ecr?.architecture ?? neutral?.architecture;
    const pushedAt = ecr?.pushedAt ?? neutral?.pushedAt;
    image = {
      registry,
      repository,
      repositoryUri: ecrRepositoryUri(registry, region, repository),
      imageDigest: (ecr?.imageHash ?? neutral?.imageDigest) as string,
      imageTags: [...new Set([...(ecr?.imageTags ?? []), ...(neutral?.imageTags ?? [])])],
      ...(platform === undefined ? {} : { platform }),
      ...(architecture === undefined ? {} : { architecture }),
      ...(pushedAt === undefined ? {} : { pushedAt }),
    };
  }

  return {
    findingArn: d.findingArn,
    updatedAtRaw: d.updatedAt.raw,
    updatedAt: d.updatedAt.iso,
    ...(d.firstObservedAt === undefined ? {} : { firstObservedAt: d.firstObservedAt }),
    ...(d.lastObservedAt === undefined ? {} : { lastObservedAt: d.lastObservedAt }),
    account: d.awsAccountId,
    region,
    severity: d.severity,
    status: d.status,
    type: d.type,
    title: d.title,
    vulnerabilityId:
      d.packageVulnerabilityDetails?.vulnerabilityId ?? d.codeVulnerabilityDetails?.detectorId ?? d.type,
    ...(d.inspectorScore === undefined ? {} : { inspectorScore: d.inspectorScore }),
    ...(d.epss === undefined ? {} : { epssScore: d.epss.score }),
    ...(d.exploitAvailable === undefined ? {} : { exploitAvailable: d.exploitAvailable }),
    ...(d.fixAvailable === undefined ? {} : { fixAvailable: d.fixAvailable }),
    packageManagers,
    packages,
    resourceType: resource.type,
    resourceId: resource.id,
    ...(image === undefined ? {} : { image }),
  };
};

/** The whole `Inspector2 Finding` EventBridge event; its output is the normalised `Finding`. */
export const inspectorFindingEventSchema = EventBridgeSchema.extend({
  source: z.literal(INSPECTOR_SOURCE),
  'detail-type': z.literal(FINDING_DETAIL_TYPE),
  detail: findingDetailSchema.superRefine(checkFinding),
}).transform(toFinding);
