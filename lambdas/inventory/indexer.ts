import { BatchGetImageCommand, type ECRClient } from '@aws-sdk/client-ecr';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type { Place } from '../shared/accounts';
import { Limiter, mapLimit } from '../shared/concurrency';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES } from '../shared/contracts';
import { isTransient, TransientError } from '../shared/errors';
import type { InventoryIndexWriter, ServiceEntry, WriteOutcome } from './index-writer';
import { DIGEST, parseIndexManifest } from './manifests';
import { EcsScanner, parseImageReference, type ServiceRecord } from './scan';

/**
 * Keeps the image inventory index current (item formats in ./index-store.ts):
 *
 * - an ECS event (the hub's own, or one a spoke forwarded to the hub's bus) names one service: it is
 *   described again (one DescribeServices, one DescribeTaskDefinition unless the revision is known,
 *   running tasks only for images named by tag) in the event's account and Region, and its entries
 *   rewritten. An event only says "look now": order, duplicates and losses do not matter;
 * - the reconcile walks one account and Region completely (the same listing code triage's scan
 *   uses), rewrites what changed, removes services that no longer exist, and sets the watermark
 *   that tells triage the index can be trusted there.
 */

/** Where the indexer reaches ECS: the hub's own client at home, the spoke role's elsewhere. */
export type EcsFor = (place: Place) => Pick<ECSClient, 'send'>;

/** One service an event named. */
export interface ServiceEvent {
  readonly place: Place;
  readonly clusterArn: string;
  readonly serviceName: string;
  /** detail-type (and eventName) of the event, for the log. */
  readonly trigger: string;
}

export type ParsedEvent =
  | { readonly ok: true; readonly event: ServiceEvent }
  | { readonly ok: false; readonly reason: string }
  /** A well-formed event that says nothing about what a service runs (a failed API call, a task set). */
  | { readonly ok: 'ignored'; readonly reason: string };

export const INDEXED_DETAIL_TYPES = ['ECS Service Action', 'ECS Deployment State Change'] as const;
export const CLOUDTRAIL_DETAIL_TYPE = 'AWS API Call via CloudTrail';
/** The ECS API calls that change what a service runs or how it is tagged (CloudTrail). */
export const INDEXED_API_CALLS = [
  'CreateService',
  'UpdateService',
  'DeleteService',
  'TagResource',
  'UntagResource',
] as const;

const ACCOUNT = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const NAME = /^[A-Za-z0-9_-]{1,255}$/;
const SERVICE_ARN =
  /^arn:(aws[a-z-]*):ecs:([a-z0-9-]+):(\d{12}):service\/(?:([A-Za-z0-9_-]{1,255})\/)?([A-Za-z0-9_-]{1,255})$/;
const CLUSTER_ARN = /^arn:(aws[a-z-]*):ecs:([a-z0-9-]+):(\d{12}):cluster\/([A-Za-z0-9_-]{1,255})$/;
const MAX_EVENT_BYTES = 256 * 1024;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The service an ECS event names, checked: the event's account and Region must be well formed and
 * be those of the service ARN (a forwarded event cannot make the indexer describe another
 * account's service), and cluster and service must be valid ECS names. A reason otherwise.
 */
export const parseServiceEvent = (raw: unknown): ParsedEvent => {
  let value = raw;
  if (typeof raw === 'string') {
    if (raw.length > MAX_EVENT_BYTES)
      return { ok: false, reason: `event larger than ${MAX_EVENT_BYTES} bytes` };
    try {
      value = JSON.parse(raw);
    } catch {
      return { ok: false, reason: 'event is not JSON' };
    }
  }
  if (!isObject(value)) return { ok: false, reason: 'event is not an object' };
  const detailType = value['detail-type'];
  const { source, account, region, resources, detail } = value;
  if (source !== 'aws.ecs')
    return { ok: false, reason: `source is ${JSON.stringify(source)}, not "aws.ecs"` };
  if (typeof account !== 'string' || !ACCOUNT.test(account))
    return { ok: false, reason: 'account is not a 12-digit account id' };
  if (typeof region !== 'string' || !REGION.test(region))
    return { ok: false, reason: 'region is not a Region name' };
  if (!isObject(detail)) return { ok: false, reason: 'detail is not an object' };
  const place = { account, region };

  let serviceArn: unknown;
  let clusterHint: unknown = detail.clusterArn;
  let trigger = String(detailType);
  if (detailType === CLOUDTRAIL_DETAIL_TYPE) {
    const { eventName, eventSource, errorCode, requestParameters, responseElements } = detail;
    if (eventSource !== 'ecs.amazonaws.com')
      return { ok: false, reason: 'CloudTrail event not from ecs.amazonaws.com' };
    if (typeof eventName !== 'string' || !(INDEXED_API_CALLS as readonly string[]).includes(eventName))
      return { ok: false, reason: `CloudTrail eventName ${JSON.stringify(eventName)} is not indexed` };
    trigger = `${CLOUDTRAIL_DETAIL_TYPE} ${eventName}`;
    if (errorCode !== undefined && errorCode !== null)
      return { ok: 'ignored', reason: `${eventName} failed (${String(errorCode)}): nothing changed` };
    const service =
      isObject(responseElements) && isObject(responseElements.service) ? responseElements.service : undefined;
    if (eventName === 'TagResource' || eventName === 'UntagResource') {
      serviceArn = isObject(requestParameters) ? requestParameters.resourceArn : undefined;
      if (typeof serviceArn === 'string' && !serviceArn.includes(':service/'))
        return { ok: 'ignored', reason: `${eventName} of a resource that is no service` };
    } else {
      serviceArn = service?.serviceArn;
      clusterHint = service?.clusterArn;
    }
  } else if ((INDEXED_DETAIL_TYPES as readonly unknown[]).includes(detailType)) {
    if (!Array.isArray(resources) || resources.length === 0 || resources.length > 5)
      return { ok: false, reason: 'resources must name the service (1 to 5 ARNs)' };
    serviceArn = resources.find((r) => typeof r === 'string' && r.includes(':service/'));
    if (typeof detail.eventName === 'string') trigger = `${trigger} ${detail.eventName.slice(0, 64)}`;
  } else {
    return { ok: false, reason: `detail-type ${JSON.stringify(detailType)} is not indexed` };
  }

  if (typeof serviceArn !== 'string') return { ok: false, reason: 'no service ARN in the event' };
  const match = SERVICE_ARN.exec(serviceArn);
  if (!match) return { ok: false, reason: 'service ARN is malformed' };
  const [, partition, arnRegion, arnAccount, clusterInArn, serviceName] = match as unknown as [
    string,
    string,
    string,
    string,
    string | undefined,
    string,
  ];
  if (arnAccount !== account || arnRegion !== region)
    return {
      ok: false,
      reason: `service ARN is in ${arnAccount}/${arnRegion}, the event in ${account}/${region}`,
    };
  let clusterArn: string;
  if (clusterInArn !== undefined) {
    clusterArn = `arn:${partition}:ecs:${region}:${account}:cluster/${clusterInArn}`;
  } else {
    // The old ARN format leaves the cluster out: the event has to name it.
    const cluster = typeof clusterHint === 'string' ? CLUSTER_ARN.exec(clusterHint) : null;
    if (!cluster || cluster[2] !== region || cluster[3] !== account)
      return { ok: false, reason: 'service ARN without cluster, and no valid clusterArn in the event' };
    clusterArn = clusterHint as string;
  }
  if (!NAME.test(serviceName)) return { ok: false, reason: 'service name is malformed' };
  return { ok: true, event: { place, clusterArn, serviceName, trigger } };
};

export interface IndexerOptions {
  readonly writer: InventoryIndexWriter;
  readonly ecsFor: EcsFor;
  /** ECS calls in flight at once per place. @default 5 */
  readonly concurrency?: number;
  /**
   * ECR where a place's services pull from: the indexer then records what each digest they run is
   * (an image index or not) in the index, so that triage needs no ECR read for it. Without it, or
   * when ECR refuses, triage reads ECR itself as before.
   */
  readonly ecrFor?: (place: Place) => Pick<ECRClient, 'send'>;
}

/** `<registry>.dkr.ecr.<region>.amazonaws.com/<name>`: the registry id and repository name. */
const ECR_REPOSITORY = /^(\d{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?\/(.+)$/;

export interface ReconcileResult {
  readonly place: Place;
  readonly services: number;
  readonly written: number;
  readonly unchanged: number;
  readonly removed: number;
  readonly ecsCalls: number;
}

export class Indexer {
  private readonly writer: InventoryIndexWriter;
  private readonly ecsFor: EcsFor;
  private readonly concurrency: number;
  private readonly scanners = new Map<string, { scanner: EcsScanner; calls: { n: number } }>();
  private readonly noted = new Set<string>();
  private readonly ecrFor: IndexerOptions['ecrFor'];
  /** Manifests recorded by this indexer (`<repository>@<digest>` → tags recorded with it). */
  private readonly manifests = new Map<string, Set<string>>();
  private ecrRefused = new Set<string>();
  private ecrCallCount = 0;

  constructor(options: IndexerOptions) {
    this.writer = options.writer;
    this.ecsFor = options.ecsFor;
    this.concurrency = Math.max(1, options.concurrency ?? 5);
    this.ecrFor = options.ecrFor;
  }

  /** ECR calls made so far (manifests). */
  get ecrCalls(): number {
    return this.ecrCallCount;
  }

  /**
   * Record what the digests a service runs are (pinned or reported by its tasks), with the tags it
   * names them by: one BatchGetImage per repository for the digests this indexer has not recorded.
   * Best effort: a refusal (no permission in that account) leaves triage to read ECR itself.
   */
  private async noteManifests(place: Place, record: ServiceRecord): Promise<void> {
    const ecrFor = this.ecrFor;
    const placeKey = `${place.account}#${place.region}`;
    if (!ecrFor || this.ecrRefused.has(placeKey)) return;
    const wanted = new Map<string, Map<string, Set<string>>>(); // repository → digest → tags
    const want = (image: string, digest: string, tag?: string) => {
      const ref = parseImageReference(image);
      const d = digest.toLowerCase();
      if (!DIGEST.test(d)) return;
      const known = this.manifests.get(`${ref.repository}@${d}`);
      if (known && (tag === undefined || known.has(tag))) return;
      const digests = wanted.get(ref.repository) ?? new Map<string, Set<string>>();
      wanted.set(ref.repository, digests);
      const tags = digests.get(d) ?? new Set<string>();
      digests.set(d, tags);
      if (tag) tags.add(tag);
    };
    for (const c of record.containers) {
      const ref = parseImageReference(c.image);
      if (ref.digest) want(c.image, ref.digest);
    }
    for (const c of record.running) want(c.image, c.imageDigest, parseImageReference(c.image).tag);
    for (const [repository, digests] of wanted) {
      const m = ECR_REPOSITORY.exec(repository);
      if (!m) continue;
      const unread = [...digests.keys()].filter((d) => !this.manifests.has(`${repository}@${d}`));
      let read = new Map<string, ReturnType<typeof parseIndexManifest> | null>();
      if (unread.length > 0) {
        try {
          this.ecrCallCount++;
          const out = await ecrFor(place).send(
            new BatchGetImageCommand({
              registryId: m[1],
              repositoryName: m[2],
              imageIds: unread.slice(0, 100).map((imageDigest) => ({ imageDigest })),
              acceptedMediaTypes: [...INDEX_MEDIA_TYPES, ...MANIFEST_MEDIA_TYPES],
            }),
          );
          read = new Map(
            (out.images ?? []).flatMap((i) =>
              i.imageId?.imageDigest && i.imageManifest
                ? [
                    [
                      i.imageId.imageDigest.toLowerCase(),
                      parseIndexManifest(i.imageManifest, i.imageManifestMediaType) ?? null,
                    ],
                  ]
                : [],
            ),
          );
        } catch {
          this.ecrRefused.add(placeKey);
          return;
        }
      }
      for (const [digest, tags] of digests) {
        const known = this.manifests.has(`${repository}@${digest}`);
        // A digest ECR did not return (deleted, or beyond this call's 100) is left to triage.
        if (!known && !read.has(digest)) continue;
        const index = known ? undefined : (read.get(digest) ?? undefined);
        await this.writer.putManifest(repository, digest, index, [...tags]);
        const recorded = this.manifests.get(`${repository}@${digest}`) ?? new Set<string>();
        for (const t of tags) recorded.add(t);
        this.manifests.set(`${repository}@${digest}`, recorded);
      }
    }
  }

  /** ECS calls made so far in a place. */
  ecsCalls(place: Place): number {
    return this.scanners.get(`${place.account}#${place.region}`)?.calls.n ?? 0;
  }

  /** Describe the one service again and rewrite its entries. */
  async refresh(event: ServiceEvent): Promise<WriteOutcome> {
    const key = `${event.place.account}#${event.place.region}`;
    if (!this.noted.has(key)) {
      await this.writer.notePlace(event.place);
      this.noted.add(key);
    }
    const record = await this.scanner(event.place).describeService(event.clusterArn, event.serviceName);
    // Manifests first: the service's write bumps the generation, and triage then finds them.
    if (record) await this.noteManifests(event.place, record);
    return this.writer.writeService(
      event.place,
      record?.service.clusterArn ?? event.clusterArn,
      event.serviceName,
      record,
    );
  }

  /** Walk the place once: rewrite every service, remove the ones that are gone, set the watermark. */
  async reconcile(place: Place): Promise<ReconcileResult> {
    const scanner = this.scanner(place);
    const before = this.ecsCalls(place);
    const [records, entries] = await Promise.all([
      scanner.scan({ everything: true }),
      this.writer.services(place),
    ]);
    const keyOf = (clusterArn: string, serviceName: string) => `${clusterArn}#${serviceName}`;
    const byKey = new Map<string, ServiceEntry>(entries.map((e) => [keyOf(e.clusterArn, e.serviceName), e]));
    const live = new Set<string>();
    const outcomes: WriteOutcome[] = [];
    const write = async (record: ServiceRecord): Promise<void> => {
      const k = keyOf(record.service.clusterArn, record.service.serviceName);
      live.add(k);
      await this.noteManifests(place, record);
      outcomes.push(
        await this.writer.writeService(
          place,
          record.service.clusterArn,
          record.service.serviceName,
          record,
          byKey.get(k) ?? null,
        ),
      );
    };
    await mapLimit(records, 4, write);
    const gone = entries.filter((e) => !live.has(keyOf(e.clusterArn, e.serviceName)));
    await mapLimit(gone, 4, async (e) => {
      outcomes.push(await this.writer.writeService(place, e.clusterArn, e.serviceName, undefined, e));
    });
    await this.writer.putWatermark(place, records.length);
    const count = (o: WriteOutcome) => outcomes.filter((x) => x === o).length;
    return {
      place,
      services: records.length,
      written: count('written'),
      unchanged: count('unchanged'),
      removed: count('removed'),
      ecsCalls: this.ecsCalls(place) - before,
    };
  }

  /**
   * Reconcile every known place (the hub's, the configured ones, those events came from) whose last
   * reconcile is older than `intervalMs`, oldest first, while `timeLeftMs()` allows one more. A place
   * that fails is reported and the others still run.
   */
  async reconcileDue(options: {
    readonly places: readonly Place[];
    readonly intervalMs: number;
    readonly now: () => Date;
    readonly timeLeftMs: () => number;
    /** Stop starting new places below this much time left. @default 120_000 */
    readonly reserveMs?: number;
  }): Promise<{
    reconciled: ReconcileResult[];
    failed: Array<{ place: Place; error: string }>;
    skipped: number;
  }> {
    const known = await this.writer.places();
    const all = new Map<string, Place & { reconciledAt?: string }>();
    for (const p of [...options.places, ...known]) {
      const key = `${p.account}#${p.region}`;
      const seen = all.get(key);
      all.set(key, { ...(seen ?? {}), ...p });
    }
    const withMarks = await Promise.all(
      [...all.values()].map(async (p) => {
        const reconciledAt = p.reconciledAt ?? (await this.writer.reconciledAt(p));
        return { place: { account: p.account, region: p.region }, reconciledAt };
      }),
    );
    const now = options.now().getTime();
    const due = withMarks
      .filter((p) => p.reconciledAt === undefined || now - Date.parse(p.reconciledAt) >= options.intervalMs)
      .sort((a, b) => (a.reconciledAt ?? '').localeCompare(b.reconciledAt ?? ''));
    const reconciled: ReconcileResult[] = [];
    const failed: Array<{ place: Place; error: string }> = [];
    let skipped = withMarks.length - due.length;
    for (const { place } of due) {
      if (options.timeLeftMs() < (options.reserveMs ?? 120_000)) {
        skipped++;
        continue;
      }
      try {
        reconciled.push(await this.reconcile(place));
      } catch (error) {
        failed.push({
          place,
          error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        });
      }
    }
    return { reconciled, failed, skipped };
  }

  private scanner(place: Place): EcsScanner {
    const key = `${place.account}#${place.region}`;
    let entry = this.scanners.get(key);
    if (!entry) {
      const calls = { n: 0 };
      entry = {
        calls,
        scanner: new EcsScanner({
          ecs: this.ecsFor(place),
          limiter: new Limiter(this.concurrency),
          count: () => {
            calls.n++;
          },
        }),
      };
      this.scanners.set(key, entry);
    }
    return entry.scanner;
  }
}

/** Whether a failure is worth retrying the event for (throttling, 5xx, a lost race). */
export const retryable = (error: unknown): boolean => error instanceof TransientError || isTransient(error);
