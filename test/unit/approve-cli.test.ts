import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient, TaskTimedOut } from '@aws-sdk/client-sfn';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { type ApproveIo, runApprove, TABLE_ENV, USAGE } from '../../bin/approve';
import { Ledger } from '../../lambdas/shared/ledger';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';

const ROOT = path.resolve(__dirname, '..', '..');
const sfn = mockClient(SFNClient);
const sts = mockClient(STSClient);
const ALICE = 'arn:aws:sts::123456789012:assumed-role/AutopatchApprovers/alice';
const NAME = 'payments-api-CVE-2024-6387-a1a1a1a1-1a2b3c-20240904T165538Z';
const ARN = `arn:aws:states:eu-west-1:123456789012:execution:AutopatchStack-Remediation:${NAME}`;
const TOKEN = 'AQCEAAAAKgAAAAMAAAAAAAAAAR2b';

let dynamo: LocalDynamo;
let ledger: Ledger;

beforeAll(async () => {
  dynamo = await startDynalite();
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
});

afterAll(async () => {
  await dynamo.stop();
});

beforeEach(async () => {
  sfn.on(SendTaskSuccessCommand).resolves({});
  sfn.on(SendTaskFailureCommand).resolves({});
  sts.on(GetCallerIdentityCommand).resolves({ Arn: ALICE, Account: '123456789012', UserId: 'AROA:alice' });
  await ledger.putTaskToken(NAME, 'approval', TOKEN, 'prod/payments-api');
});

afterEach(async () => {
  sfn.reset();
  sts.reset();
  await ledger.deleteTaskToken(NAME, 'approval');
});

/** Run the command against the local ledger and the mocked Step Functions; record what it prints. */
const approve = async (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const out: string[] = [];
  const err: string[] = [];
  const regions: Array<string | undefined> = [];
  const io: ApproveIo = {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env,
    clients: (region) => {
      regions.push(region);
      const config = { region: region ?? 'eu-central-1' };
      return { sfn: new SFNClient(config), dynamodb: dynamo.client, sts: new STSClient(config) };
    },
  };
  const status = await runApprove(argv, io);
  return { status, out: out.join('\n'), err: err.join('\n'), regions };
};

describe('npm run approve', () => {
  it('--approve resumes the waiting execution with the stored token and the caller’s identity, in the ARN’s Region, and forgets the token', async () => {
    const run = await approve([ARN, '--approve', '--table', dynamo.tableName, '--by', 'alice']);

    expect(run.status).toBe(0);
    expect(run.regions).toEqual(['eu-west-1']);
    expect(sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input)).toEqual([
      { taskToken: TOKEN, output: JSON.stringify({ approved: true, by: ALICE, name: 'alice' }) },
    ]);
    expect(sfn.commandCalls(SendTaskFailureCommand)).toHaveLength(0);
    await expect(ledger.getTaskToken(NAME, 'approval')).resolves.toBeUndefined();
    expect(run.out).toContain(`Approved: ${NAME} (prod/payments-api)`);
    expect(run.out).toContain(`https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1`);
  });

  it('--reject --reason fails the task with Autopatch.Rejected, which ends the remediation as Rejected', async () => {
    const run = await approve([
      NAME,
      '--reject',
      '--reason',
      'the service is being decommissioned',
      '--by',
      'bob',
      '--table',
      dynamo.tableName,
    ]);

    expect(run.status).toBe(0);
    expect(sfn.commandCalls(SendTaskFailureCommand).map((c) => c.args[0].input)).toEqual([
      {
        taskToken: TOKEN,
        error: 'Autopatch.Rejected',
        cause: `Rejected by ${ALICE} (bob): the service is being decommissioned`,
      },
    ]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);
    expect(run.out).toContain('ends with outcome Rejected');
  });

  it('names the caller by the identity STS reports, whatever --by says, and without --by records the identity alone', async () => {
    const run = await approve([NAME, '--approve', '--table', dynamo.tableName]);

    expect(run.status).toBe(0);
    expect(sts.commandCalls(GetCallerIdentityCommand)).toHaveLength(1);
    expect(
      sfn.commandCalls(SendTaskSuccessCommand).map((c) => JSON.parse(c.args[0].input.output ?? '')),
    ).toEqual([{ approved: true, by: ALICE }]);
  });

  it('answers nothing when it cannot tell who the caller is', async () => {
    sts
      .on(GetCallerIdentityCommand)
      .rejects(Object.assign(new Error('Could not load credentials'), { name: 'CredentialsProviderError' }));

    const run = await approve([NAME, '--reject', '--table', dynamo.tableName]);

    expect(run.status).toBe(1);
    expect(run.err).toContain('No AWS credentials found');
    expect(sfn.calls()).toHaveLength(0);
    await expect(ledger.getTaskToken(NAME, 'approval')).resolves.toBeDefined();
  });

  it(`reads the table from ${TABLE_ENV}, and uses the default Region for a bare name`, async () => {
    const run = await approve([NAME, '--approve'], { [TABLE_ENV]: dynamo.tableName });

    expect(run.status).toBe(0);
    expect(run.regions).toEqual([undefined]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(1);
  });

  it('exits 1 and says so when no approval is pending (already answered), without calling Step Functions', async () => {
    await ledger.deleteTaskToken(NAME, 'approval');

    const run = await approve([NAME, '--approve', '--table', dynamo.tableName]);

    expect(run.status).toBe(1);
    expect(run.err).toMatch(/^approve: No approval is pending for payments-api-CVE/);
    expect(sfn.calls()).toHaveLength(0);
  });

  it('exits 1 when the execution no longer waits (the approval expired), and forgets the token', async () => {
    sfn.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));

    const run = await approve([NAME, '--approve', '--table', dynamo.tableName]);

    expect(run.status).toBe(1);
    expect(run.err).toContain('no longer waits for approval (TaskTimedOut)');
    await expect(ledger.getTaskToken(NAME, 'approval')).resolves.toBeUndefined();
  });

  it('exits 1 with a hint when the ledger table does not exist there', async () => {
    const run = await approve([ARN, '--approve', '--table', 'no-such-table']);

    expect(run.status).toBe(1);
    expect(run.err).toContain('ResourceNotFoundException');
    expect(run.err).toContain('Is the ledger table no-such-table in eu-west-1? Check --table and --region.');
    expect(sfn.calls()).toHaveLength(0);
  });

  it('--help prints the usage and exits 0', async () => {
    const run = await approve(['--help']);

    expect(run.status).toBe(0);
    expect(run.out).toBe(USAGE);
  });

  it.each([
    ['no execution', ['--approve', '--table', 't'], 'name the execution to answer'],
    ['neither --approve nor --reject', [NAME, '--table', 't'], 'say --approve or --reject (exactly one)'],
    ['both --approve and --reject', [NAME, '--approve', '--reject', '--table', 't'], 'exactly one'],
    ['two executions', [NAME, 'other', '--approve', '--table', 't'], 'one execution at a time'],
    ['an unknown option', [NAME, '--approve', '--table', 't', '--force'], "Unknown option '--force'"],
    ['--reason without its text', [NAME, '--reject', '--table', 't', '--reason'], "'--reason"],
    ['an empty --reason', [NAME, '--reject', '--table', 't', '--reason', ' '], '--reason is empty'],
    ['no table', [NAME, '--approve'], `name the ledger table with --table or ${TABLE_ENV}`],
    [
      'something that is not an execution',
      ['arn:aws:states:eu-west-1:123456789012:stateMachine:sm', '--approve', '--table', 't'],
      'is neither an execution name nor an execution ARN',
    ],
  ])('exits 2 with the usage on %s, touching nothing', async (_, argv, message) => {
    const run = await approve(argv);

    expect(run.status).toBe(2);
    expect(run.err).toContain(message);
    expect(run.err).toContain(USAGE);
    expect(run.regions).toEqual([]);
    expect(sfn.calls()).toHaveLength(0);
    await expect(ledger.getTaskToken(NAME, 'approval')).resolves.toEqual({
      token: TOKEN,
      serviceKey: 'prod/payments-api',
    });
  });

  it('as a script (tsx bin/approve.ts), bad usage exits with status 2 and prints the usage', () => {
    const result = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['bin/approve.ts', NAME], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, [TABLE_ENV]: '' },
      timeout: 30_000,
    });

    expect(result.status).toBe(2);
    expect(result.stderr).toContain('approve: say --approve or --reject (exactly one)');
    expect(result.stderr).toContain('usage: npm run approve -- <execution> --approve|--reject');
    expect(result.stdout).toBe('');
  });
});
