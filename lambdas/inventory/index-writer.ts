import { createHash } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Place } from '../shared/accounts';
import { mapLimit } from '../shared/concurrency';
import type { ImageIndex } from '../shared/contracts';
import { LEDGER } from '../shared/contracts';
import { TransientError } from '../shared/errors';
import { BATCH_CONCURRENCY, LedgerTable } from '../shared/ledger/table';
import {
  GENERATION_KEY,
  imageItemsOf,
  imagePk,
  MANIFESTS_PK,
  manifestSk,
  PLACES_PK,
  placeKey,
  placePk,
  RECORDS_LAYOUT,
  RECORDS_PK,
  recordSk,
  SERVICE_PREFIX,
  serviceFieldsOf,
  serviceSk,
  WATERMARK_SK,
} from './index-store';
import type { ServiceRecord } from './scan';

/**
 * The indexer's side of the index (item formats in ./index-store.ts): rewrite one service's entries,
 * list and remove the services of a place, and set its watermark.
 *
 * Rewriting a service is safe against a crash and against a second writer of the same service (an
 * event and the reconcile, or two events): the service's INVENTORY# item lists every repository it
 * may have IMAGE# items in, and is widened to old ∪ new (a claim: conditional on its version, so
 * claims are serialised and each gets a higher version) *before* the new IMAGE# items are written;
 * the old ones are then replaced by tombstones and the list narrowed to the new. IMAGE# writes carry
 * the claim's version and never overwrite a higher one, so a slow writer that lost a race cannot put
 * back what the winner removed, and no live IMAGE# item is ever left that no INVENTORY# item names.
 */

/** A service's INVENTORY# item as read back. */
export interface ServiceEntry {
  readonly clusterArn: string;
  readonly serviceName: string;
  readonly repositories: readonly string[];
  readonly version: number;
  readonly fingerprint?: string;
  /** RECORDS_LAYOUT when the service's record is in the records partition too. */
  readonly recorded?: number;
}

export type WriteOutcome = 'unchanged' | 'written' | 'removed' | 'absent';

const ATTEMPTS = 4;
/** How long a removed entry's tombstone refuses a slower writer's older entry. */
const TOMBSTONE_DAYS = 1;

/** What the index holds of a record, hashed: an unchanged service is not written again. */
export const fingerprintOf = (record: ServiceRecord): string =>
  createHash('sha256')
    .update(
      JSON.stringify([
        record.taskDefinitionArn,
        Object.entries(record.tags).sort(([a], [b]) => a.localeCompare(b)),
        record.deploymentController,
        [...record.containers].map((c) => `${c.name}=${c.image}`).sort(),
        [...record.running].map((c) => `${c.name}=${c.image}@${c.imageDigest}`).sort(),
      ]),
    )
    .digest('hex');

const entryOf = (item: Record<string, unknown>): ServiceEntry | undefined => {
  const { clusterArn, serviceName, repositories, version, fingerprint } = item;
  if (typeof clusterArn !== 'string' || typeof serviceName !== 'string') return undefined;
  return {
    clusterArn,
    serviceName,
    repositories: Array.isArray(repositories) ? repositories.filter((r) => typeof r === 'string') : [],
    version: typeof version === 'number' ? version : 0,
    ...(typeof fingerprint === 'string' ? { fingerprint } : {}),
    ...(typeof item.recorded === 'number' ? { recorded: item.recorded } : {}),
  };
};

export interface InventoryIndexWriterOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly now?: () => Date;
}

export class InventoryIndexWriter {
  readonly table: LedgerTable;

  constructor(options: InventoryIndexWriterOptions) {
    this.table = new LedgerTable({
      client: options.client,
      tableName: options.tableName,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** The services of a place the index holds. */
  async services(place: Place): Promise<ServiceEntry[]> {
    const items = await this.table.query('inventory services', placePk(place), { prefix: SERVICE_PREFIX });
    return items.flatMap((item) => entryOf(item) ?? []);
  }

  /**
   * Make the index say what `record` says of the service (undefined: the service is gone or not
   * ACTIVE: remove it). `known` is its INVENTORY# entry when the caller has just read it (reconcile).
   */
  async writeService(
    place: Place,
    clusterArn: string,
    serviceName: string,
    record: ServiceRecord | undefined,
    known?: ServiceEntry | null,
  ): Promise<WriteOutcome> {
    const key = { pk: placePk(place), sk: serviceSk(clusterArn, serviceName) };
    // What every write of the service's INVENTORY# item holds, besides its repositories and version.
    const serviceItem = {
      ...key,
      kind: 'inventory-service',
      clusterArn,
      serviceName,
      account: place.account,
      region: place.region,
    };
    const fingerprint = record ? fingerprintOf(record) : undefined;
    const indexedAt = this.table.now().toISOString();
    const items = record ? imageItemsOf(place, record, indexedAt) : new Map();
    const repositories = [...items.keys()].sort();
    const attempted = new Set<string>();
    let entry: ServiceEntry | undefined = known === null ? undefined : known;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (attempt > 0 || known === undefined) {
        const item = await this.table.get(key, 'inventory service');
        entry = item ? entryOf(item) : undefined;
      }
      if (!record && !entry) return 'absent';
      if (
        record &&
        entry &&
        entry.fingerprint === fingerprint &&
        entry.recorded === RECORDS_LAYOUT &&
        same(entry.repositories, repositories)
      )
        return 'unchanged';
      const version = entry?.version ?? 0;
      const widened = [...new Set([...(entry?.repositories ?? []), ...attempted, ...repositories])].sort();
      // 1. Name every repository that may hold an item of the service, before writing any.
      const claimed = await this.table.conditional('inventory service', () =>
        this.table.doc.send(
          new PutCommand({
            TableName: this.table.tableName,
            Item: {
              ...serviceItem,
              repositories: widened,
              version: version + 1,
              pending: true,
              indexedAt,
            },
            ConditionExpression: entry ? '#v = :v' : 'attribute_not_exists(pk)',
            ...(entry
              ? {
                  ExpressionAttributeNames: { '#v': 'version' },
                  ExpressionAttributeValues: { ':v': version },
                }
              : {}),
          }),
        ),
      );
      if (!claimed) continue;
      for (const r of repositories) attempted.add(r);
      // 2. The new IMAGE# items, and tombstones for the ones the service no longer uses. Each write is
      // conditional on the claim's version, so a slower writer that lost the claim cannot put back an
      // entry the winner removed (the tombstone stays long enough to refuse it, then expires).
      const claim = version + 1;
      const stale = widened.filter((r) => !items.has(r));
      await mapLimit(
        [
          ...[...items.values()].map((item) => ({ ...item, kind: 'inventory-image', version: claim })),
          ...stale.map((r) => ({
            pk: imagePk(r),
            sk: key.sk,
            kind: 'inventory-image-removed',
            version: claim,
            [LEDGER.ttlAttribute]: this.table.ttl(TOMBSTONE_DAYS),
          })),
        ],
        BATCH_CONCURRENCY,
        (item) =>
          this.table.conditional('inventory image', () =>
            this.table.doc.send(
              new PutCommand({
                TableName: this.table.tableName,
                Item: item,
                ConditionExpression: 'attribute_not_exists(pk) OR attribute_not_exists(#v) OR #v <= :v',
                ExpressionAttributeNames: { '#v': 'version' },
                ExpressionAttributeValues: { ':v': claim },
              }),
            ),
          ),
      );
      // 3. Narrow the list to what exists (or forget the service). Losing this race is fine: the
      // winner read the widened list and cleans up after itself.
      // 3. Narrow the list to what exists (or forget the service). Losing this race is fine: the
      // winner read the widened list and cleans up after itself.
      const narrowed = { '#v': 'version' };
      const expected = { ':v': version + 1 };
      const settled = await this.table.conditional('inventory service', () =>
        record
          ? this.table.doc.send(
              new PutCommand({
                TableName: this.table.tableName,
                Item: {
                  ...serviceItem,
                  repositories,
                  version: version + 2,
                  fingerprint,
                  taskDefinitionArn: record.taskDefinitionArn,
                  recorded: RECORDS_LAYOUT,
                  indexedAt,
                },
                ConditionExpression: '#v = :v',
                ExpressionAttributeNames: narrowed,
                ExpressionAttributeValues: expected,
              }),
            )
          : this.table.doc.send(
              new DeleteCommand({
                TableName: this.table.tableName,
                Key: key,
                ConditionExpression: '#v = :v',
                ExpressionAttributeNames: narrowed,
                ExpressionAttributeValues: expected,
              }),
            ),
      );
      // 4. The whole record (or its tombstone) in the records partition, under the same version rule
      // as the IMAGE# items; then the generation, so that triage reads the index again.
      if (settled) {
        const recordKey = { pk: RECORDS_PK, sk: recordSk(place, clusterArn, serviceName) };
        await this.table.conditional('inventory record', () =>
          this.table.doc.send(
            new PutCommand({
              TableName: this.table.tableName,
              Item: record
                ? {
                    ...recordKey,
                    kind: 'inventory-record',
                    version: version + 2,
                    ...serviceFieldsOf(place, record, indexedAt),
                    containers: record.containers.map((c) => ({ ...c })),
                    running: record.running.map((c) => ({ ...c })),
                  }
                : {
                    ...recordKey,
                    kind: 'inventory-record-removed',
                    version: version + 2,
                    [LEDGER.ttlAttribute]: this.table.ttl(TOMBSTONE_DAYS),
                  },
              ConditionExpression: 'attribute_not_exists(pk) OR attribute_not_exists(#v) OR #v <= :v',
              ExpressionAttributeNames: { '#v': 'version' },
              ExpressionAttributeValues: { ':v': version + 2 },
            }),
          ),
        );
      }
      await this.bumpGeneration();
      return record ? 'written' : 'removed';
    }
    throw new TransientError(
      `inventory: ${clusterArn}/${serviceName} in ${placeKey(place)} was rewritten concurrently ${ATTEMPTS} times; retry`,
    );
  }

  /** Count a change of the index (after it is written): triage's caches read the index again. */
  async bumpGeneration(): Promise<void> {
    await this.table.send('inventory generation', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: { ...GENERATION_KEY },
          UpdateExpression: 'ADD #g :one',
          ExpressionAttributeNames: { '#g': 'generation' },
          ExpressionAttributeValues: { ':one': 1 },
        }),
      ),
    );
  }

  /**
   * Remember what a digest's manifest is (an image index and its platforms, or not) and a tag a
   * service named it by. The manifest part never changes (a digest is its content); tags are added.
   */
  async putManifest(
    repository: string,
    digest: string,
    index: ImageIndex | undefined,
    tags: readonly string[],
  ): Promise<void> {
    const names: Record<string, string> = { '#r': 'repository', '#d': 'digest', '#k': 'kind' };
    const values: Record<string, unknown> = {
      ':r': repository.trim().toLowerCase(),
      ':d': digest.toLowerCase(),
      ':k': 'inventory-manifest',
    };
    let update = 'SET #r = :r, #d = :d, #k = :k';
    if (index) {
      names['#i'] = 'index';
      values[':i'] = index;
      update += ', #i = if_not_exists(#i, :i)';
    }
    if (tags.length > 0) {
      names['#t'] = 'tags';
      values[':t'] = new Set(tags);
      update += ' ADD #t :t';
    }
    await this.table.send('inventory manifest', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: { pk: MANIFESTS_PK, sk: manifestSk(repository, digest) },
          UpdateExpression: update,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      ),
    );
  }

  /** The place's reconcile is complete: triage may answer from the index there. */
  async putWatermark(place: Place, services: number): Promise<void> {
    await this.table.send('inventory watermark', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            pk: placePk(place),
            sk: WATERMARK_SK,
            kind: 'inventory-watermark',
            account: place.account,
            region: place.region,
            reconciledAt: this.table.now().toISOString(),
            services,
            // Every service of the place went through writeService: its record is written too.
            records: RECORDS_LAYOUT,
          },
        }),
      ),
    );
  }

  /** Remember an account and Region events came from, so that the reconcile walks it too. */
  async notePlace(place: Place): Promise<void> {
    await this.table.conditional('inventory place', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            pk: PLACES_PK,
            sk: placeKey(place),
            kind: 'inventory-place',
            account: place.account,
            region: place.region,
            firstSeenAt: this.table.now().toISOString(),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      ),
    );
  }

  /** Every place the indexer has heard of, with the time of its last reconcile (if any). */
  async places(): Promise<Array<Place & { reconciledAt?: string }>> {
    const items = await this.table.query('inventory places', PLACES_PK);
    const places = items.flatMap((i) =>
      typeof i.account === 'string' && typeof i.region === 'string'
        ? [{ account: i.account, region: i.region }]
        : [],
    );
    return Promise.all(
      places.map(async (place) => {
        const mark = await this.table.get({ pk: placePk(place), sk: WATERMARK_SK }, 'inventory watermark');
        return typeof mark?.reconciledAt === 'string' ? { ...place, reconciledAt: mark.reconciledAt } : place;
      }),
    );
  }

  /** The watermark's time for one place, if any. */
  async reconciledAt(place: Place): Promise<string | undefined> {
    const mark = await this.table.get({ pk: placePk(place), sk: WATERMARK_SK }, 'inventory watermark');
    return typeof mark?.reconciledAt === 'string' ? mark.reconciledAt : undefined;
  }
}

const same = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && [...a].sort().every((x, i) => x === b[i]);
