import { createHash } from 'node:crypto';
import {
  type AffectedImage,
  type IndexPlatform,
  MAX_PATCH_PACKAGES_PER_IMAGE,
  type PatchPackage,
  regionOfRepositoryUri,
  SAFE_PACKAGE_NAME,
  SAFE_PACKAGE_VERSION,
} from '../shared/contracts';
import { ConfigurationError } from '../shared/errors';
import { PlatformNotPatchableError } from './errors';
import type { BuildEnvironmentVariable, PlannedBuild } from './state';

/** The construct's own CodeBuild projects, one per CPU architecture (a patch layer runs the image's binaries). */
export interface BuildProjects {
  readonly patchOs: { readonly x86: string; readonly arm: string };
  readonly source: { readonly x86: string; readonly arm: string };
}

export interface PlanBuildsInput {
  readonly images: readonly AffectedImage[];
  readonly executionName: string;
  /** The execution's start time: makes the pushed tag the same on every retry of the plan. */
  readonly startedAt: string;
}

/**
 * Where the hub is, and the role a build assumes to push to a registry in another account (the
 * spoke role there, which grants ECR push). Without it (or without the hub's account), every
 * registry is the hub's: the single-account build, as always.
 */
export interface RegistryAccess {
  readonly home: { readonly account?: string | undefined; readonly region?: string | undefined };
  readonly roleArnFor: (account: string) => string;
}

/**
 * The build variables that point the login at an image's own registry, when it is not the hub's
 * (buildspecs/patch-os.ts ECR_LOGIN): AUTOPATCH_REGISTRY_REGION, the repository URI's Region, for a
 * registry in another Region or account; AUTOPATCH_REGISTRY_ROLE_ARN, the spoke role of the registry's
 * account, which the build assumes for the login (pull and push) when that account is not the hub's.
 * None for the hub's own registry: its builds get exactly the variables they always had.
 */
export const registryVariables = (
  image: Pick<AffectedImage, 'registry' | 'repositoryUri'>,
  access: RegistryAccess | undefined,
): BuildEnvironmentVariable[] => {
  if (!access) return [];
  const region = regionOfRepositoryUri(image.repositoryUri);
  const { account: homeAccount, region: homeRegion } = access.home;
  const otherAccount = homeAccount !== undefined && image.registry !== '' && image.registry !== homeAccount;
  const otherRegion = region !== undefined && homeRegion !== undefined && region !== homeRegion;
  return [
    ...(region !== undefined && (otherAccount || otherRegion)
      ? [env('AUTOPATCH_REGISTRY_REGION', region)]
      : []),
    ...(otherAccount ? [env('AUTOPATCH_REGISTRY_ROLE_ARN', access.roleArnFor(image.registry))] : []),
  ];
};

export type PackageManager = 'apt' | 'apk' | 'dnf' | 'yum' | 'zypper' | 'auto';

/**
 * Inspector's platform (e.g. DEBIAN_12, ALPINE_LINUX_3_19, AMAZON_LINUX_2023) → the package manager
 * the patch layer runs. 'auto' lets the buildspec probe the image, for platforms Inspector does not
 * name or Autopatch does not know.
 */
export const packageManagerFor = (platform: string | undefined): PackageManager => {
  const p = (platform ?? '').toUpperCase();
  if (/^(DEBIAN|UBUNTU)/.test(p)) return 'apt';
  if (/^ALPINE/.test(p)) return 'apk';
  if (/^(SLES|SUSE|OPENSUSE)/.test(p)) return 'zypper';
  if (/^(AMAZON_LINUX_2023|FEDORA|CENTOS_STREAM|ROCKY|ALMA)/.test(p)) return 'dnf';
  if (/^(RHEL|REDHAT|ORACLE_LINUX|CENTOS)_?(\d+)/.test(p)) {
    const major = Number(/(\d+)/.exec(p)?.[1]);
    return major >= 8 ? 'dnf' : 'yum';
  }
  if (/^AMAZON_LINUX/.test(p)) return 'yum';
  return 'auto';
};

export const isArm = (architecture: string | undefined): boolean =>
  /^(arm64|aarch64|arm)/i.test(architecture ?? '');

const shortDigest = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/** 2024-09-04T16:55:38.411Z → 20240904T165538Z (ECR tags allow [A-Za-z0-9._-]). */
const compactTime = (iso: string): string => {
  const at = new Date(iso);
  const safe = Number.isNaN(at.getTime()) ? new Date(0) : at;
  return safe
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
};

/**
 * The tag a rebuilt image (or a new image index) is pushed under. Two services that share a base image
 * rebuild it in their own executions, possibly in the same second: the execution's hash keeps their
 * pushes on separate tags (and immutable-tag repositories happy).
 */
export const targetTagFor = (
  digest: string,
  execution: { readonly executionName: string; readonly startedAt: string },
): string => {
  const executionHash = createHash('sha256').update(execution.executionName).digest('hex').slice(0, 8);
  return `autopatch-${shortDigest(digest)}-${compactTime(execution.startedAt)}-${executionHash}`;
};

const env = (Name: string, Value: string): BuildEnvironmentVariable => ({ Name, Value, Type: 'PLAINTEXT' });

/** PATCH_PACKAGES longer than this falls back to upgrading everything (the list could not be cut short). */
export const MAX_PATCH_PACKAGES_CHARS = 8_000;

/**
 * PATCH_PACKAGES: "name=fixedVersion" (or "name" when no fix is known), space-separated. Undefined
 * when the image's packages are not known exactly, or do not look safe for a shell (the request may
 * come from the ledger, written by an older version): the patch layer then upgrades everything.
 */
export const patchPackagesVariable = (packages: readonly PatchPackage[] | undefined): string | undefined => {
  if (packages === undefined || packages.length === 0 || packages.length > MAX_PATCH_PACKAGES_PER_IMAGE) {
    return undefined;
  }
  const safe = packages.every(
    (p) =>
      SAFE_PACKAGE_NAME.test(p.name) &&
      (p.fixedInVersion === undefined || SAFE_PACKAGE_VERSION.test(p.fixedInVersion)),
  );
  if (!safe) return undefined;
  const value = packages
    .map((p) => (p.fixedInVersion === undefined ? p.name : `${p.name}=${p.fixedInVersion}`))
    .join(' ');
  return value.length > MAX_PATCH_PACKAGES_CHARS ? undefined : value;
};

/** The platforms a build project patches: its CPU architecture on Linux (CodeBuild runs Linux containers). */
export const patchablePlatform = (p: Pick<IndexPlatform, 'os' | 'architecture' | 'variant'>): boolean =>
  p.os === 'linux' &&
  (p.architecture === 'amd64' || (p.architecture === 'arm64' && (p.variant ?? 'v8') === 'v8'));

const platformName = (p: Pick<IndexPlatform, 'os' | 'architecture' | 'variant'>): string =>
  [p.os, p.architecture, p.variant].filter(Boolean).join('/');

/**
 * What one build patches: a single-platform image as is; each platform of an image index as an image
 * of its own (the platform manifest's digest, architecture), tied back to its index. Throws
 * PlatformNotPatchableError when an index holds a platform no build project patches: the new index
 * would lose it, so nothing is built.
 */
type BuildUnit = { image: AffectedImage; platformOf?: PlannedBuild['platformOf'] };

export const buildUnits = (images: readonly AffectedImage[]): BuildUnit[] =>
  images.flatMap((image): BuildUnit[] => {
    if (!image.index) return [{ image }];
    const { index, ...rest } = image;
    // Triage checked them; a request from elsewhere (the ledger, a console re-run) is checked again:
    // a platform digest reaches a build's IMAGE_URI.
    const malformed = index.platforms.filter((p) => !/^sha256:[a-f0-9]{64}$/.test(p.digest));
    if (malformed.length > 0 || index.platforms.length === 0) {
      throw new ConfigurationError(
        `${image.repository}@${image.imageDigest} names an image index without valid platform digests: nothing was built.`,
      );
    }
    const unpatchable = index.platforms.filter((p) => !patchablePlatform(p));
    if (unpatchable.length > 0) {
      throw new PlatformNotPatchableError(
        `${image.repository}@${image.imageDigest} is an image index with platform(s) ` +
          `${unpatchable.map(platformName).join(', ')} that Autopatch cannot patch (its build projects patch ` +
          'linux/amd64 and linux/arm64 only). A new index without them would break the tasks that run them, so ' +
          'nothing was built or deployed: patch this image through its own pipeline.',
      );
    }
    return index.platforms.map((platform) => ({
      image: {
        ...rest,
        imageDigest: platform.digest,
        imageTags: [],
        architecture: platform.architecture,
      },
      platformOf: {
        indexDigest: image.imageDigest,
        indexMediaType: index.mediaType,
        platform: { ...platform },
        platformCount: index.platforms.length,
      },
    }));
  });

/**
 * "Plan the image builds": one build per affected image, and per platform of an image index (on the
 * project of the platform's architecture). Every variable is always set (empty when it does not
 * apply) so the buildspecs and the definition never meet a missing field.
 */
export const planBuilds = (
  input: PlanBuildsInput,
  projects: BuildProjects,
  registries?: RegistryAccess,
): { builds: PlannedBuild[] } => {
  return {
    builds: buildUnits(input.images).map(({ image, platformOf }) => {
      const arch = isArm(image.architecture) ? 'arm' : 'x86';
      const rebuild = image.rebuild;
      let projectName: string;
      switch (rebuild.mode) {
        case 'patch-os':
          projectName = projects.patchOs[arch];
          break;
        case 'source':
          projectName = projects.source[arch];
          break;
        case 'project':
          projectName = rebuild.projectName;
          break;
        default:
          throw new ConfigurationError(
            `unknown rebuild mode ${JSON.stringify(rebuild)} for ${image.repository}`,
          );
      }
      const targetTag = targetTagFor(image.imageDigest, input);
      const packages = patchPackagesVariable(image.packages);
      // A targeted patch layer needs the exact list; without it, every update is the safe side.
      const scope =
        rebuild.mode !== 'patch-os'
          ? ''
          : packages === undefined
            ? 'all'
            : (rebuild.packages ?? 'vulnerable');
      return {
        image,
        ...(platformOf ? { platformOf } : {}),
        mode: rebuild.mode,
        projectName,
        targetTag,
        environment: [
          env('IMAGE_URI', `${image.repositoryUri}@${image.imageDigest}`),
          env('REPOSITORY_URI', image.repositoryUri),
          env('TARGET_TAG', targetTag),
          env('TARGET_IMAGE', `${image.repositoryUri}:${targetTag}`),
          env('REBUILD_MODE', rebuild.mode),
          env('PACKAGE_MANAGER', packageManagerFor(image.platform)),
          env('PLATFORM', image.platform ?? ''),
          env('ARCHITECTURE', image.architecture ?? ''),
          env('SOURCE_LOCATION', rebuild.mode === 'source' ? rebuild.sourceLocation : ''),
          env('DOCKERFILE', rebuild.mode === 'source' ? (rebuild.dockerfile ?? 'Dockerfile') : ''),
          env('PATCH_SCOPE', scope),
          env('PATCH_PACKAGES', packages ?? ''),
          env('AUTOPATCH_EXECUTION', input.executionName),
          // Informational (build labels, logs): capped, so hundreds of CVEs cannot hit CodeBuild's limits.
          env('AUTOPATCH_CVES', image.cves.join(' ').slice(0, 2_000)),
          // Push to the registry the image came from (another account or Region): see registryVariables.
          ...registryVariables(image, registries),
        ],
      };
    }),
  };
};
