/** What a simulation run produces: the data behind the console-like output and the --json document. */
import { OUTCOMES } from '../lambdas/shared/contracts';
import type { EventLog, Execution } from './model/stepfunctions';

export interface StateRecord {
  readonly name: string;
  readonly type: string;
  /** Map iteration index, for states inside a Map. */
  readonly iteration?: number;
  /** ISO-8601 (virtual time). */
  readonly enteredAt: string;
  /** Milliseconds from the scenario start. */
  readonly offsetMs: number;
  readonly durationMs: number;
  readonly status: 'succeeded' | 'failed' | 'caught' | 'running';
  readonly retries: number;
  /** Errors that were retried, with how many times each. */
  readonly retriedErrors?: Readonly<Record<string, number>>;
  readonly error?: string;
  readonly cause?: string;
}

export interface ExecutionReport {
  readonly name: string;
  readonly arn: string;
  readonly service?: string;
  readonly status: string;
  readonly outcome?: string;
  readonly startedAt: string;
  readonly startOffsetMs: number;
  readonly durationMs?: number;
  readonly states: readonly StateRecord[];
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
}

/** What a service runs at the end of a run, and what its deployments did. */
export interface ServiceReport {
  readonly status: string;
  readonly taskDefinition: string;
  readonly revision: number;
  readonly originalRevision: number;
  /** Image digests its running tasks report, sorted. */
  readonly digests: readonly string[];
  readonly originalDigests: readonly string[];
  /** Every digest it runs is an image CodeBuild built (a patched image), or an index of such images only. */
  readonly patched: boolean;
  /** When it runs an image index: each platform (architecture) of it, patched (built by CodeBuild) or original. */
  readonly platforms?: Readonly<Record<string, 'patched' | 'original'>>;
  /** The deployments started during the run (not the initial one). */
  readonly deployments: ReadonlyArray<{
    readonly index: number;
    readonly status: string;
    readonly startOffsetMs: number;
    readonly endOffsetMs?: number;
    readonly bakeMinutes: number;
    /** The alarms watched for the service (deployment alarms and its target's). */
    readonly alarms: readonly string[];
    readonly taskDefinition: string;
    /** Every watched alarm existed and stayed OK from the deployment's start to its end (or the run's). */
    readonly alarmsOk: boolean;
  }>;
  /**
   * From the last watched alarm going to ALARM to the first rollback (ECS's own or requested);
   * undefined when no rollback followed an alarm.
   */
  readonly alarmToRollbackMs?: number | undefined;
}

/** The state of the simulated account at the end of a run. */
export interface WorldReport {
  readonly services: Readonly<Record<string, ServiceReport>>;
  /** Service locks left in the ledger (absent when the ledger could not be read). */
  readonly locks?: number;
  readonly builds: number;
  readonly faultsInjected: number;
  /** When the scenario's API faults stopped failing calls (absent: never, or none fired). */
  readonly faultsClearedOffsetMs?: number;
  /** Every API fault had stopped failing calls by the end of the run. */
  readonly faultsCleared: boolean;
  readonly deliveriesTampered: number;
  /** "<repository>:<tag>" and "<repository>@<digest>" → the digest each names at the end. */
  readonly imageRefs?: Readonly<Record<string, readonly string[]>>;
}

export interface SimulationReport {
  readonly scenario: {
    readonly name: string;
    readonly description: string;
    readonly source: string;
    readonly startTime: string;
  };
  readonly executions: readonly ExecutionReport[];
  /** SQS messages by the action triage last decided for them. */
  readonly findings: Record<string, number>;
  readonly apiCalls: Record<string, number>;
  readonly intake: {
    readonly sent: number;
    readonly invocations: number;
    /** Messages triage reported as failed (batch item failures, or a whole failed batch): each is received again or dead-lettered. */
    readonly itemFailures: number;
    readonly deadLetters: number;
    readonly coldStarts: number;
  };
  /** Per service: virtual ms from its first finding's delivery to the end of the execution that patched it. */
  readonly findingToPatchedMs: Record<string, number>;
  readonly virtual: { readonly durationMs: number; readonly steps: number; readonly stoppedBy: string };
  readonly wallMs: number;
  readonly timeline: ReadonlyArray<{
    readonly offsetMs: number;
    readonly source: string;
    readonly text: string;
  }>;
  readonly notifications: ReadonlyArray<{
    readonly offsetMs: number;
    readonly subject?: string;
    readonly kind?: string;
    /** The service it is about (the `service` message attribute), when it names one. */
    readonly service?: string;
  }>;
  readonly outcomeEvents: ReadonlyArray<{ readonly offsetMs: number; readonly detail: unknown }>;
  /** Exceptions inside the simulated world (event deliveries, model callbacks) and triage errors. */
  readonly errors: readonly string[];
  /** The account at the end (absent when the run could not start). */
  readonly world?: WorldReport;
  /** Expectation mismatches, one sentence each (empty when the scenario has none or all hold). */
  readonly mismatches: readonly string[];
}

const OUTCOME_SET = new Set<string>(OUTCOMES);

/** An execution's Autopatch outcome: the Succeed output's `outcome`, or the Fail state's Error. */
export const outcomeOf = (e: Pick<Execution, 'status' | 'output' | 'error'>): string | undefined => {
  if (e.status === 'SUCCEEDED') {
    const o = (e.output as { outcome?: unknown } | undefined)?.outcome;
    return typeof o === 'string' ? o : undefined;
  }
  if (e.status === 'FAILED') return e.error && OUTCOME_SET.has(e.error) ? e.error : 'Failed';
  if (e.status === 'RUNNING') return undefined;
  return 'Failed';
};

/** Turn the interpreter's event log into one record per state entered, in order. */
export const stateHistory = (events: readonly EventLog[], origin: number, end: number): StateRecord[] => {
  interface Open {
    name: string;
    type: string;
    iteration?: number;
    at: number;
    retries: number;
    retried: Record<string, number>;
    failedAt?: number;
    /** The last failure; undefined again once a retry of the state succeeds. */
    error?: string | undefined;
    cause?: string | undefined;
    record?: StateRecord;
  }
  const order: Open[] = [];
  const open = new Map<string, Open>();
  const close = (o: Open, at: number, status: StateRecord['status']) => {
    o.record = {
      name: o.name,
      type: o.type,
      ...(o.iteration === undefined ? {} : { iteration: o.iteration }),
      enteredAt: new Date(o.at).toISOString(),
      offsetMs: o.at - origin,
      durationMs: Math.max(0, at - o.at),
      status,
      retries: o.retries,
      ...(o.retries > 0 ? { retriedErrors: o.retried } : {}),
      ...(o.error ? { error: o.error } : {}),
      ...(o.cause !== undefined ? { cause: o.cause } : {}),
    };
  };
  for (const e of events) {
    if (!('state' in e)) continue;
    const iteration = 'index' in e && typeof e.index === 'number' ? e.index : undefined;
    const key = `${e.state.name}#${iteration ?? ''}`;
    if (e.type === 'StateEntered') {
      const o: Open = {
        name: e.state.name,
        type: e.state.type,
        ...(iteration === undefined ? {} : { iteration }),
        at: e.timestamp,
        retries: 0,
        retried: {},
      };
      order.push(o);
      open.set(key, o);
      continue;
    }
    const o = open.get(key);
    if (!o) continue;
    if (e.type === 'StateRetried') {
      o.retries += 1;
      if (o.error) o.retried[o.error] = (o.retried[o.error] ?? 0) + 1;
    } else if (e.type === 'StateFailed') {
      o.failedAt = e.timestamp;
      o.error = e.Error;
      o.cause = typeof e.Cause === 'string' ? e.Cause : JSON.stringify(e.Cause);
    } else if (e.type === 'StateCaught') {
      close(o, o.failedAt ?? e.timestamp, 'caught');
      open.delete(key);
    } else if (e.type === 'StateExited') {
      // A retried state that finally succeeded: its earlier failure is history, not its result.
      o.error = undefined;
      o.cause = undefined;
      close(o, e.timestamp, 'succeeded');
      open.delete(key);
    }
  }
  for (const o of open.values()) close(o, o.failedAt ?? end, o.failedAt === undefined ? 'running' : 'failed');
  return order.map((o) => o.record as StateRecord);
};
