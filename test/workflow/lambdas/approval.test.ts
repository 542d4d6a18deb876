import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient, TaskTimedOut } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { resolveApproval } from '../../../lambdas/workflow/approval';
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
  sfn.reset();
  sns.reset();
  sfn.on(SendTaskSuccessCommand).resolves({});
  sfn.on(SendTaskFailureCommand).resolves({});
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});

describe('requestApproval', () => {
  it('stores the token, then sends the approver everything needed to decide', async () => {
    const ledger = tokens();
    await requestApproval(
      {
        taskToken: TASK_TOKEN,
        executionName: request.executionName,
        executionArn: `arn:aws:states:eu-central-1:123456789012:execution:sm:${request.executionName}`,
        request,
      },
      { ledger, sns: new SNSClient({}), topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch' },
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
      `npm run approve -- ${request.executionName} --approve`,
      `npm run approve -- ${request.executionName} --reject --reason`,
      'expires in 24 hours',
      'https://eu-central-1.console.aws.amazon.com/states/home',
    ]) {
      expect(sent?.Message).toContain(needle);
    }
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
