import type {
  BatchGetFindingDetailsCommandInput,
  BatchGetFindingDetailsCommandOutput,
  CoverageStringFilter,
  CoveredResource,
  Finding,
  FindingDetail,
  FindingDetailsError,
  ListCoverageCommandInput,
  ListCoverageCommandOutput,
  ListFindingsCommandInput,
  ListFindingsCommandOutput,
  StringFilter,
} from '@aws-sdk/client-inspector2';
import type { FindingSpec } from '../scenario';
import type { EcrModel, Image } from './ecr';
import { sdkError } from './errors';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

export interface InspectorFinding {
  readonly arn: string;
  readonly spec: FindingSpec;
  readonly repository: string;
  readonly digest: string;
  firstObservedAt: Date;
  lastObservedAt: Date;
  updatedAt: Date;
  status: 'ACTIVE' | 'SUPPRESSED' | 'CLOSED';
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Inspector's event timestamp format: "Wed Sep 04 16:55:38.411 UTC 2024" (not ISO-8601). */
export const inspectorTime = (d: Date): string => {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)} UTC ${d.getUTCFullYear()}`;
};

const DEFAULT_PACKAGE: Record<string, { name: string; version: string; fixed: string }> = {
  OS: { name: 'openssl', version: '3.0.13', fixed: '0:3.0.13-0ubuntu3.4' },
  NPM: { name: 'express', version: '4.18.2', fixed: '4.19.2' },
  YARN: { name: 'express', version: '4.18.2', fixed: '4.19.2' },
  PIP: { name: 'requests', version: '2.31.0', fixed: '2.32.0' },
  JAR: { name: 'com.fasterxml.jackson.core:jackson-databind', version: '2.13.0', fixed: '2.13.4.2' },
  GOMOD: { name: 'golang.org/x/net', version: '0.17.0', fixed: '0.23.0' },
};

const packageOf = (spec: FindingSpec) => {
  const d = DEFAULT_PACKAGE[spec.packageManager] ?? { name: 'libexample', version: '1.0.0', fixed: '1.0.1' };
  return { name: spec.package ?? d.name, version: d.version, fixed: d.fixed };
};

const stringFilter = (
  filters: ReadonlyArray<StringFilter | CoverageStringFilter> | undefined,
  value: string | undefined,
) =>
  !filters ||
  filters.length === 0 ||
  filters.some((f) => {
    const v = value ?? '';
    if (f.comparison === 'EQUALS') return v === f.value;
    if (f.comparison === 'PREFIX') return v.startsWith(f.value ?? '');
    if (f.comparison === 'NOT_EQUALS') return v !== f.value;
    return false;
  });

const SUPPORTED_FINDING_FILTERS = new Set([
  'findingArn',
  'awsAccountId',
  'findingType',
  'severity',
  'findingStatus',
  'resourceType',
  'resourceId',
  'ecrImageRepositoryName',
  'ecrImageHash',
  'ecrImageTags',
  'vulnerabilityId',
  'fixAvailable',
]);
const SUPPORTED_COVERAGE_FILTERS = new Set([
  'accountId',
  'resourceId',
  'resourceType',
  'scanType',
  'scanStatusCode',
  'scanStatusReason',
  'ecrRepositoryName',
  'ecrImageTags',
]);

interface Coverage {
  status: 'PENDING' | 'SCANNED' | 'NEVER';
  lastScannedAt?: Date;
}

/**
 * Amazon Inspector for ECR: findings per image digest, scan coverage, and the events it emits.
 * Images present at the start are already scanned; a pushed image is scanned after a delay, and then
 * its findings appear (ListFindings, Inspector2 Finding events) along with an Inspector2 Scan event.
 */
export class InspectorModel {
  private readonly byDigest = new Map<string, InspectorFinding[]>();
  private readonly coverage = new Map<string, Coverage>();

  constructor(
    private readonly world: World,
    private readonly ecr: EcrModel,
    private readonly bus: EventBus,
  ) {}

  resourceId(image: Pick<Image, 'repository' | 'digest'>): string {
    return this.world.arn('ecr', `repository/${image.repository}/${image.digest}`);
  }

  findings(digest: string): readonly InspectorFinding[] {
    return this.byDigest.get(digest) ?? [];
  }

  markScanned(digest: string, at: Date): void {
    this.coverage.set(digest, { status: 'SCANNED', lastScannedAt: at });
  }

  /** Add (or refresh) a finding on an image; returns it. Does not emit: delivery is the caller's choice. */
  addFinding(image: Image, spec: FindingSpec, at: Date): InspectorFinding {
    const list = this.byDigest.get(image.digest) ?? [];
    const existing = list.find((f) => f.spec.cve === spec.cve);
    if (existing) return existing;
    const finding: InspectorFinding = {
      arn: this.world.arn('inspector2', `finding/${this.world.hex(32)}`),
      spec,
      repository: image.repository,
      digest: image.digest,
      firstObservedAt: at,
      lastObservedAt: at,
      updatedAt: at,
      status: spec.status,
    };
    list.push(finding);
    this.byDigest.set(image.digest, list);
    return finding;
  }

  /** The real `Inspector2 Finding` event for a finding, as Inspector puts it on the default bus. */
  findingEvent(finding: InspectorFinding) {
    const image = this.ecr.find(finding.repository, { digest: finding.digest });
    if (!image) throw new Error(`image ${finding.repository}@${finding.digest} vanished`);
    const pkg = packageOf(finding.spec);
    const resourceId = this.resourceId(image);
    const pushedAt = inspectorTime(image.pushedAt);
    const imageDetails = {
      repositoryName: image.repository,
      registry: this.world.accountId,
      imageTags: [...image.tags],
      imageDigest: image.digest,
      pushedAt,
      architecture: image.architecture,
      platform: image.platform,
    };
    return this.bus.envelope('aws.inspector2', 'Inspector2 Finding', [resourceId], {
      awsAccountId: this.world.accountId,
      description: `${finding.spec.cve} affects ${pkg.name} ${pkg.version}.`,
      ...(finding.spec.epss === undefined ? {} : { epss: { score: finding.spec.epss } }),
      ...(finding.spec.exploitAvailable === undefined
        ? {}
        : { exploitAvailable: finding.spec.exploitAvailable }),
      findingArn: finding.arn,
      firstObservedAt: inspectorTime(finding.firstObservedAt),
      fixAvailable: finding.spec.fixAvailable,
      ...(finding.spec.inspectorScore === undefined ? {} : { inspectorScore: finding.spec.inspectorScore }),
      lastObservedAt: inspectorTime(finding.lastObservedAt),
      packageVulnerabilityDetails: {
        cvss: [],
        referenceUrls: [`https://www.cve.org/CVERecord?id=${finding.spec.cve}`],
        relatedVulnerabilities: [],
        source: finding.spec.packageManager === 'OS' ? 'UBUNTU_CVE' : 'NVD',
        sourceUrl: `https://nvd.nist.gov/vuln/detail/${finding.spec.cve}`,
        vendorCreatedAt: inspectorTime(new Date(finding.firstObservedAt.getTime() - 86_400_000)),
        vendorSeverity: finding.spec.severity.toLowerCase(),
        vulnerabilityId: finding.spec.cve,
        vulnerablePackages: [
          {
            arch: image.architecture.toUpperCase(),
            epoch: 0,
            ...(finding.spec.fixAvailable === 'NO' ? {} : { fixedInVersion: pkg.fixed }),
            name: pkg.name,
            packageManager: finding.spec.packageManager,
            ...(finding.spec.packageManager === 'OS'
              ? { release: '0ubuntu3.2', remediation: 'apt-get update && apt-get upgrade' }
              : {}),
            version: pkg.version,
          },
        ],
      },
      remediation: { recommendation: { text: 'None Provided' } },
      resources: [
        {
          details: {
            awsEcrContainerImage: {
              architecture: image.architecture,
              imageHash: image.digest,
              imageTags: [...image.tags],
              platform: image.platform,
              pushedAt,
              registry: this.world.accountId,
              repositoryName: image.repository,
            },
            image: imageDetails,
          },
          id: resourceId,
          partition: this.world.partition,
          provider: 'AWS',
          providerAccountId: this.world.accountId,
          region: this.world.region,
          type: 'AWS_ECR_CONTAINER_IMAGE',
        },
      ],
      severity: finding.spec.severity,
      status: finding.status,
      title: `${finding.spec.cve} - ${pkg.name}`,
      type: 'PACKAGE_VULNERABILITY',
      updatedAt: inspectorTime(finding.updatedAt),
    });
  }

  /** Put a finding's event on the bus (Inspector emits one per finding created or updated). */
  emitFinding(finding: InspectorFinding): void {
    this.bus.put(this.findingEvent(finding));
  }

  /**
   * A newly pushed image: scanned after `delayMs` (never, when `delayMs` is undefined). Then its
   * findings are listed and announced, followed by the initial-scan-complete event.
   */
  scanLater(image: Image, findings: readonly FindingSpec[], delayMs: number | undefined): void {
    this.coverage.set(image.digest, { status: delayMs === undefined ? 'NEVER' : 'PENDING' });
    if (delayMs === undefined) {
      this.world.note(
        'inspector',
        `${image.repository}@${image.digest.slice(7, 19)} pushed; it will never be scanned`,
      );
      return;
    }
    this.world.schedule(Date.now() + delayMs, `Inspector scan of ${image.digest}`, () => {
      const at = this.world.now();
      const created = findings.map((spec) => this.addFinding(image, spec, at));
      this.markScanned(image.digest, at);
      const counts: Record<string, number> = { TOTAL: created.length };
      for (const f of created) counts[f.spec.severity] = (counts[f.spec.severity] ?? 0) + 1;
      this.world.note(
        'inspector',
        `scanned ${image.repository}@${image.digest.slice(7, 19)}: ${created.length === 0 ? 'no findings' : created.map((f) => `${f.spec.cve} ${f.spec.severity}`).join(', ')}`,
      );
      for (const f of created) if (f.status === 'ACTIVE') this.emitFinding(f);
      this.bus.put(
        this.bus.envelope(
          'aws.inspector2',
          'Inspector2 Scan',
          [this.world.arn('ecr', `repository/${image.repository}`)],
          {
            'scan-status': 'INITIAL_SCAN_COMPLETE',
            'repository-name': this.world.arn('ecr', `repository/${image.repository}`),
            'finding-severity-counts': counts,
            'image-digest': image.digest,
            'image-tags': [...image.tags],
            version: '1.0',
          },
        ),
      );
    });
  }

  private sdkFinding(f: InspectorFinding): Finding {
    const image = this.ecr.find(f.repository, { digest: f.digest });
    const pkg = packageOf(f.spec);
    return {
      findingArn: f.arn,
      awsAccountId: this.world.accountId,
      type: 'PACKAGE_VULNERABILITY',
      description: `${f.spec.cve} affects ${pkg.name} ${pkg.version}.`,
      title: `${f.spec.cve} - ${pkg.name}`,
      remediation: { recommendation: { text: 'None Provided' } },
      severity: f.spec.severity,
      firstObservedAt: f.firstObservedAt,
      lastObservedAt: f.lastObservedAt,
      updatedAt: f.updatedAt,
      status: f.status,
      resources: [
        {
          type: 'AWS_ECR_CONTAINER_IMAGE',
          id: this.resourceId(f),
          partition: this.world.partition,
          region: this.world.region,
          details: {
            awsEcrContainerImage: {
              repositoryName: f.repository,
              imageHash: f.digest,
              imageTags: [...(image?.tags ?? [])],
              registry: this.world.accountId,
              platform: image?.platform,
              architecture: image?.architecture,
              pushedAt: image?.pushedAt,
            },
          },
        },
      ],
      packageVulnerabilityDetails: {
        vulnerabilityId: f.spec.cve,
        source: f.spec.packageManager === 'OS' ? 'UBUNTU_CVE' : 'NVD',
        vendorSeverity: f.spec.severity.toLowerCase(),
        vulnerablePackages: [
          {
            name: pkg.name,
            version: pkg.version,
            packageManager: f.spec.packageManager,
            ...(f.spec.fixAvailable === 'NO' ? {} : { fixedInVersion: pkg.fixed }),
          },
        ],
      },
      fixAvailable: f.spec.fixAvailable,
      ...(f.spec.exploitAvailable === undefined ? {} : { exploitAvailable: f.spec.exploitAvailable }),
      ...(f.spec.inspectorScore === undefined ? {} : { inspectorScore: f.spec.inspectorScore }),
      ...(f.spec.epss === undefined ? {} : { epss: { score: f.spec.epss } }),
    };
  }

  private page<T>(
    items: T[],
    maxResults: number | undefined,
    nextToken: string | undefined,
  ): { items: T[]; nextToken?: string } {
    const start = nextToken ? Number(nextToken) : 0;
    if (Number.isNaN(start)) throw sdkError('inspector2', 'ValidationException', 'Invalid nextToken');
    const size = maxResults ?? 50;
    const end = start + size;
    return { items: items.slice(start, end), ...(end < items.length ? { nextToken: String(end) } : {}) };
  }

  readonly handlers = {
    /** Exploitation details per finding ARN: cisaData from the spec's `kev`, exploitObserved when set. */
    BatchGetFindingDetails: (
      input: BatchGetFindingDetailsCommandInput,
    ): Out<BatchGetFindingDetailsCommandOutput> => {
      const arns = input.findingArns ?? [];
      if (arns.length < 1 || arns.length > 10) {
        throw sdkError('inspector2', 'ValidationException', 'findingArns must have 1 to 10 items');
      }
      const all = new Map([...this.byDigest.values()].flat().map((f) => [f.arn, f]));
      const findingDetails: FindingDetail[] = [];
      const errors: FindingDetailsError[] = [];
      for (const arn of arns) {
        const f = all.get(arn);
        if (!f) {
          errors.push({
            findingArn: arn,
            errorCode: 'FINDING_DETAILS_NOT_FOUND',
            errorMessage: 'no such finding',
          });
          continue;
        }
        const kev = f.spec.kev;
        findingDetails.push({
          findingArn: arn,
          ...(kev
            ? {
                cisaData: {
                  dateDue: new Date(kev.dateDue),
                  ...(kev.dateAdded ? { dateAdded: new Date(kev.dateAdded) } : {}),
                  action:
                    'Apply mitigations per vendor instructions or discontinue use of the product if mitigations are unavailable.',
                },
              }
            : {}),
          ...(f.spec.exploitObserved
            ? { exploitObserved: { firstSeen: f.firstObservedAt, lastSeen: f.lastObservedAt } }
            : {}),
        });
      }
      return { findingDetails, errors };
    },
    ListFindings: (input: ListFindingsCommandInput): Out<ListFindingsCommandOutput> => {
      const c = input.filterCriteria ?? {};
      for (const [key, value] of Object.entries(c)) {
        if (value !== undefined && !SUPPORTED_FINDING_FILTERS.has(key)) {
          throw sdkError(
            'inspector2',
            'ValidationException',
            `the simulation does not model the ListFindings filter ${key}`,
          );
        }
      }
      const all = [...this.byDigest.values()].flat().filter((f) => {
        const image = this.ecr.find(f.repository, { digest: f.digest });
        const pkgFix = f.spec.fixAvailable;
        return (
          stringFilter(c.findingArn, f.arn) &&
          stringFilter(c.awsAccountId, this.world.accountId) &&
          stringFilter(c.findingType, 'PACKAGE_VULNERABILITY') &&
          stringFilter(c.severity, f.spec.severity) &&
          stringFilter(c.findingStatus, f.status) &&
          stringFilter(c.resourceType, 'AWS_ECR_CONTAINER_IMAGE') &&
          stringFilter(c.resourceId, this.resourceId(f)) &&
          stringFilter(c.ecrImageRepositoryName, f.repository) &&
          stringFilter(c.ecrImageHash, f.digest) &&
          (!c.ecrImageTags || (image?.tags ?? []).some((t) => stringFilter(c.ecrImageTags, t))) &&
          stringFilter(c.vulnerabilityId, f.spec.cve) &&
          stringFilter(c.fixAvailable, pkgFix)
        );
      });
      const { items, nextToken } = this.page(all, input.maxResults, input.nextToken);
      return { findings: items.map((f) => this.sdkFinding(f)), ...(nextToken ? { nextToken } : {}) };
    },
    ListCoverage: (input: ListCoverageCommandInput): Out<ListCoverageCommandOutput> => {
      const c = input.filterCriteria ?? {};
      for (const [key, value] of Object.entries(c)) {
        if (value !== undefined && !SUPPORTED_COVERAGE_FILTERS.has(key)) {
          throw sdkError(
            'inspector2',
            'ValidationException',
            `the simulation does not model the ListCoverage filter ${key}`,
          );
        }
      }
      const resources: CoveredResource[] = [];
      for (const repo of this.ecr.repositories.values()) {
        for (const image of repo.images.values()) {
          const cov = this.coverage.get(image.digest) ?? { status: 'SCANNED' as const };
          const scanned = cov.status === 'SCANNED';
          const statusCode = 'ACTIVE';
          const reason = scanned ? 'SUCCESSFUL' : 'PENDING_INITIAL_SCAN';
          const resourceId = this.resourceId(image);
          const ok =
            stringFilter(c.accountId, this.world.accountId) &&
            stringFilter(c.resourceId, resourceId) &&
            stringFilter(c.resourceType, 'AWS_ECR_CONTAINER_IMAGE') &&
            stringFilter(c.scanType, 'PACKAGE') &&
            stringFilter(c.scanStatusCode, statusCode) &&
            stringFilter(c.scanStatusReason, reason) &&
            stringFilter(c.ecrRepositoryName, image.repository) &&
            (!c.ecrImageTags || image.tags.some((t) => stringFilter(c.ecrImageTags, t)));
          if (!ok) continue;
          resources.push({
            resourceType: 'AWS_ECR_CONTAINER_IMAGE',
            resourceId,
            accountId: this.world.accountId,
            scanType: 'PACKAGE',
            scanStatus: { statusCode, reason },
            resourceMetadata: {
              ecrImage: { tags: [...image.tags] },
              ecrRepository: { name: image.repository, scanFrequency: 'CONTINUOUS_SCAN' },
            },
            ...(cov.lastScannedAt ? { lastScannedAt: cov.lastScannedAt } : {}),
          });
        }
      }
      const { items, nextToken } = this.page(resources, input.maxResults, input.nextToken);
      return { coveredResources: items, ...(nextToken ? { nextToken } : {}) };
    },
  };
}
