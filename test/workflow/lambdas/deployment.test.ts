import { CloudWatchClient, DescribeAlarmsCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  ECSClient,
  type ServiceDeploymentStatus,
} from '@aws-sdk/client-ecs';
import { SendTaskSuccessCommand, SFNClient, TaskTimedOut } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import type { InFlight } from '../../../lambdas/shared/ledger';
import { assessDeployment, verdict } from '../../../lambdas/workflow/deployment';
import {
  type DeploymentEvent,
  deploymentEventSchema,
  handleDeploymentEvent,
  serviceKeyFromArn,
} from '../../../lambdas/workflow/deployment-events';
import { startWatch } from '../../../lambdas/workflow/watch-deployment';
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

const service = (
  status: ServiceDeploymentStatus,
  opts: { taskDefinition?: string; ownAlarms?: string[] } = {},
) => {
  ecs.on(DescribeServicesCommand).resolves({
    services: [
      {
        taskDefinition: opts.taskDefinition ?? PATCHED_TASK_DEFINITION,
        currentServiceDeployment: DEPLOYMENT_ARN,
        deploymentConfiguration: opts.ownAlarms
          ? { alarms: { enable: true, rollback: true, alarmNames: opts.ownAlarms } }
          : {},
      },
    ],
  });
  ecs
    .on(DescribeServiceDeploymentsCommand)
    .resolves({ serviceDeployments: [{ serviceDeploymentArn: DEPLOYMENT_ARN, status }] });
};
const firing = (...names: string[]) =>
  cloudwatch.on(DescribeAlarmsCommand).resolves({ MetricAlarms: names.map((AlarmName) => ({ AlarmName })) });

/** A ledger and watch registry in memory. */
const memory = (inFlight?: Partial<InFlight>, watch?: WatchRecord) => {
  const tokens = new Map<string, string>();
  const registered: Array<{ watch: WatchRecord; ttl: number }> = [];
  if (inFlight) tokens.set(`${request.executionName}/watch`, TASK_TOKEN);
  return {
    tokens,
    registered,
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
      deleteTaskToken: async (name: string, purpose: string) => {
        tokens.delete(`${name}/${purpose}`);
      },
    },
    registry: {
      register: async (w: WatchRecord, ttl: number) => {
        registered.push({ watch: w, ttl });
      },
      get: async () => watch,
      servicesWatching: async (alarm: string) =>
        watch?.alarmNames.includes(alarm) ? [watch.serviceKey] : [],
    },
  };
};
const sentOutput = () =>
  JSON.parse(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input.output ?? 'null');

beforeEach(() => {
  ecs.reset();
  cloudwatch.reset();
  sfn.reset();
  cloudwatch.on(DescribeAlarmsCommand).resolves({ MetricAlarms: [] });
  sfn.on(SendTaskSuccessCommand).resolves({});
});

describe('verdict', () => {
  it.each([
    ['SUCCESSFUL', PATCHED_TASK_DEFINITION, 'SUCCESSFUL'],
    ['SUCCESSFUL', 'arn:aws:ecs:eu-central-1:1:task-definition/someone-else:7', 'FAILED'],
    ['ROLLBACK_SUCCESSFUL', PREVIOUS_TASK_DEFINITION, 'ROLLED_BACK'],
    ['ROLLBACK_FAILED', PATCHED_TASK_DEFINITION, 'FAILED'],
    ['STOPPED', PATCHED_TASK_DEFINITION, 'FAILED'],
    ['IN_PROGRESS', PATCHED_TASK_DEFINITION, undefined],
    ['ROLLBACK_IN_PROGRESS', PREVIOUS_TASK_DEFINITION, undefined],
  ] as const)('deployment %s with the service on %s → %s', (status, running, expected) => {
    expect(verdict({ status }, DEPLOYMENT_ARN, running, PATCHED_TASK_DEFINITION)?.status).toBe(expected);
  });
});

describe('assessDeployment', () => {
  it('reports ALARM when a watched alarm fires while the deployment is in progress, watching the service’s own alarms too', async () => {
    service('IN_PROGRESS', { ownAlarms: ['payments-api-latency'] });
    firing('payments-api-latency');

    const out = await assessDeployment(
      { service: request.service, alarmNames: ['payments-api-5xx'] },
      clients,
    );

    expect(out).toEqual({
      decided: true,
      result: expect.objectContaining({
        status: 'ALARM',
        alarmName: 'payments-api-latency',
        deploymentArn: DEPLOYMENT_ARN,
      }),
      alarmNames: ['payments-api-5xx', 'payments-api-latency'],
    });
    expect(cloudwatch.commandCalls(DescribeAlarmsCommand)[0]?.args[0].input).toEqual(
      expect.objectContaining({
        AlarmNames: ['payments-api-5xx', 'payments-api-latency'],
        StateValue: 'ALARM',
      }),
    );
  });

  it('times an ALARM decision: when the alarm entered ALARM, and when the watch decided', async () => {
    service('IN_PROGRESS');
    cloudwatch.on(DescribeAlarmsCommand).resolves({
      MetricAlarms: [
        { AlarmName: 'payments-api-5xx', StateUpdatedTimestamp: new Date('2024-09-04T17:40:00Z') },
      ],
    });

    const out = await assessDeployment(
      { service: request.service, alarmNames: ['payments-api-5xx'] },
      clients,
    );

    expect(out.decided ? out.result : undefined).toEqual(
      expect.objectContaining({
        status: 'ALARM',
        alarmAt: '2024-09-04T17:40:00.000Z',
        decidedAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
      }),
    );
  });

  it('stays undecided while ECS rolls back by itself (the rollback event decides)', async () => {
    service('ROLLBACK_IN_PROGRESS');
    firing('payments-api-5xx');
    await expect(
      assessDeployment({ service: request.service, alarmNames: ['payments-api-5xx'] }, clients),
    ).resolves.toMatchObject({
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
    ).rejects.toMatchObject({
      name: 'UnsupportedDeploymentError',
    });
  });
});

describe('startWatch (the watch Task: check once, no polling)', () => {
  const input = {
    taskToken: TASK_TOKEN,
    executionName: request.executionName,
    service: request.service,
    alarmNames: ['payments-api-5xx'],
    taskDefinitionArn: PATCHED_TASK_DEFINITION,
    deploymentTimeoutSeconds: 7200,
  };

  it('stores the token, pins the deployment and its alarms, and waits while undecided', async () => {
    service('IN_PROGRESS');
    const m = memory();

    await expect(startWatch(input, { ...clients, ...m })).resolves.toEqual({
      decided: false,
      deploymentArn: DEPLOYMENT_ARN,
      status: 'IN_PROGRESS',
    });
    expect(m.tokens.get(`${request.executionName}/watch`)).toBe(TASK_TOKEN);
    expect(m.registered).toEqual([
      {
        watch: {
          serviceKey: 'prod/payments-api',
          executionName: request.executionName,
          deploymentArn: DEPLOYMENT_ARN,
          taskDefinitionArn: PATCHED_TASK_DEFINITION,
          alarmNames: ['payments-api-5xx'],
        },
        ttl: 7200 + 86_400,
      },
    ]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);
  });

  it('resumes the execution itself when the deployment is already decided', async () => {
    service('SUCCESSFUL');
    const m = memory();

    await startWatch(input, { ...clients, ...m });

    expect(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input.taskToken).toBe(TASK_TOKEN);
    expect(sentOutput()).toEqual(
      expect.objectContaining({ status: 'SUCCESSFUL', deploymentArn: DEPLOYMENT_ARN }),
    );
    expect(m.tokens.size).toBe(0);
  });
});

describe('handleDeploymentEvent', () => {
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
    serviceKey: 'prod/payments-api',
    executionName: request.executionName,
    deploymentArn: DEPLOYMENT_ARN,
    taskDefinitionArn: PATCHED_TASK_DEFINITION,
    alarmNames: ['payments-api-5xx'],
  };

  it('maps a service ARN to the ledger key', () => {
    expect(serviceKeyFromArn(serviceArn)).toBe('prod/payments-api');
    expect(serviceKeyFromArn('arn:aws:ecs:eu-central-1:1:service/legacy-no-cluster')).toBeUndefined();
  });

  it('resumes with SUCCESSFUL when the deployment completes', async () => {
    service('SUCCESSFUL');
    const m = memory({}, pinned);

    const handled = await handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'), {
      ...clients,
      ...m,
    });

    expect(handled).toEqual([
      expect.objectContaining({ serviceKey: 'prod/payments-api', action: 'resumed' }),
    ]);
    expect(sentOutput()).toEqual(
      expect.objectContaining({ status: 'SUCCESSFUL', deploymentArn: DEPLOYMENT_ARN }),
    );
    expect(m.tokens.size).toBe(0);
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
    firing('payments-api-5xx');
    const m = memory({}, pinned);

    const handled = await handleDeploymentEvent(alarmEvent('payments-api-5xx'), { ...clients, ...m });

    expect(handled).toHaveLength(1);
    expect(sentOutput()).toEqual({
      status: 'ALARM',
      alarmName: 'payments-api-5xx',
      deploymentArn: DEPLOYMENT_ARN,
      reason: expect.any(String),
      decidedAt: expect.any(String),
    });
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

  it('does nothing for a service with no remediation watching it', async () => {
    const m = memory(undefined, pinned);
    await expect(
      handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'), { ...clients, ...m }),
    ).resolves.toEqual([{ serviceKey: 'prod/payments-api', action: 'not-watching' }]);
  });

  it('treats a token that was already used as done (the watch Lambda and an event can race)', async () => {
    service('SUCCESSFUL');
    sfn.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: 'Task Timed Out', $metadata: {} }));
    const m = memory({}, pinned);
    await expect(
      handleDeploymentEvent(ecsEvent('SERVICE_DEPLOYMENT_COMPLETED'), { ...clients, ...m }),
    ).resolves.toEqual([expect.objectContaining({ action: 'already-resumed' })]);
  });
});
