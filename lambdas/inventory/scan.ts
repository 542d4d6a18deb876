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
import { HOME_ACCOUNT_ENV } from '../shared/accounts';
import type { Limiter } from '../shared/concurrency';
import { type ServiceRef, serviceRefOf } from '../shared/contracts';
import { AutopatchError, isTransient, TransientError } from '../shared/errors';

/**
 * Reading what ECS services run, with the ECS List/Describe APIs: the one copy of that code. Triage's
 * scanning resolver uses it for its eligible services (lambdas/triage/inventory.ts), the indexer for
 * one service an event names and for a whole account and Region at reconcile (./indexer.ts).
 *
 * Calls are counted, capped by a shared limiter (the Describe* rate limits), and their errors
 * classified (throttling and 5xx become TransientError).
 */

/** One ECS service and what it runs, whichever the source (ECS APIs, a snapshot or the index). */
export interface ServiceRecord {
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

/** Which services a scan reads. */
export interface ScanSelection {
  /** Services carrying this tag are read, in every cluster. */
  readonly discoverByTag?: { readonly key: string; readonly value: string } | undefined;
  /** Services named explicitly (cluster name or ARN + service name), with tags merged on top. */
  readonly targets?: ReadonlyArray<{
    readonly cluster: string;
    readonly service: string;
    readonly tags?: Readonly<Record<string, string>> | undefined;
  }>;
  /** Every ACTIVE service of every cluster, with its own tags (the indexer's reconcile). */
  readonly everything?: boolean;
}

export const DESCRIBE_SERVICES_MAX = 10;
const DESCRIBE_TASKS_MAX = 100;
const PAGE_SIZE = 100;

export const clusterNameOf = (clusterArnOrName: string): string =>
  clusterArnOrName.slice(clusterArnOrName.lastIndexOf('/') + 1);

export const sameCluster = (a: string, b: string): boolean =>
  a === b || clusterNameOf(a) === clusterNameOf(b);

/**
 * A service as the ledger keys it: `<cluster>/<service>` in the hub's account and Region (as
 * always), `<account>/<region>/<cluster>/<service>` anywhere else (see contracts.ts serviceKeyOf).
 */
export const serviceRef = (clusterArn: string, serviceName: string): ServiceRef =>
  serviceRefOf(clusterArn, serviceName, {
    account: process.env[HOME_ACCOUNT_ENV],
    region: process.env.AWS_REGION,
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

export const chunk = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

const unique = <T>(items: Iterable<T>): T[] => [...new Set(items)];

export interface EcsScannerOptions {
  readonly ecs: Pick<ECSClient, 'send'>;
  /** Shared with the caller's other calls (ECR), so one cap holds for all of them. */
  readonly limiter: Limiter;
  /** Counts every call (each page and batch counts one; SDK-internal retries do not). */
  readonly count?: () => void;
}

export class EcsScanner {
  private readonly ecs: Pick<ECSClient, 'send'>;
  private readonly limiter: Limiter;
  private readonly count: () => void;
  /** Task definition revisions are immutable: described once for the scanner's life. */
  private readonly taskDefinitions = new Map<string, Promise<Array<{ name: string; image: string }>>>();

  constructor(options: EcsScannerOptions) {
    this.ecs = options.ecs;
    this.limiter = options.limiter;
    this.count = options.count ?? (() => {});
  }

  /** The selected services of the account and Region the client is for. */
  async scan(selection: ScanSelection): Promise<ServiceRecord[]> {
    const clusters = await this.clusters(selection);
    const records = await Promise.all(
      clusters.map((cluster) => this.clusterServices(cluster, selection, undefined)),
    );
    return records.flat();
  }

  /**
   * One service, as it is now (the indexer's answer to an event): one DescribeServices, one
   * DescribeTaskDefinition (none when the revision was described before), and the running tasks only
   * when a container names its image by tag or another revision is still deploying. Undefined when
   * the service is gone or not ACTIVE.
   */
  async describeService(cluster: string, serviceName: string): Promise<ServiceRecord | undefined> {
    const [record] = await this.clusterServices(cluster, { everything: true }, [serviceName]);
    return record;
  }

  private async clusters(selection: ScanSelection): Promise<string[]> {
    // Targets may name one cluster both by name and by ARN: read each cluster once.
    const targeted: string[] = [];
    for (const { cluster } of selection.targets ?? []) {
      const i = targeted.findIndex((c) => sameCluster(c, cluster));
      if (i < 0) targeted.push(cluster);
      else if (cluster.startsWith('arn:')) targeted[i] = cluster;
    }
    if (!selection.discoverByTag && !selection.everything) return targeted;
    const arns = await this.paginate(
      'ListClusters',
      (nextToken) => this.ecs.send(new ListClustersCommand({ maxResults: PAGE_SIZE, nextToken })),
      (out) => out.clusterArns,
    );
    // A target may name a cluster the listing does not show (a typo): DescribeServices says so.
    return [...arns, ...targeted.filter((c) => !arns.some((arn) => sameCluster(arn, c)))];
  }

  /**
   * The selected services of one cluster: those `only` names (an event), or the targets, or every
   * service of the cluster (tag discovery, reconcile).
   */
  private async clusterServices(
    cluster: string,
    selection: ScanSelection,
    only: readonly string[] | undefined,
  ): Promise<ServiceRecord[]> {
    const targets = (selection.targets ?? []).filter((t) => sameCluster(t.cluster, cluster));
    const listAll = only === undefined && (selection.discoverByTag !== undefined || selection.everything);
    // Without tag discovery the targets name every service that matters: no need to list the cluster.
    const names =
      only !== undefined
        ? unique(only)
        : listAll
          ? await this.paginate(
              'ListServices',
              (nextToken) =>
                this.ecs.send(new ListServicesCommand({ cluster, maxResults: PAGE_SIZE, nextToken })),
              (out) => out.serviceArns,
            )
          : unique(targets.map((t) => t.service));
    const described = (
      await Promise.all(
        chunk(names, DESCRIBE_SERVICES_MAX).map((services) =>
          this.call('DescribeServices', () =>
            this.ecs.send(new DescribeServicesCommand({ cluster, services, include: ['TAGS'] })),
          ),
        ),
      )
    ).flatMap((out) => out.services ?? []);
    const active = described.filter(
      (s) => s.status === 'ACTIVE' && s.serviceName && s.clusterArn && s.taskDefinition,
    );
    const discover = selection.discoverByTag;
    const eligible = active.flatMap((service) => {
      const tags = Object.fromEntries((service.tags ?? []).map((t) => [t.key ?? '', t.value ?? '']));
      if (selection.everything) return [{ service, tags }];
      const target = targets.find((t) => t.service === service.serviceName);
      const tagged = discover !== undefined && tags[discover.key] === discover.value;
      return target || tagged ? [{ service, tags: { ...tags, ...(target?.tags ?? {}) } }] : [];
    });
    if (eligible.length === 0) return [];

    const withContainers = await Promise.all(
      eligible.map(async (e) => ({
        ...e,
        containers: await this.taskDefinition(e.service.taskDefinition as string),
      })),
    );
    const running = await this.runningContainers(cluster, withContainers, listAll ? active : undefined);
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
        this.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn })),
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
   * that takes fewer calls (estimated from the running counts DescribeServices returned; only known
   * when every service of the cluster was described: `allActive`).
   */
  private async runningContainers(
    cluster: string,
    services: ReadonlyArray<{ service: Service; containers: ReadonlyArray<{ image: string }> }>,
    allActive: readonly Service[] | undefined,
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
    const perCluster = allActive
      ? 2 * pages(allActive.reduce((n, s) => n + tasksOf(s), 0))
      : Number.POSITIVE_INFINITY;

    const list = (serviceName?: string) =>
      this.paginate(
        'ListTasks',
        (nextToken) =>
          this.ecs.send(
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
        this.call('DescribeTasks', () => this.ecs.send(new DescribeTasksCommand({ cluster, tasks }))),
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

  /** Every ECS call goes through here: counted, rate-capped, and its error classified. */
  call<T>(what: string, send: () => Promise<T>, service = 'ECS'): Promise<T> {
    return limitedCall(this.limiter, this.count, what, send, service);
  }
}

/** One AWS call of the inventory: counted, run under the limiter, its error classified. */
export const limitedCall = async <T>(
  limiter: Limiter,
  count: () => void,
  what: string,
  send: () => Promise<T>,
  service: string,
): Promise<T> => {
  count();
  try {
    return await limiter.run(send);
  } catch (error) {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const message = `inventory: ${service} ${what} failed: ${detail}`;
    throw isTransient(error)
      ? new TransientError(message, { cause: error })
      : new AutopatchError(message, { cause: error });
  }
};
