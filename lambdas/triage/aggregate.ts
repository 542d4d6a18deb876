import type { TargetConfig, WorkflowDefaults } from '../shared/config';
import {
  type AffectedImage,
  coveredFindings,
  MAX_PATCH_PACKAGES_PER_IMAGE,
  type PatchPackage,
  type RebuildMode,
  type RemediationRequest,
  SAFE_PACKAGE_NAME,
  SAFE_PACKAGE_VERSION,
  type Severity,
} from '../shared/contracts';
import { executionName, mergeImages, mergePatchPackages, remediationId } from '../shared/remediation';
import type { ServiceUse } from './inventory';
import type { Finding } from './schema';

/** One finding that policy wants acted on, for one service that runs its image. */
export interface Contribution {
  readonly finding: Finding;
  readonly use: ServiceUse;
  readonly action: 'remediate' | 'approve';
  readonly reason: string;
  readonly notBefore?: string;
  /** ISO-8601: when policy wants this finding's fix deployed by. */
  readonly deadline?: string;
  /** The finding is in CISA's KEV catalog (when policy read its details). */
  readonly knownExploited?: boolean;
  readonly rebuild: RebuildMode;
  /** Batch item ids (SQS message ids) that carried this finding: they fail together with the service. */
  readonly itemIds: readonly string[];
}

/** Everything triage decided for one service in one batch. */
export interface ServicePlan {
  readonly request: RemediationRequest;
  readonly itemIds: readonly string[];
}

/** What Inspector writes as fixedInVersion when there is no fix (kept as reported by the schema). */
const NO_FIX = /^(NotAvailable|NOT_AVAILABLE|None|)$/i;

/**
 * The OS packages a finding names, for a patch layer that upgrades only those. Undefined ("not known
 * exactly": the layer upgrades everything) when the finding names none, or names one that could not
 * safely reach a shell: under-patching would only show at the rescan, an hour later.
 */
export const patchPackagesOf = (finding: Finding): PatchPackage[] | undefined => {
  const os = finding.packages.filter(
    (p) => p.packageManager === undefined || p.packageManager.toUpperCase() === 'OS',
  );
  if (os.length === 0) return undefined;
  const packages: PatchPackage[] = [];
  for (const p of os) {
    if (!SAFE_PACKAGE_NAME.test(p.name)) return undefined;
    const fix = p.fixedInVersion?.trim();
    if (fix === undefined || NO_FIX.test(fix)) packages.push({ name: p.name });
    else if (SAFE_PACKAGE_VERSION.test(fix)) packages.push({ name: p.name, fixedInVersion: fix });
    else return undefined;
  }
  if (packages.length > MAX_PATCH_PACKAGES_PER_IMAGE) return undefined;
  return mergePatchPackages(packages, []);
};

/** The target's patch-os settings (which packages to upgrade) apply to its OS patch layers. */
const withTargetSettings = (rebuild: RebuildMode, target: TargetConfig | undefined): RebuildMode =>
  rebuild.mode === 'patch-os' && target?.rebuild.mode === 'patch-os' && target.rebuild.packages !== undefined
    ? { mode: 'patch-os', packages: target.rebuild.packages }
    : rebuild;

const imageOf = (c: Contribution, target: TargetConfig | undefined): AffectedImage => {
  const image = c.finding.image;
  if (!image) throw new Error(`finding ${c.finding.findingArn} has no image`); // filtered out earlier
  const packages = patchPackagesOf(c.finding);
  // The service runs an index holding the finding's platform: the remediation is the index's (every
  // platform is patched), and its findings on any platform fold into the one image.
  const index = c.use.index;
  return {
    repository: image.repository,
    registry: image.registry,
    repositoryUri: image.repositoryUri,
    imageDigest: index ? index.digest : image.imageDigest,
    imageTags: index ? [...index.tags] : [...image.imageTags],
    containers: [...c.use.containers].sort(),
    ...(image.platform === undefined ? {} : { platform: image.platform }),
    ...(image.architecture === undefined || index ? {} : { architecture: image.architecture }),
    ...(index
      ? {
          index: {
            mediaType: index.mediaType,
            platforms: index.platforms.map((p) => ({ ...p })),
            ...(index.attestations === undefined ? {} : { attestations: index.attestations }),
          },
        }
      : {}),
    packageManagers: [...c.finding.packageManagers].sort(),
    cves: [c.finding.vulnerabilityId],
    severity: c.finding.severity as Severity,
    findingArns: [c.finding.findingArn],
    rebuild: withTargetSettings(c.rebuild, target),
    ...(packages === undefined ? {} : { packages }),
  };
};

/**
 * The gather window measured against the deadline: gathering a burst never takes more than a quarter
 * of the time left until the deadline (none once it has passed), so a near deadline is not spent
 * waiting for more findings. Far deadlines leave the configured gather as it is.
 */
export const gatherWithin = (
  gatherSeconds: number,
  gatherMaxSeconds: number,
  deadline: string | undefined,
  now: Date,
): { gatherSeconds: number; gatherMaxSeconds: number } => {
  const left = deadline === undefined ? Number.NaN : Date.parse(deadline) - now.getTime();
  if (Number.isNaN(left)) return { gatherSeconds, gatherMaxSeconds };
  const cap = Math.max(0, Math.floor(left / 4 / 1000));
  const max = Math.min(gatherMaxSeconds, cap);
  return { gatherSeconds: Math.min(gatherSeconds, max), gatherMaxSeconds: max };
};

const targetFor = (targets: readonly TargetConfig[], use: ServiceUse): TargetConfig | undefined =>
  targets.find(
    (t) =>
      t.service === use.service.serviceName &&
      (t.cluster === use.service.clusterArn || use.service.clusterArn.endsWith(`/${t.cluster}`)),
  );

/**
 * Fold a batch's contributions into one remediation per service: a service whose task runs several
 * affected images (an app image and a shared sidecar, say) gets one request carrying all of them,
 * so that it is rebuilt, deployed and baked once.
 */
export const aggregate = (
  contributions: readonly Contribution[],
  opts: {
    readonly targets: readonly TargetConfig[];
    readonly defaults: WorkflowDefaults;
    readonly now: Date;
  },
): ServicePlan[] => {
  const byService = new Map<string, Contribution[]>();
  for (const c of contributions) {
    const list = byService.get(c.use.service.key);
    if (list) list.push(c);
    else byService.set(c.use.service.key, [c]);
  }
  const plans: ServicePlan[] = [];
  for (const [key, list] of [...byService.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const first = list[0] as Contribution;
    const target = targetFor(opts.targets, first.use);
    const images = mergeImages(list.map((c) => imageOf(c, target)));
    const approve = list.filter((c) => c.action === 'approve');
    // A service waits for a window only when every contribution asks to: one CRITICAL with a known
    // exploit (which policy exempts from windows) pulls the whole remediation forward.
    const windows = list.map((c) => c.notBefore);
    const notBefore = windows.every((w) => w !== undefined) ? windows.sort()[0] : undefined;
    // The service's deadline is its most pressing finding's (ISO-8601 sorts as text).
    const deadline = list.flatMap((c) => (c.deadline === undefined ? [] : [c.deadline])).sort()[0];
    const knownExploited = list.some((c) => c.knownExploited === true);
    const gather = gatherWithin(
      opts.defaults.gatherSeconds,
      opts.defaults.gatherMaxSeconds,
      deadline,
      opts.now,
    );
    const lead = approve[0] ?? first;
    const reason =
      list.length === 1
        ? lead.reason
        : `${list.length} findings: ${lead.reason}${approve.length > 0 ? ' (approval required)' : ''}`;
    const bakeTimeMinutes = target?.bakeTimeMinutes ?? opts.defaults.bakeTimeMinutes;
    const name = executionName(first.use.service, images, opts.now);
    const firstObserved = list
      .map((c) => c.finding.firstObservedAt ?? c.finding.updatedAt)
      .sort()[0] as string;
    plans.push({
      request: {
        remediationId: remediationId(key, name),
        executionName: name,
        service: first.use.service,
        images,
        decision: {
          action: approve.length > 0 ? 'approve' : 'remediate',
          reason,
          ...(notBefore === undefined ? {} : { notBefore }),
          ...(deadline === undefined ? {} : { deadline }),
          ...(knownExploited ? { knownExploited } : {}),
        },
        target: {
          alarmNames: [...(target?.alarmNames ?? [])],
          bakeTimeMinutes,
          // The watch must outlast the bake itself, with room for the blue/green shift.
          deploymentTimeoutSeconds: Math.max(
            opts.defaults.deploymentTimeoutSeconds,
            bakeTimeMinutes * 60 + 1_800,
          ),
          rescanTimeoutSeconds: opts.defaults.rescanTimeoutSeconds,
          approvalTimeoutSeconds: opts.defaults.approvalTimeoutSeconds,
          ...gather,
          withoutAlarms: target?.withoutAlarms ?? opts.defaults.withoutAlarms,
          ...(target?.codeDeploy ? { codeDeploy: { ...target.codeDeploy } } : {}),
        },
        findingsCount: new Set(coveredFindings(images)).size,
        requestedAt: firstObserved,
      },
      itemIds: [...new Set(list.flatMap((c) => c.itemIds))],
    });
  }
  return plans;
};

export { targetFor };
