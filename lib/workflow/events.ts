import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { ABANDONING_STATUSES, SCAN_COMPLETE_STATUSES } from '../../lambdas/shared/workflow-constants';

export interface WorkflowEventsProps {
  /** Resumes watching executions (deployment and alarm events) and releases abandoned locks. */
  readonly deploymentEvents: lambda.IFunction;
  /** The heartbeat under every event-driven wait. */
  readonly sweep: lambda.IFunction;
  /** The state machine whose ended executions release their lock, by ARN (built from its fixed name). */
  readonly stateMachineArn: string;
}

export interface WorkflowEvents {
  readonly deploymentStateRule: events.Rule;
  readonly alarmStateRule: events.Rule;
  /** CodeDeploy deployment state changes (CODE_DEPLOY services). */
  readonly codeDeployStateRule: events.Rule;
  /** Inspector2 Scan events: answer the waits for a rescan of the scanned digest. */
  readonly inspectorScanRule: events.Rule;
  readonly executionEndedRule: events.Rule;
  readonly sweepSchedule: events.Rule;
  readonly eventsDeadLetterQueue: sqs.Queue;
}

/**
 * What wakes the workflow up between its own steps, created in `scope` (the workflow): EventBridge
 * rules for ECS deployment, alarm and execution status changes, their dead-letter queue, and the
 * sweep's one-minute schedule.
 */
export const createWorkflowEvents = (scope: Construct, props: WorkflowEventsProps): WorkflowEvents => {
  const eventsDeadLetterQueue = new sqs.Queue(scope, 'EventsDeadLetterQueue', {
    // SQS-managed encryption, not the shared key: EventBridge writes here for three rules, and a
    // KMS key policy naming them by ARN would need fixed rule names (a Key -> Rule -> Queue -> Key
    // cycle otherwise). Without key access EventBridge could not dead-letter an event at all.
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  // A handler that keeps failing on an event (after Lambda's own two retries) sends the event to the
  // same alarmed queue instead of dropping it; the heartbeat re-assesses the watch meanwhile.
  props.deploymentEvents.configureAsyncInvoke({
    onFailure: new destinations.SqsDestination(eventsDeadLetterQueue),
    retryAttempts: 2,
    maxEventAge: Duration.hours(1),
  });
  const eventsTarget = () =>
    new targets.LambdaFunction(props.deploymentEvents, {
      deadLetterQueue: eventsDeadLetterQueue,
      maxEventAge: Duration.hours(1),
      retryAttempts: 8,
    });
  const deploymentStateRule = new events.Rule(scope, 'DeploymentStateRule', {
    description: 'Autopatch: ECS deployment state changes resume the watching remediation',
    eventPattern: {
      source: ['aws.ecs'],
      detailType: ['ECS Deployment State Change'],
      detail: { eventName: events.Match.anythingBut('SERVICE_DEPLOYMENT_IN_PROGRESS') },
    },
    targets: [eventsTarget()],
  });
  const alarmStateRule = new events.Rule(scope, 'AlarmStateRule', {
    description: 'Autopatch: an alarm going to ALARM resumes the remediation watching it (rollback)',
    eventPattern: {
      source: ['aws.cloudwatch'],
      detailType: ['CloudWatch Alarm State Change'],
      detail: { state: { value: ['ALARM'] } },
    },
    targets: [eventsTarget()],
  });
  const codeDeployStateRule = new events.Rule(scope, 'CodeDeployStateRule', {
    description:
      'Autopatch: CodeDeploy deployment state changes resume the remediation watching a CODE_DEPLOY service',
    eventPattern: {
      source: ['aws.codedeploy'],
      detailType: ['CodeDeploy Deployment State-change Notification'],
    },
    targets: [eventsTarget()],
  });
  // Inspector's scan of a digest answers the waits for it at once; the sweep is the safety net for a
  // lost event. Same target settings (retries, DLQ) as the rules above.
  const inspectorScanRule = new events.Rule(scope, 'InspectorScanRule', {
    description: "Autopatch: Inspector's scan of a rebuilt image answers the remediation waiting for it",
    eventPattern: {
      source: ['aws.inspector2'],
      detailType: ['Inspector2 Scan'],
      detail: { 'scan-status': [...SCAN_COMPLETE_STATUSES] },
    },
    targets: [eventsTarget()],
  });
  const executionEndedRule = new events.Rule(scope, 'ExecutionEndedRule', {
    description:
      'Autopatch: a remediation stopped by hand, timed out or failed outside its catch path releases its service lock',
    eventPattern: {
      source: ['aws.states'],
      detailType: ['Step Functions Execution Status Change'],
      detail: { status: [...ABANDONING_STATUSES], stateMachineArn: [props.stateMachineArn] },
    },
    targets: [eventsTarget()],
  });
  // The heartbeat: events first, this as the safety net (a lost event, the end of a bake, a state
  // that stays unreadable). A failed run is simply the next minute's run.
  const sweepSchedule = new events.Rule(scope, 'SweepSchedule', {
    description:
      'Autopatch: every minute, re-assess every deployment, bake and rollback a remediation waits on',
    schedule: events.Schedule.rate(Duration.minutes(1)),
    targets: [new targets.LambdaFunction(props.sweep, { retryAttempts: 0 })],
  });
  return {
    deploymentStateRule,
    alarmStateRule,
    codeDeployStateRule,
    inspectorScanRule,
    executionEndedRule,
    sweepSchedule,
    eventsDeadLetterQueue,
  };
};

/**
 * The account filter of the rules that carry workload-account events to the deployment-events
 * Lambda (ECS deployments, alarms, CodeDeploy, Inspector scans). They have none by default: only
 * events on this account's default bus reach them, and the spokes' forwarded events are wanted too.
 * An organization hub that lists its spoke accounts narrows them to those and its own.
 */
export const limitSpokeEventAccounts = (
  rules: Pick<
    WorkflowEvents,
    'deploymentStateRule' | 'alarmStateRule' | 'codeDeployStateRule' | 'inspectorScanRule'
  >,
  accounts: readonly string[],
): void => {
  for (const rule of [
    rules.deploymentStateRule,
    rules.alarmStateRule,
    rules.codeDeployStateRule,
    rules.inspectorScanRule,
  ])
    rule.addEventPattern({ account: [...accounts] });
};
