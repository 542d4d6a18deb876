/**
 * Run one scenario: build the simulated account, wire the real code to it (the triage handler, the
 * synthesized state machine under aws-local-stepfunctions, the workflow Lambdas, the ledger in
 * dynalite), play the scenario's events on the virtual clock until nothing is left to happen, and
 * report what happened.
 */
import '../local/polyfills';
import type { StateValue } from '@aws-sdk/client-cloudwatch';
import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { AccountClients, accountClients } from '../lambdas/shared/accounts';
import { placeOfServiceKey } from '../lambdas/shared/contracts';
import { Ledger } from '../lambdas/shared/ledger';
import { OUTCOME_EVENT } from '../lambdas/shared/outcome-event';
import { DEFAULT_POLICY } from '../lambdas/triage/policy';
import { resolveApproval } from '../lambdas/workflow/approval';
import { startDynalite } from '../local/dynalite';
import { VirtualClock } from './clock';
import { SIMULATED_ENVIRONMENT } from './environment';
import { checkExpectations } from './expect';
import { INVENTORY_ROLES, type LambdaHandler, loadHandlers } from './lambdas';
import { type BuildPlan, CodeBuildModel } from './model/codebuild';
import { type EcrModel, type Image, manifestOf, OCI_INDEX, OCI_MANIFEST } from './model/ecr';
import type { EcsModel } from './model/ecs';
import { type BusEvent, type DeliveryFate, EventBus } from './model/eventbus';
import { ScriptedFaults } from './model/faults';
import type { InspectorModel } from './model/inspector';
import { EventBridgeModel, SnsModel, SsmModel } from './model/outputs';
import { SqsModel } from './model/sqs';
import { type Execution, StepFunctionsModel, taskStates } from './model/stepfunctions';
import { World } from './model/world';
import {
  type LoadedStacks,
  Organization,
  type OrganizationOptions,
  type PlaceModels,
  placeId,
  placeModels,
  type SpokeSpec,
} from './organization';
import {
  type ExecutionReport,
  outcomeOf,
  type ServiceReport,
  type SimulationReport,
  stateHistory,
  type WorldReport,
} from './report';
import {
  burstCves,
  type ChangeSpec,
  placedKey,
  resolveImageRef,
  type Scenario,
  scenarioImages,
  scenarioPlaces,
  targetKey,
} from './scenario';
import { activate, type ModelHandlerSet, simulatedClients } from './sdk';
import { type IamStackOptions, renderStack, type StackRule } from './stack';
import { durationMs, resolveAt } from './time';
import { TriageFleet } from './triage';

const MINUTE = 60_000;
const DAY = 86_400_000;
/** "rate(1 minute)" / "rate(5 minutes)" / "rate(1 hour)" → milliseconds. */
const rateMs = (expression: string): number => {
  const m = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (!m) throw new Error(`the simulation does not run schedule expression ${expression}`);
  const unit = m[2]?.startsWith('minute') ? MINUTE : m[2]?.startsWith('hour') ? 60 * MINUTE : 1_440 * MINUTE;
  return Number(m[1]) * unit;
};

/** After the last running execution, scheduled rules keep firing this long (to reconcile what it left). */
const SCHEDULE_TAIL_MS = 15 * MINUTE;

/**
 * Fire each scheduled rule's Lambda targets on the virtual clock, as EventBridge would, but only while
 * there is work for them: while an execution runs or a fault that will clear still fails calls, and
 * for SCHEDULE_TAIL_MS after (an idle account would otherwise tick until the horizon). An execution
 * started or a task token issued restarts the ticking.
 */
const startSchedules = (
  world: World,
  rules: readonly StackRule[],
  sfn: StepFunctionsModel,
  invoke: (role: string) => Promise<unknown>,
  /** Other work for the sweep than a running execution (a fault that will clear: what it blocked). */
  busy: () => boolean,
): ((until: number) => void) => {
  const wakes: Array<(until: number) => void> = [];
  for (const rule of rules) {
    const every = rateMs(rule.schedule as string);
    let ticking = false;
    let lastBusy = Date.now();
    // Work the sweep has to do at a known time without any execution running (a notify digest).
    let busyUntil = 0;
    const tick = () => {
      if (sfn.executions.some((e) => e.status === 'RUNNING') || busy()) lastBusy = Date.now();
      if (Date.now() - lastBusy > SCHEDULE_TAIL_MS && Date.now() > busyUntil) {
        ticking = false;
        return;
      }
      for (const t of rule.targets) {
        if (t.kind !== 'lambda') continue;
        world.spawn(`${t.name} (schedule ${rule.name})`, async () => {
          await invoke(t.name);
        });
      }
      world.schedule(Date.now() + every, `schedule ${rule.name}`, tick);
    };
    const ensure = () => {
      lastBusy = Date.now();
      if (ticking) return;
      ticking = true;
      world.schedule(Date.now() + every, `schedule ${rule.name}`, tick);
    };
    sfn.onTaskToken(ensure);
    // An execution that fails before it asks for a token may leave what only the sweep cleans up.
    sfn.onStart(ensure);
    wakes.push((until) => {
      busyUntil = Math.max(busyUntil, until);
      ensure();
    });
  }
  return (until) => {
    for (const wake of wakes) wake(until);
  };
};

/** The spokes of a scenario: as listed, or one in every other account with its declared Regions. */
export const scenarioSpokes = (scenario: Scenario): SpokeSpec[] => {
  const hub = scenario.account.accountId;
  const declared = (account: string) =>
    scenarioPlaces(scenario).filter((p) => p.accountId === account && !p.home);
  const holdsImages = (account: string) =>
    scenarioPlaces(scenario).some((p) => p.accountId === account && p.repositories.length > 0);
  const listed =
    scenario.spokes ??
    [...new Set(scenario.accounts.map((a) => a.accountId))].map((account) => ({ account, role: true }));
  return listed.map((s) => ({
    account: s.account,
    regions: 'regions' in s && s.regions ? [...s.regions] : declared(s.account).map((p) => p.region),
    role: s.account !== hub && s.role,
    registry: ('registry' in s ? s.registry : undefined) ?? holdsImages(s.account),
  }));
};

/** What the scenario deploys the hub with beyond the defaults (organization, fleet, explicit targets). */
export const scenarioStackOptions = (scenario: Scenario): IamStackOptions => {
  const settings = {
    ...(scenario.organization !== undefined ? { organization: scenario.organization } : {}),
    ...(scenario.fleet !== undefined ? { fleet: scenario.fleet } : {}),
  };
  return { targets: scenario.targets, ...(Object.keys(settings).length > 0 ? { settings } : {}) };
};

/** When a scenario sets no `until`: long enough for any approval timeout or bake to play out. */
const DEFAULT_HORIZON_MS = 30 * DAY;

export interface RunOptions {
  /** Seeds Math.random during the run (retry jitter): the same seed gives the same run. */
  readonly seed?: number;
  /**
   * Called once the run is over, before the local ledger is stopped: read what the run left in it
   * (`npm run report -- --simulate` reads the history) and Inspector's coverage of the simulated
   * account. Its failure is one of the report's `errors`.
   */
  readonly afterRun?: (world: AfterRun) => Promise<void>;
}

/** What RunOptions.afterRun can read. */
export interface AfterRun {
  /** A client of the local DynamoDB the run used, and the ledger table's name in it. */
  readonly dynamo: DynamoDBClient;
  readonly tableName: string;
  /** Inspector's coverage of the simulated account at the end (ListCoverage), when the account was built. */
  readonly coverage?: () => ReadonlyArray<{ readonly resourceId: string; readonly statusCode: string }>;
}

/** Service locks (sk LOCK) left in the ledger table, read straight from dynalite after the run. */
const countLocks = async (client: DynamoDBClient, tableName: string): Promise<number> => {
  let count = 0;
  let startKey: Record<string, unknown> | undefined;
  do {
    const out = await client.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: 'sk = :lock',
        ExpressionAttributeValues: { ':lock': { S: 'LOCK' } },
        ...(startKey ? { ExclusiveStartKey: startKey as never } : {}),
      }),
    );
    count += out.Count ?? 0;
    startKey = out.LastEvaluatedKey;
  } while (startKey);
  return count;
};

const setEnvironment = (values: Record<string, string>): (() => void) => {
  const previous = new Map<string, string | undefined>();
  for (const [k, v] of Object.entries(values)) {
    // Never override what the caller set on purpose (a log level for debugging, say).
    if (process.env[k] !== undefined && SIMULATED_ENVIRONMENT[k] !== undefined) continue;
    previous.set(k, process.env[k]);
    process.env[k] = v;
  }
  return () => {
    for (const [k, v] of previous) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
};

/**
 * Run a validated scenario. Never throws: what goes wrong inside the simulated world (a Lambda bug, a
 * failed event delivery) shows up in the executions and `errors`; a run that cannot even start (the
 * stack does not synthesize, dynalite does not start) is a report with that error and no executions.
 */
export const runScenario = async (
  scenario: Scenario,
  options: RunOptions = {},
): Promise<SimulationReport> => {
  const wallStart = performance.now();
  try {
    return await simulate(scenario, options, wallStart);
  } catch (error) {
    const e = error as Error;
    const report: Omit<SimulationReport, 'mismatches'> = {
      scenario: {
        name: scenario.name,
        description: scenario.description,
        source: scenario.source,
        startTime: scenario.startTime,
      },
      executions: [],
      findings: {},
      apiCalls: {},
      intake: { sent: 0, invocations: 0, itemFailures: 0, deadLetters: 0, coldStarts: 0 },
      findingToPatchedMs: {},
      virtual: { durationMs: 0, steps: 0, stoppedBy: 'error' },
      wallMs: Math.round(performance.now() - wallStart),
      timeline: [],
      notifications: [],
      outcomeEvents: [],
      errors: [`the simulation could not run: ${e.name}: ${e.message}`],
    };
    return { ...report, mismatches: checkExpectations(scenario.expect, report) };
  }
};

const simulate = async (
  scenario: Scenario,
  options: RunOptions,
  wallStart: number,
): Promise<SimulationReport> => {
  const start = Date.parse(scenario.startTime);
  const { accountId, region } = scenario.account;
  const errors: string[] = [];

  // Several accounts and Regions: the hub with its organization setting, spokes, the inventory index.
  const multi = scenario.accounts.length > 0 || scenario.organization !== undefined;
  const stackOptions = scenarioStackOptions(scenario);
  const organizationOptions: OrganizationOptions | undefined = multi
    ? {
        hub: { account: accountId, region },
        ...((scenario.organization as { organizationId?: string } | undefined)?.organizationId !== undefined
          ? { organizationId: (scenario.organization as { organizationId: string }).organizationId }
          : {}),
        ...((scenario.organization as { spokeRoleName?: string } | undefined)?.spokeRoleName !== undefined
          ? { spokeRoleName: (scenario.organization as { spokeRoleName: string }).spokeRoleName }
          : {}),
        spokes: scenarioSpokes(scenario),
        stack: stackOptions,
      }
    : undefined;
  /** The inventory index runs where other accounts are (one account: triage scans ECS, as before). */
  const runs = (role: string) => multi || !INVENTORY_ROLES.has(role);

  // Everything that needs real timers happens before the clock is installed.
  const stack = await renderStack(accountId, region, stackOptions);
  const loaded: LoadedStacks | undefined = organizationOptions
    ? await Organization.load(organizationOptions)
    : undefined;
  const dynamo = await startDynalite({ tableName: stack.tableName });
  const functionEnvironment = Object.assign(
    {},
    ...stack.functions.filter((f) => runs(f.role)).map((f) => f.environment),
  ) as Record<string, string>;
  delete functionEnvironment.NODE_OPTIONS;
  const restoreEnvironment = setEnvironment({
    ...SIMULATED_ENVIRONMENT,
    ...functionEnvironment,
    // The sweep's digest period, as the stack would set it from the scenario's workflow defaults.
    NOTIFY_DIGEST_MINUTES: String(scenario.defaults.notifyDigestMinutes),
    AWS_REGION: region,
  });
  let handlers: Map<string, LambdaHandler>;
  try {
    handlers = await loadHandlers(stack.functions.map((f) => f.role).filter(runs));
  } catch (error) {
    restoreEnvironment();
    await dynamo.stop();
    throw error;
  }

  // A warm Lambda's clients and assumed-role credentials do not outlive the world they were made in.
  Object.assign(accountClients(), new AccountClients());
  const clock = new VirtualClock(start, options.seed ?? 1);
  clock.install();
  const world = new World(accountId, region, clock, `autopatch:${scenario.name}`);
  const faults = new ScriptedFaults(scenario.faults, start);
  let deactivate: (() => void) | undefined;
  let run: { steps: number; virtualMs: number; stoppedBy: string } = {
    steps: 0,
    virtualMs: 0,
    stoppedBy: 'error',
  };
  let sfn: StepFunctionsModel | undefined;
  let fleet: TriageFleet | undefined;
  /** Keep the scheduled rules firing until then (set once they are started). */
  let wakeSchedules: (until: number) => void = () => undefined;
  let sqs: SqsModel | undefined;
  let sns: SnsModel | undefined;
  let bus: EventBus | undefined;
  const firstFindingAt = new Map<string, number>();
  let codebuildModel: CodeBuildModel | undefined;
  const originalDigests = new Map<string, string[]>();
  const originalRevisions = new Map<string, number>();
  let locksLeft: number | undefined;
  let inspectorModel: InspectorModel | undefined;
  let org: Organization | undefined;
  /** Every account and Region's models, the hub's first (one entry without other accounts). */
  const places: PlaceModels[] = [];
  /** The models of a service key, and the key the models know it by ("<cluster>/<service>"). */
  const serviceAt = (key: string): { models: PlaceModels; local: string } => {
    const place = placeOfServiceKey(key);
    if (!place) return { models: places[0] as PlaceModels, local: key };
    const models = places.find((m) => m.place.account === place.account && m.place.region === place.region);
    if (!models) throw new Error(`no account and Region ${place.account}/${place.region} for ${key}`);
    return { models, local: key.split('/').slice(2).join('/') };
  };
  /** A model's "<cluster>/<service>" as the scenario keys it. */
  const fullKey = (models: PlaceModels, local: string): string =>
    placedKey(
      { home: places[0] === models, accountId: models.place.account, region: models.place.region },
      local,
    );
  const alarmsAt = (a: { account?: string | undefined; region?: string | undefined }): PlaceModels => {
    const id = `${a.account ?? accountId}/${a.region ?? region}`;
    const models = places.find((m) => placeId(m.place) === id);
    if (!models) throw new Error(`no account and Region ${id}`);
    return models;
  };

  try {
    // ------------------------------------------------------------------ the account
    bus = new EventBus(world);
    // With other accounts, tasks pull from whichever registry holds the image (a central registry).
    const homeModels = placeModels(
      { account: accountId, region },
      world,
      bus,
      multi ? ({ resolveUri: (uri: string) => org?.resolveImage(uri) } as unknown as EcrModel) : undefined,
    );
    const { ecr, inspector, ecs, cloudwatch, codedeploy } = homeModels;
    inspectorModel = inspector;
    places.push(homeModels);
    if (organizationOptions) {
      org = await Organization.create(world, bus, organizationOptions, loaded);
      org.addHome(homeModels);
      for (const p of scenario.accounts) places.push(org.at({ account: p.accountId, region: p.region }));
      // Every other Region a spoke is deployed in forwards its events, even with nothing declared there.
      for (const s of organizationOptions.spokes)
        for (const r of s.regions)
          if (!places.some((m) => m.place.account === s.account && m.place.region === r))
            places.push(org.at({ account: s.account, region: r }));
    }
    const modelsOf = (p: { home: boolean; accountId: string; region: string }): PlaceModels =>
      p.home
        ? homeModels
        : (places.find((m) => m.place.account === p.accountId && m.place.region === p.region) as PlaceModels);
    /** The models of the account and Region that holds a repository. */
    const repositoryAt = (repository: string): PlaceModels =>
      modelsOf(
        scenarioPlaces(scenario).find((p) => p.repositories.some((r) => r.name === repository)) ?? {
          home: true,
          accountId,
          region,
        },
      );
    sns = new SnsModel(world);
    const eventbridge = new EventBridgeModel(world, bus);
    const ssm = new SsmModel(world);

    const before = new Date(start - DAY);
    const images = new Map<string, Image>();
    for (const p of scenarioPlaces(scenario))
      for (const repo of p.repositories) {
        const created = modelsOf(p).ecr.addRepository(repo.name, new Date(start - 30 * DAY));
        if (repo.policy) org?.repositoryPolicies.set(created.arn, repo.policy as never);
      }
    // Platform images first: an image index references them.
    const declared = scenarioImages(scenario);
    for (const { repository, digest, image } of [
      ...declared.filter((d) => !d.image.manifests),
      ...declared.filter((d) => d.image.manifests),
    ]) {
      const manifests = image.manifests?.map((ref) => {
        const platform = resolveImageRef(
          scenario,
          /^sha256:/.test(ref) ? `${repository}@${ref}` : `${repository}:${ref}`,
        );
        const of = images.get(platform.digest) as Image;
        return {
          digest: platform.digest,
          mediaType: OCI_MANIFEST,
          size: manifestOf(of).length,
          architecture: of.architecture,
          os: 'linux',
          ...(of.architecture === 'arm64' ? { variant: 'v8' } : {}),
        };
      });
      const registry = repositoryAt(repository);
      const pushed = registry.ecr.push({
        repository,
        digest,
        tags: [...image.tags],
        pushedAt: image.pushedAt === undefined ? before : new Date(resolveAt(image.pushedAt, start)),
        platform: image.platform,
        architecture: manifests ? 'index' : image.architecture,
        sizeInBytes: 52_428_800,
        ...(manifests ? { manifests, mediaType: OCI_INDEX } : {}),
      });
      images.set(digest, pushed);
      for (const f of image.findings) registry.inspector.addFinding(pushed, f, before);
    }
    for (const p of scenarioPlaces(scenario)) {
      const { ecs, cloudwatch, codedeploy } = modelsOf(p);
      for (const alarm of p.alarms) cloudwatch.addAlarm(alarm.name, alarm.state, before, alarm.description);
      for (const cluster of p.clusters) {
        ecs.addCluster(cluster.name);
        for (const s of cluster.services) {
          ecs.addService(
            cluster.name,
            s.name,
            s.containers.map((c) => {
              const { repository, digest } = resolveImageRef(scenario, c.image);
              // Keep the reference as written (tag or digest): a tag is what makes IaC drift possible.
              const ref = c.image.includes('@') ? `@${digest}` : `:${c.image.split(':').pop()}`;
              return {
                name: c.name,
                image: `${repositoryAt(repository).ecr.registry()}/${repository}${ref}`,
              };
            }),
            {
              strategy: s.strategy,
              bakeTimeMinutes: s.bakeTimeMinutes,
              alarms: s.alarms,
              tags: s.tags,
              desiredCount: s.desiredCount,
              deployMinutes: s.deployMinutes,
              rollbackMinutes: s.rollbackMinutes,
              deploymentController: s.deploymentController,
            },
            before,
          );
          if (s.deploymentController === 'CODE_DEPLOY' && s.codeDeployGroup) {
            const found = ecs.find(`${cluster.name}/${s.name}`);
            if (found) codedeploy.addGroup(found, before);
          }
          const key = `${cluster.name}/${s.name}`;
          const state = ecs.state(key);
          originalDigests.set(placedKey(p, key), state.digests);
          originalRevisions.set(placedKey(p, key), state.revision);
        }
      }
    }
    for (const d of scenario.deployments) {
      const at = serviceAt(d.service);
      at.models.ecs.scriptTrouble(at.local, d.deployment, {
        ...(d.tasksFailAfter === undefined
          ? {}
          : { tasksFailAfterMinutes: durationMs(d.tasksFailAfter) / MINUTE }),
        rollbackFails: d.rollbackFails,
      });
    }

    // Builds: the first scenario entry that matches (and is not used up) decides what a build does.
    const buildUses = scenario.builds.map(() => 0);
    const planFor = ({ source }: { source?: Image }): BuildPlan => {
      const i = scenario.builds.findIndex(
        (b, k) =>
          (b.repository === undefined || b.repository === source?.repository) &&
          (b.times === undefined || (buildUses[k] ?? 0) < b.times),
      );
      if (i < 0)
        return {
          outcome: 'SUCCEEDED',
          durationMinutes: 6,
          fixes: 'all',
          introduces: [],
          failedPhase: 'BUILD',
        };
      buildUses[i] = (buildUses[i] ?? 0) + 1;
      return scenario.builds[i] as BuildPlan;
    };
    const codebuild = new CodeBuildModel(
      world,
      ecr,
      inspector,
      planFor,
      scenario.scans.never ? undefined : scenario.scans.delayMinutes,
      multi ? () => places.map((m) => ({ ecr: m.ecr, inspector: m.inspector })) : undefined,
    );
    codebuildModel = codebuild;

    // ------------------------------------------------------------------ the real code
    const modelHandlers: ModelHandlerSet = {
      ecs: ecs.handlers,
      ecr: ecr.handlers,
      codebuild: codebuild.handlers,
      codedeploy: codedeploy.handlers,
      inspector2: inspector.handlers,
      cloudwatch: cloudwatch.handlers,
      sns: sns.handlers,
      eventbridge: eventbridge.handlers,
      ssm: ssm.handlers,
      // Filled in below, once the state machine exists (StartExecution needs it).
      sfn: {},
    };
    const address = new URL(dynamo.endpoint);
    deactivate = activate({
      world,
      faults,
      handlers: modelHandlers,
      dynamo: { hostname: address.hostname, port: Number(address.port) },
      iam: stackOptions,
      ...(org ? { organization: org } : {}),
    });

    const byArn = new Map(stack.functions.map((f) => [f.arn, f.role]));
    sfn = new StepFunctionsModel({
      world,
      definition: stack.definition,
      stateMachineArn: stack.stateMachineArn,
      lambda: (functionName) => {
        const role = byArn.get(functionName);
        const handler = role ? handlers.get(role) : undefined;
        return role && handler
          ? { name: role, invoke: (event, context) => handler(event, context) }
          : undefined;
      },
      integrations: simulatedClients(world, 1),
      codebuild,
      bus,
      invokeFault: (functionName) => faults.checkInvoke(functionName),
    });
    (modelHandlers as { sfn: ModelHandlerSet['sfn'] }).sfn = sfn.handlers;

    const policy = scenario.policy ?? DEFAULT_POLICY;
    fleet = new TriageFleet(world, {
      ...stack.triageEnvironment,
      // Lambda's own reserved variable: with the home account, it turns triage's inventory index on.
      // (Scenarios of one account keep answering from an ECS scan, as before the index.)
      ...(multi ? { AWS_REGION: region } : {}),
      AUTOPATCH_CONFIG: JSON.stringify({
        policy,
        targets: scenario.targets,
        discoverByTag: scenario.discoverByTag,
        defaults: scenario.defaults,
        dryRun: false,
      }),
    });
    sqs = new SqsModel(
      world,
      stack.intake.queueArn,
      {
        batchSize: scenario.intake.batchSize ?? stack.intake.batchSize,
        batchingWindowSeconds: scenario.intake.batchingWindowSeconds ?? stack.intake.batchingWindowSeconds,
        visibilityTimeoutSeconds:
          scenario.intake.visibilityTimeoutSeconds ?? stack.intake.visibilityTimeoutSeconds,
        maxReceiveCount: scenario.intake.maxReceiveCount ?? stack.intake.maxReceiveCount,
        maxConcurrency: scenario.intake.maxConcurrency ?? stack.intake.maxConcurrency,
      },
      async (event) => {
        const response = await (fleet as TriageFleet).consume(event);
        // A notify decision waits in its digest: keep the sweep ticking until the digest is due.
        if (event.Records.some((r) => fleet?.decisions.get(r.messageId)?.action === 'notify'))
          wakeSchedules(Date.now() + (scenario.defaults.notifyDigestMinutes + 2) * MINUTE);
        return response;
      },
    );

    // EventBridge rules exactly as the stack defines them.
    const intakeQueue = sqs;
    const asyncInvoke = (role: string, event: BusEvent, attempt = 0): void => {
      const handler = handlers.get(role);
      if (!handler) {
        world.fail(`rule target ${role}`, new Error(`no handler for ${role}`));
        return;
      }
      world.spawn(`${role} (${event['detail-type']})`, async () => {
        try {
          await handler(JSON.parse(JSON.stringify(event)), world.lambdaContext(role));
        } catch (error) {
          // Asynchronous invocation: Lambda retries a failed event twice, a minute and two minutes later.
          if (attempt < 2) {
            world.note(
              'lambda',
              `${role} failed on ${event['detail-type']} (${(error as Error).name}); Lambda retries it`,
            );
            world.schedule(Date.now() + (attempt + 1) * MINUTE, `${role} retry`, () =>
              asyncInvoke(role, event, attempt + 1),
            );
          } else if (stack.asyncOnFailure.includes(role)) {
            // The function's on-failure destination (the alarmed events dead-letter queue) keeps it.
            world.note(
              'lambda',
              `${role} failed on ${event['detail-type']} after Lambda's retries (${(error as Error).name}); sent to its on-failure destination`,
            );
          } else throw error;
        }
      });
    };
    // Scheduled rules (the sweep): on the virtual clock, while there is something to sweep.
    const rules = stack.rules.map((r) => ({
      ...r,
      targets: r.targets.filter((t) => t.kind !== 'lambda' || runs(t.name)),
    }));
    const scheduled = rules.filter((r) => r.schedule !== undefined);
    wakeSchedules = startSchedules(
      world,
      scheduled,
      sfn,
      (role) => {
        const handler = handlers.get(role);
        if (!handler) throw new Error(`no handler for ${role}`);
        return handler(
          { source: 'aws.events', 'detail-type': 'Scheduled Event' },
          world.lambdaContext(role, 120_000),
        );
      },
      () => faults.failingForNow(),
    );
    /** The inventory queue's consumer (EventBridge → SQS → the indexer), one message per event. */
    const toIndexer = (event: BusEvent): void => {
      const handler = handlers.get('inventoryIndexer');
      if (!handler) return;
      world.spawn('inventoryIndexer', async () => {
        const messageId = world.uuid();
        const response = (await handler(
          {
            Records: [
              {
                messageId,
                receiptHandle: messageId,
                body: JSON.stringify(event),
                attributes: {},
                messageAttributes: {},
                md5OfBody: '',
                eventSource: 'aws:sqs',
                eventSourceARN: 'inventory-queue',
                awsRegion: region,
              },
            ],
          },
          world.lambdaContext('inventoryIndexer'),
        )) as { batchItemFailures?: unknown[] } | undefined;
        if ((response?.batchItemFailures?.length ?? 0) > 0)
          world.note('inventory', `the indexer failed on ${event['detail-type']} (SQS would redeliver it)`);
      });
    };
    for (const rule of rules.filter((r) => r.schedule === undefined)) {
      bus.addRule({
        name: rule.name,
        pattern: rule.pattern,
        targets: rule.targets.map((t) => ({
          id: `${t.kind}:${t.name}`,
          deliver: (event: BusEvent) => {
            if (t.kind === 'sqs' && t.name === 'intake') intakeQueue.send(JSON.stringify(event));
            else if (t.kind === 'sqs' && t.name === 'inventory' && multi) toIndexer(event);
            else if (t.kind === 'lambda') {
              world.note('eventbridge', `${event['detail-type']} → ${t.name} (rule ${rule.name})`);
              asyncInvoke(t.name, event);
            } else world.note('eventbridge', `${rule.name} delivered to ${t.name} (not simulated)`);
          },
        })),
      });
    }

    // Approvals answer through the same code path as `npm run approve`.
    const approver = simulatedClients(world, 3);
    const approverLedger = new Ledger({
      client: approver.dynamodb,
      tableName: stack.tableName,
      now: () => new Date(Date.now()),
    });
    const approvalStates = new Set(
      [...taskStates(stack.definition as never).entries()]
        .filter(
          ([, s]) =>
            byArn.get(String((s.Parameters as { FunctionName?: unknown } | undefined)?.FunctionName)) ===
            'requestApproval',
        )
        .map(([name]) => name),
    );
    const approvalsUsed = scenario.approvals.map(() => false);
    sfn.onTaskToken(({ execution, state }) => {
      if (!approvalStates.has(state)) return;
      const service = (execution.input as { service?: { key?: string } }).service?.key;
      const i = scenario.approvals.findIndex((a, k) => !approvalsUsed[k] && a.service === service);
      if (i < 0) {
        world.note('approver', `approval requested for ${service}; nobody answers in this scenario`);
        return;
      }
      approvalsUsed[i] = true;
      const a = scenario.approvals[i] as Scenario['approvals'][number];
      world.schedule(resolveAt(a.at, Date.now()), `approval of ${execution.name}`, async () => {
        world.note(
          'approver',
          `${a.approver} ${a.decision === 'approve' ? 'approves' : 'rejects'} ${execution.name}`,
        );
        await resolveApproval({
          sfn: approver.sfn,
          ledger: approverLedger,
          executionName: execution.name,
          approve: a.decision === 'approve',
          ...(a.comment ? { reason: a.comment } : {}),
          by: a.approver,
        });
      });
    });

    // ------------------------------------------------------------------ lost and late deliveries
    const eventFaults = scenario.eventFaults.map((f) => ({
      f,
      from: f.from === undefined ? Number.NEGATIVE_INFINITY : resolveAt(f.from, start),
      until: f.until === undefined ? Number.POSITIVE_INFINITY : resolveAt(f.until, start),
      seen: 0,
      fired: 0,
    }));
    bus.setDeliveryFate((event, rule): DeliveryFate => {
      const now = Date.now();
      for (const x of eventFaults) {
        const { f } = x;
        if (event['detail-type'] !== f.detailType) continue;
        if (f.source !== undefined && event.source !== f.source) continue;
        if (f.rule !== undefined && rule !== f.rule) continue;
        if (now < x.from || now >= x.until) continue;
        x.seen += 1;
        if (x.seen <= f.after || (!f.persistent && x.fired >= f.times)) continue;
        x.fired += 1;
        return f.effect === 'lose' ? { lose: true } : { delayMs: durationMs(f.delay) };
      }
      return undefined;
    });

    // ------------------------------------------------------------------ changes to the world mid-run
    const imageUri = (ref: string): string => {
      const { repository, digest } = resolveImageRef(scenario, ref);
      const suffix = ref.includes('@') ? `@${digest}` : `:${ref.split(':').pop()}`;
      return `${repositoryAt(repository).ecr.registry()}/${repository}${suffix}`;
    };
    const applyChange = (c: ChangeSpec): void => {
      const at = 'service' in c ? serviceAt(c.service) : undefined;
      const ecsOf = at?.models.ecs as EcsModel;
      const local = at?.local as string;
      switch (c.kind) {
        case 'redeploy':
          ecsOf.ownerDeploy(local, {}, true);
          return;
        case 'deploy':
          ecsOf.ownerDeploy(
            local,
            Object.fromEntries(Object.entries(c.images).map(([name, ref]) => [name, imageUri(ref)])),
            false,
          );
          return;
        case 'scale':
          ecsOf.ownerScale(local, c.desiredCount);
          return;
        case 'delete-service':
          ecsOf.ownerDelete(local);
          return;
        case 'tag':
          ecsOf.ownerTag(local, c.key, c.value);
          return;
        case 'delete-alarm':
          alarmsAt(c).cloudwatch.deleteAlarm(c.alarm);
          return;
        case 'delete-spoke-role':
          org?.deleteRole(c.account);
          return;
        case 'move-image-tag': {
          const registry = repositoryAt(c.repository).ecr;
          const repo = registry.repo(c.repository);
          const image = /^sha256:/.test(c.to)
            ? repo.images.get(c.to)
            : [...repo.images.values()].find((i) => i.tags.includes(c.to));
          if (!image) throw new Error(`image ${c.to} is gone from ${c.repository}`);
          registry.push({ ...image, tags: [c.tag] });
          world.note('owner', `${c.repository}:${c.tag} now points at ${image.digest.slice(0, 19)}…`);
          return;
        }
      }
    };
    /** A deployment of a service started: by ECS (UpdateService) or by CodeDeploy (CreateDeployment). */
    const onDeploymentStarted = (
      listener: (d: { service: { key: string }; index: number; createdAt: Date }) => void,
    ) => {
      for (const m of places) {
        m.ecs.onDeploymentStarted((d) =>
          listener({ service: { key: fullKey(m, d.service.key) }, index: d.index, createdAt: d.createdAt }),
        );
        m.codedeploy.onDeploymentStarted((d) =>
          listener({
            service: { key: fullKey(m, d.group.service.key) },
            index: d.index,
            createdAt: d.createdAt,
          }),
        );
      }
    };
    scenario.changes.forEach((c, n) => {
      const label = `changes[${n}] ${c.kind}`;
      if (c.afterDeploymentOf === undefined) {
        world.schedule(resolveAt(c.at, start), label, () => applyChange(c));
      } else {
        onDeploymentStarted((d) => {
          if (d.service.key !== c.afterDeploymentOf || d.index !== c.deployment) return;
          world.schedule(resolveAt(c.at, d.createdAt.getTime()), label, () => applyChange(c));
        });
      }
    });

    // ------------------------------------------------------------------ the scenario's script
    const deliver = (event: BusEvent, duplicate: number, every: number) => {
      bus?.put(event);
      for (let k = 1; k <= duplicate; k++) {
        world.schedule(Date.now() + k * every, 'duplicate delivery', () => bus?.put(event));
      }
    };
    // For "finding → patched": when each service first had a finding on an image it runs.
    const noteFinding = (digest: string) => {
      for (const m of places)
        for (const s of m.ecs.services()) {
          // An image index the service runs counts for the findings on its platforms.
          const held = (d: string) =>
            places.some((x) =>
              [...x.ecr.repositories.values()].some((r) =>
                r.images.get(d)?.manifests?.some((i) => i.digest === digest),
              ),
            );
          const running = [...m.ecs.runningDigests(s).values()].some(
            (d) => d.has(digest) || [...d].some(held),
          );
          const key = fullKey(m, s.key);
          if (running && !firstFindingAt.has(key)) firstFindingAt.set(key, Date.now());
        }
    };
    scenario.events.forEach((e, n) => {
      const at = resolveAt(e.at, start);
      if (e.kind === 'finding') {
        world.schedule(at, `events[${n}]`, () => {
          const { ecr, inspector } = repositoryAt(e.repository);
          const repo = ecr.repo(e.repository);
          const image = /^sha256:/.test(e.image)
            ? repo.images.get(e.image)
            : [...repo.images.values()].find((i) => i.tags.includes(e.image));
          const finding = image && inspector.findings(image.digest).find((f) => f.spec.cve === e.cve);
          if (!image || !finding)
            throw new Error(`events[${n}]: ${e.repository} ${e.image} ${e.cve} vanished`);
          const now = world.now();
          if (finding.firstObservedAt.getTime() < start) finding.firstObservedAt = now;
          finding.lastObservedAt = now;
          finding.updatedAt = now;
          world.note(
            'inspector',
            `finding ${e.cve} (${finding.spec.severity}) on ${e.repository}@${image.digest.slice(7, 19)}`,
          );
          noteFinding(image.digest);
          deliver(inspector.findingEvent(finding), e.duplicate, durationMs(e.duplicateAfter));
        });
      } else if (e.kind === 'raw') {
        world.schedule(at, `events[${n}]`, () => {
          const raw = e.event as Record<string, unknown>;
          world.note('eventbridge', `raw event ${String(raw['detail-type'] ?? '(no detail-type)')}`);
          deliver(raw as unknown as BusEvent, e.duplicate, durationMs(e.duplicateAfter));
        });
      } else {
        const targets =
          e.images === 'all'
            ? scenarioImages(scenario).map((i) => i.digest)
            : e.images.map((r) => resolveImageRef(scenario, r).digest);
        const cves = burstCves(e);
        const pairs =
          e.order === 'by-cve'
            ? cves.flatMap((cve) => targets.map((digest) => ({ cve, digest })))
            : targets.flatMap((digest) => cves.map((cve) => ({ cve, digest })));
        const spread = durationMs(e.spread);
        world.schedule(at, `events[${n}]`, () => {
          world.note(
            'inspector',
            `burst: ${cves.length} new CVE(s) on ${targets.length} image(s): ${pairs.length} findings`,
          );
        });
        pairs.forEach(({ cve, digest }, k) => {
          world.schedule(
            at + (pairs.length > 1 ? Math.floor((spread * k) / pairs.length) : 0),
            `events[${n}] #${k}`,
            () => {
              const image = images.get(digest) as Image;
              const { inspector } = repositoryAt(image.repository);
              const finding = inspector.addFinding(
                image,
                {
                  cve,
                  severity: e.severity,
                  packageManager: e.packageManager,
                  ...(e.package ? { package: e.package } : {}),
                  fixAvailable: e.fixAvailable,
                  ...(e.exploitAvailable ? { exploitAvailable: e.exploitAvailable } : {}),
                  ...(e.inspectorScore === undefined ? {} : { inspectorScore: e.inspectorScore }),
                  ...(e.epss === undefined ? {} : { epss: e.epss }),
                  status: 'ACTIVE',
                },
                world.now(),
              );
              noteFinding(digest);
              bus?.put(inspector.findingEvent(finding));
            },
          );
        });
      }
    });

    for (const change of scenario.alarms) {
      const apply = () =>
        alarmsAt(change).cloudwatch.setState(change.name, change.state as StateValue, change.reason);
      if (change.afterDeploymentOf === undefined) {
        world.schedule(resolveAt(change.at, start), `alarm ${change.name}`, apply);
      } else {
        onDeploymentStarted((d) => {
          if (d.service.key !== change.afterDeploymentOf || d.index !== change.deployment) return;
          world.schedule(resolveAt(change.at, d.createdAt.getTime()), `alarm ${change.name}`, apply);
        });
      }
    }

    // The inventory index has been reconciled once before the scenario starts (its hourly schedule).
    if (multi && handlers.has('inventoryReconciler'))
      world.spawn('inventoryReconciler (initial)', async () => {
        await handlers.get('inventoryReconciler')?.(
          { source: 'aws.events', 'detail-type': 'Scheduled Event' },
          world.lambdaContext('inventoryReconciler', 900_000),
        );
      });

    // ------------------------------------------------------------------ play
    const horizon = scenario.until === undefined ? DEFAULT_HORIZON_MS : durationMs(scenario.until);
    run = await clock.run({ horizonMs: horizon });
  } catch (error) {
    const e = error as Error;
    errors.push(`the simulation stopped: ${e.name}: ${e.message}`);
  } finally {
    // Executions still waiting (a horizon reached) are left as they are; nothing more will run.
    clock.uninstall();
    deactivate?.();
    restoreEnvironment();
    locksLeft = await countLocks(dynamo.client, stack.tableName).catch((error: unknown) => {
      errors.push(`could not read the ledger after the run: ${(error as Error).message}`);
      return undefined;
    });
    if (options.afterRun) {
      const inspector = inspectorModel;
      await options
        .afterRun({
          dynamo: dynamo.client,
          tableName: stack.tableName,
          ...(inspector
            ? {
                coverage: () => {
                  const out: Array<{ resourceId: string; statusCode: string }> = [];
                  let nextToken: string | undefined;
                  do {
                    const page = inspector.handlers.ListCoverage(nextToken ? { nextToken } : {});
                    for (const r of page.coveredResources ?? [])
                      out.push({
                        resourceId: r.resourceId ?? '',
                        statusCode: r.scanStatus?.statusCode ?? 'UNKNOWN',
                      });
                    nextToken = page.nextToken;
                  } while (nextToken);
                  return out;
                },
              }
            : {}),
        })
        .catch((error: unknown) => {
          errors.push(`afterRun failed: ${(error as Error).message}`);
        });
    }
    await dynamo.stop().catch(() => undefined);
  }

  const end = start + run.virtualMs;
  for (const e of world.errors)
    errors.push(`T+${Math.round((e.at - start) / 1000)}s ${e.where}: ${e.error.name}: ${e.error.message}`);
  for (const line of fleet?.log ?? []) {
    if (line.level === 'ERROR') errors.push(`triage: ${line.message} ${JSON.stringify(line.attributes)}`);
  }

  const executions: ExecutionReport[] = (sfn?.executions ?? []).map((e: Execution) => {
    const outcome = outcomeOf(e);
    const service = (e.input as { service?: { key?: string } }).service?.key;
    return {
      name: e.name,
      arn: e.arn,
      ...(service ? { service } : {}),
      status: e.status,
      ...(outcome ? { outcome } : {}),
      startedAt: new Date(e.startedAt).toISOString(),
      startOffsetMs: e.startedAt - start,
      ...(e.stoppedAt === undefined ? {} : { durationMs: e.stoppedAt - e.startedAt }),
      states: stateHistory(e.events, start, e.stoppedAt ?? end),
      ...(e.output === undefined ? {} : { output: e.output }),
      ...(e.error ? { error: e.error } : {}),
      ...(e.cause ? { cause: e.cause } : {}),
    };
  });

  const findings: Record<string, number> = {};
  for (const d of fleet?.decisions.values() ?? []) findings[d.action] = (findings[d.action] ?? 0) + 1;
  const apiCalls = Object.fromEntries([...world.apiCalls.entries()].sort(([a], [b]) => a.localeCompare(b)));
  const findingToPatchedMs: Record<string, number> = {};
  for (const x of executions) {
    const first = x.service ? firstFindingAt.get(x.service) : undefined;
    if (
      x.outcome === 'Patched' &&
      x.service &&
      first !== undefined &&
      x.durationMs !== undefined &&
      findingToPatchedMs[x.service] === undefined
    ) {
      findingToPatchedMs[x.service] = x.startOffsetMs + x.durationMs - (first - start);
    }
  }
  const services: Record<string, ServiceReport> = {};
  /** Every registry's images (an organization's central registry included). */
  const allRepositories = () => places.flatMap((m) => [...m.ecr.repositories.values()]);
  const imageOf = (digest: string) =>
    allRepositories().flatMap((r) => {
      const i = r.images.get(digest);
      return i ? [i] : [];
    })[0];
  for (const m of places)
    for (const s of m.ecs.services()) {
      const key = fullKey(m, s.key);
      const state = m.ecs.state(s.key);
      const images = state.digests.map((d) => imageOf(d));
      // An image index is patched when every platform it holds is an image CodeBuild built.
      const built = (i: Image | undefined): boolean =>
        i !== undefined &&
        (i.builtFrom !== undefined ||
          i.manifests?.every((x) => imageOf(x.digest)?.builtFrom !== undefined) === true);
      const platforms: Record<string, 'patched' | 'original'> = {};
      for (const i of images)
        for (const x of i?.manifests ?? [])
          platforms[x.architecture] = imageOf(x.digest)?.builtFrom !== undefined ? 'patched' : 'original';
      services[key] = {
        status: state.status,
        taskDefinition: state.taskDefinitionArn,
        revision: state.revision,
        originalRevision: originalRevisions.get(key) ?? 0,
        digests: state.digests,
        originalDigests: originalDigests.get(key) ?? [],
        patched: images.length > 0 && images.every(built),
        ...(Object.keys(platforms).length > 0 ? { platforms } : {}),
        deployments: [
          ...s.deployments
            .filter((d) => d.index > 0)
            .map((d) => ({
              index: d.index,
              status: d.status,
              startOffsetMs: d.createdAt.getTime() - start,
              ...(d.finishedAt ? { endOffsetMs: d.finishedAt.getTime() - start } : {}),
              bakeMinutes: s.settings.strategy === 'BLUE_GREEN' ? s.settings.bakeTimeMinutes : 0,
              alarms: [...watchedAlarms(m, s.key, key)],
              taskDefinition: d.target.taskDefinitionArn,
              alarmsOk: alarmsOkDuring(m, s.key, key, d.createdAt.getTime(), d.finishedAt?.getTime() ?? end),
            })),
          // CODE_DEPLOY services: the CodeDeploy deployments users created (rollbacks are CodeDeploy's own).
          ...m.codedeploy
            .deploymentsOf(s.key)
            .filter((d) => d.index > 0)
            .map((d) => ({
              index: d.index,
              status: d.status,
              startOffsetMs: d.createdAt.getTime() - start,
              ...(d.completedAt ? { endOffsetMs: d.completedAt.getTime() - start } : {}),
              bakeMinutes: d.group.terminationWaitMinutes,
              alarms: [...watchedAlarms(m, s.key, key)],
              taskDefinition: d.taskDefinitionArn,
              alarmsOk: alarmsOkDuring(m, s.key, key, d.createdAt.getTime(), d.completedAt?.getTime() ?? end),
            })),
        ],
        alarmToRollbackMs: alarmToRollback(m, s.key, key),
      };
    }
  /** The alarms watched for a service: its deployment alarms and its target's alarmNames. */
  function watchedAlarms(m: PlaceModels, local: string, key: string): Set<string> {
    return new Set([
      ...(m.ecs.find(local)?.settings.alarms ?? []),
      ...scenario.targets.filter((t) => targetKey(scenario, t) === key).flatMap((t) => t.alarmNames),
    ]);
  }
  /** Every watched alarm existed and was OK from `from` to `to` (no ALARM, no INSUFFICIENT_DATA). */
  function alarmsOkDuring(m: PlaceModels, local: string, key: string, from: number, to: number): boolean {
    const transitions = m.cloudwatch.transitions;
    const declared = scenarioPlaces(scenario).find(
      (p) => p.accountId === m.place.account && p.region === m.place.region,
    )?.alarms;
    return [...watchedAlarms(m, local, key)].every((name) => {
      if (m.cloudwatch.state(name) === undefined) return false;
      const before = transitions.filter((t) => t.name === name && t.at <= from).at(-1);
      const initial = before?.state ?? declared?.find((a) => a.name === name)?.state ?? 'OK';
      return (
        initial === 'OK' &&
        !transitions.some((t) => t.name === name && t.at > from && t.at <= to && t.state !== 'OK')
      );
    });
  }
  function alarmToRollback(m: PlaceModels, local: string, key: string): number | undefined {
    const rollback = [...m.ecs.rollbacks, ...m.codedeploy.rollbacks]
      .filter((r) => r.service === local)
      .sort((a, b) => a.at - b.at)[0];
    if (!rollback) return undefined;
    const watched = watchedAlarms(m, local, key);
    const fired = m.cloudwatch.transitions.filter(
      (t) => t.state === 'ALARM' && watched.has(t.name) && t.at <= rollback.at,
    );
    const last = fired.at(-1);
    return last === undefined ? undefined : rollback.at - last.at;
  }
  const worldReport: WorldReport = {
    services,
    ...(locksLeft === undefined ? {} : { locks: locksLeft }),
    builds: codebuildModel?.builds.length ?? 0,
    faultsInjected: faults.count,
    ...(faults.clearedAt() === undefined
      ? {}
      : { faultsClearedOffsetMs: (faults.clearedAt() as number) - start }),
    faultsCleared: faults.cleared(end),
    deliveriesTampered: bus?.tampered.length ?? 0,
    imageRefs: Object.fromEntries(
      allRepositories().flatMap((r) =>
        [...r.images.values()].flatMap((i) => [
          [`${r.name}@${i.digest}`, [i.digest]] as const,
          ...i.tags.map((t) => [`${r.name}:${t}`, [i.digest]] as const),
        ]),
      ),
    ),
  };
  const invocations = sqs?.invocations ?? [];
  const report: Omit<SimulationReport, 'mismatches'> = {
    scenario: {
      name: scenario.name,
      description: scenario.description,
      source: scenario.source,
      startTime: scenario.startTime,
    },
    executions,
    findings,
    apiCalls,
    intake: {
      sent: sqs?.totalSent ?? 0,
      invocations: invocations.length,
      itemFailures: invocations.reduce((n, i) => n + i.failed, 0),
      deadLetters: sqs?.deadLetters.length ?? 0,
      coldStarts: fleet?.coldStarts ?? 0,
    },
    findingToPatchedMs,
    virtual: { durationMs: run.virtualMs, steps: run.steps, stoppedBy: run.stoppedBy },
    wallMs: Math.round(performance.now() - wallStart),
    timeline: world.timeline.map((t) => ({ offsetMs: t.at - start, source: t.source, text: t.text })),
    notifications: (sns?.messages ?? []).map((m) => ({
      offsetMs: m.at - start,
      ...(m.subject ? { subject: m.subject } : {}),
      ...(m.attributes.kind ? { kind: m.attributes.kind } : {}),
      ...(m.attributes.service ? { service: m.attributes.service } : {}),
    })),
    outcomeEvents: (bus?.published ?? [])
      .filter(
        (p) => p.event.source === OUTCOME_EVENT.source && p.event['detail-type'] === OUTCOME_EVENT.detailType,
      )
      .map((p) => ({ offsetMs: p.at - start, detail: p.event.detail })),
    errors,
    world: worldReport,
  };
  return { ...report, mismatches: checkExpectations(scenario.expect, report) };
};
