import { ECSClient } from '@aws-sdk/client-ecs';
import { SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DeleteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { type FleetSettingsInput, fleetSchema } from '../../lambdas/shared/fleet';
import { Ledger, type SlotClaim } from '../../lambdas/shared/ledger';
import { takeDeploySlot, waitForDeploySlot, wakeDeploySlots } from '../../lambdas/workflow/deploy-slot';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let now = new Date('2026-12-01T10:00:00.000Z').getTime();
const HOME = { account: '111111111111', region: 'eu-west-1' };

beforeAll(async () => {
  dynamo = await startDynalite();
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => new Date(now) });
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  ssm.reset();
  sfn.reset();
  sfn.on(SendTaskSuccessCommand).resolves({});
  await DynamoDBDocumentClient.from(dynamo.client).send(
    new DeleteCommand({ TableName: dynamo.tableName, Key: { pk: 'FLEET', sk: 'SLOTS' } }),
  );
});

const claim = (n: number, over: Partial<SlotClaim> = {}): SlotClaim => ({
  executionName: `run-${n}`,
  serviceKey: `prod/svc-${n}`,
  account: HOME.account,
  region: HOME.region,
  stage: 0,
  stageName: 'default',
  repositories: [`${HOME.account}/app-${n}`],
  ...over,
});
const OPEN = { paused: false };

describe('deployment slots (against dynalite)', () => {
  test('an organization cap of 2: of 6 runs asking at once, exactly 2 deploy; a release lets the longest-waiting one go', async () => {
    const caps = { maxInFlight: 2 };
    const first = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => ledger.fleet.take(claim(n), caps, OPEN)));
    expect(first.filter((d) => d.kind === 'taken')).toHaveLength(2);
    const waiting = first.flatMap((d, i) => (d.kind === 'wait' ? [i + 1] : []));
    expect(waiting).toHaveLength(4);
    expect(first.find((d) => d.kind === 'wait')).toMatchObject({
      reason: expect.stringContaining('2 of 2 deployments in flight'),
    });

    const holder = first.findIndex((d) => d.kind === 'taken') + 1;
    expect(await ledger.fleet.release(`run-${holder}`)).toBe(true);
    now += 1_000;
    // Every waiting run asks again, the newest first: only the one that waited longest may go.
    const again = [];
    for (const n of [...waiting].reverse())
      again.push([n, (await ledger.fleet.take(claim(n), caps, OPEN)).kind] as const);
    const state = await ledger.fleet.state();
    expect(state.slots).toHaveLength(2);
    expect(again.filter(([, kind]) => kind === 'taken')).toHaveLength(1);
    // Taking again is idempotent.
    const winner = again.find(([, kind]) => kind === 'taken')?.[0] ?? 0;
    expect(await ledger.fleet.take(claim(winner), caps, OPEN)).toMatchObject({ kind: 'taken' });
  });

  test('a cap per account and per Region counts only that account or Region', async () => {
    const caps = { maxInFlightPerAccount: 1, maxInFlightPerRegion: 2 };
    const a1 = await ledger.fleet.take(claim(1), caps, OPEN);
    const a2 = await ledger.fleet.take(claim(2), caps, OPEN);
    const b1 = await ledger.fleet.take(claim(3, { account: '222222222222' }), caps, OPEN);
    const c1 = await ledger.fleet.take(claim(4, { account: '333333333333' }), caps, OPEN);
    const c2 = await ledger.fleet.take(
      claim(5, { account: '333333333333', region: 'us-east-1' }),
      caps,
      OPEN,
    );
    expect([a1.kind, a2.kind, b1.kind, c1.kind, c2.kind]).toEqual([
      'taken',
      'wait',
      'taken',
      'wait',
      'taken',
    ]);
    expect(a2).toMatchObject({ reason: '1 of 1 deployments in flight in account 111111111111' });
    expect(c1).toMatchObject({ reason: '2 of 2 deployments in flight in eu-west-1' });
  });

  test('stages: production waits while staging deploys, or waits to deploy, the same repository', async () => {
    const repo = ['999999999999/shared-base'];
    const staging = claim(1, { stage: 0, stageName: 'staging', repositories: repo });
    const production = claim(2, { stage: 1, stageName: 'production', repositories: repo });
    const other = claim(3, { stage: 1, stageName: 'production' });
    const caps = { maxInFlight: 10 };
    expect((await ledger.fleet.take(staging, { maxInFlight: 0 + 10 }, { ...OPEN, paused: true })).kind).toBe(
      'wait',
    );
    const blocked = await ledger.fleet.take(production, caps, OPEN);
    expect(blocked).toMatchObject({
      kind: 'wait',
      reason: 'stage staging goes first: prod/svc-1 waits to deploy 999999999999/shared-base',
    });
    expect((await ledger.fleet.take(other, caps, OPEN)).kind).toBe('taken');
    expect((await ledger.fleet.take(staging, caps, OPEN)).kind).toBe('taken');
    expect(await ledger.fleet.take(production, caps, OPEN)).toMatchObject({
      reason: expect.stringContaining('is deploying'),
    });
    await ledger.fleet.release(staging.executionName);
    expect((await ledger.fleet.take(production, caps, OPEN)).kind).toBe('taken');
  });

  test('the earlier deadline goes first, and the sweep wakes only the runs the fleet has room for', async () => {
    const caps = { maxInFlight: 2, maxInFlightPerAccount: 1 };
    expect((await ledger.fleet.take(claim(1), caps, OPEN)).kind).toBe('taken');
    const late = claim(2, { deadline: '2026-12-30T00:00:00.000Z' });
    const soon = claim(3, { deadline: '2026-12-02T00:00:00.000Z' });
    const elsewhere = claim(4, { account: '222222222222' });
    await ledger.fleet.take(late, caps, OPEN);
    now += 1_000;
    await ledger.fleet.take(soon, caps, OPEN);
    // Account 2 has room, and the organization one more slot: only that run may go now.
    expect((await ledger.fleet.wakeable(caps)).map((w) => w.executionName)).toEqual([]);
    await ledger.fleet.take(elsewhere, caps, { paused: true });
    expect((await ledger.fleet.wakeable(caps)).map((w) => w.executionName)).toEqual(['run-4']);
    expect((await ledger.fleet.take(elsewhere, caps, OPEN)).kind).toBe('taken');

    await ledger.fleet.release('run-1');
    // One slot of the organization's two is free, and account 1 has room: the earlier deadline goes.
    expect((await ledger.fleet.wakeable(caps)).map((w) => w.executionName)).toEqual(['run-3']);
    expect(await ledger.fleet.take(late, caps, OPEN)).toMatchObject({
      kind: 'wait',
      reason: '1 of 2 deployments in flight, and 1 waiting ahead of this one',
    });
    expect((await ledger.fleet.take(soon, caps, OPEN)).kind).toBe('taken');
    expect((await ledger.fleet.state()).waiting.map((w) => w.executionName)).toEqual(['run-2']);
  });
});

describe('takeDeploySlot', () => {
  const input = {
    service: {
      clusterArn: 'arn:aws:ecs:eu-west-1:222222222222:cluster/prod',
      serviceName: 'api',
      key: 'prod/api',
    },
    images: [{ registry: '222222222222', repository: 'api' }],
    executionName: 'exec-1',
  };
  const deps = (fleet: FleetSettingsInput, pauseParameter?: string) => ({
    ledger,
    ssm: new SSMClient({}),
    ecsFor: () => new ECSClient({}),
    settings: fleetSchema.parse(fleet),
    ...(pauseParameter ? { pauseParameter } : {}),
    home: HOME,
  });

  test('the pause switch stops the deployment at once, and says so', async () => {
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'paused' } });
    const out = await takeDeploySlot(input, deps({}, '/autopatch/hub/deployments'));
    expect(out).toMatchObject({ verdict: 'wait' });
    expect(out.reason).toContain(
      'Deployments are paused: the pause switch /autopatch/hub/deployments is "paused"',
    );
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'running' } });
    expect((await takeDeploySlot(input, deps({}, '/autopatch/hub/deployments'))).verdict).toBe('taken');
  });

  test('a switch that cannot be read deploys nothing and says why; a missing one does not hold', async () => {
    ssm
      .on(GetParameterCommand)
      .rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    await expect(takeDeploySlot(input, deps({ maxInFlight: 5 }, '/p'))).rejects.toMatchObject({
      name: 'ConfigurationError',
      message: expect.stringContaining(
        'The pause switch /p cannot be read (AccessDeniedException: denied), so nothing was deployed',
      ),
    });
    expect(await ledger.fleet.state()).toEqual({ slots: [], waiting: [] });
    ssm.on(GetParameterCommand).rejects(Object.assign(new Error('none'), { name: 'ParameterNotFound' }));
    expect(await takeDeploySlot(input, deps({ maxInFlight: 5 }, '/p'))).toMatchObject({
      verdict: 'taken',
      stage: 'default',
    });
    const state = await ledger.fleet.state();
    expect(state.slots).toEqual([
      expect.objectContaining({
        account: '222222222222',
        region: 'eu-west-1',
        repositories: ['222222222222/api'],
      }),
    ]);
  });

  test('without caps or stages nothing is written', async () => {
    expect((await takeDeploySlot(input, deps({}))).verdict).toBe('taken');
    expect(await ledger.fleet.state()).toEqual({ slots: [], waiting: [] });
  });
});

describe('the wait for a slot, and the sweep that ends it', () => {
  const service = {
    clusterArn: 'arn:aws:ecs:eu-west-1:111111111111:cluster/prod',
    serviceName: 'api',
    key: 'prod/api',
  };
  const waitDeps = (fleet: FleetSettingsInput) => ({
    ledger,
    sfn: new SFNClient({}),
    ssm: new SSMClient({}),
    settings: fleetSchema.parse(fleet),
    pauseParameter: '/p',
  });
  const tokensSent = () => sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input.taskToken);

  test('paused: nobody is let go; once running, the sweep answers the waiting runs it has room for, once each', async () => {
    const caps = { maxInFlight: 1 };
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'paused' } });
    for (const n of [1, 2]) {
      expect((await ledger.fleet.take(claim(n), caps, { paused: true })).kind).toBe('wait');
      expect(
        await waitForDeploySlot(
          { service, executionName: `run-${n}`, taskToken: `token-${n}` },
          waitDeps(caps),
        ),
      ).toEqual({
        answered: false,
      });
    }
    expect(await wakeDeploySlots(waitDeps(caps))).toEqual([]);
    expect(tokensSent()).toEqual([]);

    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'running' } });
    expect(await wakeDeploySlots(waitDeps(caps))).toEqual(['run-1']);
    expect(tokensSent()).toEqual(['token-1']);
    // The token is forgotten once answered: the next sweep does not answer it again.
    expect(await wakeDeploySlots(waitDeps(caps))).toEqual([]);
  });

  test('a run whose wait starts after room appeared answers its own wait at once', async () => {
    ssm.on(GetParameterCommand).rejects(Object.assign(new Error('none'), { name: 'ParameterNotFound' }));
    const caps = { maxInFlight: 1 };
    expect((await ledger.fleet.take(claim(1), caps, OPEN)).kind).toBe('taken');
    expect((await ledger.fleet.take(claim(2), caps, OPEN)).kind).toBe('wait');
    await ledger.fleet.release('run-1');
    expect(
      await waitForDeploySlot({ service, executionName: 'run-2', taskToken: 'token-2' }, waitDeps(caps)),
    ).toEqual({
      answered: true,
    });
    expect(tokensSent()).toEqual(['token-2']);
  });
});
