import {
  CloudWatchClient,
  DescribeAlarmHistoryCommand,
  DescribeAlarmsCommand,
  type StateValue,
} from '@aws-sdk/client-cloudwatch';
import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  ECSClient,
  type ServiceDeploymentStatus,
} from '@aws-sdk/client-ecs';
import { SendTaskSuccessCommand, SFNClient, TaskTimedOut } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import type { InFlight } from '../../../lambdas/shared/ledger';
import { assessDeployment, bakeAfterCompletionSeconds, verdict } from '../../../lambdas/workflow/deployment';
import {
  type DeploymentEvent,
  deploymentEventSchema,
  handleDeploymentEvent,
  heartbeat,
  serviceKeyFromArn,
} from '../../../lambdas/workflow/deployment-events';
import { startWatch, UNREADABLE_LIMIT_MS, watchIdOf } from '../../../lambdas/workflow/watch-deployment';
import type { WatchRecord } from '../../../lambdas/workflow/watch-registry';
import {
  DEPLOYMENT_ARN,
  PATCHED_TASK_DEFINITION,
  PREVIOUS_TASK_DEFINITION,
  remediationRequest,
  TASK_TOKEN,
} from '../../support/workflow-harness';

const ecs = mockClient(ECSClient);
const cloudwatch = mockClient(CloudWatchClient);
const sfn = mockClient(SFNClient);
const request = remediationRequest();
const clients = { ecs: new ECSClient({}), cloudwatch: new CloudWatchClient({}), sfn: new SFNClient({}) };

const DEPLOYED_AT = new Date('2024-09-04T17:00:00Z');
/** ECS reports the deployment SUCCESSFUL 10 minutes after the deploy. */
const COMPLETED_AT = new Date('2024-09-04T17:10:00Z');
const minutesAfter = (at: Date, minutes: number) => new Date(at.getTime() + minutes * 60_000);
const HOUR = 3_600;

interface ServiceOptions {
  readonly taskDefinition?: string;
  readonly ownAlarms?: string[];
  readonly strategy?: 'ROLLING' | 'BLUE_GREEN';
  readonly ecsBakeMinutes?: number;
}

const service = (status: ServiceDeploymentStatus, opts: ServiceOptions = {}) => {
  ecs.on(DescribeServicesCommand).resolves({
    services: [
      {
        serviceName: 'payments-api',
        status: 'ACTIVE',
        taskDefinition: opts.taskDefinition ?? PATCHED_TASK_DEFINITION,
        currentServiceDeployment: DEPLOYMENT_ARN,
        deploymentConfiguration: {
          ...(opts.strategy ? { strategy: opts.strategy } : {}),
          ...(opts.ecsBakeMinutes !== undefined ? { bakeTimeInMinutes: opts.ecsBakeMinutes } : {}),
          ...(opts.ownAlarms ? { alarms: { enable: true, rollback: true, alarmNames: opts.ownAlarms } } : {}),
        },
      },
    ],
  });
  ecs.on(DescribeServiceDeploymentsCommand).resolves({
    serviceDeployments: [
      {
        serviceDeploymentArn: DEPLOYMENT_ARN,
        status,
        startedAt: DEPLOYED_AT,
        ...(status === 'SUCCESSFUL' ? { finishedAt: COMPLETED_AT } : {}),
      },
    ],
  });
};
/** Every named alarm exists, in the given state (OK by default). */
const alarms = (states: Record<string, StateValue | { state: StateValue; since: Date }>) =>
  cloudwatch.on(DescribeAlarmsCommand).resolves({
    MetricAlarms: Object.entries(states).map(([AlarmName, s]) =>
      typeof s === 'string'
        ? { AlarmName, StateValue: s }
        : { AlarmName, StateValue: s.state, StateUpdatedTimestamp: s.since },
    ),
  });

const bakeSubject = (bakeMinutes: number, alarmNames = ['payments-api-5xx']) => ({
  service: request.service,
  mode: 'bake' as const,
  alarmNames,
  taskDefinitionArn: PATCHED_TASK_DEFINITION,
  deploymentArn: DEPLOYMENT_ARN,
  bakeSeconds: bakeMinutes * 60,
  watchingSince: DEPLOYED_AT.toISOString(),
});

/** A ledger and watch registry in memory. */
const memory = (inFlight?: Partial<InFlight>, watch?: WatchRecord) => {
  const tokens = new Map<string, string>();
  const registered: Array<{ watch: WatchRecord; ttl: number }> = [];
  const touched: string[] = [];
  const forgotten: string[] = [];
  let current = watch;
  if (inFlight) tokens.set(`${request.executionName}/watch`, TASK_TOKEN);
  return {
    tokens,
    registered,
    touched,
    forgotten,
    ledger: {
      getInFlight: async () =>
        inFlight
          ? ({
              executionName: request.executionName,
              status: 'RUNNING',
              request,
              claimedAt: '',
              queued: 0,
              ...inFlight,
            } as InFlight)
          : undefined,
      getTaskToken: async (name: string, purpose: string) => {
        const token = tokens.get(`${name}/${purpose}`);
        return token ? { token, serviceKey: request.service.key } : undefined;
      },
      putTaskToken: async (name: string, purpose: string, token: string) => {
        tokens.set(`${name}/${purpose}`, token);
      },
    },
    registry: {
      register: async (w: WatchRecord, ttl: number) => {
        registered.push({ watch: w, ttl });
        current = w;
      },
      get: async () => current,
      servicesWatching: async (alarm: string) =>
        current?.alarmNames.includes(alarm) ? [current.serviceKey] : [],
      touch: async (_key: string, watchId: string) => {
        touched.push(watchId);
      },
      forget: async (_key: string, watchId: string) => {
        forgotten.push(watchId);
        if (current?.watchId === watchId) current = undefined;
      },
      list: async () => (current ? [current] : []),
    },
  };
};
const sentOutput = () =>
  JSON.parse(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input.output ?? 'null');

beforeEach(() => {
  ecs.reset();
  cloudwatch.reset();
  sfn.reset();
  alarms({ 'payments-api-5xx': 'OK' });
  cloudwatch.on(DescribeAlarmHistoryCommand).resolves({ AlarmHistoryItems: [] });
  sfn.on(SendTaskSuccessCommand).resolves({});
});

describe('verdict (what ECS alone decides)', () => {
  it.each([
    ['SUCCESSFUL', PATCHED_TASK_DEFINITION, undefined],
    ['SUCCESSFUL', 'arn:aws:ecs:eu-central-1:1:task-definition/someone-else:7', 'FAILED'],
    ['ROLLBACK_SUCCESSFUL', PREVIOUS_TASK_DEFINITION, 'ROLLED_BACK'],
    ['ROLLBACK_FAILED', PATCHED_TASK_DEFINITION, 'FAILED'],
    ['STOPPED', PATCHED_TASK_DEFINITION, 'FAILED'],
    ['IN_PROGRESS', PATCHED_TASK_DEFINITION, undefined],
    ['ROLLBACK_IN_PROGRESS', PREVIOUS_TASK_DEFINITION, undefined],
  ] as const)('deployment %s with the service on %s → %s', (status, running, expected) => {
    expect(verdict({ status }, DEPLOYMENT_ARN, running, PATCHED_TASK_DEFINITION)?.status).toBe(expected);
  });

  it('names who rolled back or stopped it: CodeDeploy for a CodeDeploy deployment, ECS otherwise', () => {
    const rolledBack = { status: 'ROLLBACK_SUCCESSFUL', rollback: { reason: 'alarm checkout-5xx' } };
    expect(
      verdict(rolledBack, 'd-7K3VQ9X2A', PREVIOUS_TASK_DEFINITION, PATCHED_TASK_DEFINITION, 'CodeDeploy')
        ?.reason,
    ).toBe('CodeDeploy rolled the deployment back: alarm checkout-5xx.');
    expect(
      verdict(
        { status: 'STOPPED' },
        'd-7K3VQ9X2A',
        PATCHED_TASK_DEFINITION,
        PATCHED_TASK_DEFINITION,
        'CodeDeploy',
      )?.reason,
    ).toBe('CodeDeploy reports the deployment as STOPPED.');
    expect(
      verdict(rolledBack, DEPLOYMENT_ARN, PREVIOUS_TASK_DEFINITION, PATCHED_TASK_DEFINITION)?.reason,
    ).toMatch(/^ECS rolled the deployment back/);
  });
});

describe('the bake: Patched only after the whole configured bake with every watched alarm OK', () => {
  it('keeps watching a rolling deployment for the whole bake after ECS reached steady state', async () => {
    service('SUCCESSFUL', { strategy: 'ROLLING' });

    const during = await assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 59));
    const after = await assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 60));

    expect(during).toMatchObject({
      decided: false,
      bakeEndsAt: minutesAfter(COMPLETED_AT, 60).toISOString(),
      waitingFor: expect.stringMatching(/the bake to end/),
    });
    expect(after).toMatchObject({ decided: true, result: { status: 'SUCCESSFUL' } });
    expect(after.decided && after.result.reason).toMatch(/baked for 60 minutes .* every watched alarm OK/);
  });

  it('counts ECS’s own blue/green bake and watches only the rest of the configured one', async () => {
    service('SUCCESSFUL', { strategy: 'BLUE_GREEN', ecsBakeMinutes: 10 });

    await expect(
      assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 49)),
    ).resolves.toMatchObject({
      decided: false,
      bakeEndsAt: minutesAfter(COMPLETED_AT, 50).toISOString(),
    });
    await expect(
      assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 50)),
    ).resolves.toMatchObject({
      decided: true,
      result: { status: 'SUCCESSFUL' },
    });
  });

  it('needs nothing more when ECS’s own bake already covers the configured one', () => {
    const blueGreen = { deploymentConfiguration: { strategy: 'BLUE_GREEN' as const, bakeTimeInMinutes: 90 } };
    expect(bakeAfterCompletionSeconds(blueGreen, HOUR)).toBe(0);
    expect(bakeAfterCompletionSeconds({ deploymentConfiguration: { strategy: 'ROLLING' } }, HOUR)).toBe(HOUR);
    expect(bakeAfterCompletionSeconds({}, HOUR)).toBe(HOUR);
  });

  it('rolls back when an alarm fires 40 minutes into the bake, after ECS completed', async () => {
    service('SUCCESSFUL', { strategy: 'BLUE_GREEN', ecsBakeMinutes: 10 });
    alarms({ 'payments-api-5xx': { state: 'ALARM', since: minutesAfter(DEPLOYED_AT, 40) } });

    const out = await assessDeployment(bakeSubject(60), clients, minutesAfter(DEPLOYED_AT, 41));

    expect(out).toMatchObject({
      decided: true,
      result: {
        status: 'ALARM',
        alarmName: 'payments-api-5xx',
        ecsCompleted: true,
        alarmAt: minutesAfter(DEPLOYED_AT, 40).toISOString(),
      },
    });
    expect(out.decided && out.result.reason).toMatch(
      /went into ALARM 40 minutes after the deploy, during the bake/,
    );
  });

  it('reports ALARM while ECS still deploys, watching the service’s own deployment alarms too', async () => {
    service('IN_PROGRESS', { ownAlarms: ['payments-api-latency'] });
    alarms({ 'payments-api-5xx': 'OK', 'payments-api-latency': 'ALARM' });

    const out = await assessDeployment(bakeSubject(60), clients, minutesAfter(DEPLOYED_AT, 3));

    expect(out).toEqual({
      decided: true,
      result: expect.objectContaining({
        status: 'ALARM',
        alarmName: 'payments-api-latency',
        ecsCompleted: false,
        deploymentArn: DEPLOYMENT_ARN,
        decidedAt: minutesAfter(DEPLOYED_AT, 3).toISOString(),
      }),
      alarmNames: ['payments-api-5xx', 'payments-api-latency'],
    });
    // Every state is read (not only ALARM), so a missing or silent alarm is seen too.
    expect(cloudwatch.commandCalls(DescribeAlarmsCommand)[0]?.args[0].input).toEqual({
      AlarmNames: ['payments-api-5xx', 'payments-api-latency'],
      AlarmTypes: ['MetricAlarm', 'CompositeAlarm'],
    });
  });

  it('fails closed when a watched alarm does not exist (misspelt or deleted)', async () => {
    service('IN_PROGRESS');
    alarms({});

    const out = await assessDeployment(bakeSubject(60), clients, minutesAfter(DEPLOYED_AT, 5));

    expect(out).toMatchObject({ decided: true, result: { status: 'UNKNOWN' } });
    expect(out.decided && out.result.reason).toMatch(/payments-api-5xx does not exist/);
  });

  it('does not call an alarm in INSUFFICIENT_DATA healthy: keeps waiting past the bake until it reports', async () => {
    service('SUCCESSFUL', { strategy: 'ROLLING' });
    alarms({ 'payments-api-5xx': 'INSUFFICIENT_DATA' });

    await expect(
      assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 90)),
    ).resolves.toMatchObject({
      decided: false,
      waitingFor: expect.stringMatching(/INSUFFICIENT_DATA/),
    });
  });

  it('catches an alarm that fired and recovered between two looks (its event lost) before calling it baked', async () => {
    service('SUCCESSFUL', { strategy: 'ROLLING' });
    cloudwatch.on(DescribeAlarmHistoryCommand).resolves({
      AlarmHistoryItems: [
        { HistorySummary: 'Alarm updated from ALARM to OK', Timestamp: minutesAfter(DEPLOYED_AT, 31) },
        { HistorySummary: 'Alarm updated from OK to ALARM', Timestamp: minutesAfter(DEPLOYED_AT, 30) },
      ],
    });

    const out = await assessDeployment(bakeSubject(60), clients, minutesAfter(COMPLETED_AT, 60));

    expect(out).toMatchObject({ decided: true, result: { status: 'ALARM', alarmName: 'payments-api-5xx' } });
    expect(cloudwatch.commandCalls(DescribeAlarmHistoryCommand)[0]?.args[0].input).toMatchObject({
      AlarmName: 'payments-api-5xx',
      HistoryItemType: 'StateUpdate',
      StartDate: DEPLOYED_AT,
    });
  });

  it('stays undecided while ECS rolls back by itself (the rollback event decides)', async () => {
    service('ROLLBACK_IN_PROGRESS');
    alarms({ 'payments-api-5xx': 'ALARM' });
    await expect(assessDeployment(bakeSubject(60), clients)).resolves.toMatchObject({
      decided: false,
      deploymentStatus: 'ROLLBACK_IN_PROGRESS',
    });
  });

  it('cannot watch a service without an ECS service deployment', async () => {
    ecs
      .on(DescribeServicesCommand)
      .resolves({ services: [{ deploymentController: { type: 'CODE_DEPLOY' } }] });
    await expect(
      assessDeployment({ service: request.service, alarmNames: [] }, clients),
    ).rejects.toMatchObject({ name: 'UnsupportedDeploymentError' });
  });
});

describe('the rollback wait', () => {
  const rollback = {
    ...bakeSubject(60),
    mode: 'rollback' as const,
    taskDefinitionArn: PREVIOUS_TASK_DEFINITION,
  };

  it.each([
    ['ROLLBACK_SUCCESSFUL', PREVIOUS_TASK_DEFINITION, 'ROLLED_BACK'],
    ['SUCCESSFUL', PREVIOUS_TASK_DEFINITION, 'ROLLED_BACK'],
    ['SUCCESSFUL', PATCHED_TASK_DEFINITION, 'FAILED'],
    ['ROLLBACK_FAILED', PATCHED_TASK_DEFINITION, 'FAILED'],
  ] as const)('deployment %s with the service on %s → %s', async (status, running, expected) => {
    service(status, { taskDefinition: running });
    await expect(assessDeployment(rollback, clients)).resolves.toMatchObject({
      decided: true,
      result: { status: expected },
    });
  });

  it('waits while ECS still rolls back, however long it takes, and ignores the alarms', async () => {
    service('ROLLBACK_IN_PROGRESS');
    alarms({ 'payments-api-5xx': 'ALARM' });
    await expect(assessDeployment(rollback, clients)).resolves.toMatchObject({ decided: false });
    expect(cloudwatch.commandCalls(DescribeAlarmsCommand)).toHaveLength(0);
  });
});

describe('startWatch (the wait Tasks: register, look once, no polling)', () => {
  const input = {
    taskToken: TASK_TOKEN,
    executionName: request.executionName,
    service: request.service,
    alarmNames: ['payments-api-5xx'],
    taskDefinitionArn: PATCHED_TASK_DEFINITION,
    deploymentTimeoutSeconds: 7200,
    mode: 'bake' as const,
    deploymentArn: DEPLOYMENT_ARN,
    bakeTimeMinutes: 60,
  };

  it('stores the token, registers the wait with its deployment, alarms and bake, and waits while undecided', async () => {
    service('IN_PROGRESS');
    const m = memory();

    await expect(startWatch(input, { ...clients, ...m }, DEPLOYED_AT)).resolves.toEqual({
      decided: false,
      deploymentArn: DEPLOYMENT_ARN,
      status: 'IN_PROGRESS',
      waitingFor: 'ECS to complete the deployment',
    });
    expect(m.tokens.get(`${request.executionName}/watch`)).toBe(TASK_TOKEN);
    expect(m.registered).toEqual([
      {
        watch: {
          watchId: watchIdOf(TASK_TOKEN),
          serviceKey: 'prod/payments-api',
          service: request.service,
          executionName: request.executionName,
          deploymentArn: DEPLOYMENT_ARN,
          taskDefinitionArn: PATCHED_TASK_DEFINITION,
          alarmNames: ['payments-api-5xx'],
          mode: 'bake',
          bakeSeconds: HOUR,
          watchingSince: DEPLOYED_AT.toISOString(),
          lastAssessedAt: DEPLOYED_AT.toISOString(),
        },
        ttl: 7200 + 86_400,
      },
    ]);
    expect(watchIdOf(TASK_TOKEN)).not.toContain(TASK_TOKEN.slice(0, 10));
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);
  });

  it('still registers the wait when the first look fails: the heartbeat takes over', async () => {
    ecs.on(DescribeServicesCommand).rejects(Object.assign(new Error('boom'), { name: 'ServerException' }));
    const m = memory();

    await expect(startWatch(input, { ...clients, ...m }, DEPLOYED_AT)).resolves.toMatchObject({
      decided: false,
    });
    expect(m.registered[0]?.watch).toMatchObject({ deploymentArn: DEPLOYMENT_ARN });
    expect(m.registered[0]?.watch.lastAssessedAt).toBeUndefined();
  });

  it('resumes the execution itself when it is already decided, and forgets only its own wait', async () => {
    service('ROLLBACK_SUCCESSFUL', { taskDefinition: PREVIOUS_TASK_DEFINITION });
    const m = memory();

    await startWatch(input, { ...clients, ...m });

    expect(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input.taskToken).toBe(TASK_TOKEN);
    expect(sentOutput()).toEqual(
      expect.objectContaining({ status: 'ROLLED_BACK', deploymentArn: DEPLOYMENT_ARN }),
    );
    expect(m.forgotten).toEqual([watchIdOf(TASK_TOKEN)]);
  });
});

describe('events and the heartbeat', () => {
  const serviceArn = 'arn:aws:ecs:eu-central-1:123456789012:service/prod/payments-api';
  const ecsEvent = (eventName: string): DeploymentEvent =>
    deploymentEventSchema.parse({
      source: 'aws.ecs',
      'detail-type': 'ECS Deployment State Change',
      resources: [serviceArn],
      detail: { eventType: 'INFO', eventName, deploymentId: 'ecs-svc/123', reason: 'x' },
    });
  const alarmEvent = (alarmName: string, value = 'ALARM'): DeploymentEvent =>
    deploymentEventSchema.parse({
      source: 'aws.cloudwatch',
      'detail-type': 'CloudWatch Alarm State Change',
      resources: [`arn:aws:cloudwatch:eu-central-1:123456789012:alarm:${alarmName}`],
      detail: { alarmName, state: { value, reason: 'Threshold Crossed' }, previousState: { value: 'OK' } },
    });
  const pinned: WatchRecord = {
    watchId: 'w-1',
    serviceKey: 'prod/payments-api',
    service: request.service,
    executionName: request.executionName,
    deploymentArn: DEPLOYMENT_ARN,
    taskDefinitionArn: PATCHED_TASK_DEFINITION,
    alarmNames: ['payments-api-5xx'],
    mode: 'bake',
    bakeSeconds: HOUR,
    watchingSince: DEPLOYED_AT.toISOString(),
    lastAssessedAt: DEPLOYED_AT.toISOString(),
  };

  it('maps a service ARN to the ledger key', () => {
    expect(serviceKeyFromArn(serviceArn)).toBe('prod/payments-api');
    expect(serviceKeyFromArn('arn:aws:ecs:eu-central-1:1:service/legacy-no-cluster')).toBeUndefined();
  });

  it('does not call the service patched when ECS completes: the bake has only begun', async () => {
    service('SUCCESSFUL', { strategy: 'ROLLING' });
    const m = memory({}, pinned);

    const handled = await handleDeploymentEvent(
      ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'),
      { ...clients, ...m },
      minutesAfter(COMPLETED_AT, 1),
    );

    expect(handled).toEqual([expect.objectContaining({ action: 'undecided' })]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);
  });

  it('ends the bake from the heartbeat, with no event at all', async () => {
    service('SUCCESSFUL', { strategy: 'ROLLING' });
    const m = memory({}, pinned);

    const early = await heartbeat({ ...clients, ...m }, minutesAfter(COMPLETED_AT, 30));
    const due = await heartbeat({ ...clients, ...m }, minutesAfter(COMPLETED_AT, 61));

    expect(early).toEqual([expect.objectContaining({ action: 'undecided' })]);
    // A good look restarts the fail-closed clock.
    expect(m.touched).toEqual(['w-1']);
    expect(due).toEqual([
      expect.objectContaining({
        action: 'resumed',
        result: expect.objectContaining({ status: 'SUCCESSFUL' }),
      }),
    ]);
    expect(m.forgotten).toEqual(['w-1']);
  });

  it('resumes with ROLLED_BACK when ECS rolled back by itself', async () => {
    service('ROLLBACK_SUCCESSFUL', { taskDefinition: PREVIOUS_TASK_DEFINITION });
    const m = memory({}, pinned);
    await handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'), { ...clients, ...m });
    expect(sentOutput()).toEqual(expect.objectContaining({ status: 'ROLLED_BACK' }));
  });

  it('resumes with FAILED when the deployment failed without a rollback', async () => {
    service('STOPPED');
    const m = memory({}, pinned);
    await handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_FAILED'), { ...clients, ...m });
    expect(sentOutput()).toEqual(
      expect.objectContaining({ status: 'FAILED', deploymentArn: DEPLOYMENT_ARN }),
    );
  });

  it('resumes with ALARM, naming the alarm, when a watched alarm goes to ALARM', async () => {
    service('IN_PROGRESS');
    alarms({ 'payments-api-5xx': 'ALARM' });
    const m = memory({}, pinned);

    const handled = await handleDeploymentEvent(alarmEvent('payments-api-5xx'), { ...clients, ...m });

    expect(handled).toHaveLength(1);
    expect(sentOutput()).toEqual({
      status: 'ALARM',
      alarmName: 'payments-api-5xx',
      deploymentArn: DEPLOYMENT_ARN,
      ecsCompleted: false,
      controller: 'ECS',
      reason: expect.any(String),
      decidedAt: expect.any(String),
    });
  });

  it('fails closed when the state stays unreadable past the limit, and only then', async () => {
    ecs
      .on(DescribeServicesCommand)
      .rejects(Object.assign(new Error('Service Unavailable'), { name: 'ServerException' }));
    const m = memory({}, pinned);

    const soon = await heartbeat(
      { ...clients, ...m },
      new Date(DEPLOYED_AT.getTime() + UNREADABLE_LIMIT_MS - 1),
    );
    expect(soon).toEqual([expect.objectContaining({ action: 'unreadable' })]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);

    const late = await heartbeat({ ...clients, ...m }, new Date(DEPLOYED_AT.getTime() + UNREADABLE_LIMIT_MS));
    expect(late).toEqual([expect.objectContaining({ action: 'resumed' })]);
    expect(sentOutput()).toMatchObject({
      status: 'UNKNOWN',
      reason: expect.stringMatching(/could not read .* 5 minutes/),
    });
  });

  it('lets an event’s delivery be retried when the state cannot be read (the heartbeat is the one that gives up)', async () => {
    ecs
      .on(DescribeServicesCommand)
      .rejects(Object.assign(new Error('Service Unavailable'), { name: 'ServerException' }));
    const m = memory({}, pinned);
    await expect(
      handleDeploymentEvent(alarmEvent('payments-api-5xx'), { ...clients, ...m }),
    ).rejects.toBeDefined();
  });

  it('ignores deployments starting, alarms going back to OK, and alarms nobody watches', async () => {
    const m = memory({}, pinned);
    await expect(
      handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_IN_PROGRESS'), { ...clients, ...m }),
    ).resolves.toEqual([]);
    await expect(
      handleDeploymentEvent(alarmEvent('payments-api-5xx', 'OK'), { ...clients, ...m }),
    ).resolves.toEqual([]);
    await expect(
      handleDeploymentEvent(alarmEvent('someone-elses-alarm'), { ...clients, ...m }),
    ).resolves.toEqual([]);
    expect(ecs.calls()).toHaveLength(0);
  });

  it('does nothing for a service with no remediation watching it, and the heartbeat forgets such a wait', async () => {
    const m = memory(undefined, pinned);
    await expect(
      handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'), { ...clients, ...m }),
    ).resolves.toEqual([{ serviceKey: 'prod/payments-api', action: 'not-watching' }]);
    await heartbeat({ ...clients, ...m });
    expect(m.forgotten).toEqual(['w-1']);
  });

  it('treats a token that was already used as done (the watch Lambda, an event and the heartbeat can race)', async () => {
    service('STOPPED');
    sfn.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));
    const m = memory({}, pinned);
    await expect(
      handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_FAILED'), { ...clients, ...m }),
    ).resolves.toEqual([expect.objectContaining({ action: 'already-resumed' })]);
  });
});
