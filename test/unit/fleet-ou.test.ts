/**
 * Fleet stages by organizational unit: the stage schema (OU ids), stageOf (nested OUs; an account of
 * unknown OUs goes last, with the reason), the resolver (configured OUs, the ListParents walk, the
 * in-memory cache and its TTLs, refusals vs throttling), the signed ListParents call, and the slot
 * step against dynalite with the pause switch mocked (aws-sdk-client-mock).
 */

import { ECSClient } from '@aws-sdk/client-ecs';
import { ListParentsCommand, OrganizationsClient } from '@aws-sdk/client-organizations';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DeleteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { type FleetSettingsInput, fleetSchema, stageOf } from '../../lambdas/shared/fleet';
import { Ledger } from '../../lambdas/shared/ledger';
import {
  OrganizationalUnitResolver,
  type OrganizationParent,
  type OrganizationParentsApi,
} from '../../lambdas/shared/org-units';
import { organizationsApi } from '../../lambdas/shared/organizations-api';
import { takeDeploySlot } from '../../lambdas/workflow/deploy-slot';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const ROOT = 'r-ab12';
const PROD = 'ou-ab12-prod0001';
const PROD_EU = 'ou-ab12-prodeu01';
const STAGING = 'ou-ab12-stage001';
const STAGING_ACCOUNT = '222222222222';
const PROD_EU_ACCOUNT = '333333333333';
const STRAY = '444444444444';

/** The organization: root > prod > prod-eu > 333…; root > staging > 222…. */
const PARENT: Record<string, OrganizationParent> = {
  [STAGING_ACCOUNT]: { id: STAGING, type: 'ORGANIZATIONAL_UNIT' },
  [STAGING]: { id: ROOT, type: 'ROOT' },
  [PROD_EU_ACCOUNT]: { id: PROD_EU, type: 'ORGANIZATIONAL_UNIT' },
  [PROD_EU]: { id: PROD, type: 'ORGANIZATIONAL_UNIT' },
  [PROD]: { id: ROOT, type: 'ROOT' },
};
const denied = () =>
  Object.assign(new Error('You don’t have permissions'), { name: 'AccessDeniedException' });

/** A fake ListParents that counts its calls, refuses the accounts in `refuse`. */
const fakeOrganizations = (refuse: readonly string[] = []) => {
  const calls: string[] = [];
  const api: OrganizationParentsApi = {
    listParents: async (child) => {
      calls.push(child);
      if (refuse.includes(child)) throw denied();
      const parent = PARENT[child];
      if (parent === undefined)
        throw Object.assign(new Error(`${child} not found`), { name: 'ChildNotFoundException' });
      return [parent];
    },
  };
  return { api, calls };
};

const STAGES: FleetSettingsInput = {
  stages: [
    { name: 'staging', organizationalUnits: [STAGING] },
    { name: 'production', organizationalUnits: [PROD] },
  ],
};

describe('the stage schema', () => {
  test('a stage may name organizational units alone; accountOUs maps accounts to theirs', () => {
    const parsed = fleetSchema.parse({ ...STAGES, accountOUs: { [STAGING_ACCOUNT]: [STAGING] } });
    expect(parsed.stages[0]?.organizationalUnits).toEqual([STAGING]);
    expect(parsed.accountOUs).toEqual({ [STAGING_ACCOUNT]: [STAGING] });
  });

  test('a malformed OU id fails with a message that names the format', () => {
    for (const bad of ['ou-1', 'OU-AB12-CD34EF56', 'r-ab12', 'ou-ab12-short']) {
      const out = fleetSchema.safeParse({ stages: [{ name: 'prod', organizationalUnits: [bad] }] });
      expect(out.success).toBe(false);
      expect(out.error?.issues[0]).toMatchObject({
        path: ['stages', 0, 'organizationalUnits', 0],
        message: expect.stringContaining('must be an organizational unit id such as ou-ab12-cd34ef56'),
      });
    }
    const mapping = fleetSchema.safeParse({ accountOUs: { [STRAY]: ['prod'] } });
    expect(mapping.error?.issues[0]?.path).toEqual(['accountOUs', STRAY, 0]);
    expect(fleetSchema.safeParse({ stages: [{ name: 'x', organizationalUnits: [] }] }).success).toBe(false);
  });
});

describe('stageOf with organizational units', () => {
  const settings = fleetSchema.parse({
    stages: [
      { name: 'canary', tags: { canary: 'true' } },
      ...(STAGES.stages ?? []),
      { name: 'eu', regions: ['eu-west-1'] },
    ],
  });
  const place = (ous: readonly string[] | { reason: string }, tags: Record<string, string> = {}) =>
    stageOf(settings, {
      account: STAGING_ACCOUNT,
      region: 'eu-west-1',
      tags,
      organizationalUnits: Array.isArray(ous)
        ? { known: true, ous }
        : { known: false, reason: (ous as { reason: string }).reason },
    });

  test('an account in a nested OU matches the stage that names the OU above it', () => {
    expect(place([PROD_EU, PROD])).toEqual({ index: 2, name: 'production' });
    expect(place([STAGING])).toEqual({ index: 1, name: 'staging' });
    // In neither OU: the next stage that matches otherwise.
    expect(place(['ou-ab12-sandbox1'])).toEqual({ index: 3, name: 'eu' });
  });

  test('OUs unknown: last, after every stage, even when a tag would put it first; the reason says what to do', () => {
    const out = place(
      { reason: 'organizations:ListParents of 222222222222 failed (AccessDeniedException: no)' },
      {
        canary: 'true',
      },
    );
    expect(out).toMatchObject({ index: 4, name: 'default' });
    expect(out.reason).toContain('the organizational units of account 222222222222 are unknown');
    expect(out.reason).toContain('AccessDeniedException');
    expect(out.reason).toContain('fleet.accountOUs');
    // Not looked up at all (a caller that gives no OUs): last as well.
    expect(stageOf(settings, { account: STAGING_ACCOUNT, region: 'eu-west-1', tags: {} })).toMatchObject({
      index: 4,
      reason: expect.stringContaining('not looked up'),
    });
  });

  test('without OU stages nothing changes: no lookup needed, no reason', () => {
    const plain = fleetSchema.parse({ stages: [{ name: 'eu', regions: ['eu-west-1'] }] });
    expect(stageOf(plain, { account: STRAY, region: 'eu-west-1', tags: {} })).toEqual({
      index: 0,
      name: 'eu',
    });
  });
});

describe('OrganizationalUnitResolver', () => {
  test('walks ListParents up to the root (nested OUs, innermost first) and keeps the answer for an hour', async () => {
    let now = 0;
    const { api, calls } = fakeOrganizations();
    const resolver = new OrganizationalUnitResolver({ api, now: () => now });
    expect(await resolver.ousOf(PROD_EU_ACCOUNT)).toEqual({ known: true, ous: [PROD_EU, PROD] });
    expect(calls).toEqual([PROD_EU_ACCOUNT, PROD_EU, PROD]);
    now += 59 * 60_000;
    await resolver.ousOf(PROD_EU_ACCOUNT);
    expect(calls).toHaveLength(3);
    now += 2 * 60_000;
    await resolver.ousOf(PROD_EU_ACCOUNT);
    expect(calls).toHaveLength(6);
  });

  test('configured accounts are never looked up', async () => {
    const { api, calls } = fakeOrganizations();
    const resolver = new OrganizationalUnitResolver({ api, configured: { [STRAY]: [PROD] } });
    expect(await resolver.ousOf(STRAY)).toEqual({ known: true, ous: [PROD] });
    expect(calls).toEqual([]);
    // Without an API, an account not configured is unknown, with the reason.
    expect(await new OrganizationalUnitResolver().ousOf(STRAY)).toMatchObject({
      known: false,
      reason: expect.stringContaining('not in fleet.accountOUs'),
    });
  });

  test('a refusal (AccessDenied: not the management account or a delegated administrator) is unknown, asked again after five minutes', async () => {
    let now = 0;
    const { api, calls } = fakeOrganizations([STAGING_ACCOUNT]);
    const resolver = new OrganizationalUnitResolver({ api, now: () => now });
    const out = await resolver.ousOf(STAGING_ACCOUNT);
    expect(out).toEqual({
      known: false,
      reason: expect.stringContaining(
        `organizations:ListParents of ${STAGING_ACCOUNT} failed (AccessDeniedException`,
      ),
    });
    await resolver.ousOf(STAGING_ACCOUNT);
    expect(calls).toHaveLength(1);
    now += 5 * 60_000 + 1;
    await resolver.ousOf(STAGING_ACCOUNT);
    expect(calls).toHaveLength(2);
  });

  test('throttling is retried by the step (TransientError), never cached as unknown', async () => {
    let throttled = true;
    const resolver = new OrganizationalUnitResolver({
      api: {
        listParents: async (child) => {
          if (throttled) throw Object.assign(new Error('slow down'), { name: 'TooManyRequestsException' });
          return [PARENT[child] as OrganizationParent];
        },
      },
    });
    await expect(resolver.ousOf(STAGING_ACCOUNT)).rejects.toMatchObject({ name: 'TransientError' });
    throttled = false;
    expect(await resolver.ousOf(STAGING_ACCOUNT)).toEqual({ known: true, ous: [STAGING] });
  });

  test('a parent loop is not followed forever', async () => {
    const resolver = new OrganizationalUnitResolver({
      api: { listParents: async () => [{ id: PROD, type: 'ORGANIZATIONAL_UNIT' }] },
    });
    expect(await resolver.ousOf(STRAY)).toMatchObject({
      known: false,
      reason: expect.stringContaining('deeper'),
    });
  });
});

describe('the ListParents call (the SDK client, mocked)', () => {
  const organizations = mockClient(OrganizationsClient);
  afterEach(() => organizations.reset());

  test('reads the parents, follows NextToken, and keeps the SDK error names', async () => {
    organizations
      .on(ListParentsCommand)
      .resolvesOnce({ Parents: [], NextToken: 'n1' })
      .resolvesOnce({ Parents: [{ Id: STAGING, Type: 'ORGANIZATIONAL_UNIT' }] })
      .rejectsOnce(
        Object.assign(new Error('You don’t have permissions to access this resource.'), {
          name: 'AccessDeniedException',
          $metadata: { httpStatusCode: 400 },
        }),
      )
      .rejectsOnce(
        Object.assign(new Error('slow down'), {
          name: 'TooManyRequestsException',
          $metadata: { httpStatusCode: 400 },
        }),
      );
    const api = organizationsApi(new OrganizationsClient({ region: 'us-east-1' }));
    expect(await api.listParents(STAGING_ACCOUNT)).toEqual([{ id: STAGING, type: 'ORGANIZATIONAL_UNIT' }]);
    expect(organizations.commandCalls(ListParentsCommand).map((c) => c.args[0].input)).toEqual([
      { ChildId: STAGING_ACCOUNT },
      { ChildId: STAGING_ACCOUNT, NextToken: 'n1' },
    ]);
    await expect(api.listParents(STAGING_ACCOUNT)).rejects.toMatchObject({ name: 'AccessDeniedException' });
    // Through the resolver: the refusal is unknown, the throttle a TransientError.
    await expect(new OrganizationalUnitResolver({ api }).ousOf(STRAY)).rejects.toMatchObject({
      name: 'TransientError',
    });
  });
});

describe('takeDeploySlot with stages by organizational unit (against dynalite)', () => {
  const ssm = mockClient(SSMClient);
  let dynamo: LocalDynamo;
  let ledger: Ledger;
  const HOME = { account: '111111111111', region: 'eu-west-1' };

  beforeAll(async () => {
    dynamo = await startDynalite();
    ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
  });
  afterAll(async () => {
    await dynamo.stop();
  });
  beforeEach(async () => {
    ssm.reset();
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'running' } });
    await DynamoDBDocumentClient.from(dynamo.client).send(
      new DeleteCommand({ TableName: dynamo.tableName, Key: { pk: 'FLEET', sk: 'SLOTS' } }),
    );
  });

  const run = (account: string, n: number) => ({
    service: {
      clusterArn: `arn:aws:ecs:eu-west-1:${account}:cluster/prod`,
      serviceName: 'api',
      key: `prod/api-${n}`,
    },
    // The same repository (a shared registry account): stages order its rollout.
    images: [{ registry: '999999999999', repository: 'api' }],
    executionName: `run-${n}`,
  });
  const deps = (resolver: OrganizationalUnitResolver) => ({
    ledger,
    ssm: new SSMClient({}),
    ecsFor: () => new ECSClient({}),
    settings: fleetSchema.parse(STAGES),
    pauseParameter: '/p',
    home: HOME,
    organizationalUnits: resolver,
  });

  test('staging (by OU) deploys first; production (its account in an OU nested in the production OU) waits for it', async () => {
    const { api } = fakeOrganizations();
    const resolver = new OrganizationalUnitResolver({ api });
    const staging = await takeDeploySlot(run(STAGING_ACCOUNT, 1), deps(resolver));
    expect(staging).toMatchObject({ verdict: 'taken', stage: 'staging' });
    expect(staging.stageReason).toBeUndefined();
    const production = await takeDeploySlot(run(PROD_EU_ACCOUNT, 2), deps(resolver));
    expect(production).toMatchObject({ verdict: 'wait', stage: 'production' });
  });

  test('OUs unreadable (AccessDenied): the run goes last with the reason in its output, never first', async () => {
    const { api } = fakeOrganizations([STRAY]);
    const resolver = new OrganizationalUnitResolver({ api });
    expect(await takeDeploySlot(run(STAGING_ACCOUNT, 1), deps(resolver))).toMatchObject({ verdict: 'taken' });
    const stray = await takeDeploySlot(run(STRAY, 3), deps(resolver));
    expect(stray).toMatchObject({ verdict: 'wait', stage: 'default' });
    expect(stray.stageReason).toContain(`ListParents of ${STRAY} failed (AccessDeniedException`);
    expect(stray.reason).toContain(
      'Stage: default, because the organizational units of account 444444444444 are unknown',
    );
    const state = await ledger.fleet.state();
    expect(state.waiting).toEqual([expect.objectContaining({ executionName: 'run-3', stage: 2 })]);
  });

  test('paused: no lookup, and no claim that the OUs are unknown', async () => {
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: 'paused' } });
    const { api, calls } = fakeOrganizations();
    const out = await takeDeploySlot(run(STAGING_ACCOUNT, 5), deps(new OrganizationalUnitResolver({ api })));
    expect(out).toMatchObject({ verdict: 'wait' });
    expect(out.stageReason).toBeUndefined();
    expect(out.reason).not.toContain('unknown');
    expect(calls).toEqual([]);
  });

  test('a configured account needs no lookup: it is placed by fleet.accountOUs', async () => {
    const resolver = new OrganizationalUnitResolver({ configured: { [STRAY]: [STAGING] } });
    expect(await takeDeploySlot(run(STRAY, 4), deps(resolver))).toMatchObject({
      verdict: 'taken',
      stage: 'staging',
    });
  });
});
