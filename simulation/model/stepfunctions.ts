/**
 * Step Functions: executions of the real remediation definition, run by aws-local-stepfunctions with
 * every Task routed to the simulated account, and the task-token API (SendTaskSuccess/Failure).
 *
 * Task routing, by the state's Resource:
 * - `arn:aws:states:::lambda:invoke[.waitForTaskToken]` and direct Lambda ARNs: the real Lambda
 *   handler with model-backed clients; the result comes back in lambda:invoke's envelope, errors as
 *   Lambda reports them (Error = errorType, Cause = {"errorMessage","errorType","trace"}).
 * - `arn:aws:states:::codebuild:startBuild[.sync]`: the CodeBuild model; `.sync` waits for the build
 *   and fails with States.TaskFailed and the build as JSON when it fails, as Step Functions does.
 * - `arn:aws:states:::aws-sdk:<service>:<action>`: the model through a real SDK client (one attempt:
 *   the state's Retry does the retrying), PascalCase in and out, errors named `<Service>.<Exception>`.
 * - sns:publish, events:putEvents and dynamodb:* optimised integrations likewise.
 * A waitForTaskToken Task issues a token through the context object ($$.Task.Token), lets the Lambda
 * store it, and completes when SendTaskSuccess or SendTaskFailure arrives for it.
 */

import * as cloudwatchSdk from '@aws-sdk/client-cloudwatch';
import * as codebuildSdk from '@aws-sdk/client-codebuild';
import * as dynamodbSdk from '@aws-sdk/client-dynamodb';
import * as ecrSdk from '@aws-sdk/client-ecr';
import * as ecsSdk from '@aws-sdk/client-ecs';
import * as eventbridgeSdk from '@aws-sdk/client-eventbridge';
import * as inspector2Sdk from '@aws-sdk/client-inspector2';
import type {
  DescribeExecutionCommandInput,
  DescribeExecutionCommandOutput,
  ListExecutionsCommandInput,
  ListExecutionsCommandOutput,
  SendTaskFailureCommandInput,
  SendTaskHeartbeatCommandInput,
  SendTaskSuccessCommandInput,
  StartExecutionCommandInput,
  StartExecutionCommandOutput,
  StopExecutionCommandInput,
  StopExecutionCommandOutput,
} from '@aws-sdk/client-sfn';
import * as sfnSdk from '@aws-sdk/client-sfn';
import * as snsSdk from '@aws-sdk/client-sns';
import * as ssmSdk from '@aws-sdk/client-ssm';
import type { Context } from 'aws-lambda';
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import { clone } from '../clone';
import type { SimulatedClients } from '../sdk';
import type { CodeBuildModel } from './codebuild';
import { sdkError } from './errors';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;
type Json = unknown;

/** The interpreter's execution event (not exported by name from aws-local-stepfunctions). */
export type EventLog =
  ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

/** A Lambda function the definition invokes, running real handler code. */
export interface SimLambda {
  readonly name: string;
  readonly invoke: (event: Json, context: Context) => Promise<Json>;
}

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface Execution {
  readonly name: string;
  readonly arn: string;
  readonly input: Json;
  readonly inputText: string;
  readonly startedAt: number;
  stoppedAt?: number;
  status: ExecutionStatus;
  output?: Json;
  error?: string;
  cause?: string;
  readonly events: EventLog[];
  abort?: () => void;
  done: Promise<void>;
}

interface PendingToken {
  readonly token: string;
  readonly execution: Execution;
  readonly state: string;
  status: 'waiting' | 'succeeded' | 'failed' | 'closed';
  settle?: { ok: true; output: Json } | { ok: false; error: string; cause: string };
  wake?: () => void;
}

type AnyState = Record<string, unknown> & { Type: string; Resource?: string };
type Definition = { States: Record<string, AnyState>; StartAt: string };

/** An error as the interpreter matches it: `name` is the Error, `message` the Cause. */
class TaskError extends Error {
  /** Read by the interpreter: States.Runtime, as in Step Functions, can be neither retried nor caught. */
  readonly isRetryable: boolean;
  readonly isCatchable: boolean;

  constructor(name: string, cause: string) {
    super(cause);
    this.name = name;
    this.isRetryable = name !== 'States.Runtime';
    this.isCatchable = name !== 'States.Runtime';
  }
}

/** Where the interpreter copy of a Task carries its resolved TimeoutSecondsPath (see interpreterDefinition). */
const SIM_TIMEOUT = '__simulationTimeoutSeconds';
const SIM_INPUT = '__simulationInput';
/** The longest timeout a timer can express (2^31-1 ms): "no timeout of the interpreter's own". */
const NO_TIMEOUT_SECONDS = 2_147_483;

/**
 * aws-local-stepfunctions 3.0.0 evaluates a Task's TimeoutSecondsPath against the Task's effective
 * parameters instead of its input (Step Functions uses the input), so `$.target.approvalTimeoutSeconds`
 * "does not point to a value". The copy the interpreter runs passes the path through Parameters
 * instead (evaluated against the input, as Step Functions does), and the simulation enforces the
 * timeout itself. Every other field is left exactly as written.
 */
export const interpreterDefinition = <D extends Definition>(definition: D): D => {
  const copy = clone(definition);
  const walk = (states: Record<string, AnyState>) => {
    for (const state of Object.values(states)) {
      if (state.Type === 'Task' && typeof state.TimeoutSecondsPath === 'string') {
        const parameters = state.Parameters as Record<string, unknown> | undefined;
        state.Parameters = parameters
          ? { ...parameters, [`${SIM_TIMEOUT}.$`]: state.TimeoutSecondsPath }
          : { [`${SIM_INPUT}.$`]: '$', [`${SIM_TIMEOUT}.$`]: state.TimeoutSecondsPath };
        delete state.TimeoutSecondsPath;
        state.TimeoutSeconds = NO_TIMEOUT_SECONDS;
      }
      const processor = (state.ItemProcessor ?? state.Iterator) as Definition | undefined;
      if (processor) walk(processor.States);
      for (const branch of (state.Branches as Definition[] | undefined) ?? []) walk(branch.States);
    }
  };
  walk(copy.States);
  return copy;
};

/** Walk every Task of a definition, nested Map/Parallel states included. */
export const taskStates = (definition: Definition): Map<string, AnyState> => {
  const found = new Map<string, AnyState>();
  const walk = (states: Record<string, AnyState>) => {
    for (const [name, state] of Object.entries(states)) {
      if (state.Type === 'Task') found.set(name, state);
      const processor = (state.ItemProcessor ?? state.Iterator) as Definition | undefined;
      if (processor) walk(processor.States);
      for (const branch of (state.Branches as Definition[] | undefined) ?? []) walk(branch.States);
    }
  };
  walk(definition.States);
  return found;
};

/**
 * Command classes by service, loaded up front: a dynamic import in the middle of a run is real I/O
 * the clock driver cannot see, and virtual time would run on without it.
 */
const SDK_MODULES: Record<string, Record<string, unknown>> = {
  ecs: ecsSdk,
  ecr: ecrSdk,
  codebuild: codebuildSdk,
  inspector2: inspector2Sdk,
  cloudwatch: cloudwatchSdk,
  sns: snsSdk,
  eventbridge: eventbridgeSdk,
  ssm: ssmSdk,
  sfn: sfnSdk,
  dynamodb: dynamodbSdk,
};

const SERVICE_PASCAL: Record<string, string> = {
  ecs: 'Ecs',
  ecr: 'Ecr',
  codebuild: 'CodeBuild',
  inspector2: 'Inspector2',
  cloudwatch: 'CloudWatch',
  sns: 'Sns',
  eventbridge: 'EventBridge',
  ssm: 'Ssm',
  sfn: 'Sfn',
  dynamodb: 'DynamoDb',
};
/** SDKs whose members are camelCase: Step Functions' PascalCase parameters are converted for them. */
const CAMEL_CASE_SERVICES = new Set(['ecs', 'ecr', 'codebuild', 'inspector2', 'sfn']);
/** Members whose values are maps with user-chosen keys: left as they are. */
const MAP_MEMBERS = new Set([
  'dockerLabels',
  'options',
  'secretOptions',
  'DockerLabels',
  'Options',
  'SecretOptions',
  'Attributes',
  'MessageAttributes',
]);

const recase = (value: Json, change: (key: string) => string, dates: 'iso' | 'epoch'): Json => {
  if (value instanceof Date) return dates === 'epoch' ? value.getTime() : value.toISOString();
  if (Array.isArray(value)) return value.map((v) => recase(v, change, dates));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, Json>)
        .filter(([k]) => k !== '$metadata')
        .map(([k, v]) => [change(k), MAP_MEMBERS.has(k) ? v : recase(v, change, dates)]),
    );
  }
  return value;
};
const toCamel = (v: Json) => recase(v, (k) => k.charAt(0).toLowerCase() + k.slice(1), 'iso');
const toPascal = (v: Json, dates: 'iso' | 'epoch' = 'iso') =>
  recase(v, (k) => k.charAt(0).toUpperCase() + k.slice(1), dates);

/** Characters Step Functions does not allow in an execution name (control characters are checked apart). */
const INVALID_NAME = /[\s<>{}[\]?*"#%\\^|~`$&,;:/]/;
const hasControlCharacter = (name: string) =>
  [...name].some((c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f));

/** Find the issued token in a Task's input, wherever the definition put it. */
const findToken = (input: Json, issued: Set<string>): string | undefined => {
  if (typeof input === 'string') return issued.has(input) ? input : undefined;
  if (Array.isArray(input)) {
    for (const v of input) {
      const t = findToken(v, issued);
      if (t) return t;
    }
  } else if (input && typeof input === 'object') {
    for (const v of Object.values(input)) {
      const t = findToken(v, issued);
      if (t) return t;
    }
  }
  return undefined;
};

export interface StepFunctionsOptions {
  readonly world: World;
  readonly definition: Definition;
  readonly stateMachineArn: string;
  /** Resolve the FunctionName (ARN) a Task invokes to the real handler. */
  readonly lambda: (functionName: string) => SimLambda | undefined;
  /** Clients Step Functions itself uses for service integrations (one attempt each). */
  readonly integrations: SimulatedClients;
  readonly codebuild: CodeBuildModel;
  /** Where `Step Functions Execution Status Change` events go. */
  readonly bus: EventBus;
  /**
   * Faults in Lambda's Invoke API as Step Functions meets them: the error (Lambda.ServiceException,
   * Lambda.TooManyRequestsException…) a call fails with, or undefined.
   */
  readonly invokeFault?: (functionName: string) => { name: string; message: string } | undefined;
}

export interface TokenIssued {
  readonly execution: Execution;
  readonly state: string;
  readonly token: string;
}

export class StepFunctionsModel {
  readonly executions: Execution[] = [];
  private readonly tokens = new Map<string, PendingToken>();
  private readonly machine: StateMachine;
  private readonly tasks: Map<string, AnyState>;
  private readonly tokenListeners: Array<(t: TokenIssued) => void> = [];
  private readonly startListeners: Array<(execution: Execution) => void> = [];

  constructor(private readonly o: StepFunctionsOptions) {
    // Validated as written (asl-validator mutates what it validates: it gets a copy)...
    new StateMachine(clone(o.definition) as never, {
      validationOptions: { checkPaths: true, checkArn: true },
    });
    // ...and run with the TimeoutSecondsPath workaround (see interpreterDefinition).
    const runnable = interpreterDefinition(o.definition);
    this.machine = new StateMachine(runnable as never, { validationOptions: { noValidate: true } });
    this.tasks = taskStates(runnable);
  }

  get stateMachineName(): string {
    return this.o.stateMachineArn.split(':').pop() as string;
  }

  onTaskToken(listener: (t: TokenIssued) => void): void {
    this.tokenListeners.push(listener);
  }

  /** Called as each execution starts. */
  onStart(listener: (execution: Execution) => void): void {
    this.startListeners.push(listener);
  }

  // ------------------------------------------------------------------------------- executions

  private start(name: string, input: Json, inputText: string): Execution {
    const arn = `${this.o.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const world = this.o.world;
    const issued = new Set<string>();
    const execution: Execution = {
      name,
      arn,
      input,
      inputText,
      startedAt: Date.now(),
      status: 'RUNNING',
      events: [],
      done: Promise.resolve(),
    };
    this.executions.push(execution);
    world.note('sfn', `execution ${name} started`);
    this.statusChange(execution);
    for (const l of this.startListeners) l(execution);
    const context = {
      Execution: { Id: arn, Name: name, RoleArn: world.arn('iam', 'role/AutopatchWorkflowRole', '') },
      StateMachine: { Id: this.o.stateMachineArn, Name: this.stateMachineName },
      // A fresh token each time the definition reads $$.Task.Token: the Task finds its own in its input.
      Task: {
        get Token(): string {
          const token = `AQC${world.hex(48)}`;
          issued.add(token);
          return token;
        },
      },
    };
    const overrides = Object.fromEntries(
      [...this.tasks.entries()].map(([stateName, state]) => [
        stateName,
        (taskInput: Json) => this.runTask(execution, stateName, state, taskInput, issued),
      ]),
    );
    const run = this.machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: overrides as never },
      context: context as never,
    });
    execution.abort = run.abort;
    const consume = (async () => {
      for await (const event of run.eventLogs) {
        execution.events.push(event);
        this.onEvent(execution, event);
      }
    })();
    const finish = run.result.then(
      (output: Json) => {
        execution.status = 'SUCCEEDED';
        execution.output = output;
      },
      (error: unknown) => {
        const e = error as Error & { cause?: unknown };
        if (e.name === 'ExecutionAbortedError') execution.status = 'ABORTED';
        else if (e.name === 'ExecutionTimeoutError') {
          execution.status = 'TIMED_OUT';
          execution.error = 'States.Timeout';
        } else {
          execution.status = 'FAILED';
          const cause = error instanceof ExecutionError && e.cause instanceof Error ? e.cause : e;
          execution.error = cause.name;
          execution.cause = cause.message;
        }
      },
    );
    execution.done = Promise.all([finish, consume]).then(() => {
      execution.stoppedAt = Date.now();
      this.statusChange(execution);
      for (const t of this.tokens.values())
        if (t.execution === execution && t.status === 'waiting') t.status = 'closed';
      world.note(
        'sfn',
        `execution ${name} ${execution.status}${execution.error ? ` (${execution.error})` : ''}`,
      );
    });
    return execution;
  }

  /** The `Step Functions Execution Status Change` event Step Functions puts on the default bus. */
  private statusChange(e: Execution): void {
    const { bus } = this.o;
    bus.put(
      bus.envelope('aws.states', 'Step Functions Execution Status Change', [e.arn], {
        executionArn: e.arn,
        stateMachineArn: this.o.stateMachineArn,
        name: e.name,
        status: e.status,
        startDate: e.startedAt,
        stopDate: e.stoppedAt ?? null,
        input: e.inputText,
        output: e.output === undefined ? null : JSON.stringify(e.output),
        inputDetails: { included: true },
        outputDetails: e.output === undefined ? null : { included: true },
        ...(e.error ? { error: e.error } : {}),
        ...(e.cause ? { cause: e.cause } : {}),
      }),
    );
  }

  private onEvent(execution: Execution, event: EventLog): void {
    // A Task that times out (or fails) while waiting for its token: the token is dead from then on.
    // Inside a Map, iterations wait in the same state at once: the state name does not say whose
    // token it was, so runTask closes those itself (see `closeOnEnd`).
    if ((event.type === 'StateFailed' || event.type === 'StateExited') && event.index === undefined) {
      for (const t of this.tokens.values()) {
        if (t.execution === execution && t.state === event.state.name && t.status === 'waiting')
          t.status = 'closed';
      }
    }
  }

  private runTask(
    execution: Execution,
    stateName: string,
    state: AnyState,
    input: Json,
    issued: Set<string>,
  ): Promise<Json> {
    const fields = (input ?? {}) as Record<string, Json>;
    // This call's token, closed when the call ends without it (a timeout, a failed invocation).
    let own: PendingToken | undefined;
    const closeOnEnd = (p: PendingToken) => {
      own = p;
    };
    const close = () => {
      if (own?.status === 'waiting') own.status = 'closed';
    };
    if (!(SIM_TIMEOUT in fields))
      return this.task(execution, stateName, state, input, issued, closeOnEnd).catch((error: unknown) => {
        close();
        throw error;
      });
    const { [SIM_TIMEOUT]: seconds, [SIM_INPUT]: wrapped, ...rest } = fields;
    const taskInput = SIM_INPUT in fields ? wrapped : rest;
    if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 1) {
      return Promise.reject(
        new TaskError(
          'States.Runtime',
          `${stateName}: TimeoutSecondsPath does not point to a positive integer (got ${JSON.stringify(seconds)})`,
        ),
      );
    }
    return new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        close();
        reject(new TaskError('States.Timeout', 'States.Timeout'));
      }, seconds * 1000);
      this.task(execution, stateName, state, taskInput, issued, closeOnEnd).then(
        (out) => {
          clearTimeout(timer);
          resolve(out);
        },
        (error: unknown) => {
          clearTimeout(timer);
          close();
          reject(error);
        },
      );
    });
  }

  private async task(
    execution: Execution,
    stateName: string,
    state: AnyState,
    input: Json,
    issued: Set<string>,
    onPending?: (p: PendingToken) => void,
  ): Promise<Json> {
    const resource = state.Resource ?? '';
    const waitForToken = resource.endsWith('.waitForTaskToken');
    const sync = resource.endsWith('.sync');
    const base = resource.replace(/\.(waitForTaskToken|sync(:2)?)$/, '');
    let pending: PendingToken | undefined;
    if (waitForToken) {
      const token = findToken(input, issued);
      if (!token)
        throw new TaskError(
          'States.Runtime',
          `${stateName} waits for a task token but its Parameters do not pass $$.Task.Token`,
        );
      pending = { token, execution, state: stateName, status: 'waiting' };
      this.tokens.set(token, pending);
      onPending?.(pending);
      for (const l of this.tokenListeners) l({ execution, state: stateName, token });
    }

    let result: Json;
    if (base === 'arn:aws:states:::lambda:invoke' || /^arn:aws[\w-]*:lambda:/.test(base)) {
      const direct = base !== 'arn:aws:states:::lambda:invoke';
      const fnName = direct ? base : String((input as { FunctionName?: unknown }).FunctionName ?? '');
      const payload = direct ? input : (input as { Payload?: Json }).Payload;
      const payloadOut = await this.invokeLambda(fnName, payload ?? {});
      result = direct
        ? payloadOut
        : {
            ExecutedVersion: '$LATEST',
            Payload: payloadOut ?? null,
            SdkHttpMetadata: { HttpHeaders: { 'Content-Type': 'application/json' }, HttpStatusCode: 200 },
            SdkResponseMetadata: { RequestId: this.o.world.uuid() },
            StatusCode: 200,
          };
    } else if (base === 'arn:aws:states:::codebuild:startBuild') {
      result = await this.codebuild(input, sync);
    } else {
      const sdk = /^arn:aws:states:::aws-sdk:([a-z0-9]+):([A-Za-z0-9]+)$/.exec(base);
      const optimised = /^arn:aws:states:::(sns|events|dynamodb|ecs):([A-Za-z0-9]+)$/.exec(base);
      if (sdk) result = await this.sdkCall(sdk[1] as string, sdk[2] as string, input, 'aws-sdk');
      else if (optimised) {
        const service = optimised[1] === 'events' ? 'eventbridge' : (optimised[1] as string);
        result = await this.sdkCall(service, optimised[2] as string, input, 'optimised');
      } else {
        throw new TaskError(
          'States.Runtime',
          `the simulation does not route Task resource ${resource} (state ${stateName})`,
        );
      }
    }

    if (!pending) return result;
    return new Promise<Json>((resolve, reject) => {
      const p = pending as PendingToken;
      const deliver = () => {
        const s = p.settle;
        if (!s) return;
        if (s.ok) resolve(s.output);
        else reject(new TaskError(s.error, s.cause));
      };
      p.wake = deliver;
      deliver();
    });
  }

  private async invokeLambda(fnName: string, payload: Json): Promise<Json> {
    const fn = this.o.lambda(fnName);
    if (!fn) {
      throw new TaskError(
        'Lambda.ResourceNotFoundException',
        `Function not found: ${fnName} (the simulation has no handler for it)`,
      );
    }
    this.o.world.recordCall('lambda', 'Invoke');
    const fault = this.o.invokeFault?.(fnName);
    if (fault) {
      // Lambda refused the invocation: the function never ran.
      throw new TaskError(fault.name, JSON.stringify({ errorType: fault.name, errorMessage: fault.message }));
    }
    try {
      // Lambda hands the function a JSON copy of the payload and returns a JSON copy of the result.
      const out = await fn.invoke(JSON.parse(JSON.stringify(payload)), this.o.world.lambdaContext(fnName));
      return out === undefined ? null : JSON.parse(JSON.stringify(out));
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      const trace = (e.stack ?? `${e.name}: ${e.message}`)
        .split('\n')
        .slice(0, 4)
        .map((l) => l.trim());
      throw new TaskError(
        e.name || 'Error',
        JSON.stringify({ errorType: e.name || 'Error', errorMessage: e.message, trace }),
      );
    }
  }

  private async codebuild(input: Json, sync: boolean): Promise<Json> {
    const started = (await this.sdkCall('codebuild', 'startBuild', input, 'optimised', 'epoch')) as {
      Build: { Id: string };
    };
    if (!sync) return started;
    const build = await this.o.codebuild.waitFor(started.Build.Id);
    const out = { Build: toPascal(this.o.codebuild.describe(build), 'epoch') };
    if (build.status !== 'SUCCEEDED') throw new TaskError('States.TaskFailed', JSON.stringify(out));
    return out;
  }

  private async sdkCall(
    service: string,
    action: string,
    input: Json,
    kind: 'aws-sdk' | 'optimised',
    dates: 'iso' | 'epoch' = 'iso',
  ): Promise<Json> {
    const clients = this.o.integrations as unknown as Record<string, { send(c: unknown): Promise<unknown> }>;
    const client = clients[service];
    const pascal = SERVICE_PASCAL[service];
    if (!client || !pascal) throw new TaskError('States.Runtime', `the simulation does not model ${service}`);
    const command = `${action.charAt(0).toUpperCase()}${action.slice(1)}Command`;
    const Command = SDK_MODULES[service]?.[command] as (new (input: unknown) => unknown) | undefined;
    if (!Command) throw new TaskError('States.Runtime', `${service} has no action ${action}`);
    const sdkInput = CAMEL_CASE_SERVICES.has(service) ? toCamel(input) : input;
    try {
      const out = await client.send(new Command(sdkInput));
      return toPascal(out, dates);
    } catch (error) {
      const e = error as Error & { $metadata?: { httpStatusCode?: number; requestId?: string } };
      const prefix = kind === 'optimised' && service === 'dynamodb' ? 'DynamoDB' : pascal;
      const name = `${prefix}.${e.name.endsWith('Exception') ? e.name : `${e.name}Exception`}`;
      throw new TaskError(
        name,
        `${e.message} (Service: ${pascal}, Status Code: ${e.$metadata?.httpStatusCode ?? 400}, Request ID: ${e.$metadata?.requestId ?? this.o.world.uuid()})`,
      );
    }
  }

  // ------------------------------------------------------------------------------- API

  private token(token: string | undefined): PendingToken {
    if (!token || token.length > 2048) throw sdkError('sfn', 'InvalidToken', 'Invalid Token');
    const t = this.tokens.get(token);
    if (!t) throw sdkError('sfn', 'TaskDoesNotExist', 'Task does not exist anymore');
    if (t.status === 'closed') throw sdkError('sfn', 'TaskTimedOut', 'Task Timed Out');
    if (t.status !== 'waiting') throw sdkError('sfn', 'TaskDoesNotExist', 'Task does not exist anymore');
    return t;
  }

  readonly handlers = {
    StartExecution: (input: StartExecutionCommandInput): Out<StartExecutionCommandOutput> => {
      if (input.stateMachineArn !== this.o.stateMachineArn) {
        throw sdkError(
          'sfn',
          'StateMachineDoesNotExist',
          `State Machine Does Not Exist: '${input.stateMachineArn}'`,
        );
      }
      const name = input.name ?? this.o.world.uuid();
      if (name.length < 1 || name.length > 80 || INVALID_NAME.test(name) || hasControlCharacter(name)) {
        throw sdkError('sfn', 'InvalidName', `Invalid Name: '${name}'`);
      }
      const inputText = input.input ?? '{}';
      let parsed: Json;
      try {
        parsed = JSON.parse(inputText);
      } catch {
        throw sdkError('sfn', 'InvalidExecutionInput', 'Invalid State Machine Execution Input: not JSON');
      }
      const existing = this.executions.find((e) => e.name === name);
      if (existing) {
        // Same name and input while running: idempotent, as in Step Functions. Anything else is a clash.
        if (existing.status === 'RUNNING' && existing.inputText === inputText) {
          return { executionArn: existing.arn, startDate: new Date(existing.startedAt) };
        }
        throw sdkError('sfn', 'ExecutionAlreadyExists', `Execution Already Exists: '${existing.arn}'`);
      }
      const execution = this.start(name, parsed, inputText);
      return { executionArn: execution.arn, startDate: new Date(execution.startedAt) };
    },
    DescribeExecution: (input: DescribeExecutionCommandInput): Out<DescribeExecutionCommandOutput> => {
      const e = this.executions.find((x) => x.arn === input.executionArn);
      if (!e)
        throw sdkError('sfn', 'ExecutionDoesNotExist', `Execution Does Not Exist: '${input.executionArn}'`);
      return {
        executionArn: e.arn,
        stateMachineArn: this.o.stateMachineArn,
        name: e.name,
        status: e.status,
        startDate: new Date(e.startedAt),
        ...(e.stoppedAt ? { stopDate: new Date(e.stoppedAt) } : {}),
        input: e.inputText,
        ...(e.output !== undefined ? { output: JSON.stringify(e.output) } : {}),
        ...(e.error ? { error: e.error } : {}),
        ...(e.cause ? { cause: e.cause } : {}),
      };
    },
    ListExecutions: (input: ListExecutionsCommandInput): Out<ListExecutionsCommandOutput> => ({
      executions: this.executions
        .filter((e) => !input.statusFilter || e.status === input.statusFilter)
        .reverse()
        .map((e) => ({
          executionArn: e.arn,
          stateMachineArn: this.o.stateMachineArn,
          name: e.name,
          status: e.status,
          startDate: new Date(e.startedAt),
          ...(e.stoppedAt ? { stopDate: new Date(e.stoppedAt) } : {}),
        })),
    }),
    StopExecution: (input: StopExecutionCommandInput): Out<StopExecutionCommandOutput> => {
      const e = this.executions.find((x) => x.arn === input.executionArn);
      if (!e)
        throw sdkError('sfn', 'ExecutionDoesNotExist', `Execution Does Not Exist: '${input.executionArn}'`);
      e.abort?.();
      return { stopDate: this.o.world.now() };
    },
    SendTaskSuccess: (input: SendTaskSuccessCommandInput) => {
      const t = this.token(input.taskToken);
      let output: Json;
      try {
        output = JSON.parse(input.output ?? '');
      } catch {
        throw sdkError('sfn', 'InvalidOutput', 'Invalid Output: not JSON');
      }
      t.status = 'succeeded';
      t.settle = { ok: true, output };
      t.wake?.();
      return {};
    },
    SendTaskFailure: (input: SendTaskFailureCommandInput) => {
      const t = this.token(input.taskToken);
      t.status = 'failed';
      t.settle = { ok: false, error: input.error ?? 'States.TaskFailed', cause: input.cause ?? '' };
      t.wake?.();
      return {};
    },
    SendTaskHeartbeat: (input: SendTaskHeartbeatCommandInput) => {
      this.token(input.taskToken);
      return {};
    },
  };
}
