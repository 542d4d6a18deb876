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
 * Before a model answers, two oracles the models' authors did not write check the call: the request
 * against the service's API model as the SDK ships it (simulation/api-models), and IAM, by a real
 * policy evaluator over the synthesized policies of the principal making the call (simulation/iam).
 * A call either rejects fails the way the service fails it.
 *
 * Clients the simulation creates get the middleware at once. The workflow's Lambda handlers create
 * theirs at module scope (`new ECSClient({})`) and take no injected clients, so while a simulation
 * is active every SDK client gets the middleware on its first send (see `activate`).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { CodeBuildClient } from '@aws-sdk/client-codebuild';
import { CodeDeployClient } from '@aws-sdk/client-codedeploy';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { requestProblems, VALIDATION_ERROR } from './api-models/validate';
import { clone } from './clone';
import { builtEnforcer, currentPrincipal, enforcerFor, iamEnforced, OPERATOR } from './iam/enforcer';
import type { ResourceLookups } from './iam/requests';
import { FAULTS, type ServiceName } from './model/catalog';
import { notModelled, sdkError } from './model/errors';
import type { World } from './model/world';
import { lookupsOfHandlers, type Organization, type Place, type Session } from './organization';
import type { FaultSpec } from './scenario';
import type { IamStackOptions } from './stack';

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
        if (!shape) throw new Error(`no service returns ${f.error}`);
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
  readonly codedeploy: OperationHandlers;
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
  /**
   * Enforce IAM on every call, against the stack synthesized with these options (a scenario's
   * explicit targets are granted by ARN). The simulation runner always sets it; a harness whose
   * account is not the synthesized stack's (bench/account.ts, with its own table and state machine
   * names) leaves it out.
   * @default - IAM is not enforced
   */
  readonly iam?: IamStackOptions;
  /**
   * Several accounts and Regions (simulation/organization.ts): calls go to the models of the client's
   * account (by its credentials) and Region, IAM is evaluated per account, STS AssumeRole is answered.
   * @default - one account and Region: every call goes to `handlers`
   */
  readonly organization?: Organization;
}

/** The services each account and Region of an organization has its own model of. */
const PLACED: ReadonlySet<ServiceName> = new Set(['ecs', 'ecr', 'cloudwatch', 'codedeploy', 'inspector2']);

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
  config: {
    serviceId?: string;
    region?: string | (() => Promise<string>);
    credentials?: unknown;
  };
}

const SERVICE_IDS: Record<string, ServiceName> = {
  ECS: 'ecs',
  ECR: 'ecr',
  CodeBuild: 'codebuild',
  CodeDeploy: 'codedeploy',
  Inspector2: 'inspector2',
  CloudWatch: 'cloudwatch',
  SNS: 'sns',
  EventBridge: 'eventbridge',
  SSM: 'ssm',
  SFN: 'sfn',
  DynamoDB: 'dynamodb',
};

const ATTACHED = Symbol.for('autopatch.simulation.attached');
/** The principal a client was created for (see `simulatedClients`). */
const PRINCIPAL = Symbol.for('autopatch.simulation.principal');

/**
 * How each service reports an IAM denial (the SDK's modelled exception where there is one, else the
 * error code the service sends), and its HTTP status.
 */
const ACCESS_DENIED: Record<ServiceName, { name: string; status: number }> = {
  ecs: { name: 'AccessDeniedException', status: 403 },
  ecr: { name: 'AccessDeniedException', status: 400 },
  codebuild: { name: 'AccessDeniedException', status: 400 },
  codedeploy: { name: 'AccessDeniedException', status: 400 },
  inspector2: { name: 'AccessDeniedException', status: 403 },
  cloudwatch: { name: 'AccessDenied', status: 403 },
  sns: { name: 'AuthorizationErrorException', status: 403 },
  eventbridge: { name: 'AccessDeniedException', status: 400 },
  ssm: { name: 'AccessDeniedException', status: 400 },
  sfn: { name: 'AccessDeniedException', status: 400 },
  dynamodb: { name: 'AccessDeniedException', status: 400 },
};

/** What IAM conditions need to know about the account's resources, asked of the models themselves. */
const lookupsOf = (router: Router): ResourceLookups => lookupsOfHandlers(router.handlers);

/** Requests checked against the API models, per run: how many, and the ones rejected. */
export interface ModelCheckSummary {
  readonly checked: number;
  readonly rejected: ReadonlyArray<{ readonly call: string; readonly problems: readonly string[] }>;
}
const modelChecks = new WeakMap<
  World,
  { checked: number; rejected: ModelCheckSummary['rejected'][number][] }
>();

/** The API-model record of a run. */
export const modelCheckSummaryOf = (world: World): ModelCheckSummary | undefined => modelChecks.get(world);

/**
 * Fail the call as the service rejects a request its API model does not allow (unknown member,
 * missing required member, wrong type). `AUTOPATCH_SIMULATION_API_MODELS=off` turns it off.
 */
const validate = (world: World, service: ServiceName, operation: string, input: unknown): void => {
  if (process.env.AUTOPATCH_SIMULATION_API_MODELS === 'off') return;
  const record = modelChecks.get(world) ?? { checked: 0, rejected: [] };
  modelChecks.set(world, record);
  record.checked += 1;
  const problems = requestProblems(service, operation, input);
  if (problems.length === 0) return;
  record.rejected.push({ call: `${service}:${operation}`, problems });
  world.note('api-model', `REJECTED ${service}:${operation}: ${problems.join('; ')}`);
  const { name, status } = VALIDATION_ERROR[service];
  throw sdkError(
    service,
    name,
    `${problems.length} validation error${problems.length === 1 ? '' : 's'} detected: ${problems.join('; ')}`,
    { status, requestId: world.uuid() },
  );
};

/** Fail the call as the service does when IAM denies it. */
const authorize = async (
  router: Router,
  principal: string | undefined,
  service: ServiceName,
  operation: string,
  input: unknown,
): Promise<void> => {
  if (!router.iam || !iamEnforced()) return;
  // Building the enforcer synthesizes and reads files: real I/O the clock must wait for. Once built,
  // a decision made before is answered from memory (and a new one tells the clock itself).
  const built = builtEnforcer(router.world);
  const enforcer =
    built ?? (await router.world.clock.io(() => enforcerFor(router.world, lookupsOf(router), router.iam)));
  const denied = await enforcer.authorize(principal, service, operation, input);
  if (!denied) return;
  const { name, status } = ACCESS_DENIED[service];
  throw sdkError(service, name, denied.message, { status, requestId: router.world.uuid() });
};
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
  principal: string | undefined,
  where?: { place: Place; session: Session | undefined },
) => {
  const { world, faults } = router;
  const operation = operationOf(context);
  world.recordCall(service, operation);
  faults.check(service, operation);
  validate(world, service, operation, args.input);
  const org = router.organization;
  if (org && where && (PLACED.has(service) || where.session || !org.isHome(where.place))) {
    if (!PLACED.has(service))
      throw notModelled(
        service,
        `in ${where.place.account}/${where.place.region} (only the hub's account and Region have it)`,
      );
    if (iamEnforced())
      await org.authorize(
        where.place,
        where.session,
        principal,
        service,
        operation,
        args.input,
        ACCESS_DENIED[service],
      );
    const models = org
      .all()
      .find((m) => m.place.account === where.place.account && m.place.region === where.place.region);
    const placed = models?.handlers[service]?.[operation] as ((input: unknown) => unknown) | undefined;
    if (!models)
      throw notModelled(service, `in ${where.place.account}/${where.place.region} (nothing declared there)`);
    if (!placed) throw notModelled(service, operation);
    const output = (await placed(clone(args.input))) as Record<string, unknown>;
    return {
      output: {
        ...clone(output),
        $metadata: { httpStatusCode: 200, requestId: world.uuid(), attempts: 1, totalRetryDelay: 0 },
      },
      response: { statusCode: 200, headers: {}, body: undefined },
    };
  }
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
    // IAM is asked inside the queue, so requests still reach dynalite in the order they are made,
    // however long a decision takes.
    return world.clock.io(() => {
      const sent = dynamoQueue.then(async () => {
        await authorize(router, principal, service, operation, args.input);
        return send(next, args);
      });
      dynamoQueue = sent.catch(() => undefined);
      return sent;
    });
  }
  await authorize(router, principal, service, operation, args.input);
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
  const c = client as unknown as SdkClient & { [ATTACHED]?: true; [PRINCIPAL]?: string };
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
      const principal = c[PRINCIPAL] ?? currentPrincipal();
      const org = router.organization;
      if (org && c.config.serviceId === 'STS') return sts(router, org, c, context, args, principal);
      if (!service) throw new Error(`the simulation does not model the ${c.config.serviceId} service`);
      // The client's own principal, else the Lambda invocation this call runs in.
      return route(router, service, next, args, context, principal, org ? await whereOf(org, c) : undefined);
    },
    { step: 'finalizeRequest', priority: 'low', name: 'autopatchSimulation', tags: ['SIMULATION'] },
  );
  return client;
};

/** The account (by the client's credentials) and Region a client's calls go to. */
const whereOf = async (
  org: Organization,
  c: SdkClient,
): Promise<{ place: Place; session: Session | undefined }> => {
  const region =
    typeof c.config.region === 'function' ? await c.config.region() : (c.config.region ?? org.hub.region);
  const provider = c.config.credentials;
  const credentials = (typeof provider === 'function' ? await provider() : provider) as
    | { accessKeyId?: string; sessionToken?: string }
    | undefined;
  const session = credentials ? await org.sessionOf(credentials) : undefined;
  return { place: { account: session?.account || org.hub.account, region }, session };
};

/** STS, as far as Autopatch uses it: AssumeRole of a spoke role by a hub role. */
const sts = async (
  router: Router,
  org: Organization,
  c: SdkClient,
  context: MiddlewareContext,
  args: MiddlewareArgs,
  principal: string | undefined,
) => {
  const operation = operationOf(context);
  router.world.recordCall('sts' as ServiceName, operation);
  if (operation !== 'AssumeRole') throw new Error(`the simulation does not model sts:${operation}`);
  const region =
    typeof c.config.region === 'function' ? await c.config.region() : (c.config.region ?? org.hub.region);
  const output = await org.assumeRole(
    principal,
    args.input as { RoleArn?: string; RoleSessionName?: string; DurationSeconds?: number },
    region,
  );
  return {
    output: {
      ...output,
      $metadata: { httpStatusCode: 200, requestId: router.world.uuid(), attempts: 1, totalRetryDelay: 0 },
    },
    response: { statusCode: 200, headers: {}, body: undefined },
  };
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
  readonly codedeploy: CodeDeployClient;
  readonly inspector2: Inspector2Client;
  readonly cloudwatch: CloudWatchClient;
  readonly sns: SNSClient;
  readonly eventbridge: EventBridgeClient;
  readonly ssm: SSMClient;
  readonly sfn: SFNClient;
  readonly dynamodb: DynamoDBClient;
}

/**
 * Who holds clients created without a principal: Step Functions for its integrations (one attempt),
 * the triage fleet (simulation/triage.ts) for its environments, else a person with their own
 * credentials (`npm run approve`), whose calls IAM does not evaluate.
 */
const defaultPrincipal = (maxAttempts: number): string => {
  if (maxAttempts === 1) return 'stateMachine';
  const stack = new Error().stack ?? '';
  return /[\\/]simulation[\\/]triage\.[jt]s/.test(stack) ? 'triage' : OPERATOR;
};

/**
 * One full set of clients, as a Lambda function (or Step Functions itself) would hold them.
 * `maxAttempts`: 3 (the SDK default) for Lambda code; 1 for Step Functions' own service integrations,
 * which hand the first error to the state's Retry. `principal`: whose IAM role the calls are evaluated
 * against ('triage', 'stateMachine', a workflow role, or OPERATOR for none of the stack's).
 */
export const simulatedClients = (
  world: World,
  maxAttempts: number,
  principal: string = defaultPrincipal(maxAttempts),
): SimulatedClients => {
  const config = {
    region: world.region,
    credentials: { accessKeyId: 'SIMULATED', secretAccessKey: 'SIMULATED' },
    maxAttempts,
  };
  const own = <C>(client: C): C => {
    (client as { [PRINCIPAL]?: string })[PRINCIPAL] = principal;
    return attach(client);
  };
  return {
    ecs: own(new ECSClient(config)),
    ecr: own(new ECRClient(config)),
    codebuild: own(new CodeBuildClient(config)),
    codedeploy: own(new CodeDeployClient(config)),
    inspector2: own(new Inspector2Client(config)),
    cloudwatch: own(new CloudWatchClient(config)),
    sns: own(new SNSClient(config)),
    eventbridge: own(new EventBridgeClient(config)),
    ssm: own(new SSMClient(config)),
    sfn: own(new SFNClient(config)),
    // The endpoint is rewritten to dynalite per request; this one only keeps the SDK from resolving AWS's.
    dynamodb: own(new DynamoDBClient({ ...config, endpoint: 'http://127.0.0.1:8000' })),
  };
};

export const destroyClients = (clients: SimulatedClients): void => {
  for (const c of Object.values(clients)) (c as { destroy(): void }).destroy();
};
