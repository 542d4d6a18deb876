/**
 * Runs the REAL remediation workflow definition (as the RemediationWorkflow construct renders it) under
 * an Amazon States Language interpreter, with every Task routed to a scripted fake account.
 *
 * - renderWorkflow(): synthesizes a stack with the construct (bundling skipped), takes the state
 *   machine's DefinitionString and DefinitionSubstitutions from the template, resolves the CloudFormation
 *   tokens to fake ARNs and validates the result with asl-validator. Cached per test file.
 * - FakeAccount: default behaviour for every Task (the happy path), overridable per state; the finish
 *   Tasks run the real finish() logic against an in-memory ledger and mocked AWS clients.
 * - runWorkflow(): one execution; returns the states entered in order, the output or Error/Cause, and
 *   what each Task was called with. Waits and retry intervals are overridden to 0.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SFNClient, StartExecutionCommand, type StartExecutionCommandInput } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { mockClient } from 'aws-sdk-client-mock';
import { workflowDefaultsSchema } from '../../lambdas/shared/config';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import type { OutcomeRecord } from '../../lambdas/shared/ledger';
import { type AssembleIndexesInput, assembleIndexes } from '../../lambdas/workflow/assemble-indexes';
import { type FinishInput, finish } from '../../lambdas/workflow/finish';
import type { GateResult } from '../../lambdas/workflow/gate';
import { planBuilds } from '../../lambdas/workflow/plan-builds';
import type { PatchedImage, PlannedBuild, WatchResult } from '../../lambdas/workflow/state';
import type { RescanVerdict } from '../../lambdas/workflow/verify-rescan';
import { RemediationWorkflow } from '../../lib/workflow';

export const ACCOUNT = '123456789012';
export const REGION = 'eu-central-1';
export const STATE_MACHINE_NAME = 'AutopatchTest-Remediation';
export const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`;
export const TASK_TOKEN = 'task-token-1';

// asl-validator ships no type declarations.
type AslValidator = (
  definition: unknown,
  options?: { checkPaths?: boolean; checkArn?: boolean },
) => { isValid: boolean; errorsText: (separator?: string) => string };
// CommonJS without types: require keeps the cast local.
const aslValidator = require('asl-validator') as AslValidator;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** A state as the harness reads it (only what the tests inspect). */
export interface AslState {
  readonly Type: string;
  readonly Comment?: string;
  readonly Resource?: string;
  readonly Next?: string;
  readonly End?: boolean;
  readonly Retry?: ReadonlyArray<{ readonly ErrorEquals: readonly string[] }>;
  readonly Catch?: ReadonlyArray<{ readonly ErrorEquals: readonly string[]; readonly Next: string }>;
  readonly Choices?: ReadonlyArray<{ readonly Next: string }>;
  readonly Default?: string;
  readonly Error?: string;
  readonly ItemProcessor?: AslDefinition;
  readonly Parameters?: JsonObject;
}
export interface AslDefinition {
  readonly StartAt: string;
  readonly States: Readonly<Record<string, AslState>>;
}

export interface RenderedWorkflow {
  readonly definition: AslDefinition;
  readonly template: Template;
  readonly stack: Stack;
  readonly workflow: RemediationWorkflow;
}

type CfnValue = string | number | boolean | CfnValue[] | { [key: string]: CfnValue };

/** Resolve the CloudFormation intrinsics the definition uses to fake, readable values. */
const resolveToken = (value: CfnValue, resources: Record<string, { Type: string }>): string => {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) throw new Error(`unexpected array in definition: ${JSON.stringify(value)}`);
  const ref = value.Ref;
  if (typeof ref === 'string') {
    const pseudo: Record<string, string> = {
      'AWS::Region': REGION,
      'AWS::AccountId': ACCOUNT,
      'AWS::Partition': 'aws',
      'AWS::URLSuffix': 'amazonaws.com',
    };
    return pseudo[ref] ?? ref; // Ref of a Lambda/CodeBuild project is its name: the logical id will do.
  }
  const getAtt = value['Fn::GetAtt'];
  if (Array.isArray(getAtt)) {
    const [id] = getAtt as string[];
    const type = resources[id as string]?.Type;
    if (type === 'AWS::Lambda::Function') return `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${id}`;
    return `arn:aws:fake:${REGION}:${ACCOUNT}:${id}`;
  }
  const join = value['Fn::Join'];
  if (Array.isArray(join)) {
    const [separator, parts] = join as [string, CfnValue[]];
    return parts.map((p) => resolveToken(p, resources)).join(separator);
  }
  throw new Error(`unsupported token in definition: ${JSON.stringify(value)}`);
};

let rendered: RenderedWorkflow | undefined;

/** Synthesize the construct once per test file and return its definition, resolved and validated. */
export const renderWorkflow = (): RenderedWorkflow => {
  if (rendered) return rendered;
  // No bundling, and no built-in CloudFormation template validation (a WASM engine that costs ~8 s per
  // synth; the stack-level infrastructure tests run it).
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
  const stack = new Stack(app, 'AutopatchTest', { env: { account: ACCOUNT, region: REGION } });
  const encryptionKey = new kms.Key(stack, 'Key', { enableKeyRotation: true });
  const ledger = new dynamodb.Table(stack, 'LedgerTable', {
    partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
    sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey,
    timeToLiveAttribute: 'expiresAt',
  });
  const topic = new sns.Topic(stack, 'Topic', { masterKey: encryptionKey });
  const workflow = new RemediationWorkflow(stack, 'Workflow', {
    ledger,
    topic,
    encryptionKey,
    targets: [
      {
        cluster: 'prod',
        service: 'payments-api',
        repositories: [],
        alarmNames: ['payments-api-5xx'],
        rebuild: { mode: 'source', sourceLocation: 's3://payments-source/app.zip' },
        bakeTimeMinutes: 30,
        tags: {},
      },
      {
        cluster: 'prod',
        service: 'ledger-api',
        repositories: [],
        alarmNames: [],
        rebuild: { mode: 'project', projectName: 'ledger-api-image' },
        bakeTimeMinutes: 30,
        tags: {},
      },
    ],
    serviceTag: { key: 'autopatch:enabled', value: 'true' },
    defaults: workflowDefaultsSchema.parse({}),
    stateMachineName: STATE_MACHINE_NAME,
  });
  const template = Template.fromStack(stack);
  const resources = template.toJSON().Resources as Record<
    string,
    { Type: string; Properties: Record<string, CfnValue> }
  >;
  const machines = Object.values(resources).filter((r) => r.Type === 'AWS::StepFunctions::StateMachine');
  if (machines.length !== 1) throw new Error(`expected one state machine, found ${machines.length}`);
  const props = (machines[0] as { Properties: Record<string, CfnValue> }).Properties;
  let text = resolveToken(props.DefinitionString as CfnValue, resources);
  const substitutions = (props.DefinitionSubstitutions ?? {}) as Record<string, CfnValue>;
  for (const [name, value] of Object.entries(substitutions)) {
    text = text.replaceAll(`\${${name}}`, resolveToken(value, resources));
  }
  const left = /\$\{[A-Za-z][A-Za-z0-9]*\}/.exec(text);
  if (left) throw new Error(`definition placeholder ${left[0]} has no substitution in the construct`);
  const definition = JSON.parse(text) as AslDefinition;
  const validation = aslValidator(structuredClone(definition));
  if (!validation.isValid)
    throw new Error(`asl-validator rejects the definition: ${validation.errorsText('\n')}`);
  rendered = { definition, template, stack, workflow };
  return rendered;
};

/** Every state, including those inside Map iterators, by name. */
export const allStates = (definition: AslDefinition): Map<string, AslState> => {
  const out = new Map<string, AslState>();
  const walk = (d: AslDefinition) => {
    for (const [name, state] of Object.entries(d.States)) {
      out.set(name, state);
      if (state.ItemProcessor) walk(state.ItemProcessor);
    }
  };
  walk(definition);
  return out;
};

/** The names of every Task state, in definition order. */
export const taskStateNames = (definition: AslDefinition): string[] =>
  [...allStates(definition)].filter(([, s]) => s.Type === 'Task').map(([name]) => name);

// ---------------------------------------------------------------- test data

export const digest = (seed: string): string => `sha256:${seed.repeat(64).slice(0, 64)}`;

export const image = (overrides: Partial<AffectedImage> = {}): AffectedImage => ({
  repository: 'payments/api',
  registry: ACCOUNT,
  repositoryUri: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/payments/api`,
  imageDigest: digest('a1'),
  imageTags: ['1.4.2'],
  containers: ['app'],
  platform: 'DEBIAN_12',
  architecture: 'arm64',
  packageManagers: ['OS'],
  cves: ['CVE-2024-6387'],
  severity: 'CRITICAL',
  findingArns: [`arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/f1`],
  rebuild: { mode: 'patch-os' },
  ...overrides,
});

export const remediationRequest = (overrides: Partial<RemediationRequest> = {}): RemediationRequest => ({
  remediationId: '0123456789abcdef',
  executionName: 'payments-api-CVE-2024-6387-a1a1a1a1-1a2b3c-20240904T165538Z',
  service: {
    clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/prod`,
    serviceName: 'payments-api',
    key: 'prod/payments-api',
  },
  images: [image()],
  decision: { action: 'remediate', reason: 'CRITICAL with a known exploit: remediate now' },
  target: {
    alarmNames: ['payments-api-5xx'],
    bakeTimeMinutes: 30,
    deploymentTimeoutSeconds: 7200,
    rescanTimeoutSeconds: 3600,
    approvalTimeoutSeconds: 86400,
    gatherSeconds: 300,
    gatherMaxSeconds: 1800,
  },
  findingsCount: 1,
  requestedAt: '2024-09-04T16:55:38.411Z',
  ...overrides,
});

/** An error as a Lambda reports it through lambda:invoke: the name is the type, the Cause is JSON. */
export const lambdaError = (name: string, message: string): Error => {
  const error = new Error(JSON.stringify({ errorType: name, errorMessage: message, trace: [] }));
  error.name = name;
  return error;
};

/** An error as an integration reports it (name and a plain Cause). */
export const serviceError = (name: string, message: string): Error => {
  const error = new Error(message);
  error.name = name;
  return error;
};

// ---------------------------------------------------------------- the fake account

export type TaskHandler = (input: Json) => unknown;

export const FAKE_PROJECTS = {
  patchOs: { x86: 'PatchOsX86Project', arm: 'PatchOsArmProject' },
  source: { x86: 'SourceX86Project', arm: 'SourceArmProject' },
};

export const PREVIOUS_TASK_DEFINITION = `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/payments-api:41`;
export const PATCHED_TASK_DEFINITION = `arn:aws:ecs:${REGION}:${ACCOUNT}:task-definition/payments-api:42`;
/** A CodeDeploy deployment id (CODE_DEPLOY services). */
export const CODEDEPLOY_DEPLOYMENT_ID = 'd-7K3VQ9X2A';
export const DEPLOYMENT_ARN = `arn:aws:ecs:${REGION}:${ACCOUNT}:service-deployment/prod/payments-api/dep1`;
export const BUILD_LOG_LINK =
  'https://console.aws.amazon.com/cloudwatch/home?region=eu-central-1#logsV2:log-groups/build';

/** The digest a rebuild of `old` produces in the fake account. */
export const rebuiltDigest = (old: string): string => digest(old.slice(7, 9).split('').reverse().join(''));

/**
 * A scripted AWS account: the ledger (lock, queue, history), the clients the finish Lambda uses
 * (mocked, recording), and one handler per Task state. Tests replace handlers with `on(state, fn)`.
 */
/** The alarm check's answer when every watched alarm exists and is OK. */
const gateReady = (input: Json, stage: 'plan' | 'deploy'): GateResult => ({
  verdict: 'ready',
  approvalRequired: false,
  reason: 'Every watched alarm exists and none is in ALARM.',
  stage,
  alarmNames: ((input as { target?: { alarmNames?: string[] } } | null)?.target?.alarmNames ?? []).slice(),
  controller: 'ECS',
  firingSince: '',
});

export class FakeAccount {
  /** Outcome records written, in order. */
  readonly outcomes: OutcomeRecord[] = [];
  /** release() calls: [serviceKey, executionName]. */
  readonly releases: Array<[string, string]> = [];
  /** The request queued behind the running execution (release returns it once). */
  queued: RemediationRequest | undefined;
  readonly sfn = new SFNClient({});
  readonly ssm = new SSMClient({});
  readonly events = new EventBridgeClient({});
  readonly sns = new SNSClient({});
  readonly sfnMock = mockClient(this.sfn);
  readonly ssmMock = mockClient(this.ssm);
  readonly eventsMock = mockClient(this.events);
  readonly snsMock = mockClient(this.sns);
  private readonly handlers = new Map<string, TaskHandler>();

  constructor() {
    this.sfnMock.on(StartExecutionCommand).callsFake((input: { name: string; stateMachineArn: string }) => ({
      executionArn: `${input.stateMachineArn.replace(':stateMachine:', ':execution:')}:${input.name}`,
      startDate: new Date(),
    }));
    this.ssmMock.on(PutParameterCommand).resolves({ Version: 1 });
    this.eventsMock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e1' }] });
    this.snsMock.on(PublishCommand).resolves({ MessageId: 'm1' });

    const finishWith = (input: Json) =>
      finish(input as unknown as FinishInput, {
        ledger: {
          recordOutcome: async (record) => {
            this.outcomes.push(record);
          },
          release: async (serviceKey, executionName) => {
            this.releases.push([serviceKey, executionName]);
            const next = this.queued;
            this.queued = undefined;
            return next ? { next } : {};
          },
          markStarted: async () => {},
        },
        sfn: this.sfn,
        ssm: this.ssm,
        events: this.events,
        sns: this.sns,
        topicArn: `arn:aws:sns:${REGION}:${ACCOUNT}:autopatch`,
        now: () => new Date('2024-09-04T18:00:00.000Z'),
      });

    this.on('Acquire the service lock', (input) => {
      const { serviceKey, executionName } = input as { serviceKey: string; executionName: string };
      return { status: 'acquired', reason: `${executionName} holds the lock of ${serviceKey}.` };
    })
      .on('Take the findings gathered meanwhile', (input) => ({
        ...(input as { state: JsonObject }).state,
        gathering: false,
      }))
      .on('Wait for the maintenance window', () => ({
        preempted: false,
        reason: 'The maintenance window started.',
      }))
      .on('Take the urgent findings', (input) => ({
        ...(input as { state: JsonObject }).state,
        preemption: { took: 1, reason: 'Pre-empted its maintenance window for 1 queued request(s).' },
      }))
      .on('Wait for approval', () => ({ approved: true, by: 'alice' }))
      .on('Plan the image builds', (input) =>
        planBuilds(input as unknown as Parameters<typeof planBuilds>[0], FAKE_PROJECTS),
      )
      .on('Build the patched image', (input) => {
        const { EnvironmentVariablesOverride } = input as {
          EnvironmentVariablesOverride: Array<{ Name: string; Value: string }>;
        };
        const source = EnvironmentVariablesOverride.find((v) => v.Name === 'IMAGE_URI')?.Value ?? '';
        return {
          Build: {
            Id: 'PatchOsArmProject:build-1',
            BuildStatus: 'SUCCEEDED',
            ExportedEnvironmentVariables: [
              { Name: 'IMAGE_DIGEST', Value: rebuiltDigest(source.split('@')[1] ?? '') },
            ],
            Logs: { DeepLink: BUILD_LOG_LINK },
          },
        };
      })
      .on('Verify the patched image by rescan', (input) => {
        const {
          image: img,
          targetTag,
          build,
        } = input as unknown as {
          image: AffectedImage;
          targetTag: string;
          build: { ExportedEnvironmentVariables: Array<{ Value: string }> };
        };
        const verified: PatchedImage = {
          repository: img.repository,
          registry: img.registry,
          repositoryUri: img.repositoryUri,
          containers: img.containers,
          cves: img.cves,
          severity: img.severity,
          oldDigest: img.imageDigest,
          newDigest: build.ExportedEnvironmentVariables[0]?.Value ?? '',
          targetTag,
          cvesClosed: img.cves,
        };
        // The wait resumes with the verdict (SendTaskSuccess) that the registering Lambda, the
        // Inspector2 Scan event or the sweep sends.
        const verdict: RescanVerdict = { verdict: 'verified', image: verified };
        return verdict;
      })
      .on('Assemble the patched image indexes', (input) =>
        // Single-platform images pass through without an AWS call; an index test replaces this.
        assembleIndexes(input as unknown as AssembleIndexesInput, {
          ecr: {
            send: async () => {
              throw new Error('the fake account has no ECR: replace "Assemble the patched image indexes"');
            },
          },
        }),
      )
      .on('Check the service can be watched', (input) => gateReady(input, 'plan'))
      .on('Check the alarms before deploying', (input) => gateReady(input, 'deploy'))
      .on('Take a deployment slot', () => ({
        verdict: 'taken',
        reason: 'No fleet limits are configured.',
        stage: 'default',
      }))
      .on('Wait for a deployment slot', () => ({}))
      .on('Register the patched task definition', () => ({
        previousTaskDefinitionArn: PREVIOUS_TASK_DEFINITION,
        taskDefinitionArn: PATCHED_TASK_DEFINITION,
        replaced: {},
      }))
      .on('Deploy the patched revision', () => ({
        Service: { TaskDefinition: PATCHED_TASK_DEFINITION, CurrentServiceDeployment: DEPLOYMENT_ARN },
      }))
      .on("Deploy the patched revision in the service's account", () => ({ deploymentArn: DEPLOYMENT_ARN }))
      .on("Roll back the deployment in the service's account", () => ({ rollback: 'requested' }))
      .on('Deploy the patched revision with CodeDeploy', () => ({
        deploymentArn: CODEDEPLOY_DEPLOYMENT_ID,
        application: 'AppECS-prod-payments-api',
        deploymentGroup: 'DgpECS-prod-payments-api',
      }))
      .on(
        'Watch the deployment through the bake time',
        (): WatchResult => ({
          status: 'SUCCESSFUL',
          deploymentArn: DEPLOYMENT_ARN,
        }),
      )
      .on('Roll back the deployment', () => ({ ServiceDeploymentArn: DEPLOYMENT_ARN }))
      .on(
        'Wait for the rollback',
        (): WatchResult => ({ status: 'ROLLED_BACK', deploymentArn: DEPLOYMENT_ARN, reason: 'rolled back' }),
      )
      .on('Put the service back on its last good revision', () => ({
        action: 'rollback-requested',
        detail: `Requested a rollback of deployment ${DEPLOYMENT_ARN}.`,
        deploymentArn: DEPLOYMENT_ARN,
        manualCommand: `aws ecs update-service --cluster ${remediationRequest().service.clusterArn} --service payments-api --task-definition ${PREVIOUS_TASK_DEFINITION}`,
      }))
      .on(
        'Wait until the last good revision runs',
        (): WatchResult => ({ status: 'ROLLED_BACK', deploymentArn: DEPLOYMENT_ARN, reason: 'back' }),
      )
      .on('Record the outcome and release the lock', finishWith)
      .on('Release the lock anyway', finishWith);
  }

  /** Replace a Task's behaviour. */
  on(state: string, handler: TaskHandler): this {
    this.handlers.set(state, handler);
    return this;
  }

  handler(state: string): TaskHandler | undefined {
    return this.handlers.get(state);
  }

  /** The StartExecution calls made (the queued remediation started on release). */
  startedExecutions(): StartExecutionCommandInput[] {
    return this.sfnMock.commandCalls(StartExecutionCommand).map((c) => c.args[0].input);
  }
}

// ---------------------------------------------------------------- running

export interface WorkflowEvent {
  readonly type: string;
  readonly state?: {
    readonly name: string;
    readonly type: string;
    readonly input?: Json;
    readonly output?: Json;
  };
  readonly index?: number;
  readonly Error?: string;
  readonly Cause?: string;
  readonly output?: Json;
}

export interface WorkflowRun {
  readonly status: 'SUCCEEDED' | 'FAILED';
  /** Final output (SUCCEEDED). */
  readonly output?: Record<string, Json>;
  /** Error and Cause (FAILED). */
  readonly error?: string;
  readonly cause?: string;
  /** The states entered, in order (Map iterations included). */
  readonly states: string[];
  readonly events: WorkflowEvent[];
  /** What each Task was called with, in order. */
  readonly calls: Map<string, Json[]>;
  /** How many times each state was retried. */
  readonly retries: Map<string, number>;
}

/** lambda:invoke (request-response) wraps the function's result the way Step Functions does. */
const wrapsPayload = (resource: string | undefined): boolean => resource === 'arn:aws:states:::lambda:invoke';
const isLambda = (resource: string | undefined): boolean =>
  resource?.startsWith('arn:aws:states:::lambda:invoke') ?? false;

/**
 * The definition as the local interpreter runs it. One divergence is bridged: aws-local-stepfunctions
 * resolves TimeoutSecondsPath against the effective input (after Parameters), Step Functions against
 * the state input (AWS's own example: Parameters {JobName}, TimeoutSecondsPath $.params.maxTime). The
 * paths are checked against the request contract in definition.test.ts; here they become a fixed
 * timeout (tests simulate a timeout by throwing States.Timeout from the Task's fake).
 */
const localCopy = (definition: AslDefinition): AslDefinition => {
  // A JSON round trip, not structuredClone: under jest, structuredClone returns objects of another realm,
  // which the interpreter's plain-object check rejects (payload templates would stay unevaluated).
  const copy = JSON.parse(JSON.stringify(definition)) as {
    States: Record<string, Record<string, unknown>>;
  } & AslDefinition;
  const visit = (d: { States: Record<string, Record<string, unknown>> }) => {
    for (const state of Object.values(d.States)) {
      if (typeof state.TimeoutSecondsPath === 'string') {
        delete state.TimeoutSecondsPath;
        state.TimeoutSeconds = 60;
      }
      const inner = state.ItemProcessor as { States: Record<string, Record<string, unknown>> } | undefined;
      if (inner) visit(inner);
    }
  };
  visit(copy);
  return copy;
};

export const runWorkflow = async (
  request: RemediationRequest,
  account: FakeAccount = new FakeAccount(),
): Promise<WorkflowRun> => {
  const { definition } = renderWorkflow();
  const states = allStates(definition);
  const calls = new Map<string, Json[]>();
  const taskResourceLocalHandlers: Record<string, (input: Json) => Promise<Json>> = {};
  for (const [name, state] of states) {
    if (state.Type !== 'Task') continue;
    taskResourceLocalHandlers[name] = async (parameters: Json) => {
      // A Lambda receives the Payload; other integrations their Parameters.
      const input = isLambda(state.Resource) ? ((parameters as JsonObject).Payload ?? null) : parameters;
      calls.set(name, [...(calls.get(name) ?? []), input]);
      const handler = account.handler(name);
      if (!handler) throw new Error(`the fake account has no behaviour for Task "${name}"`);
      const result = (await handler(input)) as Json;
      return wrapsPayload(state.Resource)
        ? { StatusCode: 200, ExecutedVersion: '$LATEST', Payload: result }
        : result;
    };
  }
  const zeroWaits = Object.fromEntries([...states].filter(([, s]) => s.Type === 'Wait').map(([n]) => [n, 0]));
  const zeroRetries = Object.fromEntries([...states].filter(([, s]) => s.Retry).map(([n]) => [n, 0]));
  // Validated once in renderWorkflow (asl-validator compiles its schemas on every call: slow).
  const machine = new StateMachine(localCopy(definition) as unknown as StateMachineDefinition, {
    validationOptions: { noValidate: true },
  });
  const executionName = request.executionName;
  const execution = machine.run(request as unknown as Json, {
    overrides: {
      taskResourceLocalHandlers,
      waitTimeOverrides: zeroWaits,
      retryIntervalOverrides: zeroRetries,
    },
    context: {
      Execution: {
        Id: `arn:aws:states:${REGION}:${ACCOUNT}:execution:${STATE_MACHINE_NAME}:${executionName}`,
        Name: executionName,
      },
      StateMachine: { Id: STATE_MACHINE_ARN, Name: STATE_MACHINE_NAME },
      Task: { Token: TASK_TOKEN },
    },
  });
  let output: Record<string, Json> | undefined;
  let failed = false;
  try {
    output = (await execution.result) as Record<string, Json>;
  } catch {
    failed = true;
  }
  const events: WorkflowEvent[] = [];
  for await (const event of execution.eventLogs) events.push(event as unknown as WorkflowEvent);
  const retries = new Map<string, number>();
  for (const e of events) {
    if (e.type === 'StateRetried' && e.state) retries.set(e.state.name, (retries.get(e.state.name) ?? 0) + 1);
  }
  const end = events.find((e) => e.type === 'ExecutionFailed');
  return {
    status: failed ? 'FAILED' : 'SUCCEEDED',
    ...(output ? { output } : {}),
    ...(end?.Error ? { error: end.Error } : {}),
    ...(end?.Cause ? { cause: end.Cause } : {}),
    states: events.filter((e) => e.type === 'StateEntered' && e.state).map((e) => e.state?.name as string),
    events,
    calls,
    retries,
  };
};

/** The builds a run planned (from the plan Task's result). */
export const plannedBuilds = (run: WorkflowRun): PlannedBuild[] => {
  const exited = run.events.find(
    (e) => e.type === 'StateExited' && e.state?.name === 'Plan the image builds',
  );
  const out = exited?.state?.output as { plan?: { builds?: PlannedBuild[] } } | undefined;
  return out?.plan?.builds ?? [];
};
