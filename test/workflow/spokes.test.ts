/**
 * Hub and spokes at run time (issue 13, part 2): every workflow step reaches a service or an image in
 * its own account and Region, a spoke whose role cannot be assumed ends the run with a clear outcome
 * and the lock released, keys and execution names name the account outside the hub and stay what they
 * were at home, and builds push to the registry the image came from.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudWatchClient, DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeServicesCommand,
  ECSClient,
  StopServiceDeploymentCommand,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { parseAccountAliases, triageRuntimeConfigSchema } from '../../lambdas/shared/config';
import { placeOfServiceKey, serviceKeyOf, serviceRefOf } from '../../lambdas/shared/contracts';
import { executionName } from '../../lambdas/shared/remediation';
import { placeOfImage, placeOfService } from '../../lambdas/workflow/clients';
import { serviceKeyFromArn } from '../../lambdas/workflow/deployment-events';
import { type FinishInput, summarise } from '../../lambdas/workflow/finish';
import { planBuilds, type RegistryAccess } from '../../lambdas/workflow/plan-builds';
import { ECR_LOGIN } from '../../statemachines/buildspecs/patch-os';
import {
  FAKE_PROJECTS,
  FakeAccount,
  image,
  lambdaError,
  remediationRequest,
  renderWorkflow,
  runWorkflow,
} from '../support/workflow-harness';

const HUB = '111111111111';
const SPOKE = '222222222222';
const OTHER = '333333333333';
const HUB_REGION = 'eu-central-1';
const SPOKE_ROLE = `arn:aws:iam::${SPOKE}:role/autopatch/AutopatchSpoke`;

const env = { ...process.env };
beforeEach(() => {
  process.env.AUTOPATCH_HOME_ACCOUNT = HUB;
  process.env.AWS_REGION = HUB_REGION;
});
afterAll(() => {
  process.env = env;
});

const spokeService = (account = SPOKE, region = 'us-east-1') =>
  serviceRefOf(`arn:aws:ecs:${region}:${account}:cluster/prod`, 'payments-api', {
    account: HUB,
    region: HUB_REGION,
  });

describe('service keys across accounts and Regions', () => {
  const home = { account: HUB, region: HUB_REGION };

  it('keeps "<cluster>/<service>" in the hub account and Region, and names account and Region elsewhere', () => {
    expect(serviceKeyOf(`arn:aws:ecs:${HUB_REGION}:${HUB}:cluster/prod`, 'api', home)).toBe('prod/api');
    // A cluster given by name, or a single-account install (no home account): home, as always.
    expect(serviceKeyOf('prod', 'api', home)).toBe('prod/api');
    expect(
      serviceKeyOf(`arn:aws:ecs:${HUB_REGION}:${SPOKE}:cluster/prod`, 'api', { region: HUB_REGION }),
    ).toBe('prod/api');
    const spoke = serviceKeyOf(`arn:aws:ecs:us-east-1:${SPOKE}:cluster/prod`, 'api', home);
    const other = serviceKeyOf(`arn:aws:ecs:us-east-1:${OTHER}:cluster/prod`, 'api', home);
    const hubElsewhere = serviceKeyOf(`arn:aws:ecs:us-east-1:${HUB}:cluster/prod`, 'api', home);
    expect(spoke).toBe(`${SPOKE}/us-east-1/prod/api`);
    expect(new Set([spoke, other, hubElsewhere, 'prod/api']).size).toBe(4);
    expect(placeOfServiceKey(spoke)).toEqual({ account: SPOKE, region: 'us-east-1' });
    expect(placeOfServiceKey('prod/api')).toBeUndefined();
  });

  it('keys a spoke deployment event the way triage keys the service, so it finds the lock', () => {
    const arn = `arn:aws:ecs:us-east-1:${SPOKE}:service/prod/payments-api`;
    expect(serviceKeyFromArn(arn)).toBe(spokeService().key);
    expect(serviceKeyFromArn(`arn:aws:ecs:${HUB_REGION}:${HUB}:service/prod/payments-api`)).toBe(
      'prod/payments-api',
    );
    delete process.env.AUTOPATCH_HOME_ACCOUNT;
    // Single account: unchanged keys whatever account the ARN names.
    expect(serviceKeyFromArn(`arn:aws:ecs:${HUB_REGION}:${SPOKE}:service/prod/payments-api`)).toBe(
      'prod/payments-api',
    );
  });
});

describe('execution names', () => {
  const at = new Date('2024-09-04T16:55:38.411Z');
  const img = (over = {}) =>
    image({ imageDigest: `sha256:${'a'.repeat(64)}`, cves: ['CVE-2024-6119'], ...over });

  it('are unchanged for hub services (names recorded before spokes existed)', () => {
    expect(executionName({ serviceName: 'checkout', key: 'prod/checkout' }, [img()], at)).toBe(
      'checkout-CVE-2024-6119-aaaaaaaa-123bf4-20240904T165538Z',
    );
    expect(
      executionName(
        { serviceName: 'cart', key: 'staging/cart' },
        [img(), img({ imageDigest: `sha256:${'b'.repeat(64)}`, cves: ['CVE-2024-1', 'CVE-2024-2'] })],
        at,
      ),
    ).toBe('cart-3cves-aaaaaaaax2-9e19bd-20240904T165538Z');
    expect(executionName({ serviceName: 'x'.repeat(200), key: `prod/${'x'.repeat(200)}` }, [img()], at)).toBe(
      'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-CVE-2024-6119-aaaaaaaa-5247ef-20240904T165538Z',
    );
  });

  it('name the account of a spoke service, within 80 allowed characters', () => {
    const name = executionName({ serviceName: 'api', key: `${SPOKE}/us-east-1/prod/api` }, [img()], at);
    expect(name).toBe(`${SPOKE}-api-CVE-2024-6119-aaaaaaaa-b00103-20240904T165538Z`);
    const long = executionName(
      { serviceName: 'x'.repeat(200), key: `${SPOKE}/us-east-1/prod/${'x'.repeat(200)}` },
      [img()],
      at,
    );
    expect(long.startsWith(`${SPOKE}-xxx`)).toBe(true);
    expect(long.length).toBeLessThanOrEqual(80);
    expect(long).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('places of services and images', () => {
  it('reads a service from its cluster ARN and an image from its registry and repository URI', () => {
    expect(placeOfService(spokeService())).toEqual({ account: SPOKE, region: 'us-east-1' });
    expect(placeOfService({ clusterArn: 'prod' })).toEqual({ account: HUB, region: HUB_REGION });
    expect(
      placeOfImage({
        registry: OTHER,
        repositoryUri: `${OTHER}.dkr.ecr.us-west-2.amazonaws.com/shared/base`,
      }),
    ).toEqual({ account: OTHER, region: 'us-west-2' });
  });
});

describe('a workflow step reaches the service in its own account and Region', () => {
  const ecs = mockClient(ECSClient);
  const cloudwatch = mockClient(CloudWatchClient);
  const sts = mockClient(STSClient);
  const credentials = {
    Credentials: {
      AccessKeyId: 'ASIASPOKE',
      SecretAccessKey: 'spoke-secret',
      SessionToken: 'spoke-token',
      Expiration: new Date(Date.now() + 3_600_000),
    },
  };
  let gate: typeof import('../../lambdas/workflow/handlers/gate').handler;

  beforeAll(async () => {
    process.env.AUTOPATCH_HOME_ACCOUNT = HUB;
    process.env.AWS_REGION = HUB_REGION;
    process.env.AWS_ACCESS_KEY_ID = 'AKIAHUB';
    process.env.AWS_SECRET_ACCESS_KEY = 'hub-secret';
    ({ handler: gate } = await import('../../lambdas/workflow/handlers/gate'));
  });
  beforeEach(() => {
    ecs.reset();
    cloudwatch.reset();
    sts.reset();
    sts.on(AssumeRoleCommand).resolves(credentials);
    ecs.on(DescribeServicesCommand).resolves({
      services: [{ status: 'ACTIVE', deploymentController: { type: 'ECS' }, taskDefinition: 'td:1' }],
    });
    cloudwatch.on(DescribeAlarmsCommand).resolves({ MetricAlarms: [], CompositeAlarms: [] });
  });

  const gateInput = (service: ReturnType<typeof spokeService>) => ({
    service,
    target: { alarmNames: [], withoutAlarms: 'deploy' as const },
    stage: 'plan' as const,
  });

  it('calls ECS of a service in account 222222222222 with the spoke role, in the service Region', async () => {
    await gate(gateInput(spokeService())).catch(() => undefined);
    const call = ecs.commandCalls(DescribeServicesCommand)[0];
    expect(call?.args[0].input).toEqual({ cluster: spokeService().clusterArn, services: ['payments-api'] });
    const client = call?.thisValue as ECSClient;
    expect(await client.config.region()).toBe('us-east-1');
    expect((await client.config.credentials()).accessKeyId).toBe('ASIASPOKE');
    expect(sts.commandCalls(AssumeRoleCommand).map((c) => c.args[0].input.RoleArn)).toEqual([SPOKE_ROLE]);
  });

  it('calls ECS of a hub service with the hub credentials and no STS call', async () => {
    const hub = serviceRefOf(`arn:aws:ecs:${HUB_REGION}:${HUB}:cluster/prod`, 'payments-api');
    expect(hub.key).toBe('prod/payments-api');
    await gate(gateInput(hub)).catch(() => undefined);
    const client = ecs.commandCalls(DescribeServicesCommand)[0]?.thisValue as ECSClient;
    expect(await client.config.region()).toBe(HUB_REGION);
    expect((await client.config.credentials()).accessKeyId).toBe('AKIAHUB');
    expect(sts.calls()).toHaveLength(0);
  });

  it('deploys and rolls back a spoke service with its own ECS client (the Lambda for the SDK-integration steps)', async () => {
    const { handler } = await import('../../lambdas/workflow/handlers/deploy-with-ecs');
    const deployment = `arn:aws:ecs:us-east-1:${SPOKE}:service-deployment/prod/payments-api/d-1`;
    ecs.on(UpdateServiceCommand).resolves({ service: { currentServiceDeployment: deployment } });
    ecs.on(StopServiceDeploymentCommand).resolves({});
    const service = spokeService();
    await expect(handler({ service, taskDefinitionArn: 'td:2' })).resolves.toEqual({
      deploymentArn: deployment,
    });
    await expect(handler({ step: 'roll-back', service, deploymentArn: deployment })).resolves.toEqual({
      rollback: 'requested',
    });
    for (const call of [
      ...ecs.commandCalls(UpdateServiceCommand),
      ...ecs.commandCalls(StopServiceDeploymentCommand),
    ]) {
      const client = call.thisValue as ECSClient;
      expect(await client.config.region()).toBe('us-east-1');
      expect((await client.config.credentials()).accessKeyId).toBe('ASIASPOKE');
    }
  });

  it('fails the step with SpokeAccessError when the spoke role cannot be assumed (TransientError when throttled)', async () => {
    sts
      .on(AssumeRoleCommand)
      .rejects(
        Object.assign(new Error('not authorized to perform sts:AssumeRole'), { name: 'AccessDenied' }),
      );
    ecs.on(DescribeServicesCommand).callsFake(async () => {
      // What signing does first: resolve the calling client's credentials.
      await (ecs.send.lastCall.thisValue as ECSClient).config.credentials();
      return { services: [] };
    });
    const other = spokeService(OTHER, 'us-west-2');
    await expect(gate(gateInput(other))).rejects.toMatchObject({ name: 'SpokeAccessError' });

    sts.reset();
    sts.on(AssumeRoleCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'Throttling' }));
    const third = spokeService('444444444444', 'us-west-2');
    await expect(gate(gateInput(third))).rejects.toMatchObject({ name: 'TransientError' });
  });
});

describe('SpokeAccessError through the real definition', () => {
  beforeAll(() => {
    renderWorkflow();
  });

  const request = () => {
    const service = spokeService();
    return remediationRequest({
      service,
      executionName: executionName(service, [image()], new Date('2024-09-04T16:55:38.411Z')),
    });
  };
  const denied = lambdaError(
    'SpokeAccessError',
    `Autopatch cannot assume ${SPOKE_ROLE} (AccessDenied: not authorized to perform sts:AssumeRole). ` +
      `Deploy the Autopatch spoke in account ${SPOKE} with this hub's account as its hub (docs/organizations.md), ` +
      "or remove the account from the hub's organization settings.",
  );

  it('ends Failed, not retried, with "cannot reach account" and what to deploy, and releases the lock', async () => {
    const account = new FakeAccount().on('Check the service can be watched', () => {
      throw denied;
    });
    const req = request();
    const run = await runWorkflow(req, account);

    expect(run.status).toBe('FAILED');
    expect(run.states.slice(-4)).toEqual([
      'The remediation failed',
      'Record the outcome and release the lock',
      'Which outcome?',
      'Failed',
    ]);
    expect(run.retries.get('Check the service can be watched') ?? 0).toBe(0);
    expect(account.releases).toEqual([[req.service.key, req.executionName]]);
    expect(account.outcomes).toEqual([
      expect.objectContaining({ outcome: 'Failed', serviceKey: req.service.key }),
    ]);
    expect(run.cause).toContain(`Autopatch cannot reach account ${SPOKE}`);
    expect(run.cause).toContain(`deploy the Autopatch spoke in account ${SPOKE}`);
    expect(run.cause).toContain('Nothing was deployed');
  });

  it('retries a throttled AssumeRole (TransientError) as any transient error', async () => {
    let calls = 0;
    const ready = new FakeAccount().handler('Check the service can be watched');
    const account = new FakeAccount().on('Check the service can be watched', (input) => {
      calls += 1;
      if (calls === 1) throw lambdaError('TransientError', `AssumeRole ${SPOKE_ROLE}: Rate exceeded`);
      return ready?.(input);
    });
    const run = await runWorkflow(request(), account);
    expect(run.retries.get('Check the service can be watched')).toBe(1);
    expect(run.states.at(-1)).toBe('Patched');
  });
});

describe('outcomes name the service account, its alias and Region', () => {
  const finishInput = (service = spokeService()): FinishInput =>
    ({
      outcome: 'Failed',
      state: {
        ...remediationRequest({ service }),
        error: {
          Error: 'SpokeAccessError',
          Cause: JSON.stringify({
            errorType: 'SpokeAccessError',
            errorMessage: `Autopatch cannot assume ${SPOKE_ROLE}`,
          }),
        },
      },
      executionName: 'x',
      executionArn: `arn:aws:states:${HUB_REGION}:${HUB}:execution:autopatch:x`,
      stateMachineArn: `arn:aws:states:${HUB_REGION}:${HUB}:stateMachine:autopatch`,
      startedAt: '2024-09-04T16:55:38.411Z',
    }) as unknown as FinishInput;

  it('uses the alias map for a spoke and keeps the hub alias for hub services', () => {
    const aliases = parseAccountAliases(JSON.stringify({ [SPOKE]: 'payments-prod' }));
    const spoke = summarise(finishInput(), 'hub-alias', aliases).summary;
    expect(spoke.account).toEqual({ id: SPOKE, alias: 'payments-prod' });
    expect(spoke.region).toBe('us-east-1');
    expect(spoke.reason).toContain(`Autopatch cannot reach account ${SPOKE} (payments-prod)`);

    const hub = summarise(
      finishInput(serviceRefOf(`arn:aws:ecs:${HUB_REGION}:${HUB}:cluster/prod`, 'payments-api')),
      'hub-alias',
      aliases,
    ).summary;
    expect(hub.account).toEqual({ id: HUB, alias: 'hub-alias' });
    expect(hub.region).toBe(HUB_REGION);
  });

  it('accepts accountAliases in the runtime config, optional, and refuses a malformed map', () => {
    expect(triageRuntimeConfigSchema.parse({ policy: {} }).accountAliases).toBeUndefined();
    expect(
      triageRuntimeConfigSchema.parse({ policy: {}, accountAliases: { [SPOKE]: 'a' } }).accountAliases,
    ).toEqual({
      [SPOKE]: 'a',
    });
    expect(parseAccountAliases(undefined)).toEqual({});
    expect(() => parseAccountAliases('{"12":"x"}')).toThrow(/ACCOUNT_ALIASES is invalid/);
  });
});

describe('builds push to the registry the image came from', () => {
  const access: RegistryAccess = {
    home: { account: HUB, region: HUB_REGION },
    roleArnFor: (account) => `arn:aws:iam::${account}:role/autopatch/AutopatchSpoke`,
  };
  const input = (img: ReturnType<typeof image>) => ({
    images: [img],
    executionName: 'exec-1',
    startedAt: '2024-09-04T16:55:38.411Z',
  });
  const vars = (build: { environment: ReadonlyArray<{ Name: string; Value: string }> } | undefined) =>
    Object.fromEntries((build?.environment ?? []).map((v) => [v.Name, v.Value]));
  const hubImage = image({
    registry: HUB,
    repositoryUri: `${HUB}.dkr.ecr.${HUB_REGION}.amazonaws.com/payments/api`,
  });
  const spokeImage = image({
    registry: SPOKE,
    repositoryUri: `${SPOKE}.dkr.ecr.us-east-2.amazonaws.com/payments/api`,
  });

  it('plans a hub image exactly as before, and a spoke image with its registry Region and role', () => {
    expect(planBuilds(input(hubImage), FAKE_PROJECTS, access)).toEqual(
      planBuilds(input(hubImage), FAKE_PROJECTS),
    );
    const spoke = vars(planBuilds(input(spokeImage), FAKE_PROJECTS, access).builds[0]);
    expect(spoke).toEqual(
      expect.objectContaining({
        REPOSITORY_URI: `${SPOKE}.dkr.ecr.us-east-2.amazonaws.com/payments/api`,
        AUTOPATCH_REGISTRY_REGION: 'us-east-2',
        AUTOPATCH_REGISTRY_ROLE_ARN: `arn:aws:iam::${SPOKE}:role/autopatch/AutopatchSpoke`,
      }),
    );
    // The hub's account in another Region: the Region only, no role.
    const elsewhere = image({
      registry: HUB,
      repositoryUri: `${HUB}.dkr.ecr.us-east-2.amazonaws.com/payments/api`,
    });
    const v = vars(planBuilds(input(elsewhere), FAKE_PROJECTS, access).builds[0]);
    expect(v.AUTOPATCH_REGISTRY_REGION).toBe('us-east-2');
    expect(v.AUTOPATCH_REGISTRY_ROLE_ARN).toBeUndefined();
  });

  /** Run the buildspec's login commands in bash with `aws` and `docker` stubs that log what they are asked. */
  const login = (variables: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), 'autopatch-login-'));
    try {
      const log = join(dir, 'log');
      writeFileSync(
        join(dir, 'aws'),
        `#!/bin/bash\necho "aws $* [key=\${AWS_ACCESS_KEY_ID:-hub}]" >> "${log}"\n` +
          'if [ "$1" = sts ]; then printf "ASIASPOKE\\tspoke-secret\\tspoke-token\\n"; else echo token; fi\n',
      );
      writeFileSync(join(dir, 'docker'), `#!/bin/bash\ncat > /dev/null\necho "docker $*" >> "${log}"\n`);
      chmodSync(join(dir, 'aws'), 0o755);
      chmodSync(join(dir, 'docker'), 0o755);
      const script = [...ECR_LOGIN, `echo "after [key=\${AWS_ACCESS_KEY_ID:-hub}]" >> "${log}"`].join('\n');
      execFileSync('bash', ['-c', script], {
        env: {
          PATH: `${dir}:/usr/bin:/bin`,
          AWS_REGION: HUB_REGION,
          CODEBUILD_BUILD_NUMBER: '7',
          ...variables,
        },
      });
      return readFileSync(log, 'utf8').trim().split('\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('logs a hub build in to the hub registry with its own role, as always', () => {
    expect(login(vars(planBuilds(input(hubImage), FAKE_PROJECTS, access).builds[0]))).toEqual([
      `aws ecr get-login-password --region ${HUB_REGION} [key=hub]`,
      `docker login --username AWS --password-stdin ${HUB}.dkr.ecr.${HUB_REGION}.amazonaws.com`,
      'after [key=hub]',
    ]);
  });

  it("logs a spoke image's build in to its registry host and Region with the spoke role, for that login only", () => {
    expect(login(vars(planBuilds(input(spokeImage), FAKE_PROJECTS, access).builds[0]))).toEqual([
      `aws sts assume-role --role-arn arn:aws:iam::${SPOKE}:role/autopatch/AutopatchSpoke --role-session-name autopatch-build-7 --query Credentials.[AccessKeyId,SecretAccessKey,SessionToken] --output text [key=hub]`,
      'aws ecr get-login-password --region us-east-2 [key=ASIASPOKE]',
      `docker login --username AWS --password-stdin ${SPOKE}.dkr.ecr.us-east-2.amazonaws.com`,
      'after [key=hub]',
    ]);
  });
});
