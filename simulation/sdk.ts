/**
 * Real AWS SDK clients whose requests the simulated account answers.
 *
 * A middleware placed after the SDK's retry middleware (finalizeRequest, low priority) sees every
 * attempt: it counts the call, injects the scenario's faults (thrown the way the SDK throws service
 * errors, so the SDK's own retry strategy retries throttling and 5xx with its own backoff, on the
 * virtual clock), and returns the model's answer as `{ output, response }` without sending anything.
 * DynamoDB requests do go out, to dynalite on loopback: the middleware points them there, counts
 * them, injects faults and tells the clock that I/O is in flight.
 *
 * Clients the simulation creates get the middleware at once. The workflow's Lambda handlers create
 * theirs at module scope (`new ECSClient({})`) and take no injected clients, so while a simulation
 * is active every SDK client gets the middleware on its first send (see `activate`).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { clone } from './clone';
import { FAULTS, type ServiceName } from './model/catalog';
import { notModelled, sdkError } from './model/errors';
import type { World } from './model/world';
import type { FaultSpec } from './scenario';

/** A model's operations: name → handler taking the command input and returning its output (no $metadata). */
export type OperationHandlers = Readonly<Record<string, (input: never) => unknown>>;

/** Counts calls per operation and fails the ones a scenario's faults name. */
export class FaultInjector {
  private readonly calls = new Map<string, number>();
  readonly injected: Array<{ at: number; service: ServiceName; operation: string; error: string }> = [];

  constructor(private readonly faults: readonly FaultSpec[]) {}

  /** Throws the scripted error if this call (1-based per operation) is one that should fail. */
  check(service: ServiceName, operation: string): void {
    const key = `${service}:${operation}`;
    const n = (this.calls.get(key) ?? 0) + 1;
    this.calls.set(key, n);
    for (const f of this.faults) {
      if (f.service !== service || f.operation !== operation) continue;
      if (n > f.after && n <= f.after + f.times) {
        const shape = FAULTS[f.error];
        this.injected.push({ at: Date.now(), service, operation, error: f.error });
        throw sdkError(service, f.error, shape.message, { status: shape.status, fault: shape.fault });
      }
    }
  }
}

export interface ModelHandlerSet {
  readonly ecs: OperationHandlers;
  readonly ecr: OperationHandlers;
  readonly codebuild: OperationHandlers;
  readonly inspector2: OperationHandlers;
  readonly cloudwatch: OperationHandlers;
  readonly sns: OperationHandlers;
  readonly eventbridge: OperationHandlers;
  readonly ssm: OperationHandlers;
  readonly sfn: OperationHandlers;
}

/** Where the requests of the running simulation go. */
export interface Router {
  readonly world: World;
  readonly faults: FaultInjector;
  readonly handlers: ModelHandlerSet;
  /** dynalite's loopback address. */
  readonly dynamo: { readonly hostname: string; readonly port: number };
}

interface HttpRequestLike {
  hostname?: string;
  port?: number;
  protocol?: string;
  headers?: Record<string, string>;
}
interface MiddlewareArgs {
  readonly input: unknown;
  readonly request?: HttpRequestLike;
}
interface MiddlewareContext {
  readonly commandName?: string;
}
type Next = (args: MiddlewareArgs) => Promise<{ output: unknown; response: unknown }>;
interface SdkClient {
  middlewareStack: {
    add(middleware: (next: Next, context: MiddlewareContext) => Next, options: object): void;
    identify?(): string[];
  };
  config: { serviceId?: string };
}

const SERVICE_IDS: Record<string, ServiceName> = {
  ECS: 'ecs',
  ECR: 'ecr',
  CodeBuild: 'codebuild',
  Inspector2: 'inspector2',
  CloudWatch: 'cloudwatch',
  SNS: 'sns',
  EventBridge: 'eventbridge',
  SSM: 'ssm',
  SFN: 'sfn',
  DynamoDB: 'dynamodb',
};

const ATTACHED = Symbol.for('autopatch.simulation.attached');
let active: Router | undefined;
/** DynamoDB requests of the active run, one at a time (see `route`). */
let dynamoQueue: Promise<unknown> = Promise.resolve();

const operationOf = (context: MiddlewareContext): string =>
  (context.commandName ?? 'Unknown').replace(/Command$/, '');

/**
 * dynalite answers with a real `Date` header (wall-clock time), years away from the virtual clock. The
 * SDK would take that for clock skew: shift its clock and retry errors such as
 * ConditionalCheckFailedException as "clock skew corrected". The header goes, both ways.
 */
const withoutDate = (response: unknown): void => {
  const headers = (response as { headers?: Record<string, string> } | undefined)?.headers;
  if (!headers) return;
  delete headers.date;
  delete headers.Date;
};

const send = async (next: Next, args: MiddlewareArgs) => {
  try {
    const out = await next(args);
    withoutDate(out.response);
    return out;
  } catch (error) {
    withoutDate((error as { $response?: unknown }).$response);
    throw error;
  }
};

const route = async (
  router: Router,
  service: ServiceName,
  next: Next,
  args: MiddlewareArgs,
  context: MiddlewareContext,
) => {
  const { world, faults } = router;
  const operation = operationOf(context);
  world.recordCall(service, operation);
  faults.check(service, operation);
  if (service === 'dynamodb') {
    const request = args.request;
    if (request) {
      request.protocol = 'http:';
      request.hostname = router.dynamo.hostname;
      request.port = router.dynamo.port;
      if (request.headers) request.headers.host = `${router.dynamo.hostname}:${router.dynamo.port}`;
    }
    // Sent one at a time, in the order they are made: with real loopback I/O in the middle of the
    // run, that is what keeps two runs of one scenario identical.
    return world.clock.io(() => {
      const sent = dynamoQueue.then(() => send(next, args));
      dynamoQueue = sent.catch(() => undefined);
      return sent;
    });
  }
  const handler = router.handlers[service][operation] as ((input: unknown) => unknown) | undefined;
  if (!handler) throw notModelled(service, operation);
  // Copies both ways: a model must not share objects with the code calling it.
  const output = (await handler(clone(args.input))) as Record<string, unknown>;
  return {
    output: {
      ...clone(output),
      $metadata: { httpStatusCode: 200, requestId: world.uuid(), attempts: 1, totalRetryDelay: 0 },
    },
    response: { statusCode: 200, headers: {}, body: undefined },
  };
};

/** Give a client the simulation middleware (once). Outside a simulation its requests fail. */
export const attach = <C>(client: C): C => {
  const c = client as unknown as SdkClient & { [ATTACHED]?: true };
  if (c[ATTACHED]) return client;
  c[ATTACHED] = true;
  // A DynamoDBDocumentClient starts from a copy of its client's stack: it may have the middleware already.
  if (c.middlewareStack.identify?.().some((m) => m.startsWith('autopatchSimulation'))) return client;
  const service = SERVICE_IDS[c.config.serviceId ?? ''];
  c.middlewareStack.add(
    (next, context) => async (args) => {
      const router = active;
      // Never let a simulated client reach AWS: outside a run (work left over when a run stopped at its
      // horizon, say) its requests fail instead.
      if (!router) throw new Error('this AWS SDK client belongs to a simulation that is no longer running');
      if (!service) throw new Error(`the simulation does not model the ${c.config.serviceId} service`);
      return route(router, service, next, args, context);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'autopatchSimulation', tags: ['SIMULATION'] },
  );
  return client;
};

type Send = (this: unknown, ...args: unknown[]) => unknown;
const clientPrototype = Object.getPrototypeOf(ECSClient.prototype) as { send: Send };
let originalSend: Send | undefined;

/**
 * Route every SDK client's requests to `router` until the returned function is called. Clients the
 * simulation did not create (the Lambda handlers' module-scope clients) are attached on their first
 * send, by wrapping the SDK's shared Client.prototype.send for the duration.
 */
export const activate = (router: Router): (() => void) => {
  if (active) throw new Error('a simulation is already running in this process');
  active = router;
  dynamoQueue = Promise.resolve();
  if (!originalSend) {
    const send = clientPrototype.send;
    originalSend = send;
    clientPrototype.send = function (this: unknown, ...args: unknown[]) {
      if (active) attach(this);
      return send.apply(this, args);
    };
  }
  return () => {
    if (active === router) active = undefined;
    if (originalSend) clientPrototype.send = originalSend;
    originalSend = undefined;
  };
};

export interface SimulatedClients {
  readonly ecs: ECSClient;
  readonly ecr: ECRClient;
  readonly codebuild: CodeBuildClient;
  readonly inspector2: Inspector2Client;
  readonly cloudwatch: CloudWatchClient;
  readonly sns: SNSClient;
  readonly eventbridge: EventBridgeClient;
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly dynamodb: DynamoDBClient;
}

/**
 * One full set of clients, as a Lambda function (or Step Functions itself) would hold them.
 * `maxAttempts`: 3 (the SDK default) for Lambda code; 1 for Step Functions' own service integrations,
 * which hand the first error to the state's Retry.
 */
export const simulatedClients = (world: World, maxAttempts: number): SimulatedClients => {
  const config = {
    region: world.region,
    credentials: { accessKeyId: 'SIMULATED', secretAccessKey: 'SIMULATED' },
    maxAttempts,
  };
  return {
    ecs: attach(new ECSClient(config)),
    ecr: attach(new ECRClient(config)),
    codebuild: attach(new CodeBuildClient(config)),
    inspector2: attach(new Inspector2Client(config)),
    cloudwatch: attach(new CloudWatchClient(config)),
    sns: attach(new SNSClient(config)),
    eventbridge: attach(new EventBridgeClient(config)),
    ssm: attach(new SSMClient(config)),
    sfn: attach(new SFNClient(config)),
    // The endpoint is rewritten to dynalite per request; this one only keeps the SDK from resolving AWS's.
    dynamodb: attach(new DynamoDBClient({ ...config, endpoint: 'http://127.0.0.1:8000' })),
  };
};

export const destroyClients = (clients: SimulatedClients): void => {
  for (const c of Object.values(clients)) (c as { destroy(): void }).destroy();
};
