/**
 * An ECS account behind aws-sdk-client-mock: the List/Describe calls the inventory resolver makes,
 * answered from a small description of clusters, services, task definitions and tasks.
 */
import {
  DescribeServicesCommand,
  type DescribeServicesCommandInput,
  DescribeTaskDefinitionCommand,
  type DescribeTaskDefinitionCommandInput,
  DescribeTasksCommand,
  type DescribeTasksCommandInput,
  type ECSClientResolvedConfig,
  ListClustersCommand,
  type ListClustersCommandInput,
  ListServicesCommand,
  type ListServicesCommandInput,
  ListTasksCommand,
  type ListTasksCommandInput,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from '@aws-sdk/client-ecs';
import type { AwsStub } from 'aws-sdk-client-mock';

export const ACCOUNT = '123456789012';
export const REGION = 'eu-central-1';

export const clusterArn = (name: string) => `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${name}`;
export const serviceArn = (cluster: string, name: string) =>
  `arn:aws:ecs:${REGION}:${ACCOUNT}:service/${cluster}/${name}`;
export const taskDefArn = (family: string, revision: number) =>
  `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/${family}:${revision}`;

export interface FakeService {
  readonly cluster: string;
  readonly name: string;
  readonly taskDefinition: string;
  readonly tags?: Record<string, string>;
  readonly runningCount?: number;
  readonly status?: string;
  /** Task definitions of other deployments still running (a rolling deployment in progress). */
  readonly otherDeployments?: string[];
}

export interface FakeTask {
  readonly cluster: string;
  readonly service: string;
  readonly containers: ReadonlyArray<{ name: string; image: string; imageDigest: string }>;
}

export interface FakeAccount {
  readonly clusters: string[];
  readonly services: FakeService[];
  readonly taskDefinitions: Record<string, Array<{ name: string; image: string }>>;
  readonly tasks?: FakeTask[];
  /** Items per page the fake returns for List* calls (AWS may return fewer than maxResults). */
  readonly pageSize?: number;
}

const page = <T>(items: readonly T[], nextToken: string | undefined, size: number) => {
  const start = nextToken ? Number(nextToken) : 0;
  const end = start + size;
  return { items: items.slice(start, end), nextToken: end < items.length ? String(end) : undefined };
};

/** Answer the ECS inventory calls (the List and Describe calls, paginated) from `account`. */
export const installFakeEcs = (
  ecs: AwsStub<ServiceInputTypes, ServiceOutputTypes, ECSClientResolvedConfig>,
  account: FakeAccount,
): void => {
  const size = account.pageSize ?? 100;
  const inCluster = (cluster: string | undefined) => (s: { cluster: string }) =>
    cluster === s.cluster || cluster === clusterArn(s.cluster);
  const tasks = (account.tasks ?? []).map((t, i) => ({
    ...t,
    arn: `arn:aws:ecs:${REGION}:${ACCOUNT}:task/${t.cluster}/${i.toString(16).padStart(32, '0')}`,
  }));

  ecs.on(ListClustersCommand).callsFake((input: ListClustersCommandInput) => {
    const p = page(account.clusters.map(clusterArn), input.nextToken, size);
    return { clusterArns: p.items, nextToken: p.nextToken };
  });
  ecs.on(ListServicesCommand).callsFake((input: ListServicesCommandInput) => {
    const arns = account.services.filter(inCluster(input.cluster)).map((s) => serviceArn(s.cluster, s.name));
    const p = page(arns, input.nextToken, size);
    return { serviceArns: p.items, nextToken: p.nextToken };
  });
  ecs.on(DescribeServicesCommand).callsFake((input: DescribeServicesCommandInput) => {
    if ((input.services ?? []).length > 10) throw new Error('DescribeServices takes at most 10 services');
    const found = (input.services ?? []).map((ref) =>
      account.services
        .filter(inCluster(input.cluster))
        .find((s) => ref === s.name || ref === serviceArn(s.cluster, s.name)),
    );
    return {
      services: found.flatMap((s) =>
        s
          ? [
              {
                serviceArn: serviceArn(s.cluster, s.name),
                serviceName: s.name,
                clusterArn: clusterArn(s.cluster),
                status: s.status ?? 'ACTIVE',
                taskDefinition: s.taskDefinition,
                runningCount: s.runningCount ?? 0,
                pendingCount: 0,
                deployments: [s.taskDefinition, ...(s.otherDeployments ?? [])].map((taskDefinition) => ({
                  taskDefinition,
                })),
                ...(input.include?.includes('TAGS')
                  ? { tags: Object.entries(s.tags ?? {}).map(([key, value]) => ({ key, value })) }
                  : {}),
              },
            ]
          : [],
      ),
      failures: (input.services ?? []).flatMap((ref, i) =>
        found[i] ? [] : [{ arn: ref, reason: 'MISSING' }],
      ),
    };
  });
  ecs.on(DescribeTaskDefinitionCommand).callsFake((input: DescribeTaskDefinitionCommandInput) => {
    const containers = account.taskDefinitions[input.taskDefinition ?? ''];
    if (!containers)
      throw Object.assign(new Error('Unable to describe task definition.'), { name: 'ClientException' });
    return { taskDefinition: { taskDefinitionArn: input.taskDefinition, containerDefinitions: containers } };
  });
  ecs.on(ListTasksCommand).callsFake((input: ListTasksCommandInput) => {
    const arns = tasks
      .filter(inCluster(input.cluster))
      .filter((t) => !input.serviceName || t.service === input.serviceName)
      .map((t) => t.arn);
    const p = page(arns, input.nextToken, size);
    return { taskArns: p.items, nextToken: p.nextToken };
  });
  ecs.on(DescribeTasksCommand).callsFake((input: DescribeTasksCommandInput) => {
    if ((input.tasks ?? []).length > 100) throw new Error('DescribeTasks takes at most 100 tasks');
    return {
      tasks: tasks
        .filter((t) => input.tasks?.includes(t.arn))
        .map((t) => ({ taskArn: t.arn, group: `service:${t.service}`, containers: t.containers })),
    };
  });
};
