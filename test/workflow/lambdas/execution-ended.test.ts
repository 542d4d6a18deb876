import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import type { RemediationRequest } from '../../../lambdas/shared/contracts';
import { executionEndedEventSchema, releaseAbandonedLock } from '../../../lambdas/workflow/execution-ended';
import { remediationRequest, STATE_MACHINE_ARN } from '../../support/workflow-harness';

const sfn = mockClient(SFNClient);
const request = remediationRequest();

const ended = (status: string, input: string | null = JSON.stringify(request)) =>
  executionEndedEventSchema.parse({
    source: 'aws.states',
    'detail-type': 'Step Functions Execution Status Change',
    detail: {
      executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${request.executionName}`,
      stateMachineArn: STATE_MACHINE_ARN,
      name: request.executionName,
      status,
      input,
    },
  });

const ledger = (next?: RemediationRequest) => {
  const calls = { releases: [] as string[][], started: [] as string[][] };
  return {
    calls,
    release: async (serviceKey: string, executionName: string) => {
      calls.releases.push([serviceKey, executionName]);
      return next ? { next } : {};
    },
    markStarted: async (serviceKey: string, executionName: string, arn: string) => {
      calls.started.push([serviceKey, executionName, arn]);
    },
  };
};

beforeEach(() => {
  sfn.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:next', startDate: new Date() });
});

describe('releaseAbandonedLock', () => {
  it('releases the lock of an execution stopped by hand', async () => {
    const l = ledger();
    await expect(
      releaseAbandonedLock(ended('ABORTED'), { ledger: l, sfn: new SFNClient({}) }),
    ).resolves.toEqual({
      action: 'released',
      serviceKey: 'prod/payments-api',
    });
    expect(l.calls.releases).toEqual([['prod/payments-api', request.executionName]]);
  });

  it('starts the remediation that was queued behind it', async () => {
    const next = remediationRequest({ executionName: 'next-1' });
    const l = ledger(next);
    await expect(
      releaseAbandonedLock(ended('TIMED_OUT'), { ledger: l, sfn: new SFNClient({}) }),
    ).resolves.toEqual({
      action: 'released',
      serviceKey: 'prod/payments-api',
      next: 'next-1',
    });
    expect(sfn.commandCalls(StartExecutionCommand)[0]?.args[0].input).toEqual({
      stateMachineArn: STATE_MACHINE_ARN,
      name: 'next-1',
      input: JSON.stringify(next),
    });
    expect(l.calls.started).toEqual([['prod/payments-api', 'next-1', 'arn:next']]);
  });

  it('is idempotent after the execution released its own lock (the next run already started)', async () => {
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }));
    const l = ledger(remediationRequest({ executionName: 'next-1' }));
    await expect(
      releaseAbandonedLock(ended('FAILED'), { ledger: l, sfn: new SFNClient({}) }),
    ).resolves.toMatchObject({
      action: 'released',
    });
  });

  it('skips succeeded executions and events without a readable input', async () => {
    const l = ledger();
    await expect(
      releaseAbandonedLock(ended('SUCCEEDED'), { ledger: l, sfn: new SFNClient({}) }),
    ).resolves.toMatchObject({
      action: 'skipped',
    });
    await expect(
      releaseAbandonedLock(ended('ABORTED', null), { ledger: l, sfn: new SFNClient({}) }),
    ).resolves.toMatchObject({
      action: 'skipped',
    });
    expect(l.calls.releases).toEqual([]);
  });
});
