/**
 * The simulated account triage runs against in the benchmarks: the simulation's own ECR and ECS
 * models (simulation/model/*) loaded with the synthetic fleet, DynamoDB in dynalite (the real ledger
 * code runs against it), and Step Functions reduced to what triage calls, StartExecution, which
 * records the executions it starts. Requests go through real AWS SDK clients and the simulation's SDK
 * layer (simulation/sdk.ts), which counts every attempt at the SDK boundary: those counts are the
 * "AWS API calls" of the benchmark.
 */
import type { StartExecutionCommandInput, StartExecutionCommandOutput } from '@aws-sdk/client-sfn';
import { DEFAULT_POLICY } from '../lambdas/triage/policy';
import { type LocalDynamo, startDynalite } from '../local/dynalite';
import { VirtualClock } from '../simulation/clock';
import { EcrModel } from '../simulation/model/ecr';
import { EcsModel } from '../simulation/model/ecs';
import { sdkError } from '../simulation/model/errors';
import { EventBus } from '../simulation/model/eventbus';
import { World } from '../simulation/model/world';
import {
  activate,
  FaultInjector,
  type ModelHandlerSet,
  type SimulatedClients,
  simulatedClients,
} from '../simulation/sdk';
import { ACCOUNT_ID, DISCOVER_TAG, type Fleet, REGION } from './fleet';

export const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT_ID}:stateMachine:AutopatchRemediation`;
export const LEDGER_TABLE = 'autopatch-bench-ledger';

export interface StartedExecution {
  readonly name: string;
  readonly service: string;
  readonly input: string;
}

export interface TriageAccount {
  readonly world: World;
  /** Executions StartExecution created (a repeated start of the same name and input is not a new one). */
  readonly executions: readonly StartedExecution[];
  /** StartExecution calls refused with ExecutionAlreadyExists (the name is taken by another input). */
  readonly nameClashes: ReadonlyArray<{
    readonly name: string;
    readonly service: string;
    readonly takenBy: string;
  }>;
  /** Present when the account was opened with a ledger. */
  readonly dynamo?: LocalDynamo;
  /** The triage function's environment variables for this account (AUTOPATCH_CONFIG, LEDGER_TABLE, ...). */
  readonly variables: Readonly<Record<string, string>>;
  /** A fresh set of SDK clients answered by this account (each Lambda environment has its own). */
  clients(): SimulatedClients;
  /** AWS API calls so far, by "<service>:<Operation>" (every attempt, SDK retries included). */
  apiCalls(): Record<string, number>;
  close(): Promise<void>;
}

/** Open the account: models loaded with the fleet, SDK requests routed to them until `close()`. */
export const openTriageAccount = async (
  fleet: Fleet,
  options: { ledger?: boolean } = {},
): Promise<TriageAccount> => {
  const dynamo = options.ledger === false ? undefined : await startDynalite({ tableName: LEDGER_TABLE });
  const clock = new VirtualClock(Date.now());
  const world = new World(ACCOUNT_ID, REGION, clock, 'autopatch-bench');
  const bus = new EventBus(world);
  const ecr = new EcrModel(world);
  const ecs = new EcsModel(world, ecr, bus);
  const before = new Date(Date.now() - 30 * 86_400_000);
  for (const repository of fleet.repositories) ecr.addRepository(repository, before);
  for (const image of fleet.images) {
    ecr.push({
      repository: image.repository,
      digest: image.digest,
      tags: [...image.tags],
      pushedAt: new Date(image.pushedAt),
      platform: image.platform,
      architecture: image.architecture,
      sizeInBytes: 52_428_800,
    });
  }
  for (const cluster of new Set(fleet.services.map((s) => s.cluster))) ecs.addCluster(cluster);
  for (const s of fleet.services) {
    ecs.addService(
      s.cluster,
      s.name,
      s.containers.map((c) => ({ name: c.name, image: c.image })),
      {
        strategy: 'BLUE_GREEN',
        bakeTimeMinutes: 30,
        alarms: [],
        tags: s.tags,
        desiredCount: 2,
        deployMinutes: 4,
        rollbackMinutes: 2,
      },
      before,
    );
  }

  const executions: StartedExecution[] = [];
  const byName = new Map<string, StartedExecution>();
  const nameClashes: Array<{ name: string; service: string; takenBy: string }> = [];
  const sfn = {
    StartExecution: (input: StartExecutionCommandInput): Omit<StartExecutionCommandOutput, '$metadata'> => {
      if (input.stateMachineArn !== STATE_MACHINE_ARN)
        throw sdkError(
          'sfn',
          'StateMachineDoesNotExist',
          `State Machine Does Not Exist: '${input.stateMachineArn}'`,
        );
      const name = input.name as string;
      const arn = `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${name}`;
      const existing = byName.get(name);
      if (existing) {
        // Same name and input: idempotent, as in Step Functions; anything else is a clash.
        if (existing.input === input.input) return { executionArn: arn, startDate: new Date() };
        const service =
          (JSON.parse(input.input ?? '{}') as { service?: { key?: string } }).service?.key ?? '';
        nameClashes.push({ name, service, takenBy: existing.service });
        throw sdkError('sfn', 'ExecutionAlreadyExists', `Execution Already Exists: '${arn}'`);
      }
      const request = JSON.parse(input.input ?? '{}') as { service?: { key?: string } };
      const started = { name, service: request.service?.key ?? '', input: input.input ?? '' };
      byName.set(name, started);
      executions.push(started);
      return { executionArn: arn, startDate: new Date() };
    },
  };
  const handlers: ModelHandlerSet = {
    ecs: ecs.handlers,
    ecr: ecr.handlers,
    codebuild: {},
    codedeploy: {},
    inspector2: {},
    cloudwatch: {},
    sns: {},
    eventbridge: {},
    ssm: {},
    sfn,
  };
  const address = dynamo ? new URL(dynamo.endpoint) : new URL('http://127.0.0.1:9');
  const deactivate = activate({
    world,
    faults: new FaultInjector([]),
    handlers,
    dynamo: { hostname: address.hostname, port: Number(address.port) },
  });
  const made: SimulatedClients[] = [];
  return {
    world,
    executions,
    nameClashes,
    ...(dynamo ? { dynamo } : {}),
    variables: {
      AUTOPATCH_CONFIG: JSON.stringify({
        policy: DEFAULT_POLICY,
        targets: [],
        discoverByTag: DISCOVER_TAG,
        dryRun: false,
      }),
      LEDGER_TABLE,
      STATE_MACHINE_ARN,
    },
    clients: () => {
      const c = simulatedClients(world, 3);
      made.push(c);
      return c;
    },
    apiCalls: () => Object.fromEntries([...world.apiCalls.entries()].sort(([a], [b]) => a.localeCompare(b))),
    close: async () => {
      deactivate();
      for (const c of made) for (const client of Object.values(c)) (client as { destroy(): void }).destroy();
      await dynamo?.stop();
    },
  };
};
