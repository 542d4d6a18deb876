import { createHash } from 'node:crypto';
import type {
  BatchGetImageCommandInput,
  BatchGetImageCommandOutput,
  DescribeImagesCommandInput,
  DescribeImagesCommandOutput,
  DescribeRepositoriesCommandInput,
  DescribeRepositoriesCommandOutput,
  ImageDetail,
  ListImagesCommandInput,
  ListImagesCommandOutput,
  PutImageCommandInput,
  PutImageCommandOutput,
} from '@aws-sdk/client-ecr';
import { sdkError } from './errors';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

export interface Image {
  readonly repository: string;
  readonly digest: string;
  tags: string[];
  readonly pushedAt: Date;
  readonly platform: string;
  readonly architecture: string;
  readonly sizeInBytes: number;
  /** The digest this image was rebuilt from, for images pushed by a simulated build. */
  readonly builtFrom?: string;
  /**
   * The manifest's exact text, when the image has one whose sha256 is its digest (images pushed by a
   * simulated build, indexes put with PutImage). Scenario images have made-up digests: BatchGetImage
   * describes them with a manifest of their kind.
   */
  readonly manifest?: string;
  /** An image index (multi-architecture image): its platform manifests, in order. */
  readonly manifests?: readonly IndexedManifest[];
  /** The manifest's media type; an OCI image manifest when absent. */
  readonly mediaType?: string;
}

/** One platform manifest an image index references. */
export interface IndexedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const INDEX_TYPES = new Set([OCI_INDEX, 'application/vnd.docker.distribution.manifest.list.v2+json']);

export const manifestDigest = (manifest: string): string =>
  `sha256:${createHash('sha256').update(manifest, 'utf8').digest('hex')}`;

/** The manifest text of an image (its own, or one of its kind for a scenario image). */
export const manifestOf = (image: Image): string => {
  if (image.manifest !== undefined) return image.manifest;
  if (image.manifests)
    return JSON.stringify({
      schemaVersion: 2,
      mediaType: image.mediaType ?? OCI_INDEX,
      manifests: image.manifests.map((m) => ({
        mediaType: m.mediaType,
        digest: m.digest,
        size: m.size,
        platform: { architecture: m.architecture, os: m.os, ...(m.variant ? { variant: m.variant } : {}) },
      })),
    });
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: image.digest, size: 1469 },
    layers: [],
  });
};

interface Repository {
  readonly name: string;
  readonly arn: string;
  readonly uri: string;
  readonly createdAt: Date;
  readonly images: Map<string, Image>;
}

/** ECR: repositories and images (digests, tags). A tag points at one image; pushing moves it. */
export class EcrModel {
  readonly repositories = new Map<string, Repository>();

  constructor(private readonly world: World) {}

  registry(): string {
    return `${this.world.accountId}.dkr.ecr.${this.world.region}.amazonaws.com`;
  }

  addRepository(name: string, createdAt: Date): Repository {
    const repo: Repository = {
      name,
      arn: this.world.arn('ecr', `repository/${name}`),
      uri: `${this.registry()}/${name}`,
      createdAt,
      images: new Map(),
    };
    this.repositories.set(name, repo);
    return repo;
  }

  /** Put an image in a repository; its tags move off any other image, as in ECR. */
  push(image: Image): Image {
    const repo = this.repo(image.repository);
    for (const other of repo.images.values()) other.tags = other.tags.filter((t) => !image.tags.includes(t));
    const existing = repo.images.get(image.digest);
    if (existing) {
      existing.tags = [...new Set([...existing.tags, ...image.tags])];
      return existing;
    }
    repo.images.set(image.digest, image);
    return image;
  }

  repo(name: string): Repository {
    const repo = this.repositories.get(name);
    if (!repo) {
      throw sdkError(
        'ecr',
        'RepositoryNotFoundException',
        `The repository with name '${name}' does not exist in the registry with id '${this.world.accountId}'`,
      );
    }
    return repo;
  }

  find(
    repository: string,
    ref: { tag?: string | undefined; digest?: string | undefined },
  ): Image | undefined {
    const repo = this.repositories.get(repository);
    if (!repo) return undefined;
    if (ref.digest) return repo.images.get(ref.digest);
    return [...repo.images.values()].find((i) => ref.tag !== undefined && i.tags.includes(ref.tag));
  }

  /** "<registry>/<repo>:<tag>", "<registry>/<repo>@<digest>" or the same without registry. */
  parseUri(uri: string): { repository: string; tag?: string; digest?: string } | undefined {
    const stripped = uri.startsWith(`${this.registry()}/`) ? uri.slice(this.registry().length + 1) : uri;
    const m = /^([^:@]+)(?::([^@]+))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(stripped);
    if (!m?.[1] || !this.repositories.has(m[1])) return undefined;
    return { repository: m[1], ...(m[2] ? { tag: m[2] } : {}), ...(m[3] ? { digest: m[3] } : {}) };
  }

  /** The image a container image string resolves to right now (what a task launched now would pull). */
  resolveUri(uri: string): Image | undefined {
    const ref = this.parseUri(uri);
    return ref ? this.find(ref.repository, ref) : undefined;
  }

  private detail(image: Image): ImageDetail {
    return {
      registryId: this.world.accountId,
      repositoryName: image.repository,
      imageDigest: image.digest,
      imageTags: [...image.tags],
      imageSizeInBytes: image.sizeInBytes,
      imagePushedAt: image.pushedAt,
      imageManifestMediaType: image.mediaType ?? OCI_MANIFEST,
      ...(image.manifests ? {} : { artifactMediaType: 'application/vnd.oci.image.config.v1+json' }),
      imageScanStatus: { status: 'ACTIVE', description: 'Continuous scan is selected for image.' },
    };
  }

  readonly handlers = {
    DescribeRepositories: (
      input: DescribeRepositoriesCommandInput,
    ): Out<DescribeRepositoriesCommandOutput> => {
      const names = input.repositoryNames ?? [...this.repositories.keys()];
      return {
        repositories: names.map((n) => {
          const r = this.repo(n);
          return {
            repositoryArn: r.arn,
            registryId: this.world.accountId,
            repositoryName: r.name,
            repositoryUri: r.uri,
            createdAt: r.createdAt,
            imageTagMutability: 'MUTABLE',
            imageScanningConfiguration: { scanOnPush: true },
            encryptionConfiguration: { encryptionType: 'AES256' },
          };
        }),
      };
    },
    DescribeImages: (input: DescribeImagesCommandInput): Out<DescribeImagesCommandOutput> => {
      const repo = this.repo(input.repositoryName as string);
      if (!input.imageIds) {
        let images = [...repo.images.values()];
        if (input.filter?.tagStatus === 'TAGGED') images = images.filter((i) => i.tags.length > 0);
        if (input.filter?.tagStatus === 'UNTAGGED') images = images.filter((i) => i.tags.length === 0);
        return { imageDetails: images.map((i) => this.detail(i)) };
      }
      const details = input.imageIds.map((id) => {
        const image = this.find(repo.name, { tag: id.imageTag, digest: id.imageDigest });
        if (!image) {
          throw sdkError(
            'ecr',
            'ImageNotFoundException',
            `The image with imageId {imageDigest:'${id.imageDigest ?? 'null'}', imageTag:'${id.imageTag ?? 'null'}'} does not exist within the repository with name '${repo.name}' in the registry with id '${this.world.accountId}'`,
          );
        }
        return this.detail(image);
      });
      return { imageDetails: details };
    },
    BatchGetImage: (input: BatchGetImageCommandInput): Out<BatchGetImageCommandOutput> => {
      const repo = this.repo(input.repositoryName as string);
      const images: NonNullable<BatchGetImageCommandOutput['images']> = [];
      const failures: NonNullable<BatchGetImageCommandOutput['failures']> = [];
      for (const id of input.imageIds ?? []) {
        const image = this.find(repo.name, { tag: id.imageTag, digest: id.imageDigest });
        if (!image) {
          failures.push({
            imageId: id,
            failureCode: 'ImageNotFound',
            failureReason: 'Requested image not found',
          });
          continue;
        }
        // What ECR does when an index is asked for without the index types in acceptedMediaTypes is
        // not modelled (Autopatch always accepts them): the image is returned as it is.
        images.push({
          registryId: this.world.accountId,
          repositoryName: repo.name,
          imageId: { imageDigest: image.digest, ...(id.imageTag ? { imageTag: id.imageTag } : {}) },
          imageManifest: manifestOf(image),
          imageManifestMediaType: image.mediaType ?? OCI_MANIFEST,
        });
      }
      return { images, failures };
    },
    /**
     * Only what Autopatch puts itself: an image index over manifests already in the repository (the
     * image builds push through the registry API, which the simulation does not model).
     */
    PutImage: (input: PutImageCommandInput): Out<PutImageCommandOutput> => {
      const repo = this.repo(input.repositoryName as string);
      const manifest = input.imageManifest as string;
      let parsed: { mediaType?: string; manifests?: unknown } = {};
      try {
        parsed = JSON.parse(manifest) as typeof parsed;
      } catch {
        throw sdkError(
          'ecr',
          'InvalidParameterException',
          "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
        );
      }
      const mediaType = parsed.mediaType ?? input.imageManifestMediaType;
      if (!mediaType || !INDEX_TYPES.has(mediaType) || !Array.isArray(parsed.manifests)) {
        throw sdkError(
          'ecr',
          'InvalidParameterException',
          'The simulation models PutImage of an image index only (the builds push images through the registry API).',
        );
      }
      const children = (parsed.manifests as Array<Record<string, unknown>>).map((m) => {
        const platform = (m.platform ?? {}) as Record<string, unknown>;
        return {
          digest: String(m.digest),
          mediaType: String(m.mediaType),
          size: Number(m.size),
          architecture: String(platform.architecture),
          os: String(platform.os),
          ...(typeof platform.variant === 'string' ? { variant: platform.variant } : {}),
        };
      });
      const missing = children.filter(
        (c) => !repo.images.has(c.digest) || repo.images.get(c.digest)?.manifests,
      );
      if (missing.length > 0) {
        throw sdkError(
          'ecr',
          'ReferencedImagesNotFoundException',
          `The manifest list is referencing images that do not exist: ${missing.map((m) => m.digest).join(', ')}`,
        );
      }
      const digest = manifestDigest(manifest);
      if (input.imageDigest && input.imageDigest !== digest)
        throw sdkError(
          'ecr',
          'ImageDigestDoesNotMatchException',
          `The image digest ${input.imageDigest} does not match ${digest}`,
        );
      const existing = repo.images.get(digest);
      const tag = input.imageTag;
      if (existing && (tag === undefined || existing.tags.includes(tag))) {
        throw sdkError(
          'ecr',
          'ImageAlreadyExistsException',
          `Image with digest '${digest}'${tag ? ` and tag '${tag}'` : ''} already exists in the repository with name '${repo.name}' in registry with id '${this.world.accountId}'`,
        );
      }
      const first = repo.images.get(children[0]?.digest ?? '');
      const image = this.push({
        repository: repo.name,
        digest,
        tags: tag ? [tag] : [],
        pushedAt: this.world.now(),
        platform: first?.platform ?? 'UNKNOWN',
        architecture: 'index',
        sizeInBytes: children.reduce((n, c) => n + (repo.images.get(c.digest)?.sizeInBytes ?? 0), 0),
        manifest,
        manifests: children,
        mediaType,
      });
      this.world.note(
        'ecr',
        `PutImage: image index ${repo.name}${tag ? `:${tag}` : ''} (${digest.slice(7, 19)}) of ${children.map((c) => `${c.architecture} ${c.digest.slice(7, 19)}`).join(', ')}`,
      );
      return {
        image: {
          registryId: this.world.accountId,
          repositoryName: repo.name,
          imageId: { imageDigest: image.digest, ...(tag ? { imageTag: tag } : {}) },
          imageManifest: manifest,
          imageManifestMediaType: mediaType,
        },
      };
    },
    ListImages: (input: ListImagesCommandInput): Out<ListImagesCommandOutput> => {
      const repo = this.repo(input.repositoryName as string);
      return {
        imageIds: [...repo.images.values()].flatMap((i) =>
          i.tags.length > 0
            ? i.tags.map((t) => ({ imageDigest: i.digest, imageTag: t }))
            : [{ imageDigest: i.digest }],
        ),
      };
    },
  };
}
