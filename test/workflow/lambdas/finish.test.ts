import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { ExecutionAlreadyExists, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import type { Outcome, RemediationRequest } from '../../../lambdas/shared/contracts';
import { Ledger, type OutcomeRecord } from '../../../lambdas/shared/ledger';
import { METRICS } from '../../../lambdas/shared/metrics';
import type { FinishResult } from '../../../lambdas/workflow/finish';
import {
  describeBuildFailure,
  errorText,
  type FinishInput,
  finish,
  outcomeMetrics,
  rollbackIncomplete,
} from '../../../lambdas/workflow/finish';
import type { WorkflowState } from '../../../lambdas/workflow/state';
import { type LocalDynamo, startDynalite } from '../../../local/dynalite';
import {
  BUILD_LOG_LINK,
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
  const calls = {
    records: [] as OutcomeRecord[],
    releases: [] as string[][],
    started: [] as string[][],
    announced: [] as string[][],
  };
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
    markAnnounced: async (serviceKey: string, id: string) => {
      calls.announced.push([serviceKey, id]);
    },
  };
};

const input = (outcome: Outcome, state: WorkflowState, extra: Partial<FinishInput> = {}): FinishInput => ({
  outcome,
  state,
  executionName: request.executionName,
  executionArn: EXECUTION_ARN,
  stateMachineArn: STATE_MACHINE_ARN,
  startedAt: '2024-09-04T17:00:00.000Z',
  ...extra,
});

const run = (
  outcome: Outcome,
  state: WorkflowState,
  l = ledger(),
  extra: Partial<FinishInput> = {},
  accountAlias?: string,
) =>
  finish(input(outcome, state, extra), {
    ledger: l,
    sfn: new SFNClient({}),
    ssm: new SSMClient({}),
    events: new EventBridgeClient({}),
    sns: new SNSClient({}),
    topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
    now: () => new Date('2024-09-04T18:00:00.000Z'),
    ...(accountAlias ? { accountAlias } : {}),
  });

const published = () => sns.commandCalls(PublishCommand)[0]?.args[0].input;
const event = () => events.commandCalls(PutEventsCommand)[0]?.args[0].input.Entries?.[0];

beforeEach(() => {
  sfn.on(StartExecutionCommand).resolves({ executionArn: 'arn:next', startDate: new Date() });
  ssm.on(PutParameterCommand).resolves({ Version: 1 });
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
});

afterEach(() => {
  for (const m of [sfn, ssm, events, sns]) m.reset();
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
        // No plan and no build times in this state: no build, measured as zeros (test/unit/run-timings.test.ts).
        timings: { totalSeconds: 3600, buildSeconds: 0, buildMinutes: 0, builds: 0, buildsPlanned: 0 },
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

  it('records a re-run from the console (same input, new name) under its own history id', async () => {
    // Prepare
    const l = ledger();

    // Act
    await run('Failed', patchedState, l, { executionName: 'payments-api-rerun-by-hand' });
    await run('Failed', patchedState, l);

    // Assess: two records, not one overwritten.
    const [rerun, original] = l.calls.records;
    expect(original?.remediationId).toBe(patchedState.remediationId);
    expect(rerun?.remediationId).toMatch(/^[0-9a-f]{16}$/);
    expect(rerun?.remediationId).not.toBe(original?.remediationId);
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
    const { watch: _unwatched, ...notWatched } = patchedState;
    const out = await run('Failed', {
      ...notWatched,
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
    expect(out.cause).toContain('could NOT confirm the service is back on its last good revision');
    expect(out.cause).toContain(`--task-definition ${PREVIOUS_TASK_DEFINITION}`);
  });

  it('CODE_DEPLOY, put-back not confirmed: pages with the CodeDeploy command restore worked out, never update-service', async () => {
    const stop = 'aws deploy stop-deployment --deployment-id d-7K3VQ9X2A --auto-rollback-enabled';
    const out = await run('Failed', {
      ...patchedState,
      deployment: { deploymentArn: 'd-7K3VQ9X2A' },
      error: { Error: 'HealthUnknown', Cause: 'could not read the deployment' },
      recovery: {
        action: 'rollback-requested',
        detail: 'Stopped CodeDeploy deployment d-7K3VQ9X2A with automatic rollback.',
        deploymentArn: 'd-7K3VQ9X2A',
        manualCommand: stop,
      },
      rollback: { status: 'UNKNOWN', deploymentArn: 'd-7K3VQ9X2A' },
    });
    expect(out.cause).toContain(`to go back by hand: ${stop}`);
    expect(out.cause).not.toContain('aws ecs update-service');
  });

  it('CODE_DEPLOY, restore gave up: the Cause carries its command once, and no ECS command', async () => {
    const create =
      "aws deploy create-deployment --application-name A --deployment-group-name G --revision '{}'";
    const out = await run('Failed', {
      ...patchedState,
      deployment: { deploymentArn: 'd-7K3VQ9X2A' },
      error: { Error: 'AlarmDuringBake', Cause: 'checkout-5xx' },
      recoveryError: {
        Error: 'PutBackFailedError',
        Cause: JSON.stringify({
          errorType: 'PutBackFailedError',
          errorMessage: `Autopatch could not put prod/payments-api back (ThrottlingException: Rate exceeded). To put it back by hand: ${create}`,
        }),
      },
    });
    expect(out.cause).toContain('could NOT put the service back');
    expect(out.cause.split(create)).toHaveLength(2);
    expect(out.cause).not.toContain('aws ecs update-service');
  });

  it('RolledBack by CodeDeploy itself says CodeDeploy, not ECS', async () => {
    const out = await run('RolledBack', {
      ...patchedState,
      watch: {
        status: 'ROLLED_BACK',
        deploymentArn: 'd-7K3VQ9X2A',
        reason: 'CodeDeploy rolled the deployment back.',
      },
    });
    expect(out.cause).toMatch(/^CodeDeploy rolled the deployment of the patched revision back by itself/);
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
      buildId: 'p:3',
    });
    expect(describeBuildFailure('not json').text).toContain('not json');
  });
});

describe('the outcome notification', () => {
  const twoImages: WorkflowState = {
    ...patchedState,
    images: [
      image({
        containers: ['app', 'worker'],
        findingArns: ['arn:aws:inspector2:eu-central-1:123456789012:finding/f1', 'arn:f2', 'arn:f3'],
      }),
      image({
        repository: 'payments/sidecar',
        imageDigest: digest('c3'),
        containers: ['sidecar'],
        cves: ['CVE-2023-44487'],
        severity: 'HIGH',
        findingArns: ['arn:f4'],
      }),
    ],
    findingsCount: 4,
    patched: [
      {
        ...(patchedState.patched?.[0] as NonNullable<WorkflowState['patched']>[number]),
        buildId: 'autopatch-patch-os-arm:0b7e5c2a-1111-2222-3333-444455556666',
        buildLogLink: BUILD_LOG_LINK,
      },
    ],
  };

  it('is one message for the whole remediation, however many findings it covers', async () => {
    await run('Patched', twoImages);

    expect(sns.commandCalls(PublishCommand)).toHaveLength(1);
  });

  it('carries the account and its alias, the Region, the service, the CVEs with their severity and the digests', async () => {
    await run('Patched', twoImages, ledger(), {}, 'payments-prod');

    const message = published()?.Message ?? '';
    for (const line of [
      'Outcome: Patched',
      'Service: prod/payments-api',
      'Account: 123456789012 (payments-prod)',
      'Region:  eu-central-1',
      'CVEs:    CVE-2023-44487, CVE-2024-6387 (worst CRITICAL)',
      `- payments/api (app, worker): ${image().imageDigest} -> ${NEW}`,
      '  CRITICAL: CVE-2024-6387 (1 finding)',
      `- payments/sidecar (sidecar): ${digest('c3')} -> unchanged`,
      '  HIGH: CVE-2023-44487 (1 finding)',
    ]) {
      expect(message.split('\n')).toContain(line);
    }
    expect(message).toMatch(/^Patched prod\/payments-api: closed CVE-2024-6387/m);
    expect(published()?.MessageAttributes?.severity?.StringValue).toBe('CRITICAL');
  });

  it('links straight to the execution, the build and the findings in the console', async () => {
    const out = await run('Patched', twoImages);

    const message = published()?.Message ?? '';
    expect(out.summary.links.execution).toBe(
      `https://eu-central-1.console.aws.amazon.com/states/home?region=eu-central-1#/v2/executions/details/${EXECUTION_ARN}`,
    );
    expect(out.summary.links.builds).toEqual([
      'https://eu-central-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/autopatch-patch-os-arm/build/autopatch-patch-os-arm%3A0b7e5c2a-1111-2222-3333-444455556666/?region=eu-central-1',
    ]);
    expect(out.summary.links.findings).toEqual([
      `https://eu-central-1.console.aws.amazon.com/inspector/v2/home?region=eu-central-1#/findings/container-image/${encodeURIComponent(`payments/api/${image().imageDigest}`)}`,
      `https://eu-central-1.console.aws.amazon.com/inspector/v2/home?region=eu-central-1#/findings/container-image/${encodeURIComponent(`payments/sidecar/${digest('c3')}`)}`,
    ]);
    expect(message).toContain(`Execution: ${out.summary.links.execution}`);
    for (const link of [...out.summary.links.builds, ...out.summary.links.findings]) {
      expect(message).toContain(link);
    }
    expect(message).toContain('Runbook:   docs/runbook.md#patched');
  });

  it('BuildFailed: links the failed build, and names the account without an alias when none is set', async () => {
    const cause = JSON.stringify({
      Build: {
        Id: 'autopatch-source-x86:9f9f',
        BuildStatus: 'FAILED',
        Logs: { DeepLink: BUILD_LOG_LINK },
        Phases: [{ PhaseType: 'BUILD', PhaseStatus: 'FAILED', Contexts: [{ Message: 'apt-get failed' }] }],
      },
    });
    const out = await run('BuildFailed', {
      ...request,
      plan: {
        builds: [
          {
            image: image(),
            mode: 'source',
            projectName: 'autopatch-source-x86',
            targetTag: 't',
            environment: [],
          },
        ],
      },
      error: { Error: 'BuildFailed', Cause: cause },
    });

    expect(out.summary.links.builds).toEqual([
      'https://eu-central-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/autopatch-source-x86/build/autopatch-source-x86%3A9f9f/?region=eu-central-1',
    ]);
    const message = published()?.Message ?? '';
    expect(message.split('\n')).toContain('Account: 123456789012');
    expect(message).toContain(`Build log: ${BUILD_LOG_LINK}`);
    expect(message).toContain('What to do');
  });

  it('PatchIneffective without a build id: links the build project’s history', async () => {
    const out = await run('PatchIneffective', {
      ...request,
      plan: {
        builds: [
          {
            image: image(),
            mode: 'patch-os',
            projectName: 'autopatch-patch-os-arm',
            targetTag: 't',
            environment: [],
          },
        ],
      },
      error: {
        Error: 'PatchIneffectiveError',
        Cause: JSON.stringify({ errorMessage: 'still CVE-2024-6387' }),
      },
    });

    expect(out.summary.links.builds).toEqual([
      'https://eu-central-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/autopatch-patch-os-arm/history?region=eu-central-1',
    ]);
    expect(published()?.Message).toContain('still CVE-2024-6387');
  });
});

describe('rollbackIncomplete', () => {
  const recovery = (action: NonNullable<WorkflowState['recovery']>['action']) => ({
    ...patchedState,
    recovery: { action, detail: 'd' },
  });

  it.each<[string, WorkflowState, boolean]>([
    ['a bake that passed', patchedState, false],
    [
      'a rollback ECS completed',
      { ...patchedState, watch: { status: 'ALARM', deploymentArn: DEPLOYMENT_ARN, alarmName: 'x' } },
      false,
    ],
    [
      'the last good revision put back and seen running',
      {
        ...recovery('redeployed-previous'),
        rollback: { status: 'ROLLED_BACK', deploymentArn: DEPLOYMENT_ARN },
      },
      false,
    ],
    [
      'putting the service back failed',
      { ...patchedState, recoveryError: { Error: 'Lambda.ServiceException' } },
      true,
    ],
    ['a rollback requested, not confirmed', recovery('rollback-requested'), true],
    ['a rollback in progress, not confirmed', recovery('rollback-in-progress'), true],
    ['the previous revision redeployed, not confirmed', recovery('redeployed-previous'), true],
    ['nothing to put back', recovery('nothing-to-do'), false],
  ])('%s', (_, state, expected) => {
    expect(rollbackIncomplete(state)).toBe(expected);
  });
});

describe('who approved or rejected, in the history record', () => {
  const ALICE = 'arn:aws:sts::123456789012:assumed-role/AutopatchApprovers/alice';

  it('names the approver the workflow kept in $.approval.by', async () => {
    const l = ledger();

    await run('Patched', { ...patchedState, approval: { approved: true, by: ALICE, reason: 'go' } }, l);

    expect(l.calls.records[0]?.approvedBy).toBe(ALICE);
    expect(l.calls.records[0]?.rejectedBy).toBeUndefined();
  });

  it('names who rejected, from the rejection the approve command sent (with or without a name)', async () => {
    const l = ledger();
    const rejected = (Cause: string): WorkflowState => ({
      ...request,
      error: { Error: 'Autopatch.Rejected', Cause },
    });

    await run('Rejected', rejected(`Rejected by ${ALICE} (alice): not during the sale`), l);
    await run('Rejected', rejected(`Rejected by ${ALICE}: no reason given`), l);
    await run('Rejected', rejected('Rejected: no reason given'), l);

    expect(l.calls.records.map((r) => r.rejectedBy)).toEqual([ALICE, ALICE, undefined]);
    expect(l.calls.records.every((r) => r.approvedBy === undefined)).toBe(true);
  });

  it('records nobody when nobody was asked', async () => {
    const l = ledger();

    await run('Patched', patchedState, l);

    expect(l.calls.records[0]).not.toHaveProperty('approvedBy');
    expect(l.calls.records[0]).not.toHaveProperty('rejectedBy');
  });
});

describe('outcomeMetrics', () => {
  const NOW = new Date('2024-09-04T18:00:00.000Z');

  it('Patched: counts the outcome and measures finding → patched from the first finding', () => {
    const data = outcomeMetrics(input('Patched', patchedState), NOW);

    expect(data).toEqual([
      { name: METRICS.remediations, unit: 'Count', value: 1, dimensions: { Outcome: 'Patched' } },
      // startedAt 17:00:00.000 → 18:00:00.000, by outcome and severity, then by severity alone
      {
        name: METRICS.remediationDuration,
        unit: 'Seconds',
        value: 3600,
        dimensions: { Outcome: 'Patched', Severity: 'CRITICAL' },
      },
      {
        name: METRICS.remediationDuration,
        unit: 'Seconds',
        value: 3600,
        dimensions: { Severity: 'CRITICAL' },
      },
      // requestedAt 16:55:38.411 → 18:00:00.000
      { name: METRICS.timeToPatched, unit: 'Seconds', value: 3862 },
      { name: METRICS.rollbacksIncomplete, unit: 'Count', value: 0 },
    ]);
  });

  it('RolledBack after an alarm: measures alarm → rollback decision when the watch timed it', () => {
    const state: WorkflowState = {
      ...patchedState,
      watch: {
        status: 'ALARM',
        alarmName: 'payments-api-5xx',
        deploymentArn: DEPLOYMENT_ARN,
        alarmAt: '2024-09-04T17:40:00.000Z',
        decidedAt: '2024-09-04T17:40:07.400Z',
      },
    };

    const data = outcomeMetrics(input('RolledBack', state), NOW);

    expect(data).toContainEqual({ name: METRICS.alarmToRollback, unit: 'Seconds', value: 7 });
    expect(data.map((d) => d.name)).not.toContain(METRICS.timeToPatched);
  });

  it('leaves out the times it cannot know, and flags an incomplete rollback', () => {
    const state: WorkflowState = {
      ...patchedState,
      requestedAt: 'not a time',
      watch: { status: 'ALARM', alarmName: 'a', deploymentArn: DEPLOYMENT_ARN },
      error: { Error: 'RollbackNotConfirmed' },
      recoveryError: { Error: 'RestoreNotConfirmed', Cause: 'ROLLBACK_FAILED' },
    };

    expect(outcomeMetrics(input('Failed', state, { startedAt: 'not a time' }), NOW)).toEqual([
      { name: METRICS.remediations, unit: 'Count', value: 1, dimensions: { Outcome: 'Failed' } },
      { name: METRICS.rollbacksIncomplete, unit: 'Count', value: 1 },
    ]);
  });

  it('a Superseded run: its duration by outcome only, so it does not pull the percentiles per severity down', () => {
    const data = outcomeMetrics(input('Superseded', { ...patchedState, images: [] }), NOW);

    expect(data.filter((d) => d.name === METRICS.remediationDuration)).toEqual([
      {
        name: METRICS.remediationDuration,
        unit: 'Seconds',
        value: 3600,
        dimensions: { Outcome: 'Superseded', Severity: 'UNTRIAGED' },
      },
    ]);
  });
});

describe('the finish Lambda handler', () => {
  // The handler reads its environment and builds its clients at import: set them first, put them back after.
  const ENV = {
    LEDGER_TABLE: 'autopatch-ledger',
    TOPIC_ARN: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
    ACCOUNT_ALIAS: 'payments-prod',
    POWERTOOLS_METRICS_DISABLED: 'false',
    POWERTOOLS_LOG_LEVEL: 'INFO',
  };
  const saved = new Map<string, string | undefined>();
  let dynamo: LocalDynamo;
  let handler: (event: FinishInput) => Promise<FinishResult>;

  beforeAll(async () => {
    dynamo = await startDynalite({ tableName: ENV.LEDGER_TABLE });
    for (const [k, v] of Object.entries({ ...ENV, AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint })) {
      saved.set(k, process.env[k]);
      process.env[k] = v;
    }
    ({ handler } = await import('../../../lambdas/workflow/handlers/finish'));
  });

  afterAll(async () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await dynamo.stop();
  });

  /** Run the handler and return what it wrote to stdout, one JSON document per line. */
  const invoke = async (event: FinishInput) => {
    const lines: string[] = [];
    const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    });
    try {
      const result = await handler(event);
      return { result, records: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
    } finally {
      write.mockRestore();
    }
  };

  it('records the outcome, sends one notification with the alias, and emits the outcome metrics as EMF', async () => {
    const { result, records } = await invoke(input('Patched', patchedState));

    const history = await new Ledger({ client: dynamo.client, tableName: ENV.LEDGER_TABLE }).history(
      'prod/payments-api',
    );
    expect(history.map((h) => [h.executionName, h.outcome])).toContainEqual([
      request.executionName,
      'Patched',
    ]);
    expect(result.summary.account).toEqual({ id: '123456789012', alias: 'payments-prod' });
    expect(sns.commandCalls(PublishCommand)).toHaveLength(1);
    expect(published()?.Message).toContain('Account: 123456789012 (payments-prod)');
    const emf = records.filter((r) => r._aws !== undefined);
    const outcome = emf.find((r) => r[METRICS.remediations] !== undefined);
    expect(outcome).toMatchObject({
      service: METRICS.workflowService,
      Outcome: 'Patched',
      [METRICS.remediations]: 1,
      _aws: {
        CloudWatchMetrics: [
          {
            Namespace: 'Autopatch',
            Dimensions: [expect.arrayContaining(['service', 'Outcome'])],
            Metrics: [{ Name: METRICS.remediations, Unit: 'Count' }],
          },
        ],
      },
    });
    const rest = emf.find((r) => r[METRICS.timeToPatched] !== undefined);
    expect(rest).toMatchObject({ service: METRICS.workflowService, [METRICS.rollbacksIncomplete]: 0 });
    // Without the Outcome dimension: the dashboard reads them by service only.
    expect(rest?.Outcome).toBeUndefined();
  });

  it('logs one "remediation outcome" line with the fields the dashboard lists', async () => {
    const { records } = await invoke(input('Patched', patchedState));

    const lines = records.filter((r) => r.message === 'remediation outcome');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      outcome: 'Patched',
      serviceKey: 'prod/payments-api',
      cves: 'CVE-2024-6387',
      severity: 'CRITICAL',
      rollbackIncomplete: false,
      executionLink: expect.stringContaining(EXECUTION_ARN),
    });
  });
});
