import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { OUTCOMES, SEVERITIES } from '../../lambdas/shared/contracts';
import { METRICS } from '../../lambdas/shared/metrics';
import { watchDeadline } from '../../lambdas/workflow/deadlines';
import { type FinishInput, outcomeMetrics } from '../../lambdas/workflow/finish';
import type { WorkflowState } from '../../lambdas/workflow/state';
import {
  type AutopatchAlarmsOptions,
  AutopatchDashboard,
  type AutopatchDashboardProps,
  ENGINE_ALARMS,
} from '../../lib/dashboard';
import { AutopatchStack } from '../../lib/stack';
import { logicalIdOf, policyStatements, testApp, unacknowledgedNagFindings } from '../support/synth';
import { DEPLOYMENT_ARN, remediationRequest, STATE_MACHINE_ARN } from '../support/workflow-harness';

type Json = Record<string, unknown>;

/** The smallest deployment, synthesized like test/support/synth.ts (no bundling), with its dashboard. */
const synthAutopatchWithDashboard = () => {
  const app = testApp();
  const stack = new AutopatchStack(app, 'AutopatchStack', { autopatch: {} });
  return { stack, dashboard: stack.autopatch.dashboard, template: Template.fromStack(stack) };
};

/** The parts one dashboard needs, in a bare stack: cheap enough to build per test. */
const synthDashboard = (
  overrides: Partial<AutopatchDashboardProps> & { alarms?: AutopatchAlarmsOptions } = {},
  options: { importedTopic?: boolean; finishLogGroup?: boolean } = {},
) => {
  const app = new App({ builtinCloudFormationValidation: false });
  const stack = new Stack(app, 'DashboardTest');
  const key = new kms.Key(stack, 'Key', { enableKeyRotation: true });
  const topic = options.importedTopic
    ? sns.Topic.fromTopicArn(stack, 'Topic', 'arn:aws:sns:eu-central-1:123456789012:elsewhere')
    : new sns.Topic(stack, 'Topic', { masterKey: key, enforceSSL: true });
  const dashboard = new AutopatchDashboard(stack, 'OnCall', {
    queue: new sqs.Queue(stack, 'Queue'),
    deadLetterQueue: new sqs.Queue(stack, 'DeadLetterQueue'),
    triageFunction: new lambda.Function(stack, 'Triage', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => {};'),
    }),
    stateMachine: new sfn.StateMachine(stack, 'StateMachine', {
      definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(stack, 'Pass')),
    }),
    topic,
    ...(options.finishLogGroup ? { finishLogGroup: new logs.LogGroup(stack, 'FinishLogs') } : {}),
    ...overrides,
  });
  return { stack, dashboard, template: Template.fromStack(stack) };
};

/** The dashboard body as JSON: CloudFormation tokens inside it become "<token>". */
const dashboardBody = (template: Template): { widgets: Json[] } => {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const body = (dashboards[0] as { Properties: { DashboardBody: unknown } }).Properties.DashboardBody;
  const flatten = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
    if (join) return join[1].map(flatten).join(join[0]);
    return '<token>';
  };
  return JSON.parse(flatten(body));
};

const widgetTitled = (body: { widgets: Json[] }, title: string): Json => {
  const found = body.widgets.find((w) => (w.properties as Json | undefined)?.title === title);
  if (!found) throw new Error(`no widget titled ${JSON.stringify(title)}`);
  return found.properties as Json;
};

/** Metric arrays of a graph widget: [namespace, name, dim1, value1, ..., {options}]. */
const metricsOf = (widget: Json): unknown[][] => (widget.metrics as unknown[][] | undefined) ?? [];

/**
 * The metric data the sweep's deadline watch emits (name and dimensions, its Metrics object adds the
 * service), for a request of each severity whose deadline is approaching and then missed.
 */
const deadlineMetricsEmitted = async (): Promise<
  Array<{ name: string; dimensions: Record<string, string> }>
> => {
  const out: Array<{ name: string; dimensions: Record<string, string> }> = [];
  const single = () => {
    const dimensions: Record<string, string> = {};
    return {
      addDimensions: (d: Record<string, string>) => Object.assign(dimensions, d),
      addMetric: (name: string) => out.push({ name, dimensions }),
    };
  };
  const deps = {
    marks: { mark: async () => true },
    metrics: {
      singleMetric: single,
      addMetric: (name: string) => out.push({ name, dimensions: {} }),
      publishStoredMetrics: () => undefined,
    },
    sns: { send: async () => ({}) },
    topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
  } as unknown as Parameters<typeof watchDeadline>[0];
  const now = new Date('2026-03-01T12:00:00Z');
  for (const severity of SEVERITIES) {
    const base = remediationRequest();
    for (const deadline of ['2026-03-01T18:00:00Z', '2026-03-01T06:00:00Z']) {
      const request = {
        ...base,
        images: base.images.map((i) => ({ ...i, severity })),
        decision: { ...base.decision, deadline },
      };
      await watchDeadline(deps, { executionName: 'e', status: 'RUNNING', request }, now);
    }
  }
  return out;
};

/** [name, dimensions] of each Autopatch metric a widget reads. */
const autopatchMetrics = (widget: Json): Array<[string, Record<string, string>]> =>
  metricsOf(widget)
    .filter((m) => m[0] === METRICS.namespace)
    .map((m) => {
      const parts = m.filter((p) => typeof p === 'string') as string[];
      const dims: Record<string, string> = {};
      for (let i = 2; i + 1 < parts.length; i += 2) dims[parts[i] as string] = parts[i + 1] as string;
      return [parts[1] as string, dims];
    });

describe('the Autopatch dashboard and engine alarms (smallest deployment)', () => {
  let built: ReturnType<typeof synthAutopatchWithDashboard>;
  let body: { widgets: Json[] };

  beforeAll(() => {
    built = synthAutopatchWithDashboard();
    body = dashboardBody(built.template);
  });

  const alarmOf = (key: keyof typeof ENGINE_ALARMS): Json => {
    const alarm = built.dashboard.alarms[ENGINE_ALARMS[key]] as cloudwatch.Alarm;
    expect(alarm).toBeDefined();
    const id = logicalIdOf(built.stack, alarm);
    return built.template.toJSON().Resources[id].Properties as Json;
  };
  const ref = (construct: Parameters<typeof logicalIdOf>[1]) => ({
    Ref: logicalIdOf(built.stack, construct),
  });

  test('intake: queue depth, dead letters and the age of the oldest message', () => {
    const { autopatch } = built.stack;
    const depth = metricsOf(widgetTitled(body, 'Intake: queue depth and dead letters'));
    expect(depth.map((m) => [m[0], m[1]])).toEqual([
      ['AWS/SQS', 'ApproximateNumberOfMessagesVisible'],
      ['AWS/SQS', 'ApproximateNumberOfMessagesVisible'],
      ['AWS/SQS', 'ApproximateNumberOfMessagesVisible'],
    ]);
    expect(depth.map((m) => (m.at(-1) as Json).label)).toEqual([
      'intake queue',
      'dead-letter queue',
      'events dead-letter queue',
    ]);
    const age = metricsOf(widgetTitled(body, 'Intake: age of the oldest message (s)'));
    expect(age.map((m) => m[1])).toEqual(['ApproximateAgeOfOldestMessage']);
    // Each graph reads the queue it says: the dead-letter queue's own metric, not the intake queue's.
    const resolved = built.stack.resolve(
      autopatch.deadLetterQueue.metricApproximateNumberOfMessagesVisible().dimensions,
    );
    expect(resolved).toEqual({
      QueueName: { 'Fn::GetAtt': [logicalIdOf(built.stack, autopatch.deadLetterQueue), 'QueueName'] },
    });
  });

  test('triage: findings by decision, errors and poison events, duration', () => {
    expect(autopatchMetrics(widgetTitled(body, 'Triage: findings by decision'))).toEqual(
      ['remediate', 'approve', 'notify', 'ignore', 'reject'].map((action) => [
        METRICS.findings,
        { service: METRICS.triageService, Action: action },
      ]),
    );
    const errors = widgetTitled(body, 'Triage: errors and poison events');
    expect(metricsOf(errors).map((m) => m[1])).toEqual(['Errors', METRICS.poisonEvents]);
    expect(metricsOf(widgetTitled(body, 'Triage: duration (ms)')).map((m) => m[1])).toEqual([
      'Duration',
      'Duration',
      'Duration',
    ]);
  });

  test('workflow: remediations started and by every outcome, executions by status, durations', () => {
    expect(autopatchMetrics(widgetTitled(body, 'Workflow: remediations started and by outcome'))).toEqual([
      [METRICS.remediationsStarted, { service: METRICS.triageService }],
      ...OUTCOMES.map((o) => [METRICS.remediations, { service: METRICS.workflowService, Outcome: o }]),
    ]);
    expect(metricsOf(widgetTitled(body, 'Workflow: executions by status')).map((m) => m[1])).toEqual([
      'ExecutionsStarted',
      'ExecutionsSucceeded',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
      'ExecutionsAborted',
    ]);
    const durations = widgetTitled(body, 'Workflow: durations (s)');
    expect(autopatchMetrics(durations).map(([name]) => name)).toEqual([
      METRICS.timeToPatched,
      METRICS.alarmToRollback,
    ]);
    expect(metricsOf(durations).some((m) => m.includes('ExecutionTime'))).toBe(true);
  });

  test('every workflow metric the dashboard reads is one the finish Lambda or the sweep emits', async () => {
    const key = (name: string, dims: Record<string, string>) =>
      JSON.stringify([name, Object.entries(dims).sort(([a], [b]) => a.localeCompare(b))]);
    const state: WorkflowState = {
      ...remediationRequest(),
      watch: {
        status: 'ALARM',
        alarmName: 'a',
        deploymentArn: DEPLOYMENT_ARN,
        alarmAt: '2024-09-04T17:00:00Z',
        decidedAt: '2024-09-04T17:00:05Z',
      },
    };
    const emitted = new Set(
      OUTCOMES.flatMap((outcome) =>
        SEVERITIES.flatMap((severity) =>
          outcomeMetrics(
            {
              outcome,
              state: { ...state, images: state.images.map((i) => ({ ...i, severity })) },
              executionName: 'e',
              executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:e`,
              stateMachineArn: STATE_MACHINE_ARN,
              startedAt: '2024-09-04T16:00:00Z',
            } satisfies FinishInput,
            new Date('2024-09-04T18:00:00Z'),
          ).map((d) => key(d.name, { service: METRICS.workflowService, ...d.dimensions })),
        ),
      ),
    );
    // The sweep emits the deadline metrics under the same service (lambdas/workflow/deadlines.ts).
    for (const datum of await deadlineMetricsEmitted())
      emitted.add(key(datum.name, { service: METRICS.workflowService, ...datum.dimensions }));
    const read = body.widgets
      .flatMap((w) => autopatchMetrics((w.properties as Json | undefined) ?? {}))
      .filter(([, dims]) => dims.service === METRICS.workflowService);
    expect(read.length).toBeGreaterThan(OUTCOMES.length);
    for (const [name, dims] of read) expect(emitted).toContain(key(name, dims));
  });

  test('deadlines: approaching and missed per severity, exactly the series the sweep emits', async () => {
    // Prepare: what watchDeadline emits for a request of each severity, approaching and missed.
    const emitted = await deadlineMetricsEmitted();
    const series = (name: string) =>
      emitted
        .filter((d) => d.name === name)
        .map((d) => [name, { service: METRICS.workflowService, ...d.dimensions }]);

    // Act
    const approaching = widgetTitled(body, 'Deadlines approaching (within 24 h) by severity (daily)');
    const missed = widgetTitled(body, 'Deadlines missed by severity (daily)');

    // Assess: one series per severity, daily sums, in the names and dimensions the sweep writes.
    expect(series(METRICS.deadlineApproaching)).toHaveLength(SEVERITIES.length);
    expect(autopatchMetrics(approaching)).toEqual(series(METRICS.deadlineApproaching));
    expect(autopatchMetrics(missed)).toEqual(series(METRICS.deadlineMissed));
    for (const widget of [approaching, missed]) {
      expect(metricsOf(widget).map((m) => (m.at(-1) as Json).stat)).toEqual(SEVERITIES.map(() => 'Sum'));
      expect(metricsOf(widget).map((m) => (m.at(-1) as Json).label)).toEqual([...SEVERITIES]);
      expect(metricsOf(widget).map((m) => (m.at(-1) as Json).period)).toEqual(SEVERITIES.map(() => 86_400));
    }
  });

  test('patch success and rollback rates: metric math over the outcome counts, Superseded left out', () => {
    // Prepare: a day with 3 Patched, 1 RolledBack, 1 Failed, and 5 runs superseded (queued behind others).
    const counts: Record<string, number> = { Patched: 3, RolledBack: 1, Failed: 1, Superseded: 5 };
    const rates = (widget: Json): Record<string, number> => {
      const metrics = metricsOf(widget);
      const outcomeOf = new Map(
        metrics
          .filter((m) => m[0] === METRICS.namespace)
          .map((m) => [(m.at(-1) as Json).id as string, m[m.indexOf('Outcome') + 1] as string]),
      );
      return Object.fromEntries(
        metrics
          .map((m) => m[0] as Json)
          .filter((m) => typeof m === 'object' && typeof m.expression === 'string')
          .map((m) => {
            const arithmetic = (m.expression as string).replace(/FILL\((o\d+), 0\)/g, (_, id: string) =>
              String(counts[outcomeOf.get(id) as string] ?? 0),
            );
            expect(arithmetic).toMatch(/^[\d\s()+*/.]+$/);
            return [m.label as string, Number(new Function(`return ${arithmetic}`)())];
          }),
      );
    };

    // Act
    const daily = rates(widgetTitled(body, 'Workflow: patch success and rollback rates (%, daily)'));
    const range = rates(widgetTitled(body, 'Rates in the time range (%)'));

    // Assess
    expect(daily).toEqual({ 'patch success rate': 60, 'rollback rate': 20 });
    expect(range).toEqual(daily);
  });

  test('remediation duration: p50 and p90 per severity, from the series the finish Lambda emits by severity', () => {
    const widget = widgetTitled(body, 'Workflow: remediation duration by severity (s, p50 and p90)');
    expect(autopatchMetrics(widget)).toEqual(
      SEVERITIES.flatMap((severity) =>
        ['p50', 'p90'].map(() => [
          METRICS.remediationDuration,
          { service: METRICS.workflowService, Severity: severity },
        ]),
      ),
    );
    expect(metricsOf(widget).map((m) => (m.at(-1) as Json).stat)).toEqual(
      SEVERITIES.flatMap(() => ['p50', 'p90']),
    );
  });

  test('lists the recent remediations from the finish Lambda’s outcome lines, with their links', () => {
    const table = widgetTitled(body, 'Recent remediations (open the execution link for the details)');
    expect(table.view).toBe('table');
    expect(table.query).toEqual(expect.stringContaining("filter message = 'remediation outcome'"));
    expect(table.query).toEqual(expect.stringContaining('executionLink'));
    expect(table.query).toEqual(expect.stringContaining("SOURCE '<token>'"));
  });

  test('links to the executions, the queues, the alarms and the findings', () => {
    const header = body.widgets.find((w) => w.type === 'text')?.properties as Json;
    for (const path of ['#/statemachines/view/', '/sqs/v3/home', '#alarmsV2:', '/inspector/v2/home']) {
      expect(header.markdown).toEqual(expect.stringContaining(path));
    }
    expect(header.markdown).toEqual(expect.stringContaining('docs/runbook.md'));
  });

  test('creates one alarm per engine failure, on by default, each with its runbook link', () => {
    expect(Object.keys(built.dashboard.alarms).sort()).toEqual(Object.values(ENGINE_ALARMS).sort());
    built.template.resourceCountIs('AWS::CloudWatch::Alarm', Object.keys(ENGINE_ALARMS).length);
    for (const key of Object.keys(ENGINE_ALARMS) as Array<keyof typeof ENGINE_ALARMS>) {
      expect(alarmOf(key).AlarmDescription).toEqual(
        expect.stringContaining(`Runbook: docs/runbook.md#${ENGINE_ALARMS[key].toLowerCase()}`),
      );
    }
  });

  test('routes every alarm, and its return to OK, to the notification topic', () => {
    const topic = ref(built.stack.autopatch.topic);
    for (const key of Object.keys(ENGINE_ALARMS) as Array<keyof typeof ENGINE_ALARMS>) {
      expect(alarmOf(key)).toMatchObject({ AlarmActions: [topic], OKActions: [topic] });
    }
  });

  test('DeadLetters and EventDeadLetters: any message in either dead-letter queue', () => {
    const { autopatch } = built.stack;
    for (const [key, queue] of [
      ['deadLetters', autopatch.deadLetterQueue],
      ['eventDeadLetters', autopatch.workflow.eventsDeadLetterQueue],
    ] as const) {
      expect(alarmOf(key)).toMatchObject({
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [
          { Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalIdOf(built.stack, queue), 'QueueName'] } },
        ],
        Statistic: 'Maximum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
  });

  test('TriageErrors: any failed invocation of the triage function', () => {
    expect(alarmOf('triageErrors')).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: ref(built.stack.autopatch.triageFunction) }],
      Statistic: 'Sum',
      Threshold: 1,
    });
  });

  test('ExecutionsFailed: any execution failed, timed out or aborted', () => {
    const props = alarmOf('executionsFailed');
    const queries = props.Metrics as Array<Json>;
    const expression = queries.find((q) => q.Expression !== undefined);
    expect(expression?.Expression).toBe('FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)');
    const stateMachine = ref(built.stack.autopatch.stateMachine);
    expect(
      queries
        .filter((q) => q.MetricStat !== undefined)
        .map((q) => {
          const stat = q.MetricStat as { Metric: Json; Stat: string };
          return [q.Id, stat.Metric.MetricName, stat.Metric.Dimensions, stat.Stat];
        })
        .sort(),
    ).toEqual([
      ['aborted', 'ExecutionsAborted', [{ Name: 'StateMachineArn', Value: stateMachine }], 'Sum'],
      ['failed', 'ExecutionsFailed', [{ Name: 'StateMachineArn', Value: stateMachine }], 'Sum'],
      ['timedOut', 'ExecutionsTimedOut', [{ Name: 'StateMachineArn', Value: stateMachine }], 'Sum'],
    ]);
    expect(props.Threshold).toBe(1);
  });

  test('RollbackIncomplete: the finish Lambda’s RollbacksIncomplete metric', () => {
    expect(alarmOf('rollbackIncomplete')).toMatchObject({
      Namespace: 'Autopatch',
      MetricName: METRICS.rollbacksIncomplete,
      Dimensions: [{ Name: 'service', Value: METRICS.workflowService }],
      Statistic: 'Sum',
      Threshold: 1,
    });
  });

  test('lets this account’s alarms publish to the topic and use its key', () => {
    const statements = policyStatements(built.stack, built.template);
    const topic = statements.find((s) => s.sid === 'AllowAutopatchAlarmsToPublish');
    expect(topic).toMatchObject({
      type: 'AWS::SNS::TopicPolicy',
      effect: 'Allow',
      actions: ['sns:Publish'],
      principal: { Service: 'cloudwatch.amazonaws.com' },
      resources: [ref(built.stack.autopatch.topic)],
      condition: {
        ArnLike: { 'aws:SourceArn': expect.anything() },
        StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
      },
    });
    const key = statements.find((s) => s.sid === 'AllowCloudWatchAlarmsToUseTheTopicKey');
    expect(key).toMatchObject({
      type: 'AWS::KMS::Key',
      logicalId: logicalIdOf(built.stack, built.stack.autopatch.encryptionKey),
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      principal: { Service: 'cloudwatch.amazonaws.com' },
    });
  });

  test('cdk-nag: no unacknowledged finding on the dashboard, the alarms, the topic or the key', () => {
    const { autopatch } = built.stack;
    const paths = [
      built.dashboard.node.path,
      `${autopatch.node.path}/Notifications`,
      `${autopatch.node.path}/Key`,
    ];
    const findings = unacknowledgedNagFindings(built.stack).filter((f) =>
      paths.some((p) => f.path === p || f.path.startsWith(`${p}/`)),
    );
    expect(findings).toEqual([]);
  });
});

describe('AutopatchDashboard options', () => {
  test('alarms can be switched off: no alarm, no policy change, the dashboard stays', () => {
    const { dashboard, template } = synthDashboard({ alarms: { enabled: false } });

    expect(dashboard.alarms).toEqual({});
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    template.resourceCountIs('AWS::SNS::TopicPolicy', 1);
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.not(Match.arrayWith([Match.objectLike({ Sid: 'AllowAutopatchAlarmsToPublish' })])),
      },
    });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const widgets = dashboardBody(template).widgets;
    expect(widgets.filter((w) => w.type === 'alarm')).toHaveLength(0);
    expect(JSON.stringify(widgets)).toContain('Engine alarms are switched off');
  });

  test('thresholds and OK notifications are configurable', () => {
    const { dashboard, stack, template } = synthDashboard({
      alarms: {
        deadLetterThreshold: 10,
        triageErrorThreshold: 3,
        failedExecutionThreshold: 2,
        notifyOnOk: false,
      },
    });

    const props = (key: keyof typeof ENGINE_ALARMS) =>
      template.toJSON().Resources[
        logicalIdOf(stack, dashboard.alarms[ENGINE_ALARMS[key]] as cloudwatch.Alarm)
      ].Properties;
    expect(props('deadLetters').Threshold).toBe(10);
    expect(props('triageErrors').Threshold).toBe(3);
    expect(props('executionsFailed').Threshold).toBe(2);
    expect(props('rollbackIncomplete').Threshold).toBe(1);
    expect(props('deadLetters').OKActions).toBeUndefined();
    expect(props('deadLetters').AlarmActions).toHaveLength(1);
  });

  test('without an events dead-letter queue or the finish log group, their alarm and table are left out', () => {
    const { dashboard, template } = synthDashboard();

    expect(Object.keys(dashboard.alarms).sort()).toEqual(
      ['DeadLetters', 'ExecutionsFailed', 'RollbackIncomplete', 'TriageErrors'].sort(),
    );
    expect(dashboardBody(template).widgets.filter((w) => w.type === 'log')).toHaveLength(0);
  });

  test('with the finish log group, lists the recent remediations from it', () => {
    const { template } = synthDashboard({}, { finishLogGroup: true });

    expect(dashboardBody(template).widgets.filter((w) => w.type === 'log')).toHaveLength(1);
  });

  test('an imported topic gets a warning: its policies are the owner’s to change', () => {
    const { stack } = synthDashboard({}, { importedTopic: true });

    const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('cannot notify'));
    expect(warnings).toHaveLength(1);
  });

  test('bad options fail with every problem named', () => {
    expect(() =>
      synthDashboard({
        alarms: { deadLetterThreshold: 0, triageErrorThreshold: 1.5, notifyOnOk: 'yes' as never },
      }),
    ).toThrow(
      /3 problems:\n {2}- alarms\.deadLetterThreshold: must be a whole number of at least 1, got 0\n {2}- alarms\.triageErrorThreshold: .*got 1\.5\n {2}- alarms\.notifyOnOk: must be true or false, got "yes"/,
    );
  });
});
