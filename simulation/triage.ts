/**
 * The triage Lambda as the intake queue's event source runs it: the real handler from `createHandler`,
 * one instance per execution environment (each with its own clients and inventory cache, like real
 * Lambda), at most the event source's maximum concurrency at once.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { LogItemExtraInput, LogItemMessage } from '@aws-lambda-powertools/logger/types';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { ECRClient } from '@aws-sdk/client-ecr';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { accountClients } from '../lambdas/shared/accounts';
import { createHandler, loadEnvironment } from '../lambdas/triage/handler';
import type { World } from './model/world';
import { type SimulatedClients, simulatedClients } from './sdk';

/** What triage decided for one SQS message (its last decision, if the message was retried). */
export interface TriageDecision {
  readonly at: number;
  readonly messageId: string;
  readonly findingArn?: string;
  readonly action: string;
  readonly reason: string;
  readonly services: readonly string[];
}

export interface TriageLogLine {
  readonly at: number;
  readonly level: 'INFO' | 'WARN' | 'ERROR';
  readonly message: string;
  readonly attributes: Record<string, unknown>;
}

type Sink = (level: TriageLogLine['level'], input: LogItemMessage, extra: LogItemExtraInput) => void;

/**
 * Triage reports each decision through its logger ("Decision", "Rejected a malformed event"): this
 * logger keeps them (and errors) for the run's report, and prints nothing.
 */
class RecordingLogger extends Logger {
  constructor(private readonly sink: Sink) {
    super({ serviceName: 'autopatch-triage', logLevel: 'SILENT' });
  }
  override info(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.sink('INFO', input, extra);
  }
  override warn(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.sink('WARN', input, extra);
  }
  override error(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.sink('ERROR', input, extra);
  }
}

const attributesOf = (
  input: LogItemMessage,
  extra: LogItemExtraInput,
): { message: string; attributes: Record<string, unknown> } => {
  const attributes: Record<string, unknown> = {};
  let message = '';
  if (typeof input === 'string') message = input;
  else {
    const { message: m, ...rest } = input as { message: string };
    message = m;
    Object.assign(attributes, rest);
  }
  for (const e of extra) {
    if (e instanceof Error) attributes.error = `${e.name}: ${e.message}`;
    else if (typeof e === 'object' && e !== null) Object.assign(attributes, e);
  }
  return { message, attributes };
};

interface Environment {
  readonly handle: (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;
  readonly clients: SimulatedClients;
  busy: boolean;
}

export class TriageFleet {
  readonly decisions = new Map<string, TriageDecision>();
  readonly log: TriageLogLine[] = [];
  readonly environments: Environment[] = [];

  constructor(
    private readonly world: World,
    /** The function's environment variables (AUTOPATCH_CONFIG, LEDGER_TABLE, STATE_MACHINE_ARN). */
    private readonly variables: Readonly<Record<string, string>>,
  ) {
    // Validate once, up front: a configuration triage would reject at cold start fails the run here.
    loadEnvironment(variables);
  }

  get coldStarts(): number {
    return this.environments.length;
  }

  private record: Sink = (level, input, extra) => {
    const { message, attributes } = attributesOf(input, extra);
    const at = Date.now();
    if (message === 'Decision' || message === 'Rejected a malformed event') {
      const messageId = String(attributes.messageId ?? '');
      this.decisions.set(messageId, {
        at,
        messageId,
        ...(typeof attributes.findingArn === 'string' ? { findingArn: attributes.findingArn } : {}),
        action: message === 'Decision' ? String(attributes.action) : 'reject',
        reason: String(attributes.reason ?? ''),
        services: Array.isArray(attributes.services) ? attributes.services.map(String) : [],
      });
      return;
    }
    if (/^Remediation /.test(message)) {
      const { service, executionName, inFlight } = attributes as {
        service?: string;
        executionName?: string;
        inFlight?: string;
      };
      const detail = executionName ? `: ${executionName}` : inFlight ? ` behind ${inFlight}` : '';
      this.world.note('triage', `${service}: ${message.slice('Remediation '.length)}${detail}`);
    }
    if (level !== 'INFO' || /^Remediation /.test(message)) this.log.push({ at, level, message, attributes });
  };

  private environment(): Environment {
    const idle = this.environments.find((e) => !e.busy);
    if (idle) return idle;
    // A cold start: a new execution environment with its own clients and inventory cache.
    const clients = simulatedClients(this.world, 3);
    const env: Environment = {
      handle: createHandler(
        loadEnvironment(this.variables),
        {
          ecs: clients.ecs,
          ecr: clients.ecr,
          // As the deployed handler: a registry elsewhere is read with its account's spoke role.
          ecrFor: (place) => accountClients().clientFor(ECRClient, place),
          sfn: clients.sfn,
          dynamodb: clients.dynamodb,
          inspector: clients.inspector2,
        },
        {
          logger: new RecordingLogger(this.record),
          metrics: new Metrics({ namespace: 'Autopatch', serviceName: 'autopatch-triage' }),
          now: () => new Date(Date.now()),
        },
      ),
      clients,
      busy: false,
    };
    this.environments.push(env);
    return env;
  }

  /** The SQS event source's consumer. */
  readonly consume = async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const env = this.environment();
    env.busy = true;
    const context = this.world.lambdaContext('AutopatchTriageFunction', 120_000);
    try {
      const response = await env.handle(event, context);
      const actions = new Map<string, number>();
      for (const r of event.Records) {
        const action = this.decisions.get(r.messageId)?.action ?? 'undecided';
        actions.set(action, (actions.get(action) ?? 0) + 1);
      }
      this.world.note(
        'triage',
        `batch of ${event.Records.length}: ${[...actions].map(([a, n]) => `${a} ${n}`).join(', ')}${response.batchItemFailures.length > 0 ? `; ${response.batchItemFailures.length} to retry` : ''}`,
      );
      return response;
    } finally {
      env.busy = false;
    }
  };
}
