import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

/** Namespace and names of the metrics Autopatch's Lambdas emit (Powertools Metrics, EMF). */
export const METRICS = {
  namespace: 'Autopatch',
  triageService: 'autopatch-triage',
  workflowService: 'autopatch-workflow',
  /** Count, dimensions service + Action (remediate | approve | notify | ignore | reject). */
  findings: 'Findings',
  /** Count, dimension service: malformed events dropped from a batch. */
  poisonEvents: 'PoisonEvents',
  remediationsStarted: 'RemediationsStarted',
  /** Count, dimensions service + Outcome. */
  remediations: 'Remediations',
  /** Seconds from the first finding to the patched service. */
  timeToPatched: 'TimeToPatchedSeconds',
  /** Seconds from an alarm entering ALARM to the rollback request. */
  alarmToRollback: 'AlarmToRollbackSeconds',
  /** Count: a rollback was requested but did not complete. */
  rollbacksIncomplete: 'RollbacksIncomplete',
} as const;

export interface AutopatchAlarmsOptions {
  /** @default true */
  readonly enabled?: boolean;
  /** Alarm when the dead-letter queue holds at least this many messages. @default 1 */
  readonly deadLetterThreshold?: number;
  /** Alarm when triage fails this many times in 5 minutes. @default 1 */
  readonly triageErrorThreshold?: number;
}

export interface AutopatchDashboardProps {
  readonly queue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  readonly triageFunction: lambda.IFunction;
  readonly stateMachine: sfn.IStateMachine;
  /** Where the engine's own alarms are sent. */
  readonly topic: sns.ITopic;
  /** The workflow's execution log group, for the recent remediations table. */
  readonly workflowLogGroup?: logs.ILogGroup;
  /** @default 'Autopatch' (suffixed with the stack name by CloudWatch uniqueness rules if needed) */
  readonly dashboardName?: string;
  readonly alarms?: AutopatchAlarmsOptions;
}

const FIVE_MINUTES = Duration.minutes(5);

/**
 * The on-call view of Autopatch: intake, triage and workflow health on one dashboard, and alarms on
 * the engine itself routed to the notification topic.
 */
export class AutopatchDashboard extends Construct {
  public readonly dashboard: cloudwatch.Dashboard;
  /** The engine's own alarms, by purpose. Empty when alarms are disabled. */
  public readonly alarms: Readonly<Record<string, cloudwatch.Alarm>>;

  constructor(scope: Construct, id: string, props: AutopatchDashboardProps) {
    super(scope, id);
    const { queue, deadLetterQueue, triageFunction, stateMachine } = props;
    const workflowMetric = (
      metricName: string,
      dimensionsMap: Record<string, string> = {},
      statistic = 'Sum',
    ) =>
      new cloudwatch.Metric({
        namespace: METRICS.namespace,
        metricName,
        dimensionsMap: { service: METRICS.workflowService, ...dimensionsMap },
        statistic,
        period: FIVE_MINUTES,
      });
    const triageMetric = (metricName: string, dimensionsMap: Record<string, string> = {}) =>
      new cloudwatch.Metric({
        namespace: METRICS.namespace,
        metricName,
        dimensionsMap: { service: METRICS.triageService, ...dimensionsMap },
        statistic: 'Sum',
        period: FIVE_MINUTES,
      });

    const alarmOptions = props.alarms ?? {};
    const alarms: Record<string, cloudwatch.Alarm> = {};
    if (alarmOptions.enabled ?? true) {
      const alarm = (key: string, description: string, metric: cloudwatch.IMetric, threshold = 1) => {
        const a = new cloudwatch.Alarm(this, `${key}Alarm`, {
          alarmDescription: `${description} See docs/runbook.md#${key.toLowerCase()}.`,
          metric,
          threshold,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
        a.addAlarmAction(new actions.SnsAction(props.topic));
        alarms[key] = a;
      };
      alarm(
        'DeadLetters',
        'Inspector findings could not be triaged after 5 attempts and sit in the dead-letter queue.',
        deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: FIVE_MINUTES,
          statistic: 'Maximum',
        }),
        alarmOptions.deadLetterThreshold ?? 1,
      );
      alarm(
        'TriageErrors',
        'The triage Lambda failed (whole batches are being retried).',
        triageFunction.metricErrors({ period: FIVE_MINUTES }),
        alarmOptions.triageErrorThreshold ?? 1,
      );
      alarm(
        'ExecutionsFailed',
        'A remediation execution failed, timed out or was aborted.',
        new cloudwatch.MathExpression({
          expression: 'failed + timedOut + aborted',
          usingMetrics: {
            failed: stateMachine.metricFailed({ period: FIVE_MINUTES }),
            timedOut: stateMachine.metricTimedOut({ period: FIVE_MINUTES }),
            aborted: stateMachine.metricAborted({ period: FIVE_MINUTES }),
          },
          label: 'Failed, timed out or aborted executions',
          period: FIVE_MINUTES,
        }),
      );
      alarm(
        'RollbackIncomplete',
        'A rollback was requested but the service did not return to its previous revision.',
        workflowMetric(METRICS.rollbacksIncomplete),
      );
    }
    this.alarms = alarms;

    const outcomes = [
      'Patched',
      'RolledBack',
      'PatchIneffective',
      'BuildFailed',
      'Failed',
      'Rejected',
      'ApprovalExpired',
    ];
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
      defaultInterval: Duration.days(7),
    });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown:
          '# Autopatch\nIntake → triage → remediation workflow. Alarms route to the notification topic; ' +
          'each terminal outcome and alarm has an entry in `docs/runbook.md`.',
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Intake: queue depth and dead letters',
        left: [
          queue.metricApproximateNumberOfMessagesVisible({ period: FIVE_MINUTES, statistic: 'Maximum' }),
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({
            period: FIVE_MINUTES,
            statistic: 'Maximum',
            label: 'DLQ',
          }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Intake: age of oldest message (s)',
        left: [queue.metricApproximateAgeOfOldestMessage({ period: FIVE_MINUTES, statistic: 'Maximum' })],
        width: 8,
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Engine alarms', alarms: Object.values(alarms), width: 8 }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Triage: decisions',
        left: ['remediate', 'approve', 'notify', 'ignore', 'reject'].map((action) =>
          triageMetric(METRICS.findings, { Action: action }).with({ label: action }),
        ),
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Triage: errors and poison events',
        left: [triageFunction.metricErrors({ period: FIVE_MINUTES }), triageMetric(METRICS.poisonEvents)],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Triage: duration (p90, ms)',
        left: [triageFunction.metricDuration({ period: FIVE_MINUTES, statistic: 'p90' })],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Workflow: remediations by outcome',
        left: outcomes.map((o) => workflowMetric(METRICS.remediations, { Outcome: o }).with({ label: o })),
        stacked: true,
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Workflow: executions',
        left: [
          stateMachine.metricStarted({ period: FIVE_MINUTES }),
          stateMachine.metricSucceeded({ period: FIVE_MINUTES }),
          stateMachine.metricFailed({ period: FIVE_MINUTES }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Workflow: time to patched and alarm-to-rollback (s)',
        left: [
          workflowMetric(METRICS.timeToPatched, {}, 'p90').with({ label: 'finding → patched (p90)' }),
          workflowMetric(METRICS.alarmToRollback, {}, 'Maximum').with({
            label: 'alarm → rollback request (max)',
          }),
        ],
        width: 8,
      }),
    );
    if (props.workflowLogGroup) {
      this.dashboard.addWidgets(
        new cloudwatch.LogQueryWidget({
          title: 'Recent remediations',
          logGroupNames: [props.workflowLogGroup.logGroupName],
          queryLines: [
            'fields @timestamp, execution_arn, type',
            "filter type in ['ExecutionSucceeded', 'ExecutionFailed', 'ExecutionTimedOut', 'ExecutionAborted']",
            'sort @timestamp desc',
            'limit 20',
          ],
          width: 24,
          height: 6,
        }),
      );
    }
  }
}
