/**
 * The promises users stake production on (docs/ARCHITECTURE.md, "Invariants"), as checks on the end
 * of one simulation run. Each violation names its kind, so the fault matrix can count them by kind.
 */
import type { SimulationReport } from '../report';

export const VIOLATION_KINDS = [
  /** An execution is still running when the run ends (hours after any fault cleared). */
  'execution-left-running',
  /** A service ends on neither its original revision nor a patched one baked with every watched alarm OK. */
  'service-not-on-good-revision',
  /** The outcome says something other than what the service runs. */
  'untruthful-outcome',
  /** A service lock is left in the ledger although the fault cleared. */
  'lock-left',
  /** An execution ended without announcing its outcome, and nothing alarms. */
  'unannounced-outcome',
  /** A finding ended in no decision, no queued request and not in the (alarmed) dead-letter queue. */
  'finding-lost',
  /**
   * A Lambda invoked asynchronously by an EventBridge rule failed on an event three times (its two
   * retries included): Lambda drops the event, and nothing alarms unless the function has an
   * on-failure destination.
   */
  'event-dropped',
  /** The simulated world itself reported an error (a model callback failed, the run did not complete). */
  'world-error',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation {
  readonly kind: ViolationKind;
  readonly text: string;
}

/** Terminal statuses the engine's ExecutionsFailed alarm counts (failed, timed out, aborted). */
const ALARMED = new Set(['FAILED', 'TIMED_OUT', 'ABORTED']);

const sameDigests = (a: readonly string[], b: readonly string[]) => a.join(',') === b.join(',');

export interface InvariantOptions {
  /** The fault stopped failing calls before the end of the run (an outage ended, a count was used up). */
  readonly faultCleared: boolean;
}

/** Every promise the run broke, one violation each (empty: it kept them all). */
export const checkInvariants = (report: SimulationReport, options: InvariantOptions): Violation[] => {
  const out: Violation[] = [];
  const world = report.world;
  if (!world) return [{ kind: 'world-error', text: `the run did not complete: ${report.errors.join('; ')}` }];

  for (const e of report.executions) {
    if (e.status === 'RUNNING')
      out.push({ kind: 'execution-left-running', text: `${e.name} is still RUNNING at the end of the run` });
  }

  for (const [key, s] of Object.entries(world.services)) {
    const original = s.revision === s.originalRevision && sameDigests(s.digests, s.originalDigests);
    const installer = s.deployments.filter((d) => d.taskDefinition === s.taskDefinition).at(-1);
    const baked = s.patched && installer?.status === 'SUCCESSFUL' && installer.alarmsOk;
    if (s.status === 'ACTIVE' && !original && !baked) {
      out.push({
        kind: 'service-not-on-good-revision',
        text: `${key} runs revision ${s.revision} (${s.digests.map((d) => d.slice(7, 19)).join(', ') || 'no tasks'}): not the original ${s.originalRevision} and not a patched revision baked with its alarms OK${installer ? ` (deployment ${installer.index} ${installer.status}${installer.alarmsOk ? '' : ', alarms not OK'})` : ''}`,
      });
    }
    const last = report.executions.filter((e) => e.service === key && e.status !== 'RUNNING').at(-1);
    if (last) {
      const outcome = last.outcome ?? last.status;
      if (outcome === 'Patched' && !s.patched)
        out.push({
          kind: 'untruthful-outcome',
          text: `${last.name} says Patched but ${key} runs ${s.digests.map((d) => d.slice(7, 19)).join(', ') || 'no tasks'}, not a patched image`,
        });
      if (outcome !== 'Patched' && !sameDigests(s.digests, s.originalDigests))
        out.push({
          kind: 'untruthful-outcome',
          text: `${last.name} says ${outcome} but ${key} does not run its original image (runs ${s.digests.map((d) => d.slice(7, 19)).join(', ') || 'no tasks'})`,
        });
    }
  }

  if (options.faultCleared && (world.locks ?? 0) > 0)
    out.push({
      kind: 'lock-left',
      text: `${world.locks} service lock(s) left in the ledger after the fault cleared`,
    });
  if (world.locks === undefined) out.push({ kind: 'world-error', text: 'the ledger could not be read' });

  for (const e of report.executions) {
    if (e.status === 'RUNNING') continue;
    const event = report.outcomeEvents.some(
      (o) => (o.detail as { executionName?: string } | null)?.executionName === e.name,
    );
    const end = e.startOffsetMs + (e.durationMs ?? 0);
    const sns = report.notifications.some(
      (n) =>
        n.kind === 'outcome' &&
        e.service !== undefined &&
        (n.subject ?? '').includes(e.service) &&
        n.offsetMs >= e.startOffsetMs &&
        n.offsetMs <= end,
    );
    if (!event && !sns && !ALARMED.has(e.status))
      out.push({
        kind: 'unannounced-outcome',
        text: `${e.name} ended ${e.status}${e.outcome ? ` (${e.outcome})` : ''} with no SNS message, no outcome event, and no failed-execution alarm`,
      });
  }

  const decided = Object.values(report.findings).reduce((n, x) => n + x, 0);
  const unaccounted = report.intake.sent - decided - report.intake.deadLetters;
  if (unaccounted > 0)
    out.push({
      kind: 'finding-lost',
      text: `${unaccounted} of ${report.intake.sent} finding message(s) ended in no decision and not in the dead-letter queue`,
    });
  if (
    (report.findings.remediate ?? 0) > 0 &&
    report.executions.length === 0 &&
    report.intake.deadLetters === 0
  )
    out.push({
      kind: 'finding-lost',
      text: `triage decided to remediate ${report.findings.remediate} finding(s) but no execution ever started`,
    });

  // Triage logging an error while AWS fails (and leaving the message to be retried) is what it should
  // do; an exception inside the simulated world is not.
  for (const error of report.errors) {
    if (error.startsWith('triage: ')) continue;
    // asyncInvoke's label: "<function> (<detail-type>)", thrown once Lambda's retries are spent.
    const dropped = /^T\+-?\d+s [A-Za-z]+ \([^)]+\): /.test(error);
    out.push({ kind: dropped ? 'event-dropped' : 'world-error', text: error });
  }
  return out;
};
