/**
 * The simulated organization itself (simulation/organization.ts): each account's IAM, cross-account
 * sts:AssumeRole decided by the hub role's identity policy and the spoke role's trust policy, calls
 * routed to the account of the client's credentials and its Region.
 */
import {
  DeleteServiceCommand,
  DescribeServicesCommand,
  ECSClient,
  ListClustersCommand,
} from '@aws-sdk/client-ecs';
import { AccountClients, SpokeAccessError, spokeRoleArn } from '../../lambdas/shared/accounts';
import { VirtualClock } from '../../simulation/clock';
import { runAs } from '../../simulation/iam/enforcer';
import { IamEvaluator } from '../../simulation/iam/evaluate';
import { CloudWatchModel } from '../../simulation/model/cloudwatch';
import { CodeDeployModel } from '../../simulation/model/codedeploy';
import { EcrModel } from '../../simulation/model/ecr';
import { EcsModel } from '../../simulation/model/ecs';
import { type BusEvent, EventBus } from '../../simulation/model/eventbus';
import { InspectorModel } from '../../simulation/model/inspector';
import { World } from '../../simulation/model/world';
import { Organization } from '../../simulation/organization';
import { parseScenario, type ScenarioError } from '../../simulation/scenario';
import { activate, FaultInjector, type ModelHandlerSet } from '../../simulation/sdk';

const START = Date.parse('2024-09-04T16:00:00Z');
const HUB = '123456789012';
const WORKLOAD = '222222222222';
const NO_ROLE = '333333333333';
const REGION = 'eu-central-1';
const ORG = 'o-exampleorg1';

// Cold (lib/ or lambdas/ changed since the last run) it synthesizes the hub and the spoke stacks first.
jest.setTimeout(180_000);

const setUp = async () => {
  const clock = new VirtualClock(START, 1);
  const world = new World(HUB, REGION, clock);
  const hubBus = new EventBus(world);
  const delivered: BusEvent[] = [];
  hubBus.addRule({
    name: 'all',
    pattern: { source: ['aws.ecs'] },
    targets: [{ id: 't', deliver: (e) => void delivered.push(e) }],
  });
  const org = await Organization.create(world, hubBus, {
    hub: { account: HUB, region: REGION },
    organizationId: ORG,
    spokes: [
      { account: WORKLOAD, regions: [REGION], role: true, registry: false },
      { account: NO_ROLE, regions: [REGION], role: false, registry: false },
    ],
    stack: { settings: { organization: { organizationId: ORG, accounts: [WORKLOAD, NO_ROLE] } } },
  });
  const ecr = new EcrModel(world);
  const ecs = new EcsModel(world, ecr, hubBus);
  const cloudwatch = new CloudWatchModel(world, hubBus);
  const codedeploy = new CodeDeployModel(world, ecs, hubBus, (n) => cloudwatch.state(n));
  const inspector = new InspectorModel(world, ecr, hubBus);
  org.addHome({
    world,
    bus: hubBus,
    ecr,
    ecs,
    cloudwatch,
    codedeploy,
    inspector,
    handlers: {
      ecs: ecs.handlers,
      ecr: ecr.handlers,
      cloudwatch: cloudwatch.handlers,
      codedeploy: codedeploy.handlers,
      inspector2: inspector.handlers,
    },
  });
  const spoke = org.at({ account: WORKLOAD, region: REGION });
  spoke.ecs.addCluster('prod');
  spoke.ecs.addService(
    'prod',
    'web',
    [{ name: 'app', image: 'public.ecr.aws/nginx/nginx:1' }],
    {
      strategy: 'ROLLING',
      bakeTimeMinutes: 0,
      alarms: [],
      tags: { 'autopatch:enabled': 'true' },
      desiredCount: 1,
      deployMinutes: 1,
      rollbackMinutes: 1,
      deploymentController: 'ECS',
    },
    new Date(START),
  );
  org.at({ account: NO_ROLE, region: REGION });
  const handlers = {
    ecs: ecs.handlers,
    ecr: ecr.handlers,
    cloudwatch: cloudwatch.handlers,
    codedeploy: codedeploy.handlers,
    inspector2: inspector.handlers,
  } as unknown as ModelHandlerSet;
  const deactivate = activate({
    world,
    faults: new FaultInjector([]),
    handlers,
    dynamo: { hostname: '127.0.0.1', port: 1 },
    iam: { settings: { organization: { organizationId: ORG, accounts: [WORKLOAD, NO_ROLE] } } },
    organization: org,
  });
  const clients = new AccountClients({ homeAccount: HUB, homeRegion: REGION, sessionName: 'autopatch-test' });
  return { org, world, clients, deactivate, delivered, spoke };
};

let env: Awaited<ReturnType<typeof setUp>>;
beforeAll(async () => {
  env = await setUp();
});
afterAll(() => env?.deactivate());

const spokeCluster = `arn:aws:ecs:${REGION}:${WORKLOAD}:cluster/prod`;

test('a hub role with the spoke grant assumes the spoke role and reaches the spoke account', async () => {
  const ecs = env.clients.clientFor(ECSClient, { account: WORKLOAD, region: REGION });
  const out = await runAs('acquireLock', () =>
    ecs.send(new DescribeServicesCommand({ cluster: spokeCluster, services: ['web'] })),
  );
  expect(out.services?.[0]?.serviceArn).toBe(`arn:aws:ecs:${REGION}:${WORKLOAD}:service/prod/web`);
});

test('a hub role without sts:AssumeRole in its identity policy is denied (planBuilds)', async () => {
  const decision = await env.org.decideAssume('planBuilds', spokeRoleArn(WORKLOAD), REGION);
  expect(decision.allowed).toBe(false);
  expect(decision.message).toMatch(
    new RegExp(
      `^User: arn:aws:sts::${HUB}:assumed-role/AutopatchStack-[^/]+/planBuilds is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::${WORKLOAD}:role/autopatch/AutopatchSpoke$`,
    ),
  );
  const allowed = await env.org.decideAssume('acquireLock', spokeRoleArn(WORKLOAD), REGION);
  expect(allowed.allowed).toBe(true);
});

test('a missing spoke role: AccessDenied as STS words it, raised as SpokeAccessError naming account and role', async () => {
  const clients = new AccountClients({
    homeAccount: HUB,
    homeRegion: REGION,
    sessionName: 'autopatch-test2',
  });
  const ecs = clients.clientFor(ECSClient, { account: NO_ROLE, region: REGION });
  const error = await runAs('acquireLock', () => ecs.send(new ListClustersCommand({}))).catch(
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SpokeAccessError);
  expect((error as SpokeAccessError).account).toBe(NO_ROLE);
  expect((error as Error).message).toContain(`arn:aws:iam::${NO_ROLE}:role/autopatch/AutopatchSpoke`);
  expect((error as Error).message).toContain('AccessDenied: User: arn:aws:sts::123456789012:assumed-role/');
  expect((error as Error).message).toContain(
    `is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::${NO_ROLE}:role/autopatch/AutopatchSpoke`,
  );
});

test("the spoke role's trust denies a role of another account, and a hub role outside the stack's prefix", async () => {
  const trust = (await env.org.roleOf(spokeRoleArn(WORKLOAD)))?.trust?.trust;
  expect(trust).toBeDefined();
  const admin = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] };
  const outsider = (account: string, roleName: string) =>
    new IamEvaluator({
      accountId: account,
      region: REGION,
      partition: 'aws',
      principals: new Map([
        [
          'intruder',
          {
            name: 'intruder',
            roleArn: `arn:aws:iam::${account}:role/${roleName}`,
            roleId: 'x',
            identityPolicies: [{ name: 'admin', policy: admin }],
            managedPolicyArns: [],
          },
        ],
      ]),
      resourcePolicies: new Map(),
      keys: new Map(),
      projectPrincipals: new Map(),
      functionPrincipals: new Map(),
    });
  const attempt = (account: string, roleName: string) =>
    outsider(account, roleName).decide(
      'intruder',
      {
        action: 'sts:AssumeRole',
        resource: spokeRoleArn(WORKLOAD),
        context: {
          'aws:PrincipalArn': `arn:aws:iam::${account}:role/${roleName}`,
          'aws:PrincipalOrgID': ORG,
        },
      },
      undefined,
      { account: WORKLOAD, ...(trust ? { policy: trust } : {}) },
    );
  // Same organization, another account, even with a role named like the hub's.
  expect((await attempt('999999999999', 'AutopatchStack-Anything')).allowed).toBe(false);
  // The hub's account, a role that is not the hub stack's.
  expect((await attempt(HUB, 'SomeAdminRole')).allowed).toBe(false);
  // The hub stack's role prefix in the hub's account: the trust allows it (identity allows everything).
  expect((await attempt(HUB, 'AutopatchStack-Something')).allowed).toBe(true);
});

test('the spoke role cannot delete a service', async () => {
  const ecs = env.clients.clientFor(ECSClient, { account: WORKLOAD, region: REGION });
  const error = await runAs('restore', () =>
    ecs.send(new DeleteServiceCommand({ cluster: spokeCluster, service: 'web' })),
  ).catch((e: unknown) => e);
  expect((error as Error).name).toBe('AccessDeniedException');
  expect((error as Error).message).toMatch(
    new RegExp(
      `^User: arn:aws:sts::${WORKLOAD}:assumed-role/AutopatchSpoke/autopatch-test is not authorized to perform: ecs:DeleteService on resource: arn:aws:ecs:${REGION}:${WORKLOAD}:service/prod/web`,
    ),
  );
});

test("an ECS call with the hub's credentials cannot see a spoke's cluster", async () => {
  const ecs = env.clients.clientFor(ECSClient, { account: HUB, region: REGION });
  const error = await runAs('acquireLock', () =>
    ecs.send(new DescribeServicesCommand({ cluster: spokeCluster, services: ['web'] })),
  ).catch((e: unknown) => e);
  expect((error as Error).name).toBe('AccessDeniedException');
  expect((error as Error).message).toContain(
    `on resource: arn:aws:ecs:${REGION}:${WORKLOAD}:service/prod/web`,
  );
  // By name, the cluster is looked up in the hub's own account, which has none such.
  const own = await runAs('acquireLock', () =>
    ecs.send(new DescribeServicesCommand({ cluster: 'prod', services: ['web'] })),
  ).catch((e: unknown) => e);
  expect((own as Error).name).toBe('ClusterNotFoundException');
});

test("a spoke's ECS events reach the hub's bus with the spoke's account", async () => {
  env.spoke.bus.put(
    env.spoke.bus.envelope('aws.ecs', 'ECS Deployment State Change', [], {
      eventName: 'SERVICE_DEPLOYMENT_COMPLETED',
    }),
    0,
  );
  // Deliveries are scheduled on the (not installed) clock's timers: the spoke's rule, then the hub's bus (1 s).
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  expect(env.delivered.map((e) => e.account)).toContain(WORKLOAD);
});

test('the scenario format names the field of every organization problem', () => {
  const problems = (extra: Record<string, unknown>) => {
    try {
      parseScenario({
        name: 'org',
        description: 'd',
        startTime: '2024-09-04T16:00:00Z',
        account: {},
        accounts: [{ accountId: WORKLOAD, region: REGION }],
        ...extra,
      });
      return [];
    } catch (error) {
      return [...(error as ScenarioError).problems];
    }
  };
  expect(problems({})).toEqual([
    `organization: required with accounts of other account ids (${WORKLOAD}): the hub's organization setting ({ organizationId?, accounts? })`,
  ]);
  expect(problems({ organization: { accounts: [NO_ROLE] } })).toEqual([
    `accounts[0].accountId: ${WORKLOAD} is not in organization.accounts`,
  ]);
  expect(
    problems({
      organization: { organizationId: ORG },
      spokes: [{ account: NO_ROLE }],
      fleet: { maxInFlight: 0 },
    }),
  ).toEqual([
    `spokes[0].account: account ${NO_ROLE} is not declared in accounts[]`,
    'fleet: maxInFlight: Too small: expected number to be >=1',
  ]);
  expect(problems({ organization: { organizationId: ORG } })).toEqual([]);
});
