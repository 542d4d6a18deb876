import { Annotations, ArnFormat, Duration, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { OUTCOMES, type Outcome, SEVERITIES, type Severity } from '../lambdas/shared/contracts';
import { ConfigurationError } from '../lambdas/shared/errors';
import { METRIC_DIMENSIONS, METRICS } from '../lambdas/shared/metrics';

export { METRICS } from '../lambdas/shared/metrics';

/** Triage's decisions, as the Findings metric's Action dimension spells them. */
export const TRIAGE_ACTIONS = ['remediate', 'approve', 'notify', 'ignore', 'reject'] as const;

/**
 * The engine's own alarms, by key. Each key is also the alarm's construct id prefix and the anchor of
 * its entry in docs/runbook.md (lower-cased), which its description links to.
 */
export const ENGINE_ALARMS = {
  deadLetters: 'DeadLetters',
  eventDeadLetters: 'EventDeadLetters',
  triageErrors: 'TriageErrors',
  executionsFailed: 'ExecutionsFailed',
  rollbackIncomplete: 'RollbackIncomplete',
} as const;
export type EngineAlarm = (typeof ENGINE_ALARMS)[keyof typeof ENGINE_ALARMS];

/** The runbook section an alarm's description links to. */
export const runbookAnchor = (alarm: EngineAlarm): string => `docs/runbook.md#${alarm.toLowerCase()}`;

export interface AutopatchAlarmsOptions {
  /**
   * Create the alarms on Autopatch itself and route them to the notification topic.
   * @default true
   */
  readonly enabled?: boolean;
  /** Alarm when a dead-letter queue holds at least this many messages. @default 1 */
  readonly deadLetterThreshold?: number;
  /** Alarm when triage fails at least this many invocations in 5 minutes. @default 1 */
  readonly triageErrorThreshold?: number;
  /** Alarm when at least this many executions fail, time out or are aborted in 5 minutes. @default 1 */
  readonly failedExecutionThreshold?: number;
  /**
   * Also notify when an alarm returns to OK, so on-call knows it cleared.
   * @default true
   */
  readonly notifyOnOk?: boolean;
}

export interface AutopatchDashboardProps {
  /** The intake queue triage consumes. */
  readonly queue: sqs.IQueue;
  /** Findings triage failed on, and events EventBridge could not deliver to the intake queue. */
  readonly deadLetterQueue: sqs.IQueue;
  /**
   * Deployment and alarm events the deployment-events Lambda could not handle (the workflow's).
   * @default - not watched
   */
  readonly eventsDeadLetterQueue?: sqs.IQueue;
  readonly triageFunction: lambda.IFunction;
  readonly stateMachine: sfn.IStateMachine;
  /**
   * Where the engine's alarms are sent. When it is encrypted with a key this stack can change, the
   * key policy lets CloudWatch use the key, and the topic policy lets this account's alarms publish.
   */
  readonly topic: sns.ITopic;
  /**
   * The finish Lambda's log group: one "remediation outcome" line per remediation, listed on the
   * dashboard with its console link.
   * @default - no recent remediations table
   */
  readonly finishLogGroup?: logs.ILogGroup;
  /** @default - a name CloudFormation generates */
  readonly dashboardName?: string;
  /** @default - every alarm, with the default thresholds */
  readonly alarms?: AutopatchAlarmsOptions;
}

const FIVE_MINUTES = Duration.minutes(5);

/**
 * The on-call view of Autopatch: intake, triage and workflow health on one dashboard, and alarms on
 * the engine itself routed to the notification topic. The metrics it reads are those the Lambdas emit
 * (lambdas/shared/metrics.ts); each alarm links to its docs/runbook.md entry.
 */
export class AutopatchDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;
  /** The engine's own alarms, by key ({@link ENGINE_ALARMS}). Empty when alarms are disabled. */
  public readonly alarms: Readonly<Partial<Record<EngineAlarm, cloudwatch.Alarm>>>;

  constructor(scope: Construct, id: string, props: AutopatchDashboardProps) {
    super(scope, id);
    const options = validateAlarmOptions(props.alarms ?? {});
    const { queue, deadLetterQueue, triageFunction, stateMachine } = props;
    const stack = Stack.of(this);

    const alarms: Partial<Record<EngineAlarm, cloudwatch.Alarm>> = {};
    if (options.enabled) {
      this.allowAlarmsToPublish(props.topic);
      const alarmAction = new actions.SnsAction(props.topic);
      const alarm = (
        key: EngineAlarm,
        description: string,
        metric: cloudwatch.IMetric,
        threshold: number,
      ) => {
        const a = new cloudwatch.Alarm(this, `${key}Alarm`, {
          alarmDescription: `Autopatch: ${description} Runbook: ${runbookAnchor(key)}`,
          metric,
          threshold,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          // No data means nothing happened: no message, no failure.
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
        a.addAlarmAction(alarmAction);
        if (options.notifyOnOk) a.addOkAction(alarmAction);
        alarms[key] = a;
      };
      alarm(
        ENGINE_ALARMS.deadLetters,
        'Inspector findings could not be triaged after 5 attempts (or not delivered to the intake queue) and wait in the dead-letter queue.',
        deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: FIVE_MINUTES,
          statistic: 'Maximum',
        }),
        options.deadLetterThreshold,
      );
      if (props.eventsDeadLetterQueue) {
        alarm(
          ENGINE_ALARMS.eventDeadLetters,
          'ECS deployment, alarm or execution events could not be handled and wait in the events dead-letter queue: a remediation may not have been resumed or a lock not released.',
          props.eventsDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
            period: FIVE_MINUTES,
            statistic: 'Maximum',
          }),
          options.deadLetterThreshold,
        );
      }
      alarm(
        ENGINE_ALARMS.triageErrors,
        'The triage Lambda failed whole invocations (their batches are retried, then dead-lettered).',
        triageFunction.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        options.triageErrorThreshold,
      );
      alarm(
        ENGINE_ALARMS.executionsFailed,
        'A remediation execution failed, timed out or was aborted (every outcome except Patched, Rejected and Superseded ends as a failed execution).',
        this.failedExecutions(stateMachine),
        options.failedExecutionThreshold,
      );
      alarm(
        ENGINE_ALARMS.rollbackIncomplete,
        'A rollback was needed but Autopatch did not see the service return to its previous revision.',
        this.metricRollbacksIncomplete(),
        1,
      );
    }
    this.alarms = alarms;

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
      defaultInterval: Duration.days(7),
    });
    const region = stack.region;
    const host = `https://${region}.console.aws.amazon.com`;
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: [
          '# Autopatch',
          'Inspector finding → intake queue → triage → one remediation workflow per service. Engine alarms go to the ' +
            'notification topic; every terminal outcome and every alarm has an entry in `docs/runbook.md`.',
          `[Executions](${host}/states/home?region=${region}#/statemachines/view/${stateMachine.stateMachineArn}) · ` +
            `[Queues](${host}/sqs/v3/home?region=${region}#/queues) · ` +
            `[Alarms](${host}/cloudwatch/home?region=${region}#alarmsV2:) · ` +
            `[Inspector findings](${host}/inspector/v2/home?region=${region}#/findings/all)`,
        ].join('\n\n'),
        width: 24,
        height: 3,
      }),
    );

    // Intake.
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Intake: queue depth and dead letters',
        left: [
          queue.metricApproximateNumberOfMessagesVisible({
            period: FIVE_MINUTES,
            statistic: 'Maximum',
            label: 'intake queue',
          }),
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({
            period: FIVE_MINUTES,
            statistic: 'Maximum',
            label: 'dead-letter queue',
          }),
          ...(props.eventsDeadLetterQueue
            ? [
                props.eventsDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
                  period: FIVE_MINUTES,
                  statistic: 'Maximum',
                  label: 'events dead-letter queue',
                }),
              ]
            : []),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Intake: age of the oldest message (s)',
        left: [
          queue.metricApproximateAgeOfOldestMessage({
            period: FIVE_MINUTES,
            statistic: 'Maximum',
            label: 'intake queue',
          }),
        ],
        width: 8,
      }),
      Object.keys(alarms).length > 0
        ? new cloudwatch.AlarmStatusWidget({
            title: 'Engine alarms (runbook: docs/runbook.md)',
            alarms: Object.values(alarms),
            width: 8,
          })
        : new cloudwatch.TextWidget({
            markdown: '**Engine alarms are switched off** (`alarms.enabled: false`).',
            width: 8,
            height: 6,
          }),
    );

    // Triage.
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Triage: findings by decision',
        left: TRIAGE_ACTIONS.map((action) => this.metricFindings(action).with({ label: action })),
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Triage: errors and poison events',
        left: [
          triageFunction.metricErrors({
            period: FIVE_MINUTES,
            statistic: 'Sum',
            label: 'failed invocations',
          }),
          this.metricPoisonEvents().with({ label: 'poison events (dropped)' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Triage: duration (ms)',
        left: (['p50', 'p90', 'Maximum'] as const).map((statistic) =>
          triageFunction.metricDuration({ period: FIVE_MINUTES, statistic, label: statistic }),
        ),
        width: 8,
      }),
    );

    // Workflow.
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Workflow: remediations started and by outcome',
        left: [
          this.metricRemediationsStarted().with({ label: 'started' }),
          ...OUTCOMES.map((o) => this.metricRemediations(o).with({ label: o })),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Workflow: executions by status',
        left: [
          stateMachine.metricStarted({ period: FIVE_MINUTES, label: 'started' }),
          stateMachine.metricSucceeded({ period: FIVE_MINUTES, label: 'succeeded' }),
          stateMachine.metricFailed({ period: FIVE_MINUTES, label: 'failed' }),
          stateMachine.metricTimedOut({ period: FIVE_MINUTES, label: 'timed out' }),
          stateMachine.metricAborted({ period: FIVE_MINUTES, label: 'aborted' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Workflow: durations (s)',
        left: [
          new cloudwatch.MathExpression({
            expression: 'time / 1000',
            usingMetrics: { time: stateMachine.metricTime({ period: FIVE_MINUTES, statistic: 'p90' }) },
            label: 'execution (p90)',
            period: FIVE_MINUTES,
          }),
          this.metricTimeToPatched().with({ label: 'finding → patched (p90)' }),
          this.metricAlarmToRollback().with({ label: 'alarm → rollback request (max)' }),
        ],
        width: 8,
      }),
    );
    // Ratios and durations: how well remediation works, not only how much of it there is.
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Workflow: patch success and rollback rates (%, daily)',
        left: [
          this.metricOutcomeRate('Patched', { period: Duration.days(1), label: 'patch success rate' }),
          this.metricOutcomeRate('RolledBack', { period: Duration.days(1), label: 'rollback rate' }),
        ],
        leftYAxis: { min: 0, max: 100, showUnits: false },
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Workflow: remediation duration by severity (s, p50 and p90)',
        left: SEVERITIES.flatMap((severity) =>
          (['p50', 'p90'] as const).map((statistic) =>
            this.metricRemediationDuration(severity, {
              statistic,
              period: Duration.hours(1),
              label: `${severity} ${statistic}`,
            }),
          ),
        ),
        width: 12,
      }),
    );
    // Deadlines (policy `deadlines`): the sweep counts each remediation, in flight or queued, once when
    // its deadline comes within 24 hours and once when it passes (lambdas/workflow/deadlines.ts).
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Deadlines approaching (within 24 h) by severity (daily)',
        left: SEVERITIES.map((severity) =>
          this.metricDeadlines('approaching', severity, { period: Duration.days(1), label: severity }),
        ),
        stacked: true,
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Deadlines missed by severity (daily)',
        left: SEVERITIES.map((severity) =>
          this.metricDeadlines('missed', severity, { period: Duration.days(1), label: severity }),
        ),
        stacked: true,
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.SingleValueWidget({
        title: 'Rates in the time range (%)',
        metrics: [
          this.metricOutcomeRate('Patched', { label: 'patch success rate' }),
          this.metricOutcomeRate('RolledBack', { label: 'rollback rate' }),
        ],
        setPeriodToTimeRange: true,
        width: 24,
        height: 3,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.SingleValueWidget({
        title: 'Remediations in the time range',
        metrics: [
          this.metricRemediationsStarted().with({ label: 'started' }),
          ...(['Patched', 'RolledBack', 'PatchIneffective', 'BuildFailed', 'Failed'] as const).map((o) =>
            this.metricRemediations(o).with({ label: o }),
          ),
          this.metricRollbacksIncomplete().with({ label: 'rollbacks incomplete' }),
        ],
        setPeriodToTimeRange: true,
        width: 24,
        height: 4,
      }),
    );
    if (props.finishLogGroup) {
      this.dashboard.addWidgets(
        new cloudwatch.LogQueryWidget({
          title: 'Recent remediations (open the execution link for the details)',
          logGroupNames: [props.finishLogGroup.logGroupName],
          view: cloudwatch.LogQueryVisualizationType.TABLE,
          queryLines: [
            'fields @timestamp, outcome, serviceKey, severity, cves, reason, executionLink',
            "filter message = 'remediation outcome'",
            'sort @timestamp desc',
            'limit 25',
          ],
          width: 24,
          height: 8,
        }),
      );
    }
  }

  /** Triage's findings with one decision (Action dimension). Sum over 5 minutes. */
  public metricFindings(action: (typeof TRIAGE_ACTIONS)[number], props?: cloudwatch.MetricOptions) {
    return this.metric(
      METRICS.findings,
      METRICS.triageService,
      { [METRIC_DIMENSIONS.action]: action },
      'Sum',
      props,
    );
  }

  /** Malformed events triage dropped. Sum over 5 minutes. */
  public metricPoisonEvents(props?: cloudwatch.MetricOptions) {
    return this.metric(METRICS.poisonEvents, METRICS.triageService, {}, 'Sum', props);
  }

  /** Remediations triage started. Sum over 5 minutes. */
  public metricRemediationsStarted(props?: cloudwatch.MetricOptions) {
    return this.metric(METRICS.remediationsStarted, METRICS.triageService, {}, 'Sum', props);
  }

  /** Remediations that ended with one outcome. Sum over 5 minutes. */
  public metricRemediations(outcome: Outcome, props?: cloudwatch.MetricOptions) {
    return this.metric(
      METRICS.remediations,
      METRICS.workflowService,
      { [METRIC_DIMENSIONS.outcome]: outcome },
      'Sum',
      props,
    );
  }

  /**
   * The share (%) of finished remediations that ended with `outcome`: metric math over the
   * Remediations counts. "Finished" is every outcome but Superseded (a run that handed its findings to
   * the one in flight finished nothing). No value where nothing finished. Over 5 minutes unless `period`.
   */
  public metricOutcomeRate(
    outcome: Outcome,
    props: { readonly period?: Duration; readonly label?: string } = {},
  ): cloudwatch.MathExpression {
    const period = props.period ?? FIVE_MINUTES;
    const finished = OUTCOMES.filter((o) => o !== 'Superseded');
    const id = (o: Outcome) => `o${OUTCOMES.indexOf(o)}`;
    return new cloudwatch.MathExpression({
      expression: `100 * FILL(${id(outcome)}, 0) / (${finished.map((o) => `FILL(${id(o)}, 0)`).join(' + ')})`,
      usingMetrics: Object.fromEntries(
        [...new Set([...finished, outcome])].map((o) => [id(o), this.metricRemediations(o, { period })]),
      ),
      label: props.label ?? `${outcome} rate`,
      period,
    });
  }

  /**
   * Seconds from execution start to outcome of the remediations whose worst finding had `severity`
   * (every outcome but Superseded). p90 over 5 minutes unless `statistic`.
   */
  public metricRemediationDuration(severity: Severity, props?: cloudwatch.MetricOptions) {
    return this.metric(
      METRICS.remediationDuration,
      METRICS.workflowService,
      { [METRIC_DIMENSIONS.severity]: severity },
      'p90',
      props,
    );
  }

  /**
   * Remediations (in flight or queued) whose worst finding had `severity` and whose policy deadline
   * came within 24 hours (`approaching`) or passed (`missed`): the sweep counts each once per state.
   * Sum over 5 minutes.
   */
  public metricDeadlines(
    state: 'approaching' | 'missed',
    severity: Severity,
    props?: cloudwatch.MetricOptions,
  ) {
    return this.metric(
      state === 'missed' ? METRICS.deadlineMissed : METRICS.deadlineApproaching,
      METRICS.workflowService,
      { [METRIC_DIMENSIONS.severity]: severity },
      'Sum',
      props,
    );
  }

  /** Seconds from the first finding to the patched service. p90 over 5 minutes. */
  public metricTimeToPatched(props?: cloudwatch.MetricOptions) {
    return this.metric(METRICS.timeToPatched, METRICS.workflowService, {}, 'p90', props);
  }

  /** Seconds from an alarm entering ALARM to Autopatch's rollback request. Maximum over 5 minutes. */
  public metricAlarmToRollback(props?: cloudwatch.MetricOptions) {
    return this.metric(METRICS.alarmToRollback, METRICS.workflowService, {}, 'Maximum', props);
  }

  /** Remediations that needed a rollback Autopatch could not confirm. Sum over 5 minutes. */
  public metricRollbacksIncomplete(props?: cloudwatch.MetricOptions) {
    return this.metric(METRICS.rollbacksIncomplete, METRICS.workflowService, {}, 'Sum', props);
  }

  private metric(
    metricName: string,
    service: string,
    dimensions: Record<string, string>,
    statistic: string,
    props: cloudwatch.MetricOptions = {},
  ): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRICS.namespace,
      metricName,
      dimensionsMap: { service, ...dimensions },
      statistic,
      period: FIVE_MINUTES,
      ...props,
    });
  }

  private failedExecutions(stateMachine: sfn.IStateMachine): cloudwatch.IMetric {
    return new cloudwatch.MathExpression({
      // FILL: a period with no failures reports no data for that status, and a sum with a missing
      // term would be missing too.
      expression: 'FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)',
      usingMetrics: {
        failed: stateMachine.metricFailed({ period: FIVE_MINUTES, statistic: 'Sum' }),
        timedOut: stateMachine.metricTimedOut({ period: FIVE_MINUTES, statistic: 'Sum' }),
        aborted: stateMachine.metricAborted({ period: FIVE_MINUTES, statistic: 'Sum' }),
      },
      label: 'failed, timed out or aborted executions',
      period: FIVE_MINUTES,
    });
  }

  /**
   * CloudWatch publishes alarm notifications as the service, so the topic must allow it, and an
   * encrypted topic's key must let it encrypt (SNS's guide for encrypted topics and event sources).
   * Only this account's alarms may publish.
   */
  private allowAlarmsToPublish(topic: sns.ITopic): void {
    const stack = Stack.of(this);
    const principal = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
    const fromOwnAlarms = {
      ArnLike: {
        'aws:SourceArn': stack.formatArn({
          service: 'cloudwatch',
          resource: 'alarm',
          resourceName: '*',
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      },
      StringEquals: { 'aws:SourceAccount': stack.account },
    };
    const topicPolicy = topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowAutopatchAlarmsToPublish',
        principals: [principal],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: fromOwnAlarms,
      }),
    );
    const key = topic.masterKey;
    const keyPolicy = key?.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToUseTheTopicKey',
        principals: [principal],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
      }),
    );
    if (!topicPolicy.statementAdded || (key && !keyPolicy?.statementAdded)) {
      Annotations.of(this).addWarningV2(
        'autopatch:alarm-topic-policy',
        'The notification topic (or its key) is imported, so its policies cannot be changed here. Allow ' +
          'cloudwatch.amazonaws.com to sns:Publish to it (and, if it is encrypted, kms:Decrypt and ' +
          'kms:GenerateDataKey on its key), or the engine alarms cannot notify.',
      );
    }
  }
}

interface ResolvedAlarmOptions {
  readonly enabled: boolean;
  readonly deadLetterThreshold: number;
  readonly triageErrorThreshold: number;
  readonly failedExecutionThreshold: number;
  readonly notifyOnOk: boolean;
}

/** Every bad option at once, each named. Tokens are accepted as they are. */
const validateAlarmOptions = (options: AutopatchAlarmsOptions): ResolvedAlarmOptions => {
  const resolved: ResolvedAlarmOptions = {
    enabled: options.enabled ?? true,
    deadLetterThreshold: options.deadLetterThreshold ?? 1,
    triageErrorThreshold: options.triageErrorThreshold ?? 1,
    failedExecutionThreshold: options.failedExecutionThreshold ?? 1,
    notifyOnOk: options.notifyOnOk ?? true,
  };
  const errors: string[] = [];
  for (const name of ['deadLetterThreshold', 'triageErrorThreshold', 'failedExecutionThreshold'] as const) {
    const value = resolved[name];
    if (Token.isUnresolved(value)) continue;
    if (!Number.isInteger(value) || value < 1) {
      errors.push(`alarms.${name}: must be a whole number of at least 1, got ${JSON.stringify(value)}`);
    }
  }
  for (const name of ['enabled', 'notifyOnOk'] as const) {
    if (typeof resolved[name] !== 'boolean') {
      errors.push(`alarms.${name}: must be true or false, got ${JSON.stringify(resolved[name])}`);
    }
  }
  if (errors.length > 0) {
    throw new ConfigurationError(
      `Invalid Autopatch alarm options, ${errors.length} problem${errors.length === 1 ? '' : 's'}:\n` +
        errors.map((e) => `  - ${e}`).join('\n'),
    );
  }
  return resolved;
};
