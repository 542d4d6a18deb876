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
}

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
      imageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactMediaType: 'application/vnd.oci.image.config.v1+json',
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
        images.push({
          registryId: this.world.accountId,
          repositoryName: repo.name,
          imageId: { imageDigest: image.digest, ...(id.imageTag ? { imageTag: id.imageTag } : {}) },
          imageManifest: JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            config: {
              mediaType: 'application/vnd.oci.image.config.v1+json',
              digest: image.digest,
              size: 1469,
            },
            layers: [],
          }),
          imageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
        });
      }
      return { images, failures };
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
