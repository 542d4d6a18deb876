import { createHash } from 'node:crypto';
import {
  type AffectedImage,
  coveredFindings,
  MAX_FINDING_ARNS_PER_IMAGE,
  MAX_PATCH_PACKAGES_PER_IMAGE,
  type PatchPackage,
  placeOfServiceKey,
  type RemediationRequest,
  type ServiceRef,
  type Severity,
  severityRank,
} from './contracts';

const NAME_MAX = 80;
const ALLOWED = /[^A-Za-z0-9_-]+/g;

const worst = (a: Severity, b: Severity): Severity => (severityRank(a) <= severityRank(b) ? a : b);
const union = (a: readonly string[], b: readonly string[]): string[] => [...new Set([...a, ...b])].sort();

const packageKey = (p: PatchPackage): string => `${p.name}=${p.fixedInVersion ?? ''}`;

/**
 * Union of two package lists, sorted and unique by (name, fixed version): two findings may name the
 * same package with different fixes, and the patch layer must reach both. Unknown on either side, or
 * more than MAX_PATCH_PACKAGES_PER_IMAGE, is unknown (undefined): the patch layer then upgrades
 * everything, which over-patches rather than missing a fix.
 */
export const mergePatchPackages = (
  a: readonly PatchPackage[] | undefined,
  b: readonly PatchPackage[] | undefined,
): PatchPackage[] | undefined => {
  if (a === undefined || b === undefined) return undefined;
  const byKey = new Map<string, PatchPackage>();
  for (const p of [...a, ...b]) byKey.set(packageKey(p), p);
  if (byKey.size > MAX_PATCH_PACKAGES_PER_IMAGE) return undefined;
  return [...byKey.entries()].sort(([x], [y]) => x.localeCompare(y)).map(([, p]) => p);
};

/** Merge two views of the same image digest (findings are folded into one entry per digest). */
export const mergeImage = (a: AffectedImage, b: AffectedImage): AffectedImage => {
  const { packages: _, ...rest } = a;
  const packages = mergePatchPackages(a.packages, b.packages);
  return {
    ...rest,
    imageTags: union(a.imageTags, b.imageTags),
    containers: union(a.containers, b.containers),
    packageManagers: union(a.packageManagers, b.packageManagers),
    cves: union(a.cves, b.cves),
    severity: worst(a.severity, b.severity),
    findingArns: union(a.findingArns, b.findingArns).slice(0, MAX_FINDING_ARNS_PER_IMAGE),
    // Source rebuilds fix OS packages too, so once any finding asks for one, the image gets it.
    rebuild: a.rebuild.mode !== 'patch-os' ? a.rebuild : b.rebuild,
    ...(packages === undefined ? {} : { packages }),
    // One digest is one image: an index on either side (a request from before multi-arch may lack it).
    ...((a.index ?? b.index) === undefined ? {} : { index: a.index ?? b.index }),
  };
};

/** Union of image lists, one entry per digest, in a stable order. */
export const mergeImages = (...lists: ReadonlyArray<readonly AffectedImage[]>): AffectedImage[] => {
  const byDigest = new Map<string, AffectedImage>();
  for (const list of lists) {
    for (const image of list) {
      const seen = byDigest.get(image.imageDigest);
      byDigest.set(image.imageDigest, seen ? mergeImage(seen, image) : image);
    }
  }
  return [...byDigest.values()].sort((x, y) => x.imageDigest.localeCompare(y.imageDigest));
};

const compactTime = (at: Date): string =>
  at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z'); // 20240904T165538Z

/**
 * Deterministic, readable execution name: `<service>-<cve-or-count>-<short-digest>-<hash>-<time>`,
 * `<account>-<service>-…` for a service outside the hub's account or Region.
 * The same service, images, CVEs and time always give the same name, so a retried StartExecution
 * cannot start a second execution (Step Functions rejects a reused name for 90 days).
 * At most 80 characters, only letters, digits, '-' and '_'.
 */
export const executionName = (
  service: Pick<ServiceRef, 'serviceName' | 'key'>,
  images: readonly AffectedImage[],
  at: Date,
): string => {
  const { serviceName } = service;
  const cves = union(
    [],
    images.flatMap((i) => i.cves),
  );
  const what = cves.length === 1 ? (cves[0] as string) : `${cves.length}cves`;
  const digests = images.map((i) => i.imageDigest).sort();
  // Triage admits only "sha256:<64 hex>" digests; a request from elsewhere (an older ledger item, a
  // console re-run) still cannot put ':' or anything else outside the allowed set into the name.
  const first =
    (digests[0] ?? '')
      .replace(/^sha256:/, '')
      .replace(ALLOWED, '')
      .slice(0, 8) || 'nodigest';
  // A short hash of everything that identifies the remediation keeps names unique when the readable
  // parts collide: two CVE sets with the same count, several images, or services of the same name
  // in two clusters (the readable part names the service only; the key is cluster/service).
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ service: service.key, cves, digests }))
    .digest('hex')
    .slice(0, 6);
  const tail = `-${what.replace(ALLOWED, '_').slice(0, 24)}-${first}${digests.length > 1 ? `x${digests.length}` : ''}-${fingerprint}-${compactTime(at)}`;
  // A service outside the hub's account or Region (its key names the account: serviceKeyOf) is named
  // with its account first, so a console list of executions tells the accounts apart. A hub service's
  // name is what it always was: in-flight runs and existing idempotency keys keep their names.
  const place = placeOfServiceKey(service.key);
  const prefix = place ? `${place.account}-` : '';
  const readable =
    serviceName.replace(ALLOWED, '_').slice(0, Math.max(1, NAME_MAX - tail.length - prefix.length)) || '_';
  return `${prefix}${readable}${tail}`.slice(0, NAME_MAX);
};

/** A short, stable id for one remediation (also the ledger history key). */
export const remediationId = (serviceKey: string, name: string): string =>
  createHash('sha256').update(`${serviceKey}\n${name}`).digest('hex').slice(0, 16);

const earliest = (a: string, b: string): string => (a <= b ? a : b); // ISO-8601 sorts as text

/**
 * One decision for two requests of the same service. Approval is the stricter action and wins. A
 * request that need not wait for a window (none configured, or the CRITICAL known-exploit override)
 * pulls the whole remediation forward, as within one batch (aggregate.ts); otherwise the earliest
 * window wins.
 */
export const mergeDecisions = (
  a: RemediationRequest['decision'],
  b: RemediationRequest['decision'],
): RemediationRequest['decision'] => {
  const action = a.action === 'approve' || b.action === 'approve' ? 'approve' : 'remediate';
  const notBefore =
    a.notBefore !== undefined && b.notBefore !== undefined ? earliest(a.notBefore, b.notBefore) : undefined;
  const same = (d: RemediationRequest['decision']) => d.action === action && d.notBefore === notBefore;
  const reason = same(a) ? a.reason : same(b) ? b.reason : `${a.reason}; ${b.reason}`;
  // The merged run answers to the most pressing deadline of the two.
  const deadline =
    a.deadline !== undefined && b.deadline !== undefined
      ? earliest(a.deadline, b.deadline)
      : (a.deadline ?? b.deadline);
  const knownExploited = a.knownExploited === true || b.knownExploited === true;
  return {
    action,
    reason,
    ...(notBefore === undefined ? {} : { notBefore }),
    ...(deadline === undefined ? {} : { deadline }),
    ...(knownExploited ? { knownExploited } : {}),
  };
};

/** Fold a later request for the same service into an earlier one (the earlier keeps its identity). */
export const mergeRequests = (base: RemediationRequest, later: RemediationRequest): RemediationRequest => {
  const images = mergeImages(base.images, later.images);
  return {
    ...base,
    images,
    findingsCount: new Set(coveredFindings(images)).size,
    decision: mergeDecisions(base.decision, later.decision),
    requestedAt: earliest(base.requestedAt, later.requestedAt),
  };
};
