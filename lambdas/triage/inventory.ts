import { BatchGetImageCommand, type ECRClient } from '@aws-sdk/client-ecr';
import {
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  type ECSClient,
  ListClustersCommand,
  ListServicesCommand,
  ListTasksCommand,
  type Service,
} from '@aws-sdk/client-ecs';
import * as z from 'zod';
import { Limiter } from '../shared/concurrency';
import type { TargetConfig } from '../shared/config';
import {
  type ImageIndex,
  INDEX_MEDIA_TYPES,
  type IndexPlatform,
  MANIFEST_MEDIA_TYPES,
  type ServiceRef,
} from '../shared/contracts';
import { AutopatchError, ConfigurationError, isTransient, TransientError } from '../shared/errors';
import { formatProblems, issueProblems } from './schema/issues';

/**
 * Which ECS services run an image: the inventory triage resolves every actionable finding against.
 *
 * The whole inventory of eligible services is read once and indexed by image reference, so a burst of
 * findings costs the same ECS calls as a single one: every lookup after the first is a map access.
 */

/** The image of a finding, as the schema parses it. */
export interface ImageRef {
  readonly registry: string;
  readonly repository: string;
  /** "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" */
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
}

/** One ECS service that runs the image. */
export interface ServiceUse {
  readonly service: ServiceRef;
  /** Sorted names of the containers that run the image. */
  containers: string[];
  /** The service's current task definition. */
  readonly taskDefinitionArn: string;
  /** The service's tags, with the target configuration's `tags` on top. */
  tags: Record<string, string>;
  /** Who deploys it: ECS (UpdateService, what Autopatch drives), CODE_DEPLOY or EXTERNAL. */
  readonly deploymentController: string;
  /**
   * The service runs an image index that holds the finding's digest as one of its platforms: the
   * index (its digest, the tags services reference it by, its platforms). Absent when the service
   * runs the finding's digest itself.
   */
  readonly index?: IndexedImage;
}

/** An image index of a repository, as ECR's BatchGetImage returned it. */
export interface IndexedImage extends ImageIndex {
  readonly digest: string;
  /** The tags services name it by (that resolved to it when it was read). */
  readonly tags: readonly string[];
}

/** The parts of a target the inventory needs (a full TargetConfig fits). */
export type InventoryTarget = Pick<TargetConfig, 'cluster' | 'service'> & {
  readonly tags?: Readonly<Record<string, string>>;
};

export interface InventoryResolverOptions {
  readonly ecs: ECSClient;
  /** Services carrying this tag are eligible, in every cluster of the account and region. */
  readonly discoverByTag?: { readonly key: string; readonly value: string };
  /** Services named explicitly (cluster name or ARN + service name) are eligible, tagged or not. */
  readonly targets?: readonly InventoryTarget[];
  /** @default () => new Date() */
  readonly now?: () => Date;
  /**
   * How long a built inventory is used before the next lookup rebuilds it (a warm Lambda outlives
   * many batches; deployments change what services run).
   * @default 300_000 (5 minutes)
   */
  readonly cacheTtlMs?: number;
  /**
   * ECS calls in flight at once while building: high enough to build quickly, low enough to stay
   * under the ECS Describe* rate limits.
   * @default 5
   */
  readonly concurrency?: number;
  /**
   * ECR, to map a platform manifest's digest (what Inspector reports) to the image index services
   * run. Without it, findings match only the digests and tags services reference themselves.
   */
  readonly ecr?: Pick<ECRClient, 'send'>;
}

const containerSchema = z.object({
  name: z.string().min(1),
  /** "<registry>/<repository>[:tag|@sha256:…]" as in the task definition. */
  image: z.string().min(1),
  /** The digest the running task reports, when known. */
  imageDigest: z.string().min(1).optional(),
});

const snapshotSchema = z.object({
  services: z.array(
    z.object({
      clusterArn: z.string().min(1),
      serviceName: z.string().min(1),
      taskDefinitionArn: z.string().min(1),
      tags: z.record(z.string(), z.string()).default({}),
      /** ECS (the default), CODE_DEPLOY or EXTERNAL, as DescribeServices reports deploymentController.type. */
      deploymentController: z.enum(['ECS', 'CODE_DEPLOY', 'EXTERNAL']).default('ECS'),
      containers: z.array(containerSchema),
    }),
  ),
});

/** The `npm run triage -- --inventory <file>` format: what an account runs, written down. */
export type InventorySnapshot = z.input<typeof snapshotSchema>;

/** Snapshot mode: every service of the snapshot is eligible and no API is called. */
export interface InventorySnapshotOptions {
  /** Validated here; an invalid snapshot throws a ConfigurationError naming the field. */
  readonly snapshot: unknown;
}

/** What the index is built from, whichever the source (ECS APIs or a snapshot). */
interface ServiceRecord {
  readonly service: ServiceRef;
  readonly taskDefinitionArn: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly deploymentController: string;
  /** Image references as the task definition writes them. */
  readonly containers: ReadonlyArray<{ readonly name: string; readonly image: string }>;
  /** What running tasks report they actually pulled. */
  readonly running: ReadonlyArray<{
    readonly name: string;
    readonly image: string;
    readonly imageDigest: string;
  }>;
}

const DEFAULT_TTL_MS = 5 * 60_000;
const DESCRIBE_SERVICES_MAX = 10;
const DESCRIBE_TASKS_MAX = 100;
const PAGE_SIZE = 100;

const clusterNameOf = (clusterArnOrName: string): string =>
  clusterArnOrName.slice(clusterArnOrName.lastIndexOf('/') + 1);

const sameCluster = (a: string, b: string): boolean => a === b || clusterNameOf(a) === clusterNameOf(b);

const serviceRef = (clusterArn: string, serviceName: string): ServiceRef => ({
  clusterArn,
  serviceName,
  key: `${clusterNameOf(clusterArn)}/${serviceName}`,
});

/**
 * Split an image reference into repository, tag and digest. The tag is what follows the last ':'
 * after the last '/', so a registry port ("host:5000/repo") is not mistaken for a tag. A reference
 * with neither tag nor digest means ":latest", as for `docker pull`.
 */
export const parseImageReference = (
  reference: string,
): { repository: string; tag?: string; digest?: string } => {
  let rest = reference.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1).toLowerCase();
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (!digest && !tag) tag = 'latest';
  return { repository: rest.toLowerCase(), ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
};

const digestKey = (repository: string, digest: string): string => `${repository}@${digest.toLowerCase()}`;
const tagKey = (repository: string, tag: string): string => `${repository}:${tag}`;

const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

const unique = <T>(items: Iterable<T>): T[] => [...new Set(items)];

/** Image reference → (service → containers): the only structure a lookup touches. */
class InventoryIndex {
  private readonly byReference = new Map<string, Map<ServiceRecord, Set<string>>>();

  constructor(records: readonly ServiceRecord[]) {
    const add = (key: string, record: ServiceRecord, container: string): void => {
      const services = this.byReference.get(key) ?? new Map<ServiceRecord, Set<string>>();
      this.byReference.set(key, services);
      const containers = services.get(record) ?? new Set<string>();
      services.set(record, containers);
      containers.add(container);
    };
    for (const record of records) {
      for (const c of record.containers) {
        const ref = parseImageReference(c.image);
        // A digest pins the image whatever the tag says: ECS pulls by digest.
        if (ref.digest) add(digestKey(ref.repository, ref.digest), record, c.name);
        else if (ref.tag) add(tagKey(ref.repository, ref.tag), record, c.name);
      }
      for (const c of record.running) {
        add(digestKey(parseImageReference(c.image).repository, c.imageDigest), record, c.name);
      }
    }
  }

  /** The digests and tags services reference in a repository ("<registry>/<repository>"): what may be an index. */
  references(repositoryUri: string): { digests: string[]; tags: string[] } {
    const repository = repositoryUri.trim().toLowerCase();
    const digests: string[] = [];
    const tags: string[] = [];
    for (const key of this.byReference.keys()) {
      if (key.startsWith(`${repository}@`)) digests.push(key.slice(repository.length + 1));
      else if (key.startsWith(`${repository}:`) && !key.slice(repository.length + 1).includes('/'))
        tags.push(key.slice(repository.length + 1));
    }
    return { digests: digests.sort(), tags: tags.sort() };
  }

  /**
   * The services that run the image: by its digest or one of its tags, or through an image index of
   * the repository that holds the digest as a platform (a service that runs such an index is matched
   * through it, so the whole index is patched).
   */
  lookup(image: ImageRef, indexes: readonly IndexedImage[] = []): ServiceUse[] {
    const repository = image.repositoryUri.trim().toLowerCase();
    const collect = (keys: readonly string[]): Map<ServiceRecord, Set<string>> => {
      const found = new Map<ServiceRecord, Set<string>>();
      for (const key of keys) {
        for (const [record, containers] of this.byReference.get(key) ?? []) {
          const into = found.get(record) ?? new Set<string>();
          for (const c of containers) into.add(c);
          found.set(record, into);
        }
      }
      return found;
    };
    const found = new Map<ServiceRecord, { containers: Set<string>; index?: IndexedImage }>();
    const digest = image.imageDigest.toLowerCase();
    for (const index of indexes) {
      if (!index.platforms.some((p) => p.digest === digest)) continue;
      const keys = [digestKey(repository, index.digest), ...index.tags.map((t) => tagKey(repository, t))];
      for (const [record, containers] of collect(keys))
        if (!found.has(record)) found.set(record, { containers, index });
    }
    const direct = collect([
      digestKey(repository, image.imageDigest),
      ...image.imageTags.map((t) => tagKey(repository, t)),
    ]);
    for (const [record, containers] of direct) if (!found.has(record)) found.set(record, { containers });
    // Fresh objects: callers may keep or change them without touching the cached inventory.
    return [...found.entries()]
      .map(([record, { containers, index }]) => ({
        service: { ...record.service },
        containers: [...containers].sort(),
        taskDefinitionArn: record.taskDefinitionArn,
        tags: { ...record.tags },
        deploymentController: record.deploymentController,
        ...(index ? { index: structuredClone(index) } : {}),
      }))
      .sort((a, b) => a.service.key.localeCompare(b.service.key));
  }
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const PLATFORM_WORD = /^[a-z0-9_.-]{1,32}$/;
/** BatchGetImage takes at most 100 image ids a call. */
const BATCH_GET_IMAGE_MAX = 100;

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

const parseSnapshot = (snapshot: unknown): ServiceRecord[] => {
  const parsed = snapshotSchema.safeParse(snapshot);
  if (!parsed.success) {
    throw new ConfigurationError(
      `invalid inventory snapshot: ${formatProblems(issueProblems(parsed.error.issues, { messages: 'zod' }))}`,
    );
  }
  return parsed.data.services.map((s) => ({
    service: serviceRef(s.clusterArn, s.serviceName),
    taskDefinitionArn: s.taskDefinitionArn,
    tags: s.tags,
    deploymentController: s.deploymentController,
    containers: s.containers.map((c) => ({ name: c.name, image: c.image })),
    // A snapshot's imageDigest stands for what the running task reports.
    running: s.containers.flatMap((c) =>
      c.imageDigest ? [{ name: c.name, image: c.image, imageDigest: c.imageDigest }] : [],
    ),
  }));
};

export class InventoryResolver {
  private readonly ecs: ECSClient | undefined;
  private readonly discoverByTag: { readonly key: string; readonly value: string } | undefined;
  private readonly targets: readonly InventoryTarget[];
  private readonly now: () => Date;
  private readonly ttlMs: number;
  private readonly limiter: Limiter;
  /** Task definition revisions are immutable: described once for the resolver's life, across rebuilds. */
  private readonly taskDefinitions = new Map<string, Promise<Array<{ name: string; image: string }>>>();
  private cached: { readonly builtAt: number; readonly index: Promise<InventoryIndex> } | undefined;
  private readonly ecr: Pick<ECRClient, 'send'> | undefined;
  /** Image indexes by repository, read once per inventory build (tags move with deployments too). */
  private readonly indexes = new WeakMap<InventoryIndex, Map<string, Promise<IndexedImage[]>>>();
  private calls = 0;

  constructor(options: InventoryResolverOptions | InventorySnapshotOptions) {
    if ('snapshot' in options) {
      this.ecs = undefined;
      this.discoverByTag = undefined;
      this.targets = [];
      this.now = () => new Date();
      this.ttlMs = Number.POSITIVE_INFINITY;
      this.limiter = new Limiter(1);
      this.ecr = undefined;
      this.cached = {
        builtAt: 0,
        index: Promise.resolve(new InventoryIndex(parseSnapshot(options.snapshot))),
      };
      return;
    }
    this.ecs = options.ecs;
    this.discoverByTag = options.discoverByTag;
    this.targets = options.targets ?? [];
    this.now = options.now ?? (() => new Date());
    this.ttlMs = options.cacheTtlMs ?? DEFAULT_TTL_MS;
    this.limiter = new Limiter(Math.max(1, options.concurrency ?? 5));
    this.ecr = options.ecr;
  }

  /** A resolver over a written-down inventory (local runs): same matching, no API calls. */
  static fromSnapshot(snapshot: unknown): InventoryResolver {
    return new InventoryResolver({ snapshot });
  }

  /** ECS and ECR API calls made so far (each page and batch counts one; SDK-internal retries do not). */
  get apiCalls(): number {
    return this.calls;
  }

  /**
   * The eligible services that run the image: a container pins `<repositoryUri>@<digest>`, or names
   * `<repositoryUri>:<tag>` with a tag the finding lists, or a running task reports the digest for the
   * repository. Sorted by service key. Throws TransientError when ECS throttles or fails (retry the
   * finding); a failed build is not cached.
   */
  async servicesForImage(image: ImageRef): Promise<ServiceUse[]> {
    const inventory = await this.inventory();
    return inventory.lookup(image, await this.indexesOf(inventory, image));
  }

  /**
   * The image indexes among what services reference in the finding's repository: one BatchGetImage
   * per 100 references, once per repository per inventory build, whatever the number of findings.
   * No ECR client, or nothing referenced in the repository: none (and no call).
   */
  private indexesOf(inventory: InventoryIndex, image: ImageRef): Promise<IndexedImage[]> {
    if (!this.ecr) return Promise.resolve([]);
    const repositoryUri = image.repositoryUri.trim().toLowerCase();
    let byRepository = this.indexes.get(inventory);
    if (!byRepository) {
      byRepository = new Map();
      this.indexes.set(inventory, byRepository);
    }
    const key = `${image.registry}\n${repositoryUri}`;
    let read = byRepository.get(key);
    if (!read) {
      read = this.readIndexes(image, inventory.references(repositoryUri));
      byRepository.set(key, read);
      const cache = byRepository;
      read.catch(() => cache.delete(key));
    }
    return read;
  }

  private async readIndexes(
    image: ImageRef,
    references: { digests: string[]; tags: string[] },
  ): Promise<IndexedImage[]> {
    const ids = [
      ...references.digests.filter((d) => DIGEST.test(d)).map((imageDigest) => ({ imageDigest })),
      ...references.tags.map((imageTag) => ({ imageTag })),
    ];
    const ecr = this.ecr;
    if (ids.length === 0 || !ecr) return [];
    const outs = await Promise.all(
      chunk(ids, BATCH_GET_IMAGE_MAX).map((imageIds) =>
        this.call(
          'BatchGetImage',
          () =>
            ecr.send(
              new BatchGetImageCommand({
                registryId: image.registry,
                repositoryName: image.repository,
                imageIds,
                // The index types first: ECR returns an index as an index only when they are accepted.
                acceptedMediaTypes: [...INDEX_MEDIA_TYPES, ...MANIFEST_MEDIA_TYPES],
              }),
            ),
          'ECR',
        ),
      ),
    );
    const byDigest = new Map<string, IndexedImage>();
    for (const got of outs.flatMap((out) => out.images ?? [])) {
      const digest = got.imageId?.imageDigest;
      if (!digest || !got.imageManifest) continue;
      const index = parseIndexManifest(got.imageManifest, got.imageManifestMediaType);
      if (!index) continue;
      const seen = byDigest.get(digest);
      const tag = got.imageId?.imageTag;
      const tags = [...new Set([...(seen?.tags ?? []), ...(tag ? [tag] : [])])].sort();
      byDigest.set(digest, { ...index, digest, tags });
    }
    // Failures (an image or tag deleted since the task definition named it) leave nothing to map.
    return [...byDigest.values()].sort((a, b) => a.digest.localeCompare(b.digest));
  }

  private inventory(): Promise<InventoryIndex> {
    const now = this.now().getTime();
    if (this.cached && now - this.cached.builtAt < this.ttlMs) return this.cached.index;
    // Memoise the promise, not the result: callers arriving while it builds share the one build.
    const index = this.build();
    const entry = { builtAt: now, index };
    this.cached = entry;
    index.catch(() => {
      if (this.cached === entry) this.cached = undefined;
    });
    return index;
  }

  private async build(): Promise<InventoryIndex> {
    const clusters = await this.clusters();
    const records = await Promise.all(clusters.map((cluster) => this.clusterServices(cluster)));
    return new InventoryIndex(records.flat());
  }

  private async clusters(): Promise<string[]> {
    // Targets may name one cluster both by name and by ARN: read each cluster once.
    const targeted: string[] = [];
    for (const { cluster } of this.targets) {
      const i = targeted.findIndex((c) => sameCluster(c, cluster));
      if (i < 0) targeted.push(cluster);
      else if (cluster.startsWith('arn:')) targeted[i] = cluster;
    }
    if (!this.discoverByTag) return targeted;
    const arns = await this.paginate(
      'ListClusters',
      (nextToken) => this.client().send(new ListClustersCommand({ maxResults: PAGE_SIZE, nextToken })),
      (out) => out.clusterArns,
    );
    // A target may name a cluster the listing does not show (a typo): DescribeServices says so.
    return [...arns, ...targeted.filter((c) => !arns.some((arn) => sameCluster(arn, c)))];
  }

  private async clusterServices(cluster: string): Promise<ServiceRecord[]> {
    const targets = this.targets.filter((t) => sameCluster(t.cluster, cluster));
    // Without tag discovery the targets name every service that matters: no need to list the cluster.
    const names = this.discoverByTag
      ? await this.paginate(
          'ListServices',
          (nextToken) =>
            this.client().send(new ListServicesCommand({ cluster, maxResults: PAGE_SIZE, nextToken })),
          (out) => out.serviceArns,
        )
      : unique(targets.map((t) => t.service));
    const described = (
      await Promise.all(
        chunk(names, DESCRIBE_SERVICES_MAX).map((services) =>
          this.call('DescribeServices', () =>
            this.client().send(new DescribeServicesCommand({ cluster, services, include: ['TAGS'] })),
          ),
        ),
      )
    ).flatMap((out) => out.services ?? []);
    const active = described.filter(
      (s) => s.status === 'ACTIVE' && s.serviceName && s.clusterArn && s.taskDefinition,
    );
    const eligible = active.flatMap((service) => {
      const tags = Object.fromEntries((service.tags ?? []).map((t) => [t.key ?? '', t.value ?? '']));
      const target = targets.find((t) => t.service === service.serviceName);
      const tagged =
        this.discoverByTag !== undefined && tags[this.discoverByTag.key] === this.discoverByTag.value;
      return target || tagged ? [{ service, tags: { ...tags, ...(target?.tags ?? {}) } }] : [];
    });
    if (eligible.length === 0) return [];

    const withContainers = await Promise.all(
      eligible.map(async (e) => ({
        ...e,
        containers: await this.taskDefinition(e.service.taskDefinition as string),
      })),
    );
    const running = await this.runningContainers(cluster, withContainers, active);
    return withContainers.map(({ service, tags, containers }) => ({
      service: serviceRef(service.clusterArn as string, service.serviceName as string),
      taskDefinitionArn: service.taskDefinition as string,
      tags,
      deploymentController: service.deploymentController?.type ?? 'ECS',
      containers,
      running: running.get(service.serviceName as string) ?? [],
    }));
  }

  private taskDefinition(arn: string): Promise<Array<{ name: string; image: string }>> {
    let described = this.taskDefinitions.get(arn);
    if (!described) {
      described = this.call('DescribeTaskDefinition', () =>
        this.client().send(new DescribeTaskDefinitionCommand({ taskDefinition: arn })),
      ).then((out) =>
        (out.taskDefinition?.containerDefinitions ?? []).flatMap((c) =>
          c.name && c.image ? [{ name: c.name, image: c.image }] : [],
        ),
      );
      this.taskDefinitions.set(arn, described);
      described.catch(() => this.taskDefinitions.delete(arn));
    }
    return described;
  }

  /**
   * Digests that running tasks report, by service name. Only asked for services where it can add a
   * match: a container referenced by tag (the tag may have moved since the task pulled it) or a
   * deployment still running another revision. Tasks are listed per service, or per cluster when
   * that takes fewer calls (estimated from the running counts DescribeServices returned).
   */
  private async runningContainers(
    cluster: string,
    services: ReadonlyArray<{ service: Service; containers: ReadonlyArray<{ image: string }> }>,
    allActive: readonly Service[],
  ): Promise<Map<string, Array<{ name: string; image: string; imageDigest: string }>>> {
    const tasksOf = (s: Service): number => (s.runningCount ?? 0) + (s.pendingCount ?? 0);
    const needed = services
      .filter(
        ({ service, containers }) =>
          tasksOf(service) > 0 &&
          (containers.some((c) => !parseImageReference(c.image).digest) ||
            (service.deployments ?? []).some(
              (d) => d.taskDefinition && d.taskDefinition !== service.taskDefinition,
            )),
      )
      .map(({ service }) => service);
    const result = new Map<string, Array<{ name: string; image: string; imageDigest: string }>>();
    if (needed.length === 0) return result;

    const pages = (tasks: number): number => Math.max(1, Math.ceil(tasks / PAGE_SIZE));
    const neededTasks = needed.reduce((n, s) => n + tasksOf(s), 0);
    const perService = needed.reduce((n, s) => n + pages(tasksOf(s)), 0) + pages(neededTasks);
    // Only with tag discovery were all the cluster's services described, so only then is the count known.
    const clusterTasks = allActive.reduce((n, s) => n + tasksOf(s), 0);
    const perCluster = this.discoverByTag ? 2 * pages(clusterTasks) : Number.POSITIVE_INFINITY;

    const list = (serviceName?: string) =>
      this.paginate(
        'ListTasks',
        (nextToken) =>
          this.client().send(
            new ListTasksCommand({
              cluster,
              desiredStatus: 'RUNNING',
              maxResults: PAGE_SIZE,
              nextToken,
              serviceName,
            }),
          ),
        (out) => out.taskArns,
      );
    const taskArns =
      perCluster < perService
        ? await list()
        : (await Promise.all(needed.map((s) => list(s.serviceName)))).flat();

    const wanted = new Set(needed.map((s) => `service:${s.serviceName}`));
    const described = await Promise.all(
      chunk(unique(taskArns), DESCRIBE_TASKS_MAX).map((tasks) =>
        this.call('DescribeTasks', () => this.client().send(new DescribeTasksCommand({ cluster, tasks }))),
      ),
    );
    for (const task of described.flatMap((out) => out.tasks ?? [])) {
      // Service tasks carry the group "service:<serviceName>".
      if (!task.group || !wanted.has(task.group)) continue;
      const serviceName = task.group.slice('service:'.length);
      const list = result.get(serviceName) ?? [];
      for (const c of task.containers ?? []) {
        if (c.name && c.image && c.imageDigest)
          list.push({ name: c.name, image: c.image, imageDigest: c.imageDigest });
      }
      result.set(serviceName, list);
    }
    return result;
  }

  private async paginate<Out extends { nextToken?: string | undefined }>(
    what: string,
    page: (nextToken: string | undefined) => Promise<Out>,
    items: (out: Out) => string[] | undefined,
  ): Promise<string[]> {
    const all: string[] = [];
    let nextToken: string | undefined;
    do {
      const out = await this.call(what, () => page(nextToken));
      all.push(...(items(out) ?? []));
      nextToken = out.nextToken;
    } while (nextToken);
    return all;
  }

  /** Every ECS (and ECR) call goes through here: counted, rate-capped, and its error classified. */
  private async call<T>(what: string, send: () => Promise<T>, service = 'ECS'): Promise<T> {
    this.calls++;
    try {
      return await this.limiter.run(send);
    } catch (error) {
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      const message = `inventory: ${service} ${what} failed: ${detail}`;
      throw isTransient(error)
        ? new TransientError(message, { cause: error })
        : new AutopatchError(message, { cause: error });
    }
  }

  private client(): ECSClient {
    if (!this.ecs) throw new AutopatchError('inventory: a snapshot resolver has no ECS client'); // unreachable
    return this.ecs;
  }
}
