import { createHash } from 'node:crypto';
import { BatchGetImageCommand, type ECRClient, PutImageCommand } from '@aws-sdk/client-ecr';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, severityRank } from '../shared/contracts';
import { awsCall as call } from './aws';
import { ImageIndexError } from './errors';
import { targetTagFor } from './plan-builds';
import type { PatchedImage, PatchedPlatform, PlannedBuild } from './state';

/**
 * "Assemble the patched image indexes": the builds of an image index's platforms were each verified by
 * rescan; this puts them back together into one new index (ECR PutImage of an OCI image index or
 * Docker manifest list that references the patched platform manifests), pushed under its own tag, so
 * the service keeps every platform it ran. Single-platform images pass through unchanged.
 */

export interface AssembleIndexesInput {
  /** "Plan the image builds" → `$.plan.builds`. */
  readonly builds: readonly PlannedBuild[];
  /** "Rebuild and verify each image" → `$.patched`: one verified image per build, in the builds' order. */
  readonly patched: readonly PatchedImage[];
  readonly executionName: string;
  /** The execution's start time: the index's tag is the same on every retry. */
  readonly startedAt: string;
}

type EcrApi = Pick<ECRClient, 'send'>;

export interface AssembleIndexesDeps {
  readonly ecr: EcrApi;
  /**
   * The ECR client of an image's own registry (account and Region: the handler's `imageClients`), so
   * an index is read and pushed where the image came from. Without it, `ecr`.
   */
  readonly ecrFor?: (image: Pick<PatchedImage, 'registry' | 'repositoryUri'>) => EcrApi;
}

const ecrOf = (deps: AssembleIndexesDeps, image: PatchedImage): EcrApi => deps.ecrFor?.(image) ?? deps.ecr;

const OCI_INDEX = INDEX_MEDIA_TYPES[0];
const DOCKER_LIST = INDEX_MEDIA_TYPES[1];
const DOCKER_MANIFEST = MANIFEST_MEDIA_TYPES[1];

const sha256 = (text: string): string => `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;

/** One entry of the new index: a patched platform manifest, as the registry holds it. */
export interface IndexEntry {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform: { readonly architecture: string; readonly os: string; readonly variant?: string };
}

/**
 * The index manifest (JSON text) over the patched platform manifests, and its media type. It keeps
 * the old index's media type unless a Docker manifest list would reference an OCI manifest (which
 * it may not): then it is an OCI image index. Pure.
 */
export const indexManifest = (
  oldMediaType: string,
  entries: readonly IndexEntry[],
): { manifest: string; mediaType: string; digest: string } => {
  const mediaType =
    oldMediaType === DOCKER_LIST && entries.every((e) => e.mediaType === DOCKER_MANIFEST)
      ? DOCKER_LIST
      : OCI_INDEX;
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({
      mediaType: e.mediaType,
      digest: e.digest,
      size: e.size,
      platform: {
        architecture: e.platform.architecture,
        os: e.platform.os,
        ...(e.platform.variant === undefined ? {} : { variant: e.platform.variant }),
      },
    })),
  });
  return { manifest, mediaType, digest: sha256(manifest) };
};

/** The patched platform manifests as ECR holds them (media type, size; the digest checked against the bytes). */
const readManifests = async (
  ecr: EcrApi,
  image: Pick<PatchedImage, 'registry' | 'repository'>,
  digests: readonly string[],
): Promise<Map<string, { mediaType: string; size: number }>> => {
  const out = await call('ecr BatchGetImage', () =>
    ecr.send(
      new BatchGetImageCommand({
        registryId: image.registry,
        repositoryName: image.repository,
        imageIds: digests.map((imageDigest) => ({ imageDigest })),
        acceptedMediaTypes: [...MANIFEST_MEDIA_TYPES],
      }),
    ),
  );
  const found = new Map<string, { mediaType: string; size: number }>();
  for (const got of out.images ?? []) {
    const digest = got.imageId?.imageDigest;
    const manifest = got.imageManifest;
    if (!digest || !manifest) continue;
    let declared: unknown;
    try {
      declared = (JSON.parse(manifest) as { mediaType?: unknown }).mediaType;
    } catch {
      declared = undefined;
    }
    const mediaType = got.imageManifestMediaType ?? (typeof declared === 'string' ? declared : undefined);
    if (!mediaType || !(MANIFEST_MEDIA_TYPES as readonly string[]).includes(mediaType)) {
      throw new ImageIndexError(
        `${image.repository}@${digest} is a ${mediaType ?? 'manifest of unknown type'}, not a single-platform image manifest: it cannot go into an image index. Nothing was deployed.`,
      );
    }
    if (sha256(manifest) !== digest) {
      throw new ImageIndexError(
        `ECR returned a manifest for ${image.repository}@${digest} whose bytes hash to ${sha256(manifest)}: the index cannot reference it. Nothing was deployed.`,
      );
    }
    found.set(digest, { mediaType, size: Buffer.byteLength(manifest, 'utf8') });
  }
  const missing = digests.filter((d) => !found.has(d));
  if (missing.length > 0) {
    const reasons = (out.failures ?? []).map((f) => `${f.imageId?.imageDigest}: ${f.failureCode}`).join('; ');
    throw new ImageIndexError(
      `The patched platform image(s) ${missing.join(', ')} of ${image.repository} are not in ECR${reasons ? ` (${reasons})` : ''}, so the new index would lose a platform. Nothing was deployed.`,
    );
  }
  return found;
};

/** Push the index; a retry of this step finds it there already (same bytes, same tag), which is fine. */
const putIndex = async (
  ecr: EcrApi,
  image: Pick<PatchedImage, 'registry' | 'repository'>,
  index: { manifest: string; mediaType: string; digest: string },
  tag: string,
): Promise<void> => {
  try {
    const out = await call('ecr PutImage', () =>
      ecr.send(
        new PutImageCommand({
          registryId: image.registry,
          repositoryName: image.repository,
          imageManifest: index.manifest,
          imageManifestMediaType: index.mediaType,
          imageTag: tag,
        }),
      ),
    );
    const pushed = out.image?.imageId?.imageDigest;
    if (pushed && pushed !== index.digest)
      throw new ImageIndexError(
        `ECR stored the new index of ${image.repository} as ${pushed}, not ${index.digest}. Nothing was deployed.`,
      );
  } catch (error) {
    if ((error as Error).name === 'ImageAlreadyExistsException') return;
    throw error;
  }
};

/**
 * One patched image per affected image: single-platform images as verified, the platforms of each
 * image index assembled into a new index (oldDigest/newDigest are the indexes', `platforms` says what
 * each platform became). Throws ImageIndexError when a platform is missing or ECR refuses the index:
 * an index that silently lost a platform is never pushed or deployed.
 */
export const assembleIndexes = async (
  input: AssembleIndexesInput,
  deps: AssembleIndexesDeps,
): Promise<{ patched: PatchedImage[] }> => {
  const { builds, patched } = input;
  if (builds.length !== patched.length) {
    throw new ImageIndexError(
      `${builds.length} builds were planned but ${patched.length} images were verified. Nothing was deployed.`,
    );
  }
  const out: PatchedImage[] = [];
  const groups = new Map<string, Array<{ build: PlannedBuild; image: PatchedImage }>>();
  builds.forEach((build, i) => {
    const image = patched[i] as PatchedImage;
    if (image.oldDigest !== build.image.imageDigest) {
      throw new ImageIndexError(
        `The verified image ${image.repository}@${image.oldDigest} is not the one build ${i + 1} patched (${build.image.imageDigest}). Nothing was deployed.`,
      );
    }
    if (!build.platformOf) {
      out.push(image);
      return;
    }
    const key = `${build.image.repositoryUri}@${build.platformOf.indexDigest}`;
    const group = groups.get(key);
    if (group) group.push({ build, image });
    else {
      groups.set(key, [{ build, image }]);
      // Its place in the output: where the index's first platform was.
      out.push(image);
    }
  });

  for (const group of groups.values()) {
    const first = group[0] as { build: PlannedBuild; image: PatchedImage };
    const of = first.build.platformOf as NonNullable<PlannedBuild['platformOf']>;
    const where = `${first.image.repository}@${of.indexDigest}`;
    if (group.length !== of.platformCount) {
      throw new ImageIndexError(
        `The image index ${where} has ${of.platformCount} platforms but ${group.length} were patched: a new index would lose a platform. Nothing was deployed.`,
      );
    }
    const ecr = ecrOf(deps, first.image);
    const held = await readManifests(
      ecr,
      first.image,
      group.map((g) => g.image.newDigest),
    );
    const entries: IndexEntry[] = group.map(({ build, image }) => {
      const platform = (build.platformOf as NonNullable<PlannedBuild['platformOf']>).platform;
      const manifest = held.get(image.newDigest) as { mediaType: string; size: number };
      return {
        mediaType: manifest.mediaType,
        digest: image.newDigest,
        size: manifest.size,
        platform: {
          architecture: platform.architecture,
          os: platform.os,
          ...(platform.variant === undefined ? {} : { variant: platform.variant }),
        },
      };
    });
    const index = indexManifest(of.indexMediaType, entries);
    const tag = targetTagFor(of.indexDigest, input);
    await putIndex(ecr, first.image, index, tag);

    const platforms: PatchedPlatform[] = group.map(({ build, image }) => {
      const p = (build.platformOf as NonNullable<PlannedBuild['platformOf']>).platform;
      return {
        architecture: p.architecture,
        os: p.os,
        ...(p.variant === undefined ? {} : { variant: p.variant }),
        oldDigest: image.oldDigest,
        newDigest: image.newDigest,
        ...(image.buildId === undefined ? {} : { buildId: image.buildId }),
        ...(image.buildLogLink === undefined ? {} : { buildLogLink: image.buildLogLink }),
        ...(image.timing === undefined ? {} : { timing: image.timing }),
      };
    });
    const union = (lists: ReadonlyArray<readonly string[]>) => [...new Set(lists.flat())].sort();
    // The index's build and rescan times are its platforms' (first.image's alone would undercount).
    const { timing: _firstTiming, ...firstImage } = first.image;
    const assembled: PatchedImage = {
      ...firstImage,
      cves: union(group.map((g) => g.image.cves)),
      // A CVE is closed on the index only when every platform's rescan says so (verify fails otherwise).
      cvesClosed: union(group.map((g) => g.image.cvesClosed)).filter((cve) =>
        group.every((g) => g.image.cvesClosed.includes(cve)),
      ),
      severity: group
        .map((g) => g.image.severity)
        .reduce((a, b) => (severityRank(a) <= severityRank(b) ? a : b)),
      oldDigest: of.indexDigest,
      newDigest: index.digest,
      targetTag: tag,
      platforms,
    };
    out[out.indexOf(first.image)] = assembled;
  }
  return { patched: out };
};
