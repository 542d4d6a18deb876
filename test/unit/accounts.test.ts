import { ECSClient } from '@aws-sdk/client-ecs';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { AccountClients, placeOfArn, SpokeAccessError, spokeRoleArn } from '../../lambdas/shared/accounts';

const sts = mockClient(STSClient);
const HOME = { account: '111111111111', region: 'eu-west-1' };
const SPOKE = { account: '222222222222', region: 'us-east-1' };

const credentials = (expiresInMs: number, now: number, id = 'ASIATEST') => ({
  Credentials: {
    AccessKeyId: id,
    SecretAccessKey: 'secret',
    SessionToken: 'token',
    Expiration: new Date(now + expiresInMs),
  },
});

beforeEach(() => sts.reset());

describe('AccountClients', () => {
  test('the hub account needs no role; another account assumes its spoke role', async () => {
    let now = 1_000_000;
    sts.on(AssumeRoleCommand).callsFake(() => credentials(3_600_000, now));
    const clients = new AccountClients({
      homeAccount: HOME.account,
      homeRegion: HOME.region,
      sts: new STSClient({}),
      now: () => now,
    });
    const home = clients.clientFor(ECSClient, HOME);
    expect(await home.config.region()).toBe('eu-west-1');
    expect(sts.calls()).toHaveLength(0);

    const spoke = clients.clientFor(ECSClient, SPOKE);
    expect(clients.clientFor(ECSClient, SPOKE)).toBe(spoke);
    expect(await spoke.config.region()).toBe('us-east-1');
    const first = await spoke.config.credentials();
    expect(first.accessKeyId).toBe('ASIATEST');
    await spoke.config.credentials();
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(1);
    expect(sts.commandCalls(AssumeRoleCommand)[0]?.args[0].input.RoleArn).toBe(
      'arn:aws:iam::222222222222:role/autopatch/AutopatchSpoke',
    );

    // Renewed five minutes before expiry, not after.
    now += 3_600_000 - 4 * 60_000;
    await spoke.config.credentials();
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(2);
  });

  test('a spoke whose role cannot be assumed fails with SpokeAccessError naming the account; a throttle is transient', async () => {
    const clients = new AccountClients({
      homeAccount: HOME.account,
      homeRegion: HOME.region,
      sts: new STSClient({}),
    });
    sts
      .on(AssumeRoleCommand)
      .rejects(
        Object.assign(new Error('not authorized to perform sts:AssumeRole'), { name: 'AccessDenied' }),
      );
    const provider = clients.credentialsFor(SPOKE.account);
    const error = await provider().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SpokeAccessError);
    expect((error as SpokeAccessError).account).toBe(SPOKE.account);
    expect((error as Error).message).toContain('Deploy the Autopatch spoke in account 222222222222');

    sts.reset();
    sts.on(AssumeRoleCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'Throttling' }));
    await expect(provider()).rejects.toMatchObject({ name: 'TransientError' });
    // A failure is not cached.
    sts.reset();
    sts.on(AssumeRoleCommand).resolves(credentials(3_600_000, Date.now()));
    await expect(provider()).resolves.toMatchObject({ accessKeyId: 'ASIATEST' });
  });

  test('without a home account every place is home (single-account installs)', () => {
    delete process.env.AUTOPATCH_HOME_ACCOUNT;
    const clients = new AccountClients({ homeRegion: HOME.region });
    expect(clients.isHome(SPOKE)).toBe(true);
  });

  test('places and role ARNs', () => {
    expect(placeOfArn('arn:aws:ecs:us-east-2:333333333333:cluster/prod', HOME)).toEqual({
      account: '333333333333',
      region: 'us-east-2',
    });
    expect(placeOfArn('not-an-arn', HOME)).toEqual(HOME);
    expect(spokeRoleArn('444444444444', 'Custom')).toBe('arn:aws:iam::444444444444:role/autopatch/Custom');
  });
});
