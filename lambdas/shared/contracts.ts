/**
 * The contracts between Autopatch's parts: what triage hands the remediation workflow, what the
 * workflow's tasks return, and how the ledger is keyed. Change these deliberately: the state
 * machine definition (statemachines/remediation.asl.json) reads these fields by JSONPath.
 */

export const SEVERITIES = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'INFORMATIONAL', 'UNTRIAGED'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Rank for "worst of": lower is worse. */
export const severityRank = (s: Severity): number => SEVERITIES.indexOf(s);

/** What policy decided for one finding. `reject` is only ever produced for input that did not parse. */
export type Action = 'remediate' | 'approve' | 'notify' | 'ignore';

/** How an image is rebuilt. */
export type RebuildMode =
  /**
   * An OS-package patch layer on top of the running image (no source needed). `packages`: upgrade
   * only the packages the findings name, to at least their fixed version ('vulnerable', the default),
   * or every package with an update ('all').
   */
  | { readonly mode: 'patch-os'; readonly packages?: 'vulnerable' | 'all' }
  /** Rebuild from source with the base image pulled fresh, via the construct's source project. */
  | {
      readonly mode: 'source';
      readonly sourceLocation: string;
      /** undefined, as when the target's config leaves it out: the repository's own Dockerfile. */
      readonly dockerfile?: string | undefined;
      /** The CodeConnections connection the build checks the repository out through. */
      readonly connectionArn?: string | undefined;
    }
  /** Start the target's own existing CodeBuild project with overrides. */
  | { readonly mode: 'project'; readonly projectName: string };

/** An ECS service, identified the way the ECS APIs identify it. */
export interface ServiceRef {
  readonly clusterArn: string;
  readonly serviceName: string;
  /**
   * "<clusterName>/<serviceName>": the ledger key and the name people read; for a service outside the
   * hub's account or Region, "<account>/<region>/<clusterName>/<serviceName>" (see serviceKeyOf).
   */
  readonly key: string;
}

/**
 * The ledger key of an ECS service, and the name people read.
 *
 * Decision (issue 13, hub and spokes): a service in the hub's own account and Region keeps the key it
 * always had, "<cluster>/<service>", so the locks, holds, history, idempotency keys and execution names
 * of existing installs keep working. Any other service (another account, or another Region of the
 * hub's account) is keyed "<account>/<region>/<cluster>/<service>": two accounts can each run
 * cluster "prod" with service "api", and they must not share a lock. A key of four parts is therefore
 * always a service outside the hub's home; {@link placeOfServiceKey} reads the place back.
 *
 * The home is the hub's account (AUTOPATCH_HOME_ACCOUNT) and Region (AWS_REGION); a part that is not
 * known (a single-account install sets no home account) counts as home, as does a cluster given by
 * name rather than ARN. Every place that builds a service key (triage's inventory, the deployment
 * events, the tests) builds it here.
 */
export const serviceKeyOf = (
  clusterArnOrName: string,
  serviceName: string,
  home: { readonly account?: string | undefined; readonly region?: string | undefined } = {},
): string => {
  const cluster = clusterArnOrName.slice(clusterArnOrName.lastIndexOf('/') + 1);
  const arn = /^arn:aws[a-z-]*:ecs:([a-z0-9-]+):(\d{12}):/.exec(clusterArnOrName);
  const region = arn?.[1];
  const account = arn?.[2];
  const away =
    (account !== undefined && home.account !== undefined && account !== home.account) ||
    (region !== undefined && home.region !== undefined && region !== home.region);
  return away ? `${account}/${region}/${cluster}/${serviceName}` : `${cluster}/${serviceName}`;
};

/** A ServiceRef from a cluster ARN and a service name, keyed by {@link serviceKeyOf}. */
export const serviceRefOf = (
  clusterArn: string,
  serviceName: string,
  home: Parameters<typeof serviceKeyOf>[2] = {},
): ServiceRef => ({ clusterArn, serviceName, key: serviceKeyOf(clusterArn, serviceName, home) });

/** The account and Region a service key names: only keys of services outside the hub's home do. */
export const placeOfServiceKey = (key: string): { account: string; region: string } | undefined => {
  const match = /^(\d{12})\/([a-z0-9-]+)\/[^/]+\/[^/]+$/.exec(key);
  return match ? { account: match[1] as string, region: match[2] as string } : undefined;
};

/** The Region an ECR repository URI names (`<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repo>`). */
export const regionOfRepositoryUri = (repositoryUri: string): string | undefined =>
  /^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\//.exec(repositoryUri)?.[1];

/** One image a remediation patches: one digest, possibly used by several containers of the task. */
export interface AffectedImage {
  /** ECR repository name, e.g. "payments/api". */
  readonly repository: string;
  /** Registry (account id) that holds the repository. */
  readonly registry: string;
  /** "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" */
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
  /** Container names in the service's task definition that run this image. */
  readonly containers: readonly string[];
  readonly platform?: string;
  readonly architecture?: string;
  /** Inspector package managers of the findings, e.g. ["OS"] or ["OS", "NPM"]. */
  readonly packageManagers: readonly string[];
  /** Sorted, unique CVE / vulnerability ids that triggered the remediation for this image. */
  readonly cves: readonly string[];
  /** Worst severity among those findings. */
  readonly severity: Severity;
  /**
   * Some of the findings' ARNs, for reference (at most MAX_FINDING_ARNS_PER_IMAGE). What a request
   * covers is its (digest, CVE) pairs: Inspector raises one finding per vulnerability per image, so
   * the pairs identify the findings, and they stay small when a burst brings thousands.
   */
  readonly findingArns: readonly string[];
  readonly rebuild: RebuildMode;
  /**
   * The OS packages the findings name, each with the version that fixes it when Inspector knows one:
   * what a targeted patch layer upgrades. Sorted, unique, at most MAX_PATCH_PACKAGES_PER_IMAGE, names
   * and versions of safe characters only (they reach a shell). Absent when not known exactly (requests
   * from before this field, a finding without package details, too many packages): the patch layer
   * then upgrades every package with an update.
   */
  readonly packages?: readonly PatchPackage[];
  /**
   * CVE → the package version Inspector says fixes it (vulnerablePackages[].fixedInVersion), when
   * reported. A churn hold on (service, CVE) lets a finding through once this differs from the held one.
   */
  readonly fixedInVersions?: Readonly<Record<string, string>>;
  /**
   * Set when the service runs an image index (an OCI image index or a Docker manifest list): then
   * `imageDigest` is the index's digest (what the service runs), and the findings may name any of its
   * platform manifests. The remediation patches every platform and pushes a new index, so no platform
   * is lost. Absent for a single-platform image (and in requests from before multi-arch support).
   */
  readonly index?: ImageIndex;
}

/** An image index (multi-architecture image), as triage read it from ECR. */
export interface ImageIndex {
  /** `application/vnd.oci.image.index.v1+json` or `application/vnd.docker.distribution.manifest.list.v2+json`. */
  readonly mediaType: string;
  /** Its platform manifests, in the index's order (attestation manifests are not platforms: left out). */
  readonly platforms: readonly IndexPlatform[];
  /** Non-platform entries the index held (build attestations): the new index leaves them out, as they attest the old build. */
  readonly attestations?: number;
}

/** One platform manifest of an image index. */
export interface IndexPlatform {
  /** The platform manifest's digest: what Inspector scans and reports findings on. */
  readonly digest: string;
  readonly mediaType: string;
  /** "amd64", "arm64", ... (the OCI platform's architecture). */
  readonly architecture: string;
  /** "linux", ... */
  readonly os: string;
  /** "v8" for arm64, when the index says. */
  readonly variant?: string;
}

/** Media types of an image index. */
export const INDEX_MEDIA_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
] as const;
/** Media types of a single-platform image manifest. */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const;

/** One OS package a finding names (Inspector `vulnerablePackages`, packageManager OS). */
export interface PatchPackage {
  /** Binary (or source) package name, e.g. "libssl3". */
  readonly name: string;
  /** The version that fixes it, as Inspector writes it (e.g. "0:3.0.13-1~deb12u1"); absent when none is known. */
  readonly fixedInVersion?: string;
}

/** How many finding ARNs an AffectedImage keeps (see findingArns). */
export const MAX_FINDING_ARNS_PER_IMAGE = 20;

/** How many packages an AffectedImage names before it falls back to "upgrade everything" (see packages). */
export const MAX_PATCH_PACKAGES_PER_IMAGE = 100;
/**
 * Package names and versions that may reach the patch layer's shell: no quotes, spaces, '=' or
 * expansions. Debian and Alpine names are lower case; RPM names may have upper case and '_'
 * ("perl-IO-Socket-SSL", "python3-PyYAML").
 */
export const SAFE_PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9+._-]{0,127}$/;
export const SAFE_PACKAGE_VERSION = /^[A-Za-z0-9.+~:_-]{1,128}$/;

/** The (digest, CVE) pairs a list of images covers: one per finding. */
export const coveredFindings = (images: readonly AffectedImage[]): string[] =>
  images.flatMap((i) => i.cves.map((cve) => `${i.imageDigest}\n${cve}`));

/** Per-service settings the workflow needs (from the construct's target configuration). */
export interface TargetSettings {
  /** CloudWatch alarms Autopatch watches during the bake, in addition to the service's own deployment alarms. */
  readonly alarmNames: readonly string[];
  readonly bakeTimeMinutes: number;
  /** Upper bound for the whole deployment + bake watch before the workflow gives up. */
  readonly deploymentTimeoutSeconds: number;
  /** How long to wait for Inspector to scan the rebuilt image. */
  readonly rescanTimeoutSeconds: number;
  readonly approvalTimeoutSeconds: number;
  /** The remediation gathers the service's findings until none arrived for this long (absent in older requests). */
  readonly gatherSeconds?: number;
  /** ...but at most this long after the execution started. */
  readonly gatherMaxSeconds?: number;
  /**
   * A service no alarm can judge (none watched, or one in INSUFFICIENT_DATA): 'approve' (a person
   * approves first; also when absent, in requests from before it existed) or 'deploy'.
   */
  readonly withoutAlarms?: WithoutAlarms;
  /** A CODE_DEPLOY service's CodeDeploy application and deployment group, when the target names them. */
  readonly codeDeploy?: { readonly application: string; readonly deploymentGroup: string };
}

/** What to do with a service that no alarm can judge before deploying. */
export type WithoutAlarms = 'approve' | 'deploy';

/** The execution input that triage starts the remediation workflow with. */
export interface RemediationRequest {
  readonly remediationId: string;
  readonly executionName: string;
  readonly service: ServiceRef;
  readonly images: readonly AffectedImage[];
  readonly decision: {
    readonly action: 'remediate' | 'approve';
    readonly reason: string;
    /** ISO-8601 start of the next maintenance window, when the workflow must wait for it. */
    readonly notBefore?: string;
    /**
     * ISO-8601 time by which policy wants the fix deployed: the earliest deadline of the request's
     * findings (see the policy's `deadlines`). Absent in requests from before deadlines, and when
     * no finding's severity has one.
     */
    readonly deadline?: string;
    /** Some finding is in CISA's Known Exploited Vulnerabilities catalog (known only when policy read it). */
    readonly knownExploited?: boolean;
  };
  readonly target: TargetSettings;
  readonly findingsCount: number;
  /** ISO-8601 time the first finding of this remediation was observed by triage. */
  readonly requestedAt: string;
}

/** Terminal outcomes of a remediation. Each has a runbook entry in docs/runbook.md. */
export const OUTCOMES = [
  'Patched',
  'Superseded',
  'Rejected',
  'ApprovalExpired',
  'BuildFailed',
  'PatchIneffective',
  'RescanTimedOut',
  'RolledBack',
  'Deferred',
  'AlreadyFixed',
  'Failed',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Ledger (DynamoDB) key layout. One table, partition key `pk`, sort key `sk`, TTL attribute `expiresAt`. */
export const LEDGER = {
  /** The per-service lock / in-flight remediation item. */
  serviceKey: (serviceKey: string) => ({ pk: `SERVICE#${serviceKey}`, sk: 'LOCK' }),
  /** One history record per finished remediation. */
  remediationKey: (serviceKey: string, remediationId: string) => ({
    pk: `SERVICE#${serviceKey}`,
    sk: `REMEDIATION#${remediationId}`,
  }),
  /** Duplicate-delivery marker: EventBridge delivers at least once. */
  findingKey: (findingArn: string, updatedAt: string) => ({ pk: `FINDING#${findingArn}`, sk: updatedAt }),
  ttlAttribute: 'expiresAt',
} as const;
