import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import type { Outcome, RemediationRequest } from '../../../lambdas/shared/contracts';
import type { OutcomeRecord } from '../../../lambdas/shared/ledger';
import { describeBuildFailure, errorText, type FinishInput, finish } from '../../../lambdas/workflow/finish';
import type { WorkflowState } from '../../../lambdas/workflow/state';
import {
  DEPLOYMENT_ARN,
  digest,
  image,
  PATCHED_TASK_DEFINITION,
  PREVIOUS_TASK_DEFINITION,
  remediationRequest,
  STATE_MACHINE_ARN,
} from '../../support/workflow-harness';

const sfn = mockClient(SFNClient);
const ssm = mockClient(SSMClient);
const events = mockClient(EventBridgeClient);
const sns = mockClient(SNSClient);
const NEW = digest('b2');
const request = remediationRequest({
  images: [image({ containers: ['app', 'worker'] })],
});
const EXECUTION_ARN = `arn:aws:states:eu-central-1:123456789012:execution:AutopatchTest-Remediation:${request.executionName}`;

const patchedState: WorkflowState = {
  ...request,
  lock: { status: 'acquired', reason: 'ok' },
  plan: { builds: [] },
  patched: [
    {
      repository: 'payments/api',
      registry: '123456789012',
      repositoryUri: image().repositoryUri,
      containers: ['app', 'worker'],
      cves: ['CVE-2024-6387'],
      severity: 'CRITICAL',
      oldDigest: image().imageDigest,
      newDigest: NEW,
      targetTag: 't',
      cvesClosed: ['CVE-2024-6387'],
    },
  ],
  taskDefinition: { previousArn: PREVIOUS_TASK_DEFINITION, patchedArn: PATCHED_TASK_DEFINITION },
  watch: { status: 'SUCCESSFUL', deploymentArn: DEPLOYMENT_ARN },
};

const ledger = (next?: RemediationRequest) => {
  const calls = { records: [] as OutcomeRecord[], releases: [] as string[][], started: [] as string[][] };
  return {
    calls,
    recordOutcome: async (r: OutcomeRecord) => {
      calls.records.push(r);
    },
    release: async (serviceKey: string, executionName: string) => {
      calls.releases.push([serviceKey, executionName]);
      return next ? { next } : {};
    },
    markStarted: async (serviceKey: string, executionName: string, arn: string) => {
      calls.started.push([serviceKey, executionName, arn]);
    },
  };
};

const run = (outcome: Outcome, state: WorkflowState, l = ledger(), extra: Partial<FinishInput> = {}) =>
  finish(
    {
      outcome,
      state,
      executionName: request.executionName,
      executionArn: EXECUTION_ARN,
      stateMachineArn: STATE_MACHINE_ARN,
      startedAt: '2024-09-04T17:00:00.000Z',
      ...extra,
    },
    {
      ledger: l,
      sfn: new SFNClient({}),
      ssm: new SSMClient({}),
      events: new EventBridgeClient({}),
      sns: new SNSClient({}),
      topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
      now: () => new Date('2024-09-04T18:00:00.000Z'),
    },
  );

const published = () => sns.commandCalls(PublishCommand)[0]?.args[0].input;
const event = () => events.commandCalls(PutEventsCommand)[0]?.args[0].input.Entries?.[0];

beforeEach(() => {
  for (const m of [sfn, ssm, events, sns]) m.reset();
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:next', startDate: new Date() });
  ssm.on(PutParameterCommand).resolves({ Version: 1 });
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});

describe('finish', () => {
  it('Patched: records, publishes the drift parameters, releases, and announces once on EventBridge and SNS', async () => {
    const l = ledger();
    const out = await run('Patched', patchedState, l);

    expect(out.summary).toEqual(
      expect.objectContaining({
        outcome: 'Patched',
        cvesClosed: ['CVE-2024-6387'],
        driftParameters: [
          '/autopatch/prod/payments-api/app/image',
          '/autopatch/prod/payments-api/worker/image',
        ],
      }),
    );
    expect(l.calls.records).toEqual([
      expect.objectContaining({
        serviceKey: 'prod/payments-api',
        remediationId: request.remediationId,
        outcome: 'Patched',
        images: [
          {
            repository: 'payments/api',
            oldDigest: image().imageDigest,
            newDigest: NEW,
            cves: ['CVE-2024-6387'],
          },
        ],
        cvesClosed: ['CVE-2024-6387'],
        oldTaskDefinition: PREVIOUS_TASK_DEFINITION,
        newTaskDefinition: PATCHED_TASK_DEFINITION,
        startedAt: '2024-09-04T17:00:00.000Z',
        finishedAt: '2024-09-04T18:00:00.000Z',
        timings: { totalSeconds: 3600 },
      }),
    ]);
    expect(
      ssm.commandCalls(PutParameterCommand).map((c) => [c.args[0].input.Name, c.args[0].input.Value]),
    ).toEqual([
      ['/autopatch/prod/payments-api/app/image', `${image().repositoryUri}@${NEW}`],
      ['/autopatch/prod/payments-api/worker/image', `${image().repositoryUri}@${NEW}`],
    ]);
    expect(l.calls.releases).toEqual([['prod/payments-api', request.executionName]]);
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(1);
    expect(event()).toEqual(
      expect.objectContaining({
        Source: 'autopatch',
        DetailType: 'Autopatch Remediation Outcome',
        EventBusName: 'default',
      }),
    );
    expect(JSON.parse(event()?.Detail ?? '{}')).toEqual(
      expect.objectContaining({
        outcome: 'Patched',
        cvesClosed: ['CVE-2024-6387'],
        executionArn: EXECUTION_ARN,
      }),
    );
    expect(sns.commandCalls(PublishCommand)).toHaveLength(1);
    expect(published()?.Subject).toBe('[Autopatch] Patched: prod/payments-api');
    expect(published()?.Message).toContain(`${image().imageDigest} -> ${NEW}`);
    expect(published()?.Message).toContain('DRIFT');
    expect(published()?.Message).toContain('/autopatch/prod/payments-api/app/image');
  });

  it('starts the remediation queued behind this one, once, and marks it started', async () => {
    const next = remediationRequest({ executionName: 'payments-api-2cves-b2b2-9f9f9f-20240904T180000Z' });
    const l = ledger(next);
    const out = await run('Patched', patchedState, l);

    expect(out.summary.next).toBe(next.executionName);
    expect(sfn.commandCalls(StartExecutionCommand)[0]?.args[0].input).toEqual({
      stateMachineArn: STATE_MACHINE_ARN,
      name: next.executionName,
      input: JSON.stringify(next),
    });
    expect(l.calls.started).toEqual([['prod/payments-api', next.executionName, 'arn:next']]);
    expect(published()?.Message).toContain(
      `Started the remediation queued behind this one: ${next.executionName}`,
    );
  });

  it('treats an already started next execution as started (a retried finish)', async () => {
    sfn.on(StartExecutionCommand).rejects(new ExecutionAlreadyExists({ message: 'exists', $metadata: {} }));
    const next = remediationRequest({ executionName: 'next-1' });
    const l = ledger(next);
    await run('Failed', { ...request, error: { Error: 'X', Cause: 'y' } }, l);
    expect(l.calls.started[0]?.[2]).toBe(
      `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:next-1`,
    );
  });

  it('Superseded: releases nothing (the lock is the other remediation’s) and sends no SNS message', async () => {
    const l = ledger();
    const out = await run(
      'Superseded',
      { ...request, lock: { status: 'superseded', reason: 'X is in flight' } },
      l,
    );
    expect(out.summary.reason).toBe('X is in flight');
    expect(l.calls.releases).toEqual([]);
    expect(sns.commandCalls(PublishCommand)).toHaveLength(0);
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(1);
  });

  it('Failed: the Cause says where it failed, what state the service is in and what to do', async () => {
    const out = await run('Failed', {
      ...patchedState,
      watch: undefined,
      error: {
        Error: 'Ecs.AccessDeniedException',
        Cause: 'User is not authorized to perform ecs:UpdateService',
      },
      recovery: {
        action: 'nothing-to-do',
        detail: 'Service prod/payments-api runs the previous revision: nothing to put back.',
      },
    });
    expect(out.cause).toMatch(
      /^The remediation failed while deploying the patched revision: Ecs\.AccessDeniedException: User is not authorized/,
    );
    expect(out.cause).toContain('nothing to put back');
    expect(out.cause).toContain('What to do');
    expect(published()?.Message).toContain(out.cause);
  });

  it('Failed when putting the service back failed too: tells on-call how to go back by hand', async () => {
    const out = await run('Failed', {
      ...patchedState,
      error: { Error: 'DeploymentTimedOut', Cause: 'not decided within 7200 seconds' },
      recoveryError: { Error: 'Lambda.ServiceException', Cause: 'boom' },
    });
    expect(out.cause).toContain('could NOT put the service back');
    expect(out.cause).toContain(`--task-definition ${PREVIOUS_TASK_DEFINITION}`);
  });

  it('RolledBack after an alarm names the alarm', async () => {
    const out = await run('RolledBack', {
      ...patchedState,
      watch: { status: 'ALARM', alarmName: 'payments-api-5xx', deploymentArn: DEPLOYMENT_ARN },
    });
    expect(out.summary.cvesClosed).toEqual([]);
    expect(out.cause).toMatch(/^Alarm payments-api-5xx fired during the bake/);
    expect(ssm.commandCalls(PutParameterCommand)).toHaveLength(0);
  });

  it('releaseOnly: only releases the lock (and starts the queued run)', async () => {
    const l = ledger();
    await run('Failed', { ...request, error: { Error: 'X', Cause: 'y' } }, l, { releaseOnly: true });
    expect(l.calls.releases).toHaveLength(1);
    expect(l.calls.records).toHaveLength(0);
    expect(events.calls()).toHaveLength(0);
    expect(sns.calls()).toHaveLength(0);
  });

  it('fails when EventBridge rejects the outcome event', async () => {
    events
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'AccessDenied', ErrorMessage: 'no' }] });
    await expect(run('Patched', patchedState)).rejects.toThrow(/AccessDenied/);
  });
});

describe('reading errors', () => {
  it('reads a Lambda error Cause (JSON) and a service integration Cause (text)', () => {
    expect(
      errorText({
        Error: 'X',
        Cause: JSON.stringify({ errorType: 'PatchIneffectiveError', errorMessage: 'still has CVE-1' }),
      }),
    ).toBe('PatchIneffectiveError: still has CVE-1');
    expect(errorText({ Error: 'Ecs.ServerException', Cause: 'Service unavailable' })).toBe(
      'Ecs.ServerException: Service unavailable',
    );
  });

  it('reads the log link and the failed phase out of a failed build', () => {
    const cause = JSON.stringify({
      Build: {
        Id: 'p:3',
        BuildStatus: 'FAILED',
        Logs: { DeepLink: 'https://log' },
        Phases: [{ PhaseType: 'POST_BUILD', PhaseStatus: 'FAILED', Contexts: [{ Message: 'push denied' }] }],
      },
    });
    expect(describeBuildFailure(cause)).toEqual({
      text: 'build p:3 ended FAILED in phase POST_BUILD: push denied',
      logLink: 'https://log',
    });
    expect(describeBuildFailure('not json').text).toContain('not json');
  });
});
