import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Place } from '../shared/accounts';
import type { ImageIndex } from '../shared/contracts';
import { LedgerTable } from '../shared/ledger/table';
import { parseImageReference, type ServiceRecord, serviceRef } from './scan';

/**
 * The image inventory index, in the ledger table (single-table design, pk/sk):
 *
 * | pk                              | sk                                  | what                                                      |
 * | ------------------------------- | ----------------------------------- | --------------------------------------------------------- |
 * | `IMAGE#<repository>`            | `SERVICE#<clusterArn>#<service>`    | one service's use of one repository: the service record   |
 * |                                 |                                     | (task definition, tags, controller) with only the         |
 * |                                 |                                     | containers and running digests of that repository         |
 * | `INVENTORY#<account>#<region>`  | `SERVICE#<clusterArn>#<service>`    | the repositories the service has IMAGE# items in, its     |
 * |                                 |                                     | fingerprint and a version (stale entries can be deleted)  |
 * | `INVENTORY#<account>#<region>`  | `WATERMARK`                         | the last complete reconcile of that account and Region    |
 * | `INVENTORY#PLACES`              | `<account>#<region>`                | an account and Region the indexer has heard of            |
 *
 * `<repository>` is the lower-cased repository URI ("<registry host>/<name>"), as parseImageReference
 * returns it: one Query answers "which services, in every account and Region, reference this
 * repository" with every tag and digest they name, so tag matching and multi-arch image indexes work
 * exactly as with the scanned inventory. A partition grows with the services that use one repository,
 * never with the fleet. Nothing here expires: the reconcile deletes what no longer exists.
 *
 * For a triage cold start that would otherwise Query every repository a burst touches, three more:
 *
 * | pk                       | sk                                         | what                                  |
 * | ------------------------ | ------------------------------------------ | ------------------------------------- |
 * | `INVENTORY#RECORDS`      | `<account>#<region>#<clusterArn>#<service>` | the whole service record (every       |
 * |                          |                                            | repository), written with the service |
 * |                          |                                            | entry's version (never overwritten by |
 * |                          |                                            | an older writer), a tombstone once    |
 * |                          |                                            | the service is gone                   |
 * | `INVENTORY#MANIFESTS`    | `<repository>@<digest>`                    | what the manifest of a digest services|
 * |                          |                                            | run is: an image index (its platforms)|
 * |                          |                                            | or not; immutable, as the digest is   |
 * | `INVENTORY#GENERATION`   | `GENERATION`                               | a counter every change of the index   |
 * |                          |                                            | bumps, after the change is written    |
 *
 * One Query of each partition answers every finding of a burst in every account and Region (a page per
 * MB: about 2,000 services). The records are trusted once every place's watermark says a reconcile
 * wrote them (`records`), and kept by a warm triage Lambda until the generation moves: a service that
 * moves to another image bumps it, so the next batch reads the index again.
 */

export const INVENTORY_PREFIX = 'INVENTORY#';
export const IMAGE_PREFIX = 'IMAGE#';
export const SERVICE_PREFIX = 'SERVICE#';
export const WATERMARK_SK = 'WATERMARK';
export const PLACES_PK = 'INVENTORY#PLACES';

export const RECORDS_PK = 'INVENTORY#RECORDS';
export const MANIFESTS_PK = 'INVENTORY#MANIFESTS';
export const GENERATION_KEY = { pk: 'INVENTORY#GENERATION', sk: 'GENERATION' } as const;
/** The layout of the records partition; a watermark carries it once a reconcile has written them. */
export const RECORDS_LAYOUT = 1;

export const placeKey = (place: Place): string => `${place.account}#${place.region}`;
export const placePk = (place: Place): string => `${INVENTORY_PREFIX}${placeKey(place)}`;
export const imagePk = (repository: string): string => `${IMAGE_PREFIX}${repository.trim().toLowerCase()}`;
export const serviceSk = (clusterArn: string, serviceName: string): string =>
  `${SERVICE_PREFIX}${clusterArn}#${serviceName}`;
export const recordSk = (place: Place, clusterArn: string, serviceName: string): string =>
  `${placeKey(place)}#${clusterArn}#${serviceName}`;
export const manifestSk = (repository: string, digest: string): string =>
  `${repository.trim().toLowerCase()}@${digest.toLowerCase()}`;

/** What the index knows of a digest's manifest: an image index (with its platforms) or not. */
export interface ManifestEntry {
  readonly repository: string;
  readonly digest: string;
  /** Absent: the manifest is no image index. */
  readonly index?: ImageIndex;
  /** Tags services named the digest by, when the indexer saw them run it. */
  readonly tags: readonly string[];
}

/** Everything triage needs to answer a burst without a Query per repository. */
export interface IndexSnapshot {
  readonly generation: number;
  /** DynamoDB calls the snapshot took (pages beyond the first of a Query not counted). */
  readonly calls: number;
  /** Undefined: the records cannot be trusted everywhere yet (use the per-repository Queries). */
  readonly records?: readonly IndexedServiceRecord[];
  readonly manifests: ReadonlyMap<string, ManifestEntry>;
}

/** A service record found in the index, with the account and Region it runs in. */
export interface IndexedServiceRecord extends ServiceRecord {
  readonly place: Place;
}

/** The IMAGE# item of one service and one repository. */
export interface ImageItem {
  readonly pk: string;
  readonly sk: string;
  readonly account: string;
  readonly region: string;
  readonly clusterArn: string;
  readonly serviceName: string;
  readonly taskDefinitionArn: string;
  readonly tags: Record<string, string>;
  readonly deploymentController: string;
  readonly containers: Array<{ name: string; image: string }>;
  readonly running: Array<{ name: string; image: string; imageDigest: string }>;
  readonly indexedAt: string;
}

/** What an index item says of the service a record describes (IMAGE# items and the whole record). */
export const serviceFieldsOf = (place: Place, record: ServiceRecord, indexedAt: string) => ({
  account: place.account,
  region: place.region,
  clusterArn: record.service.clusterArn,
  serviceName: record.service.serviceName,
  taskDefinitionArn: record.taskDefinitionArn,
  tags: { ...record.tags },
  deploymentController: record.deploymentController,
  indexedAt,
});

/** The record's containers and running digests, split by the repository they reference. */
export const imageItemsOf = (
  place: Place,
  record: ServiceRecord,
  indexedAt: string,
): Map<string, ImageItem> => {
  const items = new Map<string, ImageItem>();
  const itemFor = (repository: string): ImageItem => {
    let item = items.get(repository);
    if (!item) {
      item = {
        pk: imagePk(repository),
        sk: serviceSk(record.service.clusterArn, record.service.serviceName),
        ...serviceFieldsOf(place, record, indexedAt),
        containers: [],
        running: [],
      };
      items.set(repository, item);
    }
    return item;
  };
  for (const c of record.containers)
    itemFor(parseImageReference(c.image).repository).containers.push({ ...c });
  for (const c of record.running) itemFor(parseImageReference(c.image).repository).running.push({ ...c });
  return items;
};

const isStringRecord = (value: unknown): value is Record<string, string> =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every((v) => typeof v === 'string');

const str = (value: unknown): value is string => typeof value === 'string' && value.length > 0;

/** An IMAGE# item read back: undefined when it does not read as one (never trusted blindly). */
export const recordOfItem = (item: Record<string, unknown>): IndexedServiceRecord | undefined => {
  const { account, region, clusterArn, serviceName, taskDefinitionArn, deploymentController } = item;
  if (
    !str(account) ||
    !str(region) ||
    !str(clusterArn) ||
    !str(serviceName) ||
    !str(taskDefinitionArn) ||
    !str(deploymentController) ||
    !isStringRecord(item.tags) ||
    !Array.isArray(item.containers) ||
    !Array.isArray(item.running)
  )
    return undefined;
  const containers = (item.containers as unknown[]).flatMap((c) => {
    const { name, image } = (c ?? {}) as { name?: unknown; image?: unknown };
    return str(name) && str(image) ? [{ name, image }] : [];
  });
  const running = (item.running as unknown[]).flatMap((c) => {
    const { name, image, imageDigest } = (c ?? {}) as {
      name?: unknown;
      image?: unknown;
      imageDigest?: unknown;
    };
    return str(name) && str(image) && str(imageDigest) ? [{ name, image, imageDigest }] : [];
  });
  return {
    place: { account, region },
    service: serviceRef(clusterArn, serviceName),
    taskDefinitionArn,
    tags: { ...item.tags },
    deploymentController,
    containers,
    running,
  };
};

export interface Watermark {
  /** ISO-8601 end of the last complete reconcile. */
  readonly reconciledAt: string;
  readonly services: number;
  /** RECORDS_LAYOUT when that reconcile wrote every service's record. */
  readonly records?: number;
}

export interface InventoryIndexReaderOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** Counts every DynamoDB call (pages included). */
  readonly count?: () => void;
}

/** Triage's side of the index: the watermark of a place, and the services that use a repository. */
export class InventoryIndexReader {
  private readonly table: LedgerTable;
  private readonly count: () => void;

  constructor(options: InventoryIndexReaderOptions) {
    this.table = new LedgerTable({ client: options.client, tableName: options.tableName });
    this.count = options.count ?? (() => {});
  }

  /** The last reconcile of the place, or undefined when the index was never built there. */
  async watermark(place: Place): Promise<Watermark | undefined> {
    this.count();
    const item = await this.table.get({ pk: placePk(place), sk: WATERMARK_SK }, 'inventory watermark');
    if (!item || !str(item.reconciledAt)) return undefined;
    return {
      reconciledAt: item.reconciledAt,
      services: Number(item.services ?? 0),
      ...(typeof item.records === 'number' ? { records: item.records } : {}),
    };
  }

  /** The index's generation (0 before any change was counted). One strongly consistent GetItem. */
  async generation(): Promise<number> {
    this.count();
    const item = await this.table.get({ ...GENERATION_KEY }, 'inventory generation');
    return typeof item?.generation === 'number' ? item.generation : 0;
  }

  /**
   * The whole index as of `generation` (read first): every place's watermark, and when all of them
   * (the hub's included) carry the records and are younger than `maxAgeMs`, every service record;
   * the known manifests in any case. A few calls whatever the burst: one Query of the places, one
   * BatchGetItem of their watermarks, a page per MB of records and of manifests.
   */
  async snapshot(home: Place, maxAgeMs: number, now: Date): Promise<IndexSnapshot> {
    const generation = await this.generation();
    this.count();
    const placeItems = await this.table.query('inventory places', PLACES_PK);
    const places = new Map<string, Place>([[placeKey(home), home]]);
    for (const i of placeItems)
      if (str(i.account) && str(i.region))
        places.set(placeKey({ account: i.account, region: i.region }), {
          account: i.account,
          region: i.region,
        });
    this.count();
    const marks = await this.table.batchGet(
      'inventory watermarks',
      [...places.values()].map((p) => ({ pk: placePk(p), sk: WATERMARK_SK })),
      ['pk', 'reconciledAt', 'records'],
    );
    const trusted =
      marks.length === places.size &&
      marks.every(
        (m) =>
          m.records === RECORDS_LAYOUT &&
          str(m.reconciledAt) &&
          now.getTime() - Date.parse(m.reconciledAt) <= maxAgeMs,
      );
    const [records, manifestItems] = await Promise.all([
      trusted ? this.countedQuery(RECORDS_PK, undefined) : Promise.resolve(undefined),
      this.countedQuery(MANIFESTS_PK, undefined),
    ]);
    const manifests = new Map<string, ManifestEntry>();
    for (const m of manifestItems) {
      const entry = manifestOfItem(m);
      if (entry) manifests.set(manifestSk(entry.repository, entry.digest), entry);
    }
    return {
      generation,
      calls: 3 + Math.ceil(places.size / 100) + (trusted ? 1 : 0),
      ...(records ? { records: records.flatMap((item) => recordOfItem(item) ?? []) } : {}),
      manifests,
    };
  }

  /** Every indexed service, in every account and Region, that references the repository. */
  async servicesUsing(repository: string): Promise<IndexedServiceRecord[]> {
    // Eventually consistent: half the read units, and the index trails ECS by an event anyway.
    const items = await this.countedQuery(imagePk(repository), SERVICE_PREFIX, false);
    return items.flatMap((item) => recordOfItem(item) ?? []);
  }

  private async countedQuery(
    pk: string,
    prefix: string | undefined,
    consistent = true,
  ): Promise<Record<string, unknown>[]> {
    // Counted once per call made: LedgerTable.query pages internally.
    this.count();
    return this.table.query('inventory lookup', pk, {
      ...(prefix === undefined ? {} : { prefix }),
      consistent,
    });
  }
}

/** A MANIFESTS item read back: undefined when it does not read as one. */
export const manifestOfItem = (item: Record<string, unknown>): ManifestEntry | undefined => {
  const { repository, digest, index } = item;
  if (!str(repository) || !str(digest)) return undefined;
  const tags = Array.isArray(item.tags)
    ? item.tags.filter(str)
    : item.tags instanceof Set
      ? [...item.tags].filter(str)
      : [];
  const parsed = index as ImageIndex | undefined;
  const valid =
    parsed !== undefined &&
    typeof parsed === 'object' &&
    str(parsed.mediaType) &&
    Array.isArray(parsed.platforms) &&
    parsed.platforms.every((p) => str(p?.digest) && str(p?.architecture) && str(p?.os) && str(p?.mediaType));
  if (index !== undefined && !valid) return undefined;
  return { repository, digest, tags: tags.sort(), ...(valid ? { index: parsed } : {}) };
};
