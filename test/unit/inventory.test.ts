import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  type DescribeTaskDefinitionCommandInput,
  DescribeTasksCommand,
  ECSClient,
  ListClustersCommand,
  ListServicesCommand,
  ListTasksCommand,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { targetSchema } from '../../lambdas/shared/config';
import { ConfigurationError, TransientError } from '../../lambdas/shared/errors';
import { type ImageRef, InventoryResolver, parseImageReference } from '../../lambdas/triage/inventory';
import {
  ACCOUNT,
  clusterArn,
  type FakeAccount,
  type FakeTask,
  installFakeEcs,
  REGION,
  taskDefArn,
} from '../support/fake-ecs';

const REGISTRY = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;
const API = `${REGISTRY}/payments/api`;
const SIDECAR = `${REGISTRY}/sidecars/envoy`;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const OLD = digest('a');
const NEW = digest('b');
const OTHER = digest('c');

const imageRef = (repositoryUri: string, imageDigest: string, imageTags: string[] = []): ImageRef => ({
  registry: ACCOUNT,
  repository: repositoryUri.slice(REGISTRY.length + 1),
  repositoryUri,
  imageDigest,
  imageTags,
});

const ecs = mockClient(ECSClient);
const fakeAccount = (account: FakeAccount): void => installFakeEcs(ecs, account);

afterEach(() => {
  ecs.reset();
});

const client = () => new ECSClient({ region: REGION });
const DISCOVER = { key: 'autopatch', value: 'enabled' } as const;
const ENABLED = { autopatch: 'enabled' };
const calls = (command: Parameters<typeof ecs.commandCalls>[0]) => ecs.commandCalls(command).length;

// ------------------------------------------------------------------ tests

describe('image references', () => {
  it.each([
    ['a digest reference', `${API}@${OLD}`, { repository: API, digest: OLD }],
    ['a tag reference', `${API}:v1`, { repository: API, tag: 'v1' }],
    ['a tag pinned by digest', `${API}:v1@${OLD}`, { repository: API, tag: 'v1', digest: OLD }],
    ['no tag (latest)', API, { repository: API, tag: 'latest' }],
    [
      'a registry port without tag',
      'registry.local:5000/team/app',
      { repository: 'registry.local:5000/team/app', tag: 'latest' },
    ],
    [
      'a registry port with a tag',
      'registry.local:5000/team/app:2.0',
      { repository: 'registry.local:5000/team/app', tag: '2.0' },
    ],
  ])('parses %s', (_name, reference, expected) => {
    // Act / Assess
    expect(parseImageReference(reference)).toEqual(expected);
  });
});

describe('matching', () => {
  const account = (
    containers: Array<{ name: string; image: string }>,
    tasks: FakeTask[] = [],
  ): FakeAccount => ({
    clusters: ['prod'],
    services: [
      {
        cluster: 'prod',
        name: 'checkout',
        taskDefinition: taskDefArn('checkout', 1),
        tags: ENABLED,
        runningCount: 2,
      },
    ],
    taskDefinitions: { [taskDefArn('checkout', 1)]: containers },
    tasks,
  });
  const resolver = () => new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

  it('matches a container pinned by digest, and not another digest or repository', async () => {
    // Prepare
    fakeAccount(account([{ name: 'app', image: `${API}@${OLD}` }]));
    const r = resolver();

    // Act
    const hit = await r.servicesForImage(imageRef(API, OLD));
    const otherDigest = await r.servicesForImage(imageRef(API, NEW));
    const otherRepository = await r.servicesForImage(imageRef(SIDECAR, OLD));

    // Assess
    expect(hit).toEqual([
      {
        service: { clusterArn: clusterArn('prod'), serviceName: 'checkout', key: 'prod/checkout' },
        containers: ['app'],
        deploymentController: 'ECS',
        taskDefinitionArn: taskDefArn('checkout', 1),
        tags: ENABLED,
      },
    ]);
    expect(otherDigest).toEqual([]);
    expect(otherRepository).toEqual([]);
  });

  it('matches a container referenced by tag only when the finding lists that tag; no tag means latest', async () => {
    // Prepare
    fakeAccount(
      account([
        { name: 'app', image: `${API}:v1` },
        { name: 'sidecar', image: SIDECAR },
      ]),
    );
    const r = resolver();

    // Act
    const tagged = await r.servicesForImage(imageRef(API, OLD, ['v1', 'stable']));
    const otherTag = await r.servicesForImage(imageRef(API, OLD, ['v2']));
    const latest = await r.servicesForImage(imageRef(SIDECAR, OTHER, ['latest']));

    // Assess
    expect(tagged.map((u) => u.containers)).toEqual([['app']]);
    expect(otherTag).toEqual([]);
    expect(latest.map((u) => u.containers)).toEqual([['sidecar']]);
  });

  it('matches the digest a running task reports when the tag has moved on', async () => {
    // Prepare: the task definition says ":v1", v1 now names NEW, but the tasks still run OLD.
    fakeAccount(
      account(
        [{ name: 'app', image: `${API}:v1` }],
        [
          {
            cluster: 'prod',
            service: 'checkout',
            containers: [{ name: 'app', image: `${API}:v1`, imageDigest: OLD }],
          },
          {
            cluster: 'prod',
            service: 'checkout',
            containers: [{ name: 'app', image: `${API}:v1`, imageDigest: OLD }],
          },
        ],
      ),
    );
    const r = resolver();

    // Act
    const untagged = await r.servicesForImage(imageRef(API, OLD, []));
    const sameDigestOtherRepo = await r.servicesForImage(imageRef(SIDECAR, OLD, []));

    // Assess
    expect(untagged.map((u) => [u.service.key, u.containers])).toEqual([['prod/checkout', ['app']]]);
    expect(sameDigestOtherRepo).toEqual([]);
  });

  it('reports every container of a service that runs the image, in one entry per service', async () => {
    // Prepare
    fakeAccount(
      account([
        { name: 'worker', image: `${API}@${OLD}` },
        { name: 'app', image: `${API}:v1` },
        { name: 'envoy', image: `${SIDECAR}@${OTHER}` },
      ]),
    );

    // Act
    const uses = await resolver().servicesForImage(imageRef(API, OLD, ['v1']));

    // Assess
    expect(uses).toHaveLength(1);
    expect(uses[0]?.containers).toEqual(['app', 'worker']);
  });

  it('returns copies: changing a result does not change the inventory', async () => {
    // Prepare
    fakeAccount(account([{ name: 'app', image: `${API}@${OLD}` }]));
    const r = resolver();
    const first = await r.servicesForImage(imageRef(API, OLD));

    // Act
    first[0]?.containers.push('tampered');
    if (first[0]) first[0].tags.autopatch = 'tampered';
    const second = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(second[0]?.containers).toEqual(['app']);
    expect(second[0]?.tags).toEqual(ENABLED);
  });
});

describe('which services are eligible', () => {
  const shared = { [taskDefArn('app', 1)]: [{ name: 'app', image: `${API}@${OLD}` }] };

  it('with tag discovery: tagged services in every cluster (all pages), plus explicit targets', async () => {
    // Prepare: 3 clusters and 5 services per cluster, 2 per page, so every listing has several pages.
    const services = ['blue', 'green', 'red'].flatMap((cluster) =>
      ['a', 'b', 'c', 'd', 'e'].map((name) => ({
        cluster,
        name,
        taskDefinition: taskDefArn('app', 1),
        ...(name === 'e' ? { tags: ENABLED } : name === 'a' ? { tags: { autopatch: 'disabled' } } : {}),
      })),
    );
    fakeAccount({ clusters: ['blue', 'green', 'red'], services, taskDefinitions: shared, pageSize: 2 });
    const r = new InventoryResolver({
      ecs: client(),
      discoverByTag: DISCOVER,
      targets: [targetSchema.parse({ cluster: 'green', service: 'b', tags: { owner: 'team-green' } })],
    });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses.map((u) => [u.service.key, u.tags])).toEqual([
      ['blue/e', ENABLED],
      ['green/b', { owner: 'team-green' }],
      ['green/e', ENABLED],
      ['red/e', ENABLED],
    ]);
    expect(calls(ListClustersCommand)).toBe(2);
    expect(calls(ListServicesCommand)).toBe(9);
  });

  it('with explicit targets only: no listing, services described by name in batches of 10', async () => {
    // Prepare: 12 targets in one cluster (one missing, one draining), by cluster name and by ARN.
    const names = Array.from({ length: 12 }, (_, i) => `svc-${i}`);
    fakeAccount({
      clusters: ['prod', 'staging'],
      services: [
        ...names
          .slice(0, 10)
          .map((name) => ({ cluster: 'prod', name, taskDefinition: taskDefArn('app', 1) })),
        { cluster: 'prod', name: 'svc-10', taskDefinition: taskDefArn('app', 1), status: 'DRAINING' },
        { cluster: 'staging', name: 'untargeted', taskDefinition: taskDefArn('app', 1), tags: ENABLED },
      ],
      taskDefinitions: shared,
    });
    const r = new InventoryResolver({
      ecs: client(),
      targets: names.map((service, i) =>
        targetSchema.parse({ cluster: i % 2 ? 'prod' : clusterArn('prod'), service }),
      ),
    });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses.map((u) => u.service.key)).toEqual(
      names
        .slice(0, 10)
        .map((n) => `prod/${n}`)
        .sort(),
    );
    expect(calls(ListClustersCommand)).toBe(0);
    expect(calls(ListServicesCommand)).toBe(0);
    expect(ecs.commandCalls(DescribeServicesCommand).map((c) => c.args[0].input.services?.length)).toEqual([
      10, 2,
    ]);
    expect(ecs.commandCalls(DescribeServicesCommand)[0]?.args[0].input.include).toEqual(['TAGS']);
  });

  it('with neither tag discovery nor targets: nothing is eligible and nothing is called', async () => {
    // Prepare
    fakeAccount({ clusters: ['prod'], services: [], taskDefinitions: {} });
    const r = new InventoryResolver({ ecs: client(), targets: [] });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses).toEqual([]);
    expect(r.apiCalls).toBe(0);
  });
});

describe('ECS calls', () => {
  /** 25 tagged services sharing 2 task definitions that reference the image by tag, 8 tasks each. */
  const busyCluster = (): FakeAccount => {
    const services = Array.from({ length: 25 }, (_, i) => ({
      cluster: 'prod',
      name: `svc-${i}`,
      taskDefinition: taskDefArn('app', 1 + (i % 2)),
      tags: ENABLED,
      runningCount: 8,
    }));
    return {
      clusters: ['prod'],
      services,
      taskDefinitions: {
        [taskDefArn('app', 1)]: [{ name: 'app', image: `${API}:v1` }],
        [taskDefArn('app', 2)]: [{ name: 'app', image: `${API}:v1` }],
      },
      tasks: services.flatMap((s) =>
        Array.from({ length: 8 }, () => ({
          cluster: 'prod',
          service: s.name,
          containers: [{ name: 'app', image: `${API}:v1`, imageDigest: OLD }],
        })),
      ),
    };
  };

  it('batches DescribeServices by 10 and DescribeTasks by 100, describes each task definition once', async () => {
    // Prepare
    fakeAccount(busyCluster());
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses).toHaveLength(25);
    expect(calls(DescribeServicesCommand)).toBe(3);
    expect(calls(DescribeTaskDefinitionCommand)).toBe(2);
    expect(ecs.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input.tasks?.length)).toEqual([
      100, 100,
    ]);
    // 200 tasks: listing the cluster (2 pages) beats listing 25 services one by one.
    expect(ecs.commandCalls(ListTasksCommand).map((c) => c.args[0].input)).toEqual([
      expect.objectContaining({
        cluster: clusterArn('prod'),
        desiredStatus: 'RUNNING',
        serviceName: undefined,
      }),
      expect.objectContaining({ nextToken: '100' }),
    ]);
    expect(r.apiCalls).toBe(1 + 1 + 3 + 2 + 2 + 2);
  });

  it('lists the tasks of each explicit target by service, every page', async () => {
    // Prepare: one service with 150 tasks (2 pages of ListTasks).
    const account = busyCluster();
    fakeAccount({
      ...account,
      services: [{ cluster: 'prod', name: 'svc-0', taskDefinition: taskDefArn('app', 1), runningCount: 150 }],
      tasks: Array.from({ length: 150 }, () => ({
        cluster: 'prod',
        service: 'svc-0',
        containers: [{ name: 'app', image: `${API}:v1`, imageDigest: OLD }],
      })),
    });
    const r = new InventoryResolver({
      ecs: client(),
      targets: [targetSchema.parse({ cluster: 'prod', service: 'svc-0' })],
    });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses.map((u) => u.service.key)).toEqual(['prod/svc-0']);
    expect(
      ecs.commandCalls(ListTasksCommand).map((c) => [c.args[0].input.serviceName, c.args[0].input.nextToken]),
    ).toEqual([
      ['svc-0', undefined],
      ['svc-0', '100'],
    ]);
    expect(calls(DescribeTasksCommand)).toBe(2);
  });

  it('does not read tasks of services pinned by digest, unless a deployment runs another revision', async () => {
    // Prepare
    fakeAccount({
      clusters: ['prod'],
      services: [
        {
          cluster: 'prod',
          name: 'pinned',
          taskDefinition: taskDefArn('app', 2),
          tags: ENABLED,
          runningCount: 3,
        },
        {
          cluster: 'prod',
          name: 'rolling',
          taskDefinition: taskDefArn('app', 2),
          tags: ENABLED,
          runningCount: 3,
          otherDeployments: [taskDefArn('app', 1)],
        },
      ],
      taskDefinitions: { [taskDefArn('app', 2)]: [{ name: 'app', image: `${API}@${NEW}` }] },
      tasks: [
        {
          cluster: 'prod',
          service: 'rolling',
          containers: [{ name: 'app', image: `${API}@${OLD}`, imageDigest: OLD }],
        },
      ],
    });
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

    // Act
    const old = await r.servicesForImage(imageRef(API, OLD));

    // Assess: the old revision still running in "rolling" is found; "pinned" cost no task calls.
    expect(old.map((u) => u.service.key)).toEqual(['prod/rolling']);
    expect(ecs.commandCalls(ListTasksCommand).map((c) => c.args[0].input.serviceName)).toEqual(['rolling']);
  });
  it('keeps at most `concurrency` ECS calls in flight while building', async () => {
    // Prepare: 12 services with distinct task definitions, each DescribeTaskDefinition slow.
    const services = Array.from({ length: 12 }, (_, i) => ({
      cluster: 'prod',
      name: `svc-${i}`,
      taskDefinition: taskDefArn(`app${i}`, 1),
      tags: ENABLED,
    }));
    fakeAccount({
      clusters: ['prod'],
      services,
      taskDefinitions: Object.fromEntries(
        services.map((s) => [s.taskDefinition, [{ name: 'app', image: `${API}@${OLD}` }]]),
      ),
    });
    let inFlight = 0;
    let peak = 0;
    ecs.on(DescribeTaskDefinitionCommand).callsFake(async (input: DescribeTaskDefinitionCommandInput) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      return {
        taskDefinition: {
          containerDefinitions: [{ name: 'app', image: `${API}@${OLD}` }],
          taskDefinitionArn: input.taskDefinition,
        },
      };
    });
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER, concurrency: 3 });

    // Act
    const uses = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(uses).toHaveLength(12);
    expect(peak).toBe(3);
  });
});

describe('caching', () => {
  const account = (): FakeAccount => ({
    clusters: ['prod'],
    services: [
      {
        cluster: 'prod',
        name: 'checkout',
        taskDefinition: taskDefArn('checkout', 1),
        tags: ENABLED,
        runningCount: 1,
      },
    ],
    taskDefinitions: { [taskDefArn('checkout', 1)]: [{ name: 'app', image: `${API}:v1` }] },
    tasks: [
      {
        cluster: 'prod',
        service: 'checkout',
        containers: [{ name: 'app', image: `${API}:v1`, imageDigest: OLD }],
      },
    ],
  });

  it('resolves 1,000 images with the ECS calls of one', async () => {
    // Prepare
    fakeAccount(account());
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });
    await r.servicesForImage(imageRef(API, OLD));
    const afterOne = r.apiCalls;

    // Act
    for (let i = 0; i < 1_000; i++) {
      await r.servicesForImage(imageRef(API, `sha256:${i.toString(16).padStart(64, '0')}`, [`t${i}`]));
    }

    // Assess
    expect(afterOne).toBeGreaterThan(0);
    expect(r.apiCalls).toBe(afterOne);
    expect(ecs.calls()).toHaveLength(afterOne);
  });

  it('shares one build between concurrent first callers', async () => {
    // Prepare
    fakeAccount(account());
    const single = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });
    await single.servicesForImage(imageRef(API, OLD));
    ecs.resetHistory();
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

    // Act
    const results = await Promise.all(
      Array.from({ length: 50 }, () => r.servicesForImage(imageRef(API, OLD))),
    );

    // Assess
    expect(results.every((uses) => uses.length === 1)).toBe(true);
    expect(calls(ListClustersCommand)).toBe(1);
    expect(r.apiCalls).toBe(single.apiCalls);
  });

  it('rebuilds after the TTL, without describing the same task definition again', async () => {
    // Prepare
    fakeAccount(account());
    let now = new Date('2024-09-04T16:55:38Z');
    const r = new InventoryResolver({
      ecs: client(),
      discoverByTag: DISCOVER,
      now: () => now,
      cacheTtlMs: 300_000,
    });
    await r.servicesForImage(imageRef(API, OLD));
    const built = r.apiCalls;

    // Act
    now = new Date(now.getTime() + 299_000);
    await r.servicesForImage(imageRef(API, OLD));
    const withinTtl = r.apiCalls;
    now = new Date(now.getTime() + 2_000);
    await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(withinTtl).toBe(built);
    expect(calls(ListClustersCommand)).toBe(2);
    expect(calls(DescribeTaskDefinitionCommand)).toBe(1);
  });

  it('does not cache a failed build: throttling is a TransientError and the next lookup retries', async () => {
    // Prepare
    fakeAccount(account());
    const throttled = Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    ecs
      .on(ListClustersCommand)
      .rejectsOnce(throttled)
      .resolves({ clusterArns: [clusterArn('prod')] });
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

    // Act
    const error = await r.servicesForImage(imageRef(API, OLD)).catch((e: unknown) => e);
    const retried = await r.servicesForImage(imageRef(API, OLD));

    // Assess
    expect(error).toBeInstanceOf(TransientError);
    expect((error as Error).cause).toBe(throttled);
    expect(retried.map((u) => u.service.key)).toEqual(['prod/checkout']);
  });

  it('keeps a non-transient failure distinguishable from throttling', async () => {
    // Prepare: a task definition that cannot be described.
    fakeAccount({ ...account(), taskDefinitions: {} });
    const r = new InventoryResolver({ ecs: client(), discoverByTag: DISCOVER });

    // Act
    const error = await r.servicesForImage(imageRef(API, OLD)).catch((e: unknown) => e);

    // Assess
    expect(error).not.toBeInstanceOf(TransientError);
    expect((error as Error).message).toMatch(/DescribeTaskDefinition failed: ClientException/);
  });
});

describe('snapshot mode', () => {
  const example = JSON.parse(
    readFileSync(join(__dirname, '../../examples/inventory.json'), 'utf8'),
  ) as unknown;
  const APP = `${REGISTRY}/inspector2`;
  const ENVOY_DIGEST = 'sha256:2b1f0a3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8';

  it('matches with the same rules as the API inventory, without calling anything', async () => {
    // Prepare
    const r = InventoryResolver.fromSnapshot(example);

    // Act
    const sidecar = await r.servicesForImage(imageRef(SIDECAR, ENVOY_DIGEST, []));
    const appByRunningDigest = await r.servicesForImage(
      imageRef(APP, 'sha256:84f507df33c6864d49c296fb734192696e4cb6f78166ac51ac8b9b118181085d', []),
    );
    const appByTag = await r.servicesForImage(imageRef(APP, OTHER, ['ubuntu_latest']));
    const appOtherImage = await r.servicesForImage(imageRef(APP, OTHER, ['ubuntu_22']));

    // Assess
    expect(sidecar.map((u) => [u.service.key, u.containers])).toEqual([
      ['prod/checkout', ['envoy']],
      ['prod/ledger-api', ['envoy']],
    ]);
    expect(sidecar[0]?.tags).toEqual({ 'autopatch:enabled': 'true', team: 'payments' });
    expect(appByRunningDigest.map((u) => u.service.key)).toEqual(['prod/checkout']);
    expect(appByTag.map((u) => u.service.key)).toEqual(['prod/checkout']);
    expect(appOtherImage).toEqual([]);
    expect(r.apiCalls).toBe(0);
    expect(ecs.calls()).toHaveLength(0);
  });

  it('rejects an invalid snapshot with a ConfigurationError naming the field', () => {
    // Act
    const attempt = () =>
      InventoryResolver.fromSnapshot({ services: [{ clusterArn: 'arn', serviceName: 'x', containers: [] }] });

    // Assess
    expect(attempt).toThrow(ConfigurationError);
    expect(attempt).toThrow(/services\[0\]\.taskDefinitionArn/);
  });
});
