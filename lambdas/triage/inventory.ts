import { BatchGetImageCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { ECSClient } from '@aws-sdk/client-ecs';
import * as z from 'zod';
import { type IndexSnapshot, type InventoryIndexReader, manifestSk } from '../inventory/index-store';
import { parseIndexManifest } from '../inventory/manifests';
import {
  chunk,
  EcsScanner,
  limitedCall,
  parseImageReference,
  type ServiceRecord,
  sameCluster,
  serviceRef,
} from '../inventory/scan';
import type { Place } from '../shared/accounts';
import { Limiter } from '../shared/concurrency';
import type { TargetConfig } from '../shared/config';
import {
  type ImageIndex,
  INDEX_MEDIA_TYPES,
  MANIFEST_MEDIA_TYPES,
  type ServiceRef,
} from '../shared/contracts';
import { ConfigurationError } from '../shared/errors';
import { formatProblems, issueProblems } from './schema/issues';

/**
 * Which ECS services run an image: the inventory triage resolves every actionable finding against.
 *
 * The whole inventory of eligible services is read once and indexed by image reference, so a burst of
 * findings costs the same ECS calls as a single one: every lookup after the first is a map access.
 */

/** The image of a finding, as the schema parses it. */
/** "<account>.dkr.ecr.<region>.amazonaws.com/…": the registry's account and Region. */
const REGISTRY_HOST = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/;

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
  /**
   * The ECR client for an image's own registry account and Region (the spoke role away from home);
   * without it `ecr` reads every registry.
   */
  readonly ecrFor?: (place: { readonly account: string; readonly region: string }) => Pick<ECRClient, 'send'>;
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

const DEFAULT_TTL_MS = 5 * 60_000;
const DEFAULT_INDEX_TTL_MS = 60_000;

export { parseImageReference };

const digestKey = (repository: string, digest: string): string => `${repository}@${digest.toLowerCase()}`;
const tagKey = (repository: string, tag: string): string => `${repository}:${tag}`;

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

export { parseIndexManifest };

const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** BatchGetImage takes at most 100 image ids a call. */
const BATCH_GET_IMAGE_MAX = 100;

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

/** Answer from the image inventory index (kept by the indexer, lambdas/inventory/) instead of scanning ECS. */
export interface InventoryIndexOptions {
  readonly reader: Pick<InventoryIndexReader, 'watermark' | 'servicesUsing'> &
    Partial<Pick<InventoryIndexReader, 'snapshot' | 'generation'>>;
  /**
   * How long a warm Lambda keeps the whole index (records mode) before reading it again even if its
   * generation has not moved (re-checking the watermarks). Each batch checks the generation anyway.
   * @default 900_000 (15 minutes)
   */
  readonly snapshotTtlMs?: number;
  /** The hub's account and Region: the index is used once the indexer has reconciled it (watermark). */
  readonly home: Place;
  /**
   * How long a repository's entries, and the watermark check, are kept (a warm Lambda outlives many
   * batches; a burst reads each repository once per period, whatever its size).
   * @default 60_000
   */
  readonly cacheTtlMs?: number;
  /**
   * A watermark older than this (the reconcile has not completed for that long) is not trusted: the
   * resolver scans ECS as without an index, so a broken indexer cannot hide services for long.
   * @default 24 hours
   */
  readonly maxAgeMs?: number;
}

export class InventoryResolver {
  private readonly scanner: EcsScanner | undefined;
  private readonly discoverByTag: { readonly key: string; readonly value: string } | undefined;
  private readonly targets: readonly InventoryTarget[];
  private readonly now: () => Date;
  private readonly ttlMs: number;
  private readonly limiter: Limiter;
  private cached: { readonly builtAt: number; readonly index: Promise<InventoryIndex> } | undefined;
  private readonly ecr: Pick<ECRClient, 'send'> | undefined;
  private readonly ecrFor: InventoryResolverOptions['ecrFor'];
  /** Image indexes by repository, read once per inventory build (tags move with deployments too). */
  private readonly indexes = new WeakMap<InventoryIndex, Map<string, Promise<IndexedImage[]>>>();
  private readonly index: InventoryIndexOptions | undefined;
  private ready: { readonly checkedAt: number; readonly ready: Promise<boolean> } | undefined;
  private readonly byRepository = new Map<
    string,
    { readonly readAt: number; readonly index: Promise<InventoryIndex> }
  >();
  private calls = 0;
  private lastSource: 'index' | 'scan' | 'snapshot' | undefined;
  /** The whole index, kept across warm invocations while its generation stays (records mode). */
  private whole:
    | {
        readonly loadedAt: number;
        readonly state: Promise<
          | {
              readonly snapshot: IndexSnapshot;
              readonly inventory?: InventoryIndex;
              readonly indexes: Map<string, Promise<IndexedImage[]>>;
            }
          | undefined
        >;
      }
    | undefined;
  /** Set by startBatch: the next lookup checks the index's generation first (once for the batch). */
  private revalidation: Promise<void> | undefined;
  private revalidate = false;

  constructor(
    options:
      | (InventoryResolverOptions & { readonly index?: InventoryIndexOptions })
      | InventorySnapshotOptions,
  ) {
    this.now = ('now' in options ? options.now : undefined) ?? (() => new Date());
    if ('snapshot' in options) {
      this.scanner = undefined;
      this.discoverByTag = undefined;
      this.targets = [];
      this.ttlMs = Number.POSITIVE_INFINITY;
      this.limiter = new Limiter(1);
      this.ecr = undefined;
      this.ecrFor = undefined;
      this.index = undefined;
      this.cached = {
        builtAt: 0,
        index: Promise.resolve(new InventoryIndex(parseSnapshot(options.snapshot))),
      };
      return;
    }
    this.discoverByTag = options.discoverByTag;
    this.targets = options.targets ?? [];
    this.ttlMs = options.cacheTtlMs ?? DEFAULT_TTL_MS;
    this.limiter = new Limiter(Math.max(1, options.concurrency ?? 5));
    this.scanner = new EcsScanner({
      ecs: options.ecs,
      limiter: this.limiter,
      count: () => {
        this.calls++;
      },
    });
    this.ecr = options.ecr;
    this.ecrFor = options.ecrFor;
    this.index = options.index;
  }

  /** A resolver over a written-down inventory (local runs): same matching, no API calls. */
  static fromSnapshot(snapshot: unknown): InventoryResolver {
    return new InventoryResolver({ snapshot });
  }

  /**
   * ECS, ECR and index (DynamoDB) calls made so far (each page and batch counts one; SDK-internal
   * retries do not).
   */
  get apiCalls(): number {
    return this.calls;
  }

  /** Where the last answer came from: the index, an ECS scan, or a snapshot. */
  get source(): 'index' | 'scan' | 'snapshot' | undefined {
    return this.lastSource;
  }

  /**
   * The eligible services that run the image: a container pins `<repositoryUri>@<digest>`, or names
   * `<repositoryUri>:<tag>` with a tag the finding lists, or a running task reports the digest for the
   * repository. Sorted by service key. From the index when the indexer has reconciled the hub's
   * account and Region (one Query per repository per period), from an ECS scan otherwise. Throws
   * TransientError when ECS or the index throttles or fails (retry the finding); a failed read is not
   * cached.
   */
  async servicesForImage(image: ImageRef): Promise<ServiceUse[]> {
    const whole = await this.wholeIndex();
    if (whole?.inventory) {
      this.lastSource = 'index';
      return whole.inventory.lookup(image, await this.snapshotIndexes(whole, whole.inventory, image));
    }
    const inventory = (await this.indexReady()) ? await this.indexed(image) : await this.inventory();
    return inventory.lookup(image, await this.indexesOf(inventory, image));
  }

  /**
   * A new batch begins: before its first lookup, the whole index a warm Lambda keeps is checked
   * against the index's generation (one GetItem) and read again if anything changed since, so a
   * service that moved to another image is never matched by what it ran before.
   */
  startBatch(): void {
    this.revalidate = true;
  }

  /** The whole index (records mode), when the index reader offers it and every place has records. */
  private async wholeIndex() {
    const index = this.index;
    const reader = index?.reader;
    if (!index || !reader?.snapshot || !reader.generation) return undefined;
    const now = this.now().getTime();
    if (this.whole && this.revalidate) {
      this.revalidate = false;
      const current = this.whole;
      this.revalidation = (async () => {
        const loaded = await current.state.catch(() => undefined);
        const generation = await this.counted(() => (reader.generation as () => Promise<number>)());
        if (this.whole === current && loaded?.snapshot.generation !== generation) this.whole = undefined;
      })();
      this.revalidation.catch(() => {
        // A failed check drops what is kept: the next lookup reads the index again.
        if (this.whole === current) this.whole = undefined;
      });
    }
    this.revalidate = false;
    if (this.revalidation) await this.revalidation.catch(() => undefined);
    if (!this.whole || now - this.whole.loadedAt >= (index.snapshotTtlMs ?? 900_000)) {
      const maxAge = index.maxAgeMs ?? 24 * 3_600_000;
      const state = this.counted(() =>
        (reader.snapshot as NonNullable<typeof reader.snapshot>)(index.home, maxAge, new Date(now)),
      )
        .then((snapshot) => {
          this.calls += snapshot.calls - 1;
          return snapshot;
        })
        .then((snapshot) => ({
          snapshot,
          ...(snapshot.records
            ? {
                inventory: new InventoryIndex(
                  snapshot.records.flatMap((r) => this.eligible(r, this.isHome(r.place, index.home)) ?? []),
                ),
              }
            : {}),
          indexes: new Map<string, Promise<IndexedImage[]>>(),
        }));
      const entry = { loadedAt: now, state };
      this.whole = entry;
      state.catch(() => {
        if (this.whole === entry) this.whole = undefined;
      });
    }
    return this.whole.state;
  }

  /**
   * The image indexes of the finding's repository from the manifests the indexer recorded, when
   * they cover every digest and tag services reference there; otherwise read from ECR (once per
   * repository for as long as the whole index is kept).
   */
  private snapshotIndexes(
    whole: { readonly snapshot: IndexSnapshot; readonly indexes: Map<string, Promise<IndexedImage[]>> },
    inventory: InventoryIndex,
    image: ImageRef,
  ): Promise<IndexedImage[]> {
    if (!this.ecr) return Promise.resolve([]);
    const repository = image.repositoryUri.trim().toLowerCase();
    const key = `${image.registry}\n${repository}`;
    let found = whole.indexes.get(key);
    if (!found) {
      const references = inventory.references(repository);
      const entries = references.digests.map((d) => whole.snapshot.manifests.get(manifestSk(repository, d)));
      const tagged = new Set(entries.flatMap((e) => e?.tags ?? []));
      const covered = entries.every((e) => e !== undefined) && references.tags.every((t) => tagged.has(t));
      found = covered
        ? Promise.resolve(
            entries
              .flatMap((e) => (e?.index ? [{ ...e.index, digest: e.digest, tags: [...e.tags] }] : []))
              .sort((a, b) => a.digest.localeCompare(b.digest)),
          )
        : this.readIndexes(image, references);
      whole.indexes.set(key, found);
      const cache = whole.indexes;
      found.catch(() => cache.delete(key));
    }
    return found;
  }

  /** Is the index built for the hub's account and Region (and recent enough)? Checked once per period. */
  private indexReady(): Promise<boolean> {
    const index = this.index;
    if (!index) {
      this.lastSource = this.scanner ? 'scan' : 'snapshot';
      return Promise.resolve(false);
    }
    const now = this.now().getTime();
    const ttl = index.cacheTtlMs ?? DEFAULT_INDEX_TTL_MS;
    if (!this.ready || now - this.ready.checkedAt >= ttl) {
      const maxAge = index.maxAgeMs ?? 24 * 3_600_000;
      const ready = this.counted(() => index.reader.watermark(index.home)).then(
        (mark) => mark !== undefined && now - Date.parse(mark.reconciledAt) <= maxAge,
      );
      const entry = { checkedAt: now, ready };
      this.ready = entry;
      ready.catch(() => {
        if (this.ready === entry) this.ready = undefined;
      });
    }
    return this.ready.ready.then((ready) => {
      this.lastSource = ready ? 'index' : 'scan';
      return ready;
    });
  }

  /** The eligible indexed services that reference the image's repository, as a lookup structure. */
  private indexed(image: ImageRef): Promise<InventoryIndex> {
    const index = this.index as InventoryIndexOptions;
    const repository = parseImageReference(image.repositoryUri).repository;
    const now = this.now().getTime();
    const cached = this.byRepository.get(repository);
    if (cached && now - cached.readAt < (index.cacheTtlMs ?? DEFAULT_INDEX_TTL_MS)) return cached.index;
    const read = this.counted(() => index.reader.servicesUsing(repository)).then(
      (records) =>
        new InventoryIndex(records.flatMap((r) => this.eligible(r, this.isHome(r.place, index.home)) ?? [])),
    );
    const entry = { readAt: now, index: read };
    this.byRepository.set(repository, entry);
    read.catch(() => {
      if (this.byRepository.get(repository) === entry) this.byRepository.delete(repository);
    });
    return read;
  }

  private isHome(place: Place, home: Place): boolean {
    return place.account === home.account && place.region === home.region;
  }

  /**
   * Today's eligibility, at lookup time: a service named by a target (its tags merged on top), or
   * carrying the discovery tag. A target that names its cluster by name matches in the hub's account
   * and Region only; by ARN, exactly that cluster.
   */
  private eligible(record: ServiceRecord, home: boolean): ServiceRecord | undefined {
    const target = this.targets.find(
      (t) =>
        t.service === record.service.serviceName &&
        (t.cluster.startsWith('arn:')
          ? t.cluster === record.service.clusterArn
          : home && sameCluster(t.cluster, record.service.clusterArn)),
    );
    const d = this.discoverByTag;
    const tagged = d !== undefined && record.tags[d.key] === d.value;
    if (!target && !tagged) return undefined;
    return { ...record, tags: { ...record.tags, ...(target?.tags ?? {}) } };
  }

  private async counted<T>(read: () => Promise<T>): Promise<T> {
    this.calls++;
    return read();
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
    // The registry's own account and Region (a central registry, another Region): its client.
    const place = REGISTRY_HOST.exec(image.repositoryUri.trim().toLowerCase());
    const ecr =
      this.ecrFor && place
        ? this.ecrFor({ account: place[1] as string, region: place[2] as string })
        : this.ecr;
    if (ids.length === 0 || !ecr) return [];
    const outs = await Promise.all(
      chunk(ids, BATCH_GET_IMAGE_MAX).map((imageIds) =>
        limitedCall(
          this.limiter,
          () => {
            this.calls++;
          },
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
    if (!this.scanner) throw new ConfigurationError('inventory: a snapshot resolver has no ECS client'); // unreachable
    const records = await this.scanner.scan({
      ...(this.discoverByTag ? { discoverByTag: this.discoverByTag } : {}),
      targets: this.targets,
    });
    return new InventoryIndex(records);
  }
}
