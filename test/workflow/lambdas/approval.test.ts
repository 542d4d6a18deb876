import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient, TaskTimedOut } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { parseExecutionRef, resolveApproval } from '../../../lambdas/workflow/approval';
import { requestApproval } from '../../../lambdas/workflow/request-approval';
import { remediationRequest, TASK_TOKEN } from '../../support/workflow-harness';

const sfn = mockClient(SFNClient);
const sns = mockClient(SNSClient);
const request = remediationRequest({
  decision: { action: 'approve', reason: 'HIGH without known exploit: ask first' },
});

const tokens = () => {
  const store = new Map<string, { token: string; serviceKey: string }>();
  return {
    store,
    putTaskToken: async (name: string, purpose: string, token: string, serviceKey: string) => {
      store.set(`${name}/${purpose}`, { token, serviceKey });
    },
    getTaskToken: async (name: string, purpose: string) => store.get(`${name}/${purpose}`),
    deleteTaskToken: async (name: string, purpose: string) => {
      store.delete(`${name}/${purpose}`);
    },
  };
};

beforeEach(() => {
  sfn.on(SendTaskSuccessCommand).resolves({});
  sfn.on(SendTaskFailureCommand).resolves({});
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});

afterEach(() => {
  sfn.reset();
  sns.reset();
});

describe('requestApproval', () => {
  const executionArn = `arn:aws:states:eu-central-1:123456789012:execution:sm:${request.executionName}`;

  it('stores the token, then sends the approver everything needed to decide', async () => {
    const ledger = tokens();
    await requestApproval(
      { taskToken: TASK_TOKEN, executionName: request.executionName, executionArn, request },
      {
        ledger,
        sns: new SNSClient({}),
        topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
        tableName: 'AutopatchStack-Ledger-1X2Y3Z',
        accountAlias: 'payments-prod',
      },
    );

    expect(ledger.store.get(`${request.executionName}/approval`)).toEqual({
      token: TASK_TOKEN,
      serviceKey: 'prod/payments-api',
    });
    const sent = sns.commandCalls(PublishCommand)[0]?.args[0].input;
    expect(sent?.Subject).toBe('[Autopatch] Approval needed: CRITICAL CVE-2024-6387 on prod/payments-api');
    for (const needle of [
      'prod/payments-api',
      'CVE-2024-6387',
      'worst severity CRITICAL',
      request.images[0]?.imageDigest ?? '',
      'Account: 123456789012 (payments-prod)',
      'Region: eu-central-1',
      `npm run approve -- ${executionArn} --approve --table AutopatchStack-Ledger-1X2Y3Z`,
      `npm run approve -- ${executionArn} --reject --reason "<why>" --table AutopatchStack-Ledger-1X2Y3Z`,
      'expires in 24 hours',
      'https://eu-central-1.console.aws.amazon.com/states/home',
      'https://eu-central-1.console.aws.amazon.com/inspector/v2/home?region=eu-central-1#/findings/container-image/',
    ]) {
      expect(sent?.Message).toContain(needle);
    }
  });

  it('leaves the table out of the commands when it is not known (the CLI then reads AUTOPATCH_LEDGER_TABLE)', async () => {
    await requestApproval(
      { taskToken: TASK_TOKEN, executionName: request.executionName, executionArn, request },
      {
        ledger: tokens(),
        sns: new SNSClient({}),
        topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
      },
    );

    const sent = sns.commandCalls(PublishCommand)[0]?.args[0].input;
    expect(sent?.Message).toContain(`Approve: npm run approve -- ${executionArn} --approve\n`);
    expect(sent?.Message).not.toContain('--table');
  });
});

describe('parseExecutionRef', () => {
  it.each([
    ['a name', 'payments-api-CVE-2024-6387-a1a1', { name: 'payments-api-CVE-2024-6387-a1a1' }],
    [
      'an ARN, keeping its Region',
      'arn:aws:states:eu-central-1:123456789012:execution:AutopatchStack-Remediation:run-1',
      {
        name: 'run-1',
        arn: 'arn:aws:states:eu-central-1:123456789012:execution:AutopatchStack-Remediation:run-1',
        region: 'eu-central-1',
      },
    ],
    [
      'an ARN in another partition',
      'arn:aws-cn:states:cn-north-1:123456789012:execution:sm:run-2',
      {
        name: 'run-2',
        arn: 'arn:aws-cn:states:cn-north-1:123456789012:execution:sm:run-2',
        region: 'cn-north-1',
      },
    ],
  ])('reads %s', (_, ref, expected) => {
    expect(parseExecutionRef(ref)).toEqual(expected);
  });

  it.each([
    ['a state machine ARN', 'arn:aws:states:eu-central-1:123456789012:stateMachine:sm'],
    ['another service’s ARN', 'arn:aws:ecs:eu-central-1:123456789012:service/prod/api'],
    ['a name with a space', 'run 1'],
    ['an empty string', ''],
    ['a name longer than 80 characters', 'x'.repeat(81)],
  ])('refuses %s', (_, ref) => {
    expect(parseExecutionRef(ref)).toBeUndefined();
  });
});

describe('resolveApproval', () => {
  const pending = () => {
    const ledger = tokens();
    ledger.store.set(`${request.executionName}/approval`, {
      token: TASK_TOKEN,
      serviceKey: 'prod/payments-api',
    });
    return ledger;
  };

  it('approves: resumes the execution and forgets the token', async () => {
    const ledger = pending();
    await expect(
      resolveApproval({
        sfn: new SFNClient({}),
        ledger,
        executionName: request.executionName,
        approve: true,
        by: 'alice',
      }),
    ).resolves.toEqual({
      executionName: request.executionName,
      serviceKey: 'prod/payments-api',
      decision: 'approved',
    });
    expect(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input).toEqual({
      taskToken: TASK_TOKEN,
      output: JSON.stringify({ approved: true, by: 'alice' }),
    });
    expect(ledger.store.size).toBe(0);
  });

  it('rejects with Autopatch.Rejected and the reason, which the workflow turns into outcome Rejected', async () => {
    const ledger = pending();
    await resolveApproval({
      sfn: new SFNClient({}),
      ledger,
      executionName: request.executionName,
      approve: false,
      reason: 'decommissioned',
      by: 'bob',
    });
    expect(sfn.commandCalls(SendTaskFailureCommand)[0]?.args[0].input).toEqual({
      taskToken: TASK_TOKEN,
      error: 'Autopatch.Rejected',
      cause: 'Rejected by bob: decommissioned',
    });
  });

  it('says so when no approval is pending', async () => {
    await expect(
      resolveApproval({ sfn: new SFNClient({}), ledger: tokens(), executionName: 'nope', approve: true }),
    ).rejects.toMatchObject({ name: 'ApprovalNotPendingError' });
  });

  it('says so, and forgets the token, when the execution no longer waits (expired or stopped)', async () => {
    sfn.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));
    const ledger = pending();
    await expect(
      resolveApproval({
        sfn: new SFNClient({}),
        ledger,
        executionName: request.executionName,
        approve: true,
      }),
    ).rejects.toMatchObject({
      name: 'ApprovalNotPendingError',
      message: expect.stringContaining('TaskTimedOut'),
    });
    expect(ledger.store.size).toBe(0);
  });
});
