import type { Metrics } from '@aws-lambda-powertools/metrics';

/**
 * The metrics Autopatch's Lambdas emit (Powertools Metrics, CloudWatch embedded metric format) and the
 * dashboard and alarms read (lib/dashboard.ts). One list, so a rename cannot leave a widget or an alarm
 * watching a metric nobody emits. Every metric carries the `service` dimension Powertools adds (the
 * Metrics instance's serviceName); the ones below that name more dimensions carry those too.
 */
export const METRICS = {
  namespace: 'Autopatch',
  /** `service` dimension of triage's metrics (lambdas/triage/handler.ts). */
  triageService: 'autopatch-triage',
  /** `service` dimension of the workflow's metrics (the finish Lambda). */
  workflowService: 'autopatch-workflow',

  // Triage.
  /** Count, dimension Action (remediate | approve | notify | ignore | reject): findings by decision. */
  findings: 'Findings',
  /** Count: malformed events dropped from a batch (logged with their reason, never retried). */
  poisonEvents: 'PoisonEvents',
  /** Count: remediations triage started (or resumed). */
  remediationsStarted: 'RemediationsStarted',
  /** Count: remediations queued behind one in flight for the same service. */
  remediationsQueued: 'RemediationsQueued',
  /** Count: requests folded into a remediation that was still gathering findings (no second run). */
  remediationsMerged: 'RemediationsMerged',
  /** Count: remediations a batch planned (one per affected service). */
  remediationsPlanned: 'RemediationsPlanned',

  // Workflow (one data point per remediation outcome, from the finish Lambda).
  /** Count, dimension Outcome (one of OUTCOMES): remediations by how they ended. */
  remediations: 'Remediations',
  /** Seconds from triage first seeing the finding (request.requestedAt) to the service being patched. */
  timeToPatched: 'TimeToPatchedSeconds',
  /**
   * Seconds from execution start to its outcome. Emitted twice per outcome: with dimensions Outcome
   * and Severity (the worst of the run's findings), and - except for Superseded runs, which hand
   * their findings on within seconds - with Severity alone, the series the dashboard's percentiles
   * per severity read (CloudWatch cannot take a percentile across dimension values).
   */
  remediationDuration: 'RemediationDurationSeconds',
  /** Seconds from a watched alarm entering ALARM to Autopatch deciding to roll back (the rollback request is the next state). */
  alarmToRollback: 'AlarmToRollbackSeconds',
  /** Count (0 or 1 per outcome): a rollback was needed but Autopatch could not confirm the service went back. */
  rollbacksIncomplete: 'RollbacksIncomplete',

  // The sweep (lambdas/workflow/deadlines.ts), once per remediation and state, service autopatch-workflow.
  /** Count, dimension Severity (the request's worst): an in-flight remediation's deadline is within 24 hours. */
  deadlineApproaching: 'DeadlineApproaching',
  /** Count, dimension Severity: an in-flight remediation passed its deadline (and a notification went out). */
  deadlineMissed: 'DeadlineMissed',
} as const;

/** The dimension names above, as the dashboard and the emitters spell them. */
export const METRIC_DIMENSIONS = {
  action: 'Action',
  outcome: 'Outcome',
  severity: 'Severity',
} as const;

/** One data point to emit. */
export interface MetricDatum {
  readonly name: string;
  readonly unit: 'Count' | 'Seconds';
  readonly value: number;
  /**
   * Dimensions on top of `service`. A datum with dimensions goes out as its own EMF record, so its
   * dimensions do not spill onto the others.
   */
  readonly dimensions?: Readonly<Record<string, string>>;
}

/**
 * Emit data points through Powertools Metrics and flush them: one EMF record for the datums without
 * extra dimensions, one per datum with dimensions. Nothing is written when the list is empty.
 */
export const emitMetrics = (
  metrics: Pick<Metrics, 'addMetric' | 'singleMetric' | 'publishStoredMetrics'>,
  data: readonly MetricDatum[],
): void => {
  if (data.length === 0) return;
  let stored = 0;
  for (const datum of data) {
    if (datum.dimensions && Object.keys(datum.dimensions).length > 0) {
      // A single metric is flushed by addMetric, so its dimensions must be set first.
      const single = metrics.singleMetric();
      single.addDimensions({ ...datum.dimensions });
      single.addMetric(datum.name, datum.unit, datum.value);
    } else {
      metrics.addMetric(datum.name, datum.unit, datum.value);
      stored++;
    }
  }
  if (stored > 0) metrics.publishStoredMetrics();
};
