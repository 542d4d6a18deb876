import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Place } from '../shared/accounts';
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
 */

export const INVENTORY_PREFIX = 'INVENTORY#';
export const IMAGE_PREFIX = 'IMAGE#';
export const SERVICE_PREFIX = 'SERVICE#';
export const WATERMARK_SK = 'WATERMARK';
export const PLACES_PK = 'INVENTORY#PLACES';

export const placeKey = (place: Place): string => `${place.account}#${place.region}`;
export const placePk = (place: Place): string => `${INVENTORY_PREFIX}${placeKey(place)}`;
export const imagePk = (repository: string): string => `${IMAGE_PREFIX}${repository.trim().toLowerCase()}`;
export const serviceSk = (clusterArn: string, serviceName: string): string =>
  `${SERVICE_PREFIX}${clusterArn}#${serviceName}`;

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
        account: place.account,
        region: place.region,
        clusterArn: record.service.clusterArn,
        serviceName: record.service.serviceName,
        taskDefinitionArn: record.taskDefinitionArn,
        tags: { ...record.tags },
        deploymentController: record.deploymentController,
        containers: [],
        running: [],
        indexedAt,
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
    return { reconciledAt: item.reconciledAt, services: Number(item.services ?? 0) };
  }

  /** Every indexed service, in every account and Region, that references the repository. */
  async servicesUsing(repository: string): Promise<IndexedServiceRecord[]> {
    // Eventually consistent: half the read units, and the index trails ECS by an event anyway.
    const items = await this.countedQuery(imagePk(repository));
    return items.flatMap((item) => recordOfItem(item) ?? []);
  }

  private async countedQuery(pk: string): Promise<Record<string, unknown>[]> {
    // One call per page: LedgerTable.query pages internally, so count what it returned.
    this.count();
    return this.table.query('inventory lookup', pk, { prefix: SERVICE_PREFIX, consistent: false });
  }
}
