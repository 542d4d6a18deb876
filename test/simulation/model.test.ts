import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  ECSClient,
  ECSServiceException,
  RegisterTaskDefinitionCommand,
  StopServiceDeploymentCommand,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { ListCoverageCommand } from '@aws-sdk/client-inspector2';
import { VirtualClock } from '../../simulation/clock';
import { OPERATIONS } from '../../simulation/model/catalog';
import { CloudWatchModel } from '../../simulation/model/cloudwatch';
import { CodeBuildModel } from '../../simulation/model/codebuild';
import { EcrModel } from '../../simulation/model/ecr';
import { EcsModel } from '../../simulation/model/ecs';
import { type BusEvent, EventBus, matchesPattern } from '../../simulation/model/eventbus';
import { InspectorModel } from '../../simulation/model/inspector';
import { SqsModel } from '../../simulation/model/sqs';
import { World } from '../../simulation/model/world';
import { activate, FaultInjector, type ModelHandlerSet, simulatedClients } from '../../simulation/sdk';

const START = Date.parse('2024-09-04T16:00:00Z');
const MINUTE = 60_000;
const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A small account on a virtual clock, with SDK clients answered by it. */
const account = (faults = new FaultInjector([])) => {
  const clock = new VirtualClock(START, 1);
  clock.install();
  const world = new World('123456789012', 'eu-central-1', clock);
  const bus = new EventBus(world);
  const events: BusEvent[] = [];
  bus.addRule({
    name: 'everything',
    pattern: { account: ['123456789012'] },
    targets: [{ id: 'test', deliver: (e) => void events.push(e) }],
  });
  const ecr = new EcrModel(world);
  ecr.addRepository('payments/checkout', new Date(START));
  const image = ecr.push({
    repository: 'payments/checkout',
    digest: DIGEST,
    tags: ['v1'],
    pushedAt: new Date(START),
    platform: 'UBUNTU_24_04',
    architecture: 'arm64',
    sizeInBytes: 1,
  });
  const inspector = new InspectorModel(world, ecr, bus);
  inspector.addFinding(
    image,
    { cve: 'CVE-2024-6119', severity: 'HIGH', packageManager: 'OS', fixAvailable: 'YES', status: 'ACTIVE' },
    new Date(START),
  );
  const ecs = new EcsModel(world, ecr, bus);
  const cloudwatch = new CloudWatchModel(world, bus);
  cloudwatch.onChange((name, state) => ecs.alarmChanged(name, state));
  cloudwatch.addAlarm('checkout-5xx', 'OK', new Date(START));
  ecs.addCluster('prod');
  ecs.addService(
    'prod',
    'checkout',
    [{ name: 'app', image: `${ecr.registry()}/payments/checkout:v1` }],
    {
      strategy: 'BLUE_GREEN',
      bakeTimeMinutes: 60,
      alarms: ['checkout-5xx'],
      tags: {},
      desiredCount: 2,
      deployMinutes: 4,
      rollbackMinutes: 2,
    },
    new Date(START),
  );
  const codebuild = new CodeBuildModel(
    world,
    ecr,
    inspector,
    () => ({ outcome: 'SUCCEEDED', durationMinutes: 6, fixes: 'all', introduces: [], failedPhase: 'BUILD' }),
    3,
  );
  const none = {};
  const handlers: ModelHandlerSet = {
    ecs: ecs.handlers,
    ecr: ecr.handlers,
    codebuild: codebuild.handlers,
    codedeploy: none,
    inspector2: inspector.handlers,
    cloudwatch: cloudwatch.handlers,
    sns: none,
    eventbridge: none,
    ssm: none,
    sfn: none,
  };
  const deactivate = activate({ world, faults, handlers, dynamo: { hostname: '127.0.0.1', port: 9 } });
  const clients = simulatedClients(world, 3);
  const stop = () => {
    deactivate();
    clock.uninstall();
  };
  return { clock, world, bus, events, ecr, inspector, ecs, cloudwatch, codebuild, clients, stop };
};

type Account = ReturnType<typeof account>;

describe('simulated account', () => {
  let a: Account;
  afterEach(() => a.stop());

  it('runs a blue/green deployment through its bake time on the virtual clock', async () => {
    // Prepare
    a = account();
    const { ecs } = a.clients;
    const td = await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: 'checkout',
        containerDefinitions: [{ name: 'app', image: `x@${DIGEST}` }],
      }),
    );

    // Act
    await ecs.send(
      new UpdateServiceCommand({
        cluster: 'prod',
        service: 'checkout',
        taskDefinition: td.taskDefinition?.taskDefinitionArn,
      }),
    );
    const run = await a.clock.run({ horizonMs: 86_400_000 });

    // Assess: 4 minutes of traffic shifting, 60 of bake, half a minute of clean-up, in a few jumps.
    const { services } = await ecs.send(
      new DescribeServicesCommand({ cluster: 'prod', services: ['checkout'] }),
    );
    const arn = services?.[0]?.currentServiceDeployment as string;
    const { serviceDeployments } = await ecs.send(
      new DescribeServiceDeploymentsCommand({ serviceDeploymentArns: [arn] }),
    );
    expect(serviceDeployments?.[0]?.status).toBe('SUCCESSFUL');
    expect(services?.[0]?.taskDefinition).toBe(td.taskDefinition?.taskDefinitionArn);
    expect(serviceDeployments?.[0]?.finishedAt?.getTime()).toBe(START + 64.5 * MINUTE);
    // The last thing that happens is EventBridge delivering the completion event, a second later.
    expect(run.virtualMs).toBe(64.5 * MINUTE + 1_000);
    expect(run.steps).toBeLessThan(15);
    expect(
      a.events
        .filter((e) => e.source === 'aws.ecs')
        .map((e) => (e.detail as { eventName: string }).eventName),
    ).toEqual(['SERVICE_DEPLOYMENT_IN_PROGRESS', 'SERVICE_DEPLOYMENT_COMPLETED']);
  });

  it("rolls back by itself when one of the service's deployment alarms fires during the bake", async () => {
    // Prepare
    a = account();
    const { ecs } = a.clients;
    const td = await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: 'checkout',
        containerDefinitions: [{ name: 'app', image: `x@${DIGEST}` }],
      }),
    );
    await ecs.send(
      new UpdateServiceCommand({
        cluster: 'prod',
        service: 'checkout',
        taskDefinition: td.taskDefinition?.taskDefinitionArn,
      }),
    );
    a.world.schedule(START + 20 * MINUTE, 'alarm', () => a.cloudwatch.setState('checkout-5xx', 'ALARM'));

    // Act
    await a.clock.run({ horizonMs: 86_400_000 });

    // Assess
    const { services } = await ecs.send(
      new DescribeServicesCommand({ cluster: 'prod', services: ['checkout'] }),
    );
    const { serviceDeployments } = await ecs.send(
      new DescribeServiceDeploymentsCommand({
        serviceDeploymentArns: [services?.[0]?.currentServiceDeployment as string],
      }),
    );
    const deployment = serviceDeployments?.[0];
    expect(deployment?.status).toBe('ROLLBACK_SUCCESSFUL');
    expect(deployment?.alarms).toMatchObject({ status: 'TRIGGERED', triggeredAlarmNames: ['checkout-5xx'] });
    expect(deployment?.rollback?.reason).toMatch(/checkout-5xx/);
    expect(services?.[0]?.taskDefinition).toMatch(/task-definition\/checkout:1$/);
    expect(
      a.events
        .filter((e) => e.source !== 'aws.inspector2')
        .map(
          (e) =>
            `${e['detail-type']}: ${JSON.stringify((e.detail as { eventName?: string; state?: { value: string } }).eventName ?? (e.detail as { state: { value: string } }).state.value)}`,
        ),
    ).toEqual([
      'ECS Deployment State Change: "SERVICE_DEPLOYMENT_IN_PROGRESS"',
      'CloudWatch Alarm State Change: "ALARM"',
      'ECS Deployment State Change: "SERVICE_DEPLOYMENT_FAILED"',
      'ECS Deployment State Change: "SERVICE_DEPLOYMENT_IN_PROGRESS"',
      'ECS Deployment State Change: "SERVICE_DEPLOYMENT_COMPLETED"',
    ]);
    // A rollback of a finished rollback is a conflict, as in ECS.
    await expect(
      ecs.send(
        new StopServiceDeploymentCommand({
          serviceDeploymentArn: deployment?.serviceDeploymentArn,
          stopType: 'ROLLBACK',
        }),
      ),
    ).rejects.toMatchObject({ name: 'ConflictException', $metadata: { httpStatusCode: 400 } });
  });

  it('pushes the rebuilt image a build reports, and Inspector scans it after its delay', async () => {
    // Prepare
    a = account();
    const { codebuild, inspector2 } = a.clients;

    // Act
    const started = await codebuild.send(
      new (await import('@aws-sdk/client-codebuild')).StartBuildCommand({
        projectName: 'patch-os',
        environmentVariablesOverride: [
          { name: 'IMAGE_URI', value: `${a.ecr.registry()}/payments/checkout@${DIGEST}`, type: 'PLAINTEXT' },
          { name: 'TARGET_TAG', value: 'autopatch-1', type: 'PLAINTEXT' },
        ],
      }),
    );
    const build = await Promise.all([
      a.codebuild.waitFor(started.build?.id as string),
      a.clock.run({ horizonMs: 7 * MINUTE }),
    ]).then(([b]) => a.codebuild.describe(b));
    const coverage = () =>
      inspector2
        .send(
          new ListCoverageCommand({
            filterCriteria: { ecrImageTags: [{ comparison: 'EQUALS', value: 'autopatch-1' }] },
          }),
        )
        .then((out) => out.coveredResources?.[0]?.scanStatus?.reason);
    const pendingAt7 = await coverage();
    await a.clock.run({ horizonMs: 10 * MINUTE });

    // Assess
    const pushed = build.exportedEnvironmentVariables?.find((v) => v.name === 'IMAGE_DIGEST')
      ?.value as string;
    expect(build.buildStatus).toBe('SUCCEEDED');
    expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(pushed).not.toBe(DIGEST);
    expect(a.ecr.find('payments/checkout', { tag: 'autopatch-1' })?.digest).toBe(pushed);
    expect(build.logs?.deepLink).toMatch(
      /^https:\/\/console\.aws\.amazon\.com\/cloudwatch\/.*logEvent:group=/,
    );
    expect(pendingAt7).toBe('PENDING_INITIAL_SCAN');
    expect(await coverage()).toBe('SUCCESSFUL');
    const scan = a.events.find((e) => e['detail-type'] === 'Inspector2 Scan');
    expect(scan?.detail).toMatchObject({ 'scan-status': 'INITIAL_SCAN_COMPLETE', 'image-digest': pushed });
    expect(Date.parse(scan?.time ?? '')).toBe(START + 9 * MINUTE);
  });

  it('throws injected faults the way the SDK does, and the SDK retries throttling by itself', async () => {
    // Prepare: calls 1 and 2 are throttled, 3 succeeds, 4 is throttled.
    a = account(
      new FaultInjector([
        { service: 'ecs', operation: 'DescribeServices', error: 'ThrottlingException', times: 2, after: 0 },
        { service: 'ecs', operation: 'DescribeServices', error: 'ThrottlingException', times: 1, after: 3 },
      ]),
    );
    const once = new ECSClient({
      region: 'eu-central-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
      maxAttempts: 1,
    });

    // Act
    const retried = a.clients.ecs.send(
      new DescribeServicesCommand({ cluster: 'prod', services: ['checkout'] }),
    );
    await a.clock.run({ horizonMs: MINUTE });
    const out = await retried;
    const error = await once
      .send(new DescribeServicesCommand({ cluster: 'prod', services: ['checkout'] }))
      .catch((e: unknown) => e);

    // Assess: two throttles absorbed by the SDK's own backoff (in virtual time); one surfaced as the SDK throws it.
    expect(out.$metadata.attempts).toBe(3);
    expect(out.$metadata.totalRetryDelay).toBeGreaterThan(0);
    expect(a.world.apiCalls.get('ecs:DescribeServices')).toBe(4);
    expect(error).toBeInstanceOf(ECSServiceException);
    expect(error).toMatchObject({
      name: 'ThrottlingException',
      message: 'Rate exceeded',
      $fault: 'client',
      $metadata: { httpStatusCode: 400 },
      $retryable: { throttling: true },
    });
  });

  it('lists exactly the operations it answers in the catalog scenarios are validated against', () => {
    a = account();
    const answered = {
      ecs: a.ecs.handlers,
      ecr: a.ecr.handlers,
      codebuild: a.codebuild.handlers,
      inspector2: a.inspector.handlers,
      cloudwatch: a.cloudwatch.handlers,
    };
    for (const [service, handlers] of Object.entries(answered)) {
      expect([service, Object.keys(handlers).sort()]).toEqual([
        service,
        [...OPERATIONS[service as keyof typeof OPERATIONS]].sort(),
      ]);
    }
  });

  it('emits Inspector findings in the real event format', () => {
    a = account();
    const finding = a.inspector.findings(DIGEST)[0];
    const event = a.inspector.findingEvent(finding as NonNullable<typeof finding>) as BusEvent & {
      detail: Record<string, unknown>;
    };
    expect(event).toMatchObject({
      source: 'aws.inspector2',
      'detail-type': 'Inspector2 Finding',
      account: '123456789012',
    });
    expect(event.detail).toMatchObject({
      severity: 'HIGH',
      status: 'ACTIVE',
      type: 'PACKAGE_VULNERABILITY',
      fixAvailable: 'YES',
      updatedAt: 'Wed Sep 04 16:00:00.000 UTC 2024',
      resources: [
        {
          type: 'AWS_ECR_CONTAINER_IMAGE',
          details: { awsEcrContainerImage: { imageHash: DIGEST }, image: { imageDigest: DIGEST } },
        },
      ],
    });
    expect(event.detail).not.toHaveProperty('inspectorScore');
  });
});

describe('ECS deployments as AWS documents them', () => {
  let a: Account;
  afterEach(() => a.stop());

  /** Register a patched revision and deploy it; the deployment's ARN. */
  const deploy = async (acc: Account, service = 'checkout') => {
    const td = await acc.clients.ecs.send(
      new RegisterTaskDefinitionCommand({
        family: service,
        containerDefinitions: [{ name: 'app', image: `x@${DIGEST}` }],
      }),
    );
    const out = await acc.clients.ecs.send(
      new UpdateServiceCommand({
        cluster: 'prod',
        service,
        taskDefinition: td.taskDefinition?.taskDefinitionArn,
      }),
    );
    return out.service?.currentServiceDeployment as string;
  };
  const status = async (acc: Account, arn: string) =>
    (await acc.clients.ecs.send(new DescribeServiceDeploymentsCommand({ serviceDeploymentArns: [arn] })))
      .serviceDeployments?.[0];
  const eventNames = (acc: Account) =>
    acc.events
      .filter((e) => e.source === 'aws.ecs')
      .map((e) => (e.detail as { eventName: string }).eventName);

  it('shows ROLLBACK_REQUESTED, then ROLLBACK_IN_PROGRESS, then ROLLBACK_SUCCESSFUL after StopServiceDeployment', async () => {
    // Prepare
    a = account();
    const arn = await deploy(a);
    await a.clock.run({ horizonMs: 10 * MINUTE });

    // Act
    await a.clients.ecs.send(
      new StopServiceDeploymentCommand({ serviceDeploymentArn: arn, stopType: 'ROLLBACK' }),
    );
    const requested = (await status(a, arn))?.status;
    await a.clock.run({ horizonMs: 10 * MINUTE + 10_000 });
    const rolling = (await status(a, arn))?.status;
    await a.clock.run({ horizonMs: 86_400_000 });

    // Assess
    expect([requested, rolling, (await status(a, arn))?.status]).toEqual([
      'ROLLBACK_REQUESTED',
      'ROLLBACK_IN_PROGRESS',
      'ROLLBACK_SUCCESSFUL',
    ]);
  });

  it('trips the circuit breaker when the new tasks fail to start, and rolls back by itself', async () => {
    // Prepare
    a = account();
    a.ecs.scriptTrouble('prod/checkout', 1, { tasksFailAfterMinutes: 2 });

    // Act
    const arn = await deploy(a);
    await a.clock.run({ horizonMs: 86_400_000 });

    // Assess
    const d = await status(a, arn);
    expect(d).toMatchObject({
      status: 'ROLLBACK_SUCCESSFUL',
      deploymentCircuitBreaker: { status: 'TRIGGERED', failureCount: 3, threshold: 3 },
    });
    expect(a.ecs.state('prod/checkout')).toMatchObject({ revision: 1 });
    expect(eventNames(a)).toEqual([
      'SERVICE_DEPLOYMENT_IN_PROGRESS',
      'SERVICE_DEPLOYMENT_FAILED',
      'SERVICE_DEPLOYMENT_IN_PROGRESS',
      'SERVICE_DEPLOYMENT_COMPLETED',
    ]);
  });

  it('can fail its own rollback (ROLLBACK_FAILED), leaving the service on the new revision', async () => {
    // Prepare
    a = account();
    a.ecs.scriptTrouble('prod/checkout', 1, { rollbackFails: true });
    a.world.schedule(START + 20 * MINUTE, 'alarm', () => a.cloudwatch.setState('checkout-5xx', 'ALARM'));

    // Act
    const arn = await deploy(a);
    await a.clock.run({ horizonMs: 86_400_000 });

    // Assess
    expect((await status(a, arn))?.status).toBe('ROLLBACK_FAILED');
    expect(a.ecs.state('prod/checkout')).toMatchObject({ revision: 2 });
    expect(eventNames(a).at(-1)).toBe('SERVICE_DEPLOYMENT_FAILED');
    expect(a.ecs.rollbacks).toEqual([
      { at: START + 20 * MINUTE, service: 'prod/checkout', index: 1, by: 'ecs' },
    ]);
  });

  it('reports the deployment controller and refuses a task definition change it does not own', async () => {
    // Prepare
    a = account();
    a.ecs.addService(
      'prod',
      'legacy',
      [{ name: 'app', image: `${a.ecr.registry()}/payments/checkout:v1` }],
      {
        strategy: 'ROLLING',
        bakeTimeMinutes: 0,
        alarms: [],
        tags: {},
        desiredCount: 1,
        deployMinutes: 4,
        rollbackMinutes: 2,
        deploymentController: 'CODE_DEPLOY',
      },
      new Date(START),
    );

    // Act
    const described = await a.clients.ecs.send(
      new DescribeServicesCommand({ cluster: 'prod', services: ['legacy'] }),
    );
    const error = await deploy(a, 'legacy').catch((e: unknown) => e);

    // Assess
    expect(described.services?.[0]?.deploymentController).toEqual({ type: 'CODE_DEPLOY' });
    expect(error).toMatchObject({
      name: 'InvalidParameterException',
      message: expect.stringMatching(/CODE_DEPLOY/),
    });
  });

  it('lets the owner change the world: deploy, scale to 0, delete', async () => {
    // Prepare
    a = account();

    // Act: the owner's pipeline deploys; then the service is scaled to 0 and deleted.
    a.ecs.ownerDeploy('prod/checkout', { app: `${a.ecr.registry()}/payments/checkout@${DIGEST}` }, false);
    await a.clock.run({ horizonMs: 86_400_000 });
    const deployed = a.ecs.state('prod/checkout');
    a.ecs.ownerScale('prod/checkout', 0);
    const scaled = a.ecs.state('prod/checkout');
    a.ecs.ownerDelete('prod/checkout');
    await a.clock.run({ horizonMs: 2 * 86_400_000 });
    const error = await deploy(a).catch((e: unknown) => e);

    // Assess
    expect(deployed).toMatchObject({ revision: 2, digests: [DIGEST] });
    expect(scaled.digests).toEqual([]);
    expect(a.ecs.state('prod/checkout').status).toBe('INACTIVE');
    expect(error).toMatchObject({ name: 'ServiceNotActiveException' });
  });
});

describe('EventBridge delivery faults', () => {
  it('loses or delays the deliveries a scenario says, and records them', async () => {
    // Prepare
    const clock = new VirtualClock(START, 1);
    clock.install();
    const world = new World('123456789012', 'eu-central-1', clock);
    const bus = new EventBus(world);
    const seen: number[] = [];
    bus.addRule({
      name: 'r',
      pattern: { source: ['x'] },
      targets: [{ id: 't', deliver: () => void seen.push(Date.now()) }],
    });
    let n = 0;
    bus.setDeliveryFate(() => {
      n += 1;
      return n === 1 ? { lose: true } : n === 2 ? { delayMs: 5 * MINUTE } : undefined;
    });

    // Act
    for (let i = 0; i < 3; i++) bus.put(bus.envelope('x', 'thing', [], {}));
    await clock.run({ horizonMs: 86_400_000 });
    clock.uninstall();

    // Assess: the third on time, the second five minutes late, the first never.
    expect(seen.map((t) => t - START)).toEqual([1_000, 5 * MINUTE + 1_000]);
    expect(bus.tampered.map((t) => t.fate)).toEqual(['lost', 'delayed']);
  });
});

describe('intake queue', () => {
  let clock: VirtualClock;
  afterEach(() => clock.uninstall());

  it('redelivers batch item failures after the visibility timeout and dead-letters after maxReceiveCount', async () => {
    // Prepare: a consumer that always fails the message "poison"
    clock = new VirtualClock(START, 1);
    clock.install();
    const world = new World('123456789012', 'eu-central-1', clock);
    const received: Array<[string, number]> = [];
    const sqs = new SqsModel(
      world,
      'arn:aws:sqs:eu-central-1:123456789012:intake',
      {
        batchSize: 100,
        batchingWindowSeconds: 20,
        visibilityTimeoutSeconds: 740,
        maxReceiveCount: 5,
        maxConcurrency: 5,
      },
      async (event) => {
        for (const r of event.Records) received.push([r.body, Math.round((Date.now() - START) / 1000)]);
        return {
          batchItemFailures: event.Records.filter((r) => r.body === 'poison').map((r) => ({
            itemIdentifier: r.messageId,
          })),
        };
      },
    );

    // Act
    sqs.send('good');
    sqs.send('poison');
    await clock.run({ horizonMs: 86_400_000 });

    // Assess: one batch after the 20 s window, then the poison message every 740 s, 5 receives, then the DLQ.
    expect(received).toEqual([
      ['good', 20],
      ['poison', 20],
      ['poison', 760],
      ['poison', 1500],
      ['poison', 2240],
      ['poison', 2980],
    ]);
    expect(sqs.deadLetters.map((d) => [d.body, d.receiveCount])).toEqual([['poison', 5]]);
    expect(sqs.depth).toBe(0);
  });
});

describe('EventBridge pattern matching', () => {
  const finding = {
    source: 'aws.inspector2',
    'detail-type': 'Inspector2 Finding',
    detail: {
      status: 'ACTIVE',
      type: 'PACKAGE_VULNERABILITY',
      resources: [{ type: 'AWS_EC2_INSTANCE' }, { type: 'AWS_ECR_CONTAINER_IMAGE' }],
    },
  };
  it.each([
    [{ source: ['aws.inspector2'], detail: { resources: { type: ['AWS_ECR_CONTAINER_IMAGE'] } } }, true],
    [{ detail: { status: ['CLOSED'] } }, false],
    [{ detail: { status: [{ 'anything-but': ['SUPPRESSED', 'CLOSED'] }] } }, true],
    [{ detail: { type: [{ prefix: 'PACKAGE' }] } }, true],
    [{ detail: { missing: [{ exists: false }] } }, true],
    [{ detail: { status: [{ exists: false }] } }, false],
  ])('%j matches: %s', (pattern, expected) => {
    expect(matchesPattern(pattern, finding)).toBe(expected);
  });
});
