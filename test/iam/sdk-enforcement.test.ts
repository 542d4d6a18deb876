/**
 * The simulation's oracles at the point where calls are answered (simulation/sdk.ts): a request the
 * API model rejects and a call IAM denies fail the way the service fails them, before any model
 * answers; and the definition's integration parameters match the API models.
 */
import { UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { requestProblems } from '../../simulation/api-models/validate';
import { VirtualClock } from '../../simulation/clock';
import { iamSummaryOf, runAs } from '../../simulation/iam/enforcer';
import { World } from '../../simulation/model/world';
import {
  activate,
  destroyClients,
  FaultInjector,
  type ModelHandlerSet,
  modelCheckSummaryOf,
  simulatedClients,
} from '../../simulation/sdk';
import { definitionTasks } from './code-paths';

describe('requests checked against the API models', () => {
  test.each([
    [
      'a well-formed request',
      'ecs',
      'UpdateService',
      { cluster: 'prod', service: 'api', taskDefinition: 'api:2' },
      [],
    ],
    [
      'a misspelled member',
      'ecs',
      'UpdateService',
      { service: 'api', taskDefinitoin: 'api:2' },
      [/taskDefinitoin: UpdateServiceRequest has no member/],
    ],
    [
      'a missing required member',
      'ecs',
      'UpdateService',
      { cluster: 'prod' },
      [/service: required by UpdateServiceRequest, missing/],
    ],
    [
      'a wrong type',
      'ecs',
      'UpdateService',
      { service: 'api', desiredCount: '2' },
      [/desiredCount: expected a number, got string/],
    ],
    [
      'a nested structure',
      'ecs',
      'DescribeServices',
      { services: ['api'], include: [42] },
      [/include\[0\]: expected a string/],
    ],
    [
      'a DynamoDB attribute value with two members',
      'dynamodb',
      'PutItem',
      { TableName: 't', Item: { pk: { S: 'a', N: '1' } } },
      [/Item.pk: AttributeValue must have exactly one member set/],
    ],
    [
      'an SNS publish without a message',
      'sns',
      'Publish',
      { TopicArn: 'arn:aws:sns:eu-central-1:123456789012:t' },
      [/Message: required by PublishInput/],
    ],
  ])('%s', (_what, service, operation, input, expected) => {
    const problems = requestProblems(service as never, operation, input);
    expect(problems).toHaveLength(expected.length);
    expected.forEach((pattern, i) => {
      expect(problems[i]).toMatch(pattern);
    });
  });

  test('an operation the model does not have is a problem, not an unchecked answer', () => {
    expect(requestProblems('ecs', 'UpdateServices', {})).toEqual([
      'ecs has no operation UpdateServices in its API model',
    ]);
  });

  test("the definition's aws-sdk and CodeBuild integrations pass only members of the API model, and every required one", () => {
    const pascal = (s: string) => `${s.charAt(0).toUpperCase()}${s.slice(1)}`;
    const camel = (s: string) => `${s.charAt(0).toLowerCase()}${s.slice(1)}`;
    let checked = 0;
    for (const task of definitionTasks()) {
      const sdk = /^arn:aws:states:::aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)$/.exec(task.resource);
      const build = /^arn:aws:states:::codebuild:(startBuild)(\.sync)?$/.exec(task.resource);
      const [service, action] = sdk ? [sdk[1], sdk[2]] : build ? ['codebuild', build[1]] : [];
      if (!service || !action) continue;
      // Step Functions takes the API's members in PascalCase; a `.$` suffix marks a path.
      const input = Object.fromEntries(
        Object.keys(task.parameters).map((k) => [camel(k.replace(/\.\$$/, '')), placeholder]),
      );
      const problems = requestProblems(service as never, pascal(action), input).filter(
        (p) => !/expected/.test(p), // values are paths here, checked at run time by the simulation
      );
      expect({ state: task.state, problems }).toEqual({ state: task.state, problems: [] });
      checked += 1;
    }
    // Deploy the patched revision, Roll back the deployment, Build the patched image.
    expect(checked).toBeGreaterThanOrEqual(3);
  });
});
const placeholder = 'value-from-a-path';

describe('the simulation middleware', () => {
  const ACCOUNT = '123456789012';
  const tagsOf: Record<string, Record<string, string>> = {
    [`arn:aws:ecs:eu-central-1:${ACCOUNT}:service/prod/checkout`]: { 'autopatch:enabled': 'true' },
    [`arn:aws:ecs:eu-central-1:${ACCOUNT}:service/prod/billing`]: {},
  };
  let world: World;
  let deactivate: () => void;
  let updates: number;

  beforeEach(() => {
    world = new World(ACCOUNT, 'eu-central-1', new VirtualClock(Date.now(), 1));
    updates = 0;
    const none = {};
    const handlers: ModelHandlerSet = {
      ecs: {
        UpdateService: () => {
          updates += 1;
          return { service: {} };
        },
        ListTagsForResource: (input: { resourceArn: string }) => ({
          tags: Object.entries(tagsOf[input.resourceArn] ?? {}).map(([key, value]) => ({ key, value })),
        }),
      },
      ecr: none,
      codedeploy: none,
      codebuild: none,
      inspector2: none,
      cloudwatch: none,
      sns: none,
      eventbridge: none,
      ssm: none,
      sfn: none,
    };
    deactivate = activate({
      world,
      faults: new FaultInjector([]),
      handlers,
      dynamo: { hostname: '127.0.0.1', port: 1 },
      iam: {},
    });
  });
  afterEach(() => deactivate());

  test('IAM: the restore Lambda may deploy a tagged service, and is denied as ECS denies an untagged one', async () => {
    const clients = simulatedClients(world, 1, 'restore');
    try {
      await expect(
        clients.ecs.send(new UpdateServiceCommand({ cluster: 'prod', service: 'checkout' })),
      ).resolves.toBeDefined();
      const denied = clients.ecs.send(new UpdateServiceCommand({ cluster: 'prod', service: 'billing' }));
      await expect(denied).rejects.toMatchObject({
        name: 'AccessDeniedException',
        $fault: 'client',
        message: expect.stringMatching(
          /assumed-role\/.+\/restore is not authorized to perform: ecs:UpdateService on resource: arn:aws:ecs:eu-central-1:123456789012:service\/prod\/billing/,
        ),
      });
    } finally {
      destroyClients(clients);
    }
    expect(updates).toBe(1);
    const summary = iamSummaryOf(world);
    expect(summary?.denials.map((d) => `${d.principal} ${d.action}`)).toEqual(['restore ecs:UpdateService']);
    expect(
      world.timeline.some((t) => t.source === 'iam' && /DENIED restore ecs:UpdateService/.test(t.text)),
    ).toBe(true);
  }, 60_000);

  test("IAM: a Lambda's shared module-scope client takes the principal of the invocation it runs in", async () => {
    const clients = simulatedClients(world, 1, 'restore');
    // A client without a principal of its own, as a handler module creates one.
    const shared = clients.ecs;
    delete (shared as unknown as Record<symbol, unknown>)[Symbol.for('autopatch.simulation.principal')];
    try {
      // acquireLock's role may not deploy anything.
      await expect(
        runAs('acquireLock', () =>
          shared.send(new UpdateServiceCommand({ cluster: 'prod', service: 'checkout' })),
        ),
      ).rejects.toMatchObject({ name: 'AccessDeniedException' });
      await expect(
        runAs('restore', () =>
          shared.send(new UpdateServiceCommand({ cluster: 'prod', service: 'checkout' })),
        ),
      ).resolves.toBeDefined();
    } finally {
      destroyClients(clients);
    }
  }, 60_000);

  test('API models: a misspelled member fails as ECS rejects a bad request, before any model answers', async () => {
    const clients = simulatedClients(world, 1, 'restore');
    try {
      const bad = {
        cluster: 'prod',
        service: 'checkout',
        taskDefinitoin: 'x',
      } as unknown as ConstructorParameters<typeof UpdateServiceCommand>[0];
      await expect(clients.ecs.send(new UpdateServiceCommand(bad))).rejects.toMatchObject({
        name: 'InvalidParameterException',
        message: expect.stringContaining('taskDefinitoin: UpdateServiceRequest has no member taskDefinitoin'),
      });
    } finally {
      destroyClients(clients);
    }
    expect(updates).toBe(0);
    expect(modelCheckSummaryOf(world)?.rejected).toHaveLength(1);
  }, 60_000);
});
