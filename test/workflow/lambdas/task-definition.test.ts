import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  StopServiceDeploymentCommand,
  type TaskDefinition,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import {
  patchedRegistration,
  registerPatchedTaskDefinition,
} from '../../../lambdas/workflow/register-task-definition';
import { restoreLastGoodRevision } from '../../../lambdas/workflow/restore';
import {
  DEPLOYMENT_ARN,
  digest,
  image,
  PATCHED_TASK_DEFINITION,
  PREVIOUS_TASK_DEFINITION,
  remediationRequest,
} from '../../support/workflow-harness';

const ecs = mockClient(ECSClient);
const client = new ECSClient({});
const repo = image().repositoryUri;
const NEW = digest('b2');
const service = remediationRequest().service;

const running: TaskDefinition = {
  taskDefinitionArn: PREVIOUS_TASK_DEFINITION,
  family: 'payments-api',
  revision: 41,
  status: 'ACTIVE',
  taskRoleArn: 'arn:aws:iam::123456789012:role/payments-task',
  executionRoleArn: 'arn:aws:iam::123456789012:role/payments-exec',
  networkMode: 'awsvpc',
  cpu: '512',
  memory: '1024',
  requiresCompatibilities: ['FARGATE'],
  compatibilities: ['EC2', 'FARGATE'],
  requiresAttributes: [{ name: 'com.amazonaws.ecs.capability.task-iam-role' }],
  registeredAt: new Date(),
  registeredBy: 'arn:aws:iam::123456789012:user/deployer',
  runtimePlatform: { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
  containerDefinitions: [
    { name: 'app', image: `${repo}:1.4.2`, essential: true, environment: [{ name: 'MODE', value: 'prod' }] },
    { name: 'envoy', image: 'public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29', essential: true },
  ],
};
const patched = [
  { repositoryUri: repo, containers: ['app'], oldDigest: image().imageDigest, newDigest: NEW },
];

beforeEach(() => ecs.reset());

describe('patchedRegistration', () => {
  it('replaces only the patched containers, pinned by digest, and keeps everything else', () => {
    const { input, replaced } = patchedRegistration(
      running,
      [{ key: 'team', value: 'payments' }],
      patched,
      'exec-1',
    );

    expect(replaced).toEqual({ app: `${repo}@${NEW}` });
    expect(input.containerDefinitions).toEqual([
      {
        name: 'app',
        image: `${repo}@${NEW}`,
        essential: true,
        environment: [{ name: 'MODE', value: 'prod' }],
      },
      running.containerDefinitions?.[1],
    ]);
    expect(input).toEqual(
      expect.objectContaining({
        family: 'payments-api',
        taskRoleArn: running.taskRoleArn,
        executionRoleArn: running.executionRoleArn,
        runtimePlatform: running.runtimePlatform,
        tags: [
          { key: 'team', value: 'payments' },
          { key: 'autopatch:execution', value: 'exec-1' },
        ],
      }),
    );
    for (const readOnly of [
      'taskDefinitionArn',
      'revision',
      'status',
      'compatibilities',
      'requiresAttributes',
      'registeredAt',
      'registeredBy',
    ]) {
      expect(input).not.toHaveProperty(readOnly);
    }
  });

  it('refuses to swap a container that no longer runs the image that was scanned', () => {
    const moved = { ...running, containerDefinitions: [{ name: 'app', image: 'other.registry/app:2' }] };
    expect(() => patchedRegistration(moved, [], patched, 'e')).toThrow(
      expect.objectContaining({ name: 'TaskDefinitionMismatchError' }),
    );
  });

  it('refuses when the container is pinned to another digest than the one the patch was built from', () => {
    // Prepare: the owner deployed a newer build while the remediation waited.
    const redeployed = {
      ...running,
      containerDefinitions: [{ name: 'app', image: `${repo}@${digest('c3')}` }],
    };
    const stillOld = {
      ...running,
      containerDefinitions: [{ name: 'app', image: `${repo}@${image().imageDigest}` }],
    };

    // Act / Assess
    expect(() => patchedRegistration(redeployed, [], patched, 'e')).toThrow(/redeployed since the finding/);
    expect(patchedRegistration(stillOld, [], patched, 'e').replaced).toEqual({ app: `${repo}@${NEW}` });
  });

  it('with patches of an older and a newer digest of one container, uses the one the container runs', () => {
    // Prepare: the gathering merged findings on the digest that ran at first and on the one deployed since.
    const newer = digest('c3');
    const patchedNewer = digest('d4');
    const both = [
      ...patched,
      { repositoryUri: repo, containers: ['app'], oldDigest: newer, newDigest: patchedNewer },
    ];
    const runsNewer = { ...running, containerDefinitions: [{ name: 'app', image: `${repo}@${newer}` }] };
    const runsOlder = {
      ...running,
      containerDefinitions: [{ name: 'app', image: `${repo}@${image().imageDigest}` }],
    };

    // Act / Assess
    expect(patchedRegistration(runsNewer, [], both, 'e').replaced).toEqual({
      app: `${repo}@${patchedNewer}`,
    });
    expect(patchedRegistration(runsOlder, [], both, 'e').replaced).toEqual({ app: `${repo}@${NEW}` });
  });

  it('refuses when a patched container is missing from the running task definition', () => {
    const gone = { ...running, containerDefinitions: [running.containerDefinitions?.[1] ?? {}] };
    expect(() => patchedRegistration(gone, [], patched, 'e')).toThrow(/has no container named app/);
  });
});

describe('registerPatchedTaskDefinition', () => {
  it('describes the running revision, registers the patched one, and returns both ARNs', async () => {
    ecs
      .on(DescribeServicesCommand)
      .resolves({ services: [{ taskDefinition: PREVIOUS_TASK_DEFINITION, status: 'ACTIVE' }] });
    ecs.on(DescribeTaskDefinitionCommand).resolves({ taskDefinition: running, tags: [] });
    ecs
      .on(RegisterTaskDefinitionCommand)
      .resolves({ taskDefinition: { taskDefinitionArn: PATCHED_TASK_DEFINITION } });

    const out = await registerPatchedTaskDefinition(
      { service, images: patched, executionName: 'exec-1' },
      client,
    );

    expect(out).toEqual({
      previousTaskDefinitionArn: PREVIOUS_TASK_DEFINITION,
      taskDefinitionArn: PATCHED_TASK_DEFINITION,
      replaced: { app: `${repo}@${NEW}` },
    });
    expect(ecs.commandCalls(DescribeTaskDefinitionCommand)[0]?.args[0].input).toEqual({
      taskDefinition: PREVIOUS_TASK_DEFINITION,
      include: ['TAGS'],
    });
  });
});

describe('restoreLastGoodRevision', () => {
  const input = {
    service,
    previousTaskDefinitionArn: PREVIOUS_TASK_DEFINITION,
    patchedTaskDefinitionArn: PATCHED_TASK_DEFINITION,
  };
  const on = (taskDefinition: string, status?: string) => {
    ecs
      .on(DescribeServicesCommand)
      .resolves({ services: [{ taskDefinition, currentServiceDeployment: DEPLOYMENT_ARN }] });
    if (status)
      ecs
        .on(DescribeServiceDeploymentsCommand)
        .resolves({ serviceDeployments: [{ status: status as 'IN_PROGRESS' }] });
  };

  it('does nothing when the service never ran the patched revision', async () => {
    on(PREVIOUS_TASK_DEFINITION);
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({ action: 'nothing-to-do' });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
  });

  it('rolls the deployment back while it is in progress', async () => {
    on(PATCHED_TASK_DEFINITION, 'IN_PROGRESS');
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({
      action: 'rollback-requested',
    });
    expect(ecs.commandCalls(StopServiceDeploymentCommand)[0]?.args[0].input).toEqual({
      serviceDeploymentArn: DEPLOYMENT_ARN,
      stopType: 'ROLLBACK',
    });
  });

  it('lets a rollback already under way finish', async () => {
    on(PATCHED_TASK_DEFINITION, 'ROLLBACK_IN_PROGRESS');
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({
      action: 'rollback-in-progress',
    });
    expect(ecs.commandCalls(StopServiceDeploymentCommand)).toHaveLength(0);
  });

  it('deploys the previous task definition again when the patched deployment completed', async () => {
    on(PATCHED_TASK_DEFINITION, 'SUCCESSFUL');
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({
      action: 'redeployed-previous',
    });
    expect(ecs.commandCalls(UpdateServiceCommand)[0]?.args[0].input).toEqual({
      cluster: service.clusterArn,
      service: 'payments-api',
      taskDefinition: PREVIOUS_TASK_DEFINITION,
    });
  });
});
