import {
  type ImageIndex,
  INDEX_MEDIA_TYPES,
  type IndexPlatform,
  MANIFEST_MEDIA_TYPES,
} from '../shared/contracts';

/** Reading image manifests: shared by triage (ECR reads) and the indexer (the index's MANIFESTS). */

export const DIGEST = /^sha256:[a-f0-9]{64}$/;
const PLATFORM_WORD = /^[a-z0-9_.-]{1,32}$/;

/**
 * The platforms of an image index manifest (OCI image index or Docker manifest list), or undefined
 * when the manifest is no index or does not read as one. Build attestations (buildx's
 * `vnd.docker.reference.type: attestation-manifest`, platform unknown/unknown) are counted, not
 * listed: they are no platform to run or patch. Every value that reaches a build variable or a tag is
 * checked against a small alphabet. Pure.
 */
export const parseIndexManifest = (
  manifest: string,
  mediaType: string | undefined,
): ImageIndex | undefined => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifest);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const doc = parsed as { mediaType?: unknown; manifests?: unknown };
  const type = typeof doc.mediaType === 'string' ? doc.mediaType : mediaType;
  if (!(INDEX_MEDIA_TYPES as readonly (string | undefined)[]).includes(type) || !Array.isArray(doc.manifests))
    return undefined;
  const platforms: IndexPlatform[] = [];
  let attestations = 0;
  for (const entry of doc.manifests as unknown[]) {
    const m = (entry ?? {}) as {
      mediaType?: unknown;
      digest?: unknown;
      platform?: { architecture?: unknown; os?: unknown; variant?: unknown };
      annotations?: Record<string, unknown>;
    };
    const architecture = m.platform?.architecture;
    const os = m.platform?.os;
    if (
      m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
      (architecture === 'unknown' && os === 'unknown')
    ) {
      attestations++;
      continue;
    }
    const variant = m.platform?.variant;
    if (
      typeof m.digest !== 'string' ||
      !DIGEST.test(m.digest) ||
      typeof m.mediaType !== 'string' ||
      !(MANIFEST_MEDIA_TYPES as readonly string[]).includes(m.mediaType) ||
      typeof architecture !== 'string' ||
      !PLATFORM_WORD.test(architecture) ||
      typeof os !== 'string' ||
      !PLATFORM_WORD.test(os) ||
      (variant !== undefined && (typeof variant !== 'string' || !PLATFORM_WORD.test(variant)))
    )
      return undefined;
    platforms.push({
      digest: m.digest,
      mediaType: m.mediaType,
      architecture,
      os,
      ...(variant === undefined ? {} : { variant: variant as string }),
    });
  }
  if (platforms.length === 0) return undefined;
  return { mediaType: type as string, platforms, ...(attestations > 0 ? { attestations } : {}) };
};
