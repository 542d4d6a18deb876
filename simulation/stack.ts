/**
 * What the simulation takes from the real, synthesized AutopatchStack: the state machine definition
 * (with its ${…FunctionArn} substitutions and every CloudFormation token resolved to the simulated
 * account's values), each workflow Lambda's environment, the EventBridge rules and their targets, and
 * the intake queue and event source settings. Nothing here is a copy of the infrastructure code: a
 * change to lib/ or statemachines/ shows up in the next simulation.
 *
 * Synthesis takes seconds, so the unresolved template (and which Lambda plays which role) is cached
 * under node_modules/.cache, keyed by a hash of lib/, statemachines/ and lambdas/. Tokens are resolved
 * per run, for the scenario's account and region.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..');
export const CACHE_DIR = path.join(ROOT, 'node_modules', '.cache', 'autopatch-simulation');
/** Bump when the cached shape changes. */
const CACHE_VERSION = 3;

type Json = unknown;
type Resource = { Type: string; Properties?: Record<string, Json> };

interface Synthesized {
  readonly version: number;
  readonly resources: Record<string, Resource>;
  /** Logical id → workflow role (acquireLock, finish, deploymentEvents, ...). */
  readonly functionRoles: Record<string, string>;
  /** Logical id → the inventory index's functions (inventoryIndexer, inventoryReconciler). */
  readonly inventoryRoles?: Record<string, string>;
  readonly ids: {
    readonly stateMachine: string;
    readonly triageFunction: string;
    readonly queue: string;
    readonly deadLetterQueue: string;
    readonly ledger: string;
    readonly topic: string;
    /** The inventory index's queue (the ECS events that re-index a service). */
    readonly inventoryQueue?: string;
  };
}

const sourceFiles = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.(ts|json)$/.test(name) ? [full] : [];
  });

export const cacheKey = (): string => {
  const hash = createHash('sha256').update(`v${CACHE_VERSION}`);
  for (const dir of ['lib', 'statemachines', 'lambdas']) {
    for (const file of sourceFiles(path.join(ROOT, dir)).sort()) {
      hash.update(path.relative(ROOT, file)).update(readFileSync(file));
    }
  }
  return hash.digest('hex').slice(0, 24);
};

const synthesize = async (props?: {
  targets: never;
  pushToTaggedRepositoriesOnly?: boolean;
  [setting: string]: unknown;
}): Promise<Synthesized> => {
  // Loaded lazily: aws-cdk-lib takes a while to load, and a cached template does not need it.
  const [{ App }, { Template }, { AutopatchStack }] = await Promise.all([
    import('aws-cdk-lib'),
    import('aws-cdk-lib/assertions'),
    import('../lib/stack'),
  ]);
  // As bin/autopatch.ts builds it, with its default settings, minus bundling (the simulation runs the
  // handlers from source) and CloudFormation's built-in template validation (seconds of WASM that
  // `cdk synth` and the infrastructure tests already run).
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
  const stack = new AutopatchStack(app, 'AutopatchStack', props ? { autopatch: props } : {});
  const { autopatch } = stack;
  const id = (construct: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(construct.node.defaultChild as Parameters<typeof stack.getLogicalId>[0]);
  const functionRoles: Record<string, string> = {};
  for (const [role, fn] of Object.entries(autopatch.workflow.functions)) functionRoles[id(fn)] = role;
  // The inventory index's functions (simulation/lambdas.ts runs them in organization scenarios).
  const inventoryRoles: Record<string, string> = {
    [id(autopatch.inventory.indexer)]: 'inventoryIndexer',
    [id(autopatch.inventory.reconciler)]: 'inventoryReconciler',
  };
  const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, Resource> };
  return {
    version: CACHE_VERSION,
    resources: template.Resources,
    functionRoles,
    inventoryRoles,
    ids: {
      stateMachine: id(autopatch.stateMachine),
      triageFunction: id(autopatch.triageFunction),
      queue: id(autopatch.queue),
      deadLetterQueue: id(autopatch.deadLetterQueue),
      ledger: id(autopatch.ledger),
      topic: id(autopatch.topic as unknown as { node: { defaultChild?: unknown } }),
      inventoryQueue: id(autopatch.inventory.queue),
    },
  };
};

let memo: Promise<Synthesized> | undefined;

/** The synthesized stack, from the cache when lib/, statemachines/ and lambdas/ have not changed. */
export const synthesizedStack = (): Promise<Synthesized> => {
  memo ??= (async () => {
    const file = path.join(CACHE_DIR, `stack-${cacheKey()}.json`);
    try {
      const cached = JSON.parse(readFileSync(file, 'utf8')) as Synthesized;
      if (cached.version === CACHE_VERSION) return cached;
    } catch {
      // No cache yet (or unreadable): synthesize.
    }
    const fresh = await synthesize();
    try {
      mkdirSync(CACHE_DIR, { recursive: true });
      // One entry is enough: older ones belong to sources that no longer exist.
      for (const old of readdirSync(CACHE_DIR))
        if (old.startsWith('stack-')) rmSync(path.join(CACHE_DIR, old), { force: true });
      writeFileSync(file, JSON.stringify(fresh));
    } catch {
      // A read-only checkout still simulates; it just synthesizes every time.
    }
    return fresh;
  })();
  return memo;
};

export interface RuleTarget {
  readonly kind: 'lambda' | 'sqs' | 'other';
  /** Workflow role for Lambda targets ('deploymentEvents'), 'intake' / 'dlq' for the queues. */
  readonly name: string;
}

export interface StackRule {
  readonly name: string;
  readonly pattern: Record<string, unknown>;
  /** A scheduled rule's ScheduleExpression (e.g. "rate(1 minute)"); such a rule has no pattern. */
  readonly schedule?: string;
  readonly targets: readonly RuleTarget[];
}

export interface WorkflowFunction {
  readonly role: string;
  readonly arn: string;
  readonly environment: Readonly<Record<string, string>>;
}

export interface RenderedStack {
  readonly definition: {
    StartAt: string;
    States: Record<string, Record<string, unknown> & { Type: string }>;
  };
  readonly stateMachineArn: string;
  readonly functions: readonly WorkflowFunction[];
  readonly triageEnvironment: Readonly<Record<string, string>>;
  readonly rules: readonly StackRule[];
  readonly intake: {
    readonly queueArn: string;
    readonly visibilityTimeoutSeconds: number;
    readonly maxReceiveCount: number;
    readonly batchSize: number;
    readonly batchingWindowSeconds: number;
    readonly maxConcurrency: number;
  };
  readonly tableName: string;
  readonly topicArn: string;
  /** Workflow roles whose failed asynchronous invocations go to an on-failure destination (not dropped). */
  readonly asyncOnFailure: readonly string[];
}

/** Resolve CloudFormation intrinsics to the values they would have in the simulated account. */
export const resolver = (
  resources: Record<string, Resource>,
  accountId: string,
  region: string,
  stackName = 'AutopatchStack',
) => {
  const pseudo: Record<string, string> = {
    'AWS::AccountId': accountId,
    'AWS::Region': region,
    'AWS::Partition': 'aws',
    'AWS::URLSuffix': 'amazonaws.com',
    'AWS::StackName': stackName,
    'AWS::NoValue': '',
  };
  const arn = (service: string, resource: string) => `arn:aws:${service}:${region}:${accountId}:${resource}`;
  const props = (id: string) => resources[id]?.Properties ?? {};
  const rolePath = (id: string): string => {
    const p = props(id).Path;
    return typeof p === 'string' ? p : '/';
  };
  /**
   * A role's name: its RoleName, else the one CloudFormation generates, `<stack>-<logical id>-<suffix>`
   * (at most 64 characters): what a trust policy's aws:PrincipalArn condition on the hub stack's
   * role-name prefix sees.
   */
  const roleName = (id: string): string => {
    const explicit = props(id).RoleName;
    if (typeof explicit === 'string') return explicit;
    const suffix = createHash('sha256').update(id).digest('hex').slice(0, 12).toUpperCase();
    return `${`${stackName}-${id}`.slice(0, 64 - suffix.length - 1)}-${suffix}`;
  };
  const nameOf = (id: string, key: string): string => {
    const explicit = props(id)[key];
    return typeof explicit === 'string' ? explicit : id;
  };
  const ref = (id: string): string => {
    if (pseudo[id] !== undefined) return pseudo[id] as string;
    const type = resources[id]?.Type;
    switch (type) {
      case 'AWS::SNS::Topic':
        return arn('sns', nameOf(id, 'TopicName'));
      case 'AWS::SQS::Queue':
        return `https://sqs.${region}.amazonaws.com/${accountId}/${nameOf(id, 'QueueName')}`;
      case 'AWS::StepFunctions::StateMachine':
        return arn('states', `stateMachine:${nameOf(id, 'StateMachineName')}`);
      case 'AWS::DynamoDB::Table':
        return nameOf(id, 'TableName');
      case 'AWS::Lambda::Function':
        return nameOf(id, 'FunctionName');
      case 'AWS::CodeBuild::Project':
        return nameOf(id, 'Name');
      case 'AWS::Events::Rule':
        return nameOf(id, 'Name');
      case 'AWS::Logs::LogGroup':
        return nameOf(id, 'LogGroupName');
      case undefined:
        throw new Error(`the template refers to ${id}, which it does not define`);
      default:
        return id;
    }
  };
  const getAtt = (id: string, attribute: string): string => {
    const type = resources[id]?.Type;
    if (attribute !== 'Arn') return `${id}.${attribute}`;
    switch (type) {
      case 'AWS::Lambda::Function':
        return arn('lambda', `function:${ref(id)}`);
      case 'AWS::SQS::Queue':
        return arn('sqs', nameOf(id, 'QueueName'));
      case 'AWS::DynamoDB::Table':
        return arn('dynamodb', `table/${ref(id)}`);
      case 'AWS::SNS::Topic':
      case 'AWS::StepFunctions::StateMachine':
        return ref(id);
      case 'AWS::KMS::Key':
        return arn('kms', `key/${id}`);
      case 'AWS::IAM::Role':
        return `arn:aws:iam::${accountId}:role${rolePath(id)}${roleName(id)}`;
      case 'AWS::CodeBuild::Project':
        return arn('codebuild', `project/${ref(id)}`);
      case 'AWS::Events::Rule':
        return arn('events', `rule/${ref(id)}`);
      case 'AWS::Logs::LogGroup':
        return arn('logs', `log-group:${ref(id)}:*`);
      default:
        return arn('unknown', id);
    }
  };
  const resolve = (value: Json): Json => {
    if (Array.isArray(value)) return value.map(resolve);
    if (!value || typeof value !== 'object') return value;
    const o = value as Record<string, Json>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      const [k] = keys as [string];
      const v = o[k];
      if (k === 'Ref') return ref(v as string);
      if (k === 'Fn::GetAtt') {
        const [id, attribute] = (Array.isArray(v) ? v : String(v).split('.')) as [string, string];
        return getAtt(id, attribute);
      }
      if (k === 'Fn::Join') {
        const [sep, parts] = v as [string, Json[]];
        return (resolve(parts) as Json[]).map(String).join(sep);
      }
      if (k === 'Fn::Sub') {
        const [text, vars] = (Array.isArray(v) ? v : [v, {}]) as [string, Record<string, Json>];
        return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
          if (vars[name] !== undefined) return String(resolve(vars[name]));
          if (name.includes('.')) {
            const [id, attribute] = name.split('.') as [string, string];
            return getAtt(id, attribute);
          }
          return ref(name);
        });
      }
      if (k === 'Fn::Select') {
        const [index, list] = v as [number, Json];
        return (resolve(list) as Json[])[index];
      }
      if (k === 'Fn::Split') {
        const [sep, text] = v as [string, Json];
        return String(resolve(text)).split(sep);
      }
    }
    return Object.fromEntries(Object.entries(o).map(([key, inner]) => [key, resolve(inner)]));
  };
  return { resolve, ref, getAtt };
};

/** The synthesized stack's parts, resolved for one simulated account. */
export const renderStack = async (
  accountId: string,
  region: string,
  options: IamStackOptions = {},
): Promise<RenderedStack> => {
  // With settings that change what the stack is (organization, fleet), the stack as configured.
  const s =
    Object.keys(options.settings ?? {}).length > 0
      ? await synthesizedForIam(options)
      : await synthesizedStack();
  const { resources, ids } = s;
  const { resolve, ref, getAtt } = resolver(resources, accountId, region);
  const props = (id: string) => (resources[id]?.Properties ?? {}) as Record<string, Json>;

  const machine = props(ids.stateMachine);
  const text = String(resolve(machine.DefinitionString));
  const substitutions = resolve(machine.DefinitionSubstitutions ?? {}) as Record<string, string>;
  const substituted = text.replace(
    /\$\{([A-Za-z0-9_]+)\}/g,
    (whole, name: string) => substitutions[name] ?? whole,
  );
  const definition = JSON.parse(substituted) as RenderedStack['definition'];

  const functions: WorkflowFunction[] = Object.entries({
    ...s.functionRoles,
    ...(s.inventoryRoles ?? {}),
  }).map(([id, role]) => ({
    role,
    arn: getAtt(id, 'Arn'),
    environment: resolve(
      (props(id).Environment as { Variables?: Json } | undefined)?.Variables ?? {},
    ) as Record<string, string>,
  }));
  const roleByArn = new Map(functions.map((f) => [f.arn, f.role]));
  const intakeArn = getAtt(ids.queue, 'Arn');
  const dlqArn = getAtt(ids.deadLetterQueue, 'Arn');
  const inventoryQueueArn = ids.inventoryQueue ? getAtt(ids.inventoryQueue, 'Arn') : undefined;

  const rules: StackRule[] = Object.entries(resources)
    .filter(([, r]) => r.Type === 'AWS::Events::Rule')
    .map(([id, r]) => {
      const p = resolve(r.Properties ?? {}) as {
        Name?: string;
        EventPattern?: Record<string, unknown>;
        ScheduleExpression?: string;
        Targets?: Array<{ Arn: string }>;
        State?: string;
      };
      return {
        name: p.Name ?? id,
        pattern: p.EventPattern ?? {},
        ...(p.ScheduleExpression ? { schedule: p.ScheduleExpression } : {}),
        targets: (p.State === 'DISABLED' ? [] : (p.Targets ?? [])).map((t): RuleTarget => {
          const role = roleByArn.get(t.Arn);
          if (role) return { kind: 'lambda', name: role };
          if (t.Arn === intakeArn) return { kind: 'sqs', name: 'intake' };
          if (t.Arn === dlqArn) return { kind: 'sqs', name: 'dlq' };
          if (t.Arn === inventoryQueueArn) return { kind: 'sqs', name: 'inventory' };
          return { kind: 'other', name: t.Arn };
        }),
      };
    });

  const queue = props(ids.queue);
  const mapping = Object.values(resources).find(
    (r) =>
      r.Type === 'AWS::Lambda::EventSourceMapping' &&
      JSON.stringify(r.Properties?.EventSourceArn).includes(ids.queue),
  )?.Properties as
    | {
        BatchSize?: number;
        MaximumBatchingWindowInSeconds?: number;
        ScalingConfig?: { MaximumConcurrency?: number };
      }
    | undefined;
  const redrive = queue.RedrivePolicy as { maxReceiveCount?: number } | undefined;

  return {
    definition,
    stateMachineArn: ref(ids.stateMachine),
    functions,
    triageEnvironment: resolve(
      (props(ids.triageFunction).Environment as { Variables?: Json } | undefined)?.Variables ?? {},
    ) as Record<string, string>,
    rules,
    intake: {
      queueArn: intakeArn,
      visibilityTimeoutSeconds: Number(queue.VisibilityTimeout ?? 30),
      maxReceiveCount: redrive?.maxReceiveCount ?? 5,
      batchSize: mapping?.BatchSize ?? 10,
      batchingWindowSeconds: mapping?.MaximumBatchingWindowInSeconds ?? 0,
      maxConcurrency: mapping?.ScalingConfig?.MaximumConcurrency ?? 5,
    },
    tableName: ref(ids.ledger),
    topicArn: ref(ids.topic),
    asyncOnFailure: Object.values(resources)
      .filter((r) => r.Type === 'AWS::Lambda::EventInvokeConfig')
      .map(
        (r) =>
          resolve(r.Properties ?? {}) as {
            FunctionName?: string;
            DestinationConfig?: { OnFailure?: unknown };
          },
      )
      .filter((p) => p.DestinationConfig?.OnFailure !== undefined)
      .flatMap((p) => {
        const fn = functions.find(
          (f) => f.arn.endsWith(`:function:${p.FunctionName}`) || f.arn === p.FunctionName,
        );
        return fn ? [fn.role] : [];
      }),
  };
};

export interface ResolvedTemplate {
  /** The template's resources as synthesized (references still `Ref` / `Fn::GetAtt`). */
  readonly raw: Readonly<Record<string, Resource>>;
  /** The same resources with every intrinsic resolved to the simulated account's values. */
  readonly resolved: Readonly<Record<string, Resource>>;
  /** Logical id → workflow role (acquireLock, finish, ...). */
  readonly functionRoles: Readonly<Record<string, string>>;
  /** Logical id → the inventory index's functions (IAM principals of organization runs). */
  readonly inventoryRoles: Readonly<Record<string, string>>;
  readonly ids: Synthesized['ids'];
  /** `Fn::GetAtt [logicalId, Arn]` in the simulated account. */
  readonly arnOf: (logicalId: string) => string;
  /** `Ref logicalId` in the simulated account. */
  readonly refOf: (logicalId: string) => string;
}

/** What a scenario configures that changes the synthesized IAM policies (explicit targets are granted by ARN). */
export interface IamStackOptions {
  readonly targets?: readonly unknown[];
  /** The stack's pushToTaggedRepositoriesOnly (narrower ECR push grants). */
  readonly pushToTaggedRepositoriesOnly?: boolean;
  /** More Autopatch props, as cdk.json would give them (taskRoleArns, registryCredentials, …). */
  readonly settings?: Readonly<Record<string, unknown>>;
}

const iamMemo = new Map<string, Promise<Synthesized>>();

/**
 * The stack as the scenario would deploy it: synthesized with its explicit targets (they change the
 * grants), cached like `synthesizedStack` under a key that also covers the targets. Without targets it
 * is the default stack.
 */
const synthesizedForIam = (options: IamStackOptions): Promise<Synthesized> => {
  const targets = options.targets ?? [];
  const narrow = options.pushToTaggedRepositoriesOnly === true;
  const settings = options.settings ?? {};
  const hasSettings = Object.keys(settings).length > 0;
  if (targets.length === 0 && !narrow && !hasSettings) return synthesizedStack();
  const key = createHash('sha256')
    .update(JSON.stringify({ targets, ...(narrow ? { narrow } : {}), ...(hasSettings ? { settings } : {}) }))
    .digest('hex')
    .slice(0, 16);
  let memoized = iamMemo.get(key);
  if (!memoized) {
    memoized = (async () => {
      const sources = cacheKey();
      const file = path.join(CACHE_DIR, `iam-${sources}-${key}.json`);
      try {
        const cached = JSON.parse(readFileSync(file, 'utf8')) as Synthesized;
        if (cached.version === CACHE_VERSION) return cached;
      } catch {
        // Not cached yet.
      }
      const fresh = await synthesize({
        ...settings,
        targets: targets as never,
        ...(narrow ? { pushToTaggedRepositoriesOnly: true } : {}),
      });
      try {
        mkdirSync(CACHE_DIR, { recursive: true });
        for (const old of readdirSync(CACHE_DIR))
          if (old.startsWith('iam-') && !old.startsWith(`iam-${sources}-`))
            rmSync(path.join(CACHE_DIR, old), { force: true });
        writeFileSync(file, JSON.stringify(fresh));
      } catch {
        // Read-only checkout: synthesize every time.
      }
      return fresh;
    })();
    iamMemo.set(key, memoized);
  }
  return memoized;
};

/**
 * The whole template resolved for one simulated account: what simulation/iam reads the principals,
 * their policies and the resource and key policies from. A resource whose properties cannot be
 * resolved is left as synthesized.
 */
export const resolveTemplate = async (
  accountId: string,
  region: string,
  options: IamStackOptions = {},
): Promise<ResolvedTemplate> => {
  const s = await synthesizedForIam(options);
  const { resolve, ref, getAtt } = resolver(s.resources, accountId, region);
  const resolved: Record<string, Resource> = {};
  for (const [id, r] of Object.entries(s.resources)) {
    try {
      resolved[id] = {
        ...r,
        ...(r.Properties ? { Properties: resolve(r.Properties) as Record<string, Json> } : {}),
      };
    } catch {
      resolved[id] = r;
    }
  }
  return {
    raw: s.resources,
    resolved,
    functionRoles: s.functionRoles,
    inventoryRoles: s.inventoryRoles ?? {},
    ids: s.ids,
    arnOf: (logicalId) => getAtt(logicalId, 'Arn'),
    refOf: (logicalId) => ref(logicalId),
  };
};
