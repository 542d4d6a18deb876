import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandInput,
  InvalidExecutionInput,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import type { RemediationRequest } from '../../../lambdas/shared/contracts';
import { Ledger, type OutcomeRecord } from '../../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../../lambdas/shared/remediation';
import { finish } from '../../../lambdas/workflow/finish';
import { reconcile } from '../../../lambdas/workflow/reconcile';
import type { WorkflowState } from '../../../lambdas/workflow/state';
import { type LocalDynamo, startDynalite } from '../../../local/dynalite';
import { digest, image, remediationRequest } from '../../support/workflow-harness';

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const arnOf = (name: string) => `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${name}`;
const T0 = new Date('2024-09-04T17:00:00.000Z');
const minutes = (n: number) => new Date(T0.getTime() + n * 60_000);

const sfn = mockClient(SFNClient);
const events = mockClient(EventBridgeClient);
const sns = mockClient(SNSClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let clock: Date;
let tables = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  // A table per test: the reconciler lists every lock of the table.
  const tableName = `reconcile-${++tables}`;
  await dynamo.createTable(tableName);
  clock = T0;
  ledger = new Ledger({ client: dynamo.client, tableName, now: () => clock });
  sfn.on(StartExecutionCommand).callsFake(async (input: { name: string }) => ({
    executionArn: arnOf(input.name),
    startDate: clock,
  }));
});
afterEach(() => {
  for (const m of [sfn, events, sns]) m.reset();
});

/** Step Functions answers DescribeExecution from this map (absent: ExecutionDoesNotExist). */
const executions = (statuses: Record<string, { status: string; error?: string; cause?: string }>) => {
  sfn.on(DescribeExecutionCommand).callsFake(async (input: DescribeExecutionCommandInput) => {
    const name = (input.executionArn ?? '').split(':').at(-1) as string;
    const found = statuses[name];
    if (!found) {
      const error = new Error(`Execution Does Not Exist: '${input.executionArn}'`);
      error.name = 'ExecutionDoesNotExist';
      throw error;
    }
    return {
      executionArn: input.executionArn,
      stateMachineArn: STATE_MACHINE,
      name,
      startDate: T0,
      ...(found.status === 'RUNNING' ? {} : { stopDate: minutes(30) }),
      ...found,
    };
  });
};

let serial = 0;
const requestFor = (serviceKey: string, cve: string, at = T0): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  const images = [image({ imageDigest: digest('a1'), cves: [cve] })];
  const name = executionName(service, images, at);
  return { ...base, service, images, executionName: name, remediationId: remediationId(serviceKey, name) };
};

/** A remediation running (sealed), with `queued` requests behind it. */
const running = async (serviceKey: string, queued: RemediationRequest[] = []) => {
  const request = requestFor(serviceKey, `CVE-2024-${++serial}`);
  await ledger.claim(request);
  await ledger.markStarted(serviceKey, request.executionName, arnOf(request.executionName));
  await ledger.acquire(serviceKey, request.executionName);
  await ledger.seal(serviceKey, request.executionName);
  for (const q of queued) expect((await ledger.claim(q)).kind).toBe('queued');
  return request;
};

const startedNames = () => sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input.name as string);

describe('reconcile: locks of executions that ended', () => {
  it('releases the lock of a failed execution, records its outcome and starts what was queued', async () => {
    // Prepare: the execution failed in a way that skipped its finish step.
    const svc = 'prod/payments';
    const queued = requestFor(svc, 'CVE-2024-9000', minutes(1));
    const held = await running(svc, [queued]);
    executions({ [held.executionName]: { status: 'FAILED', error: 'States.Runtime', cause: 'boom' } });

    // Act
    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(31),
    );

    // Assess
    expect(summary.errors).toEqual([]);
    expect(summary.actions).toEqual([
      expect.objectContaining({
        serviceKey: svc,
        executionName: held.executionName,
        action: 'released',
        executionStatus: 'FAILED',
        recordedOutcome: 'Failed',
      }),
    ]);
    const next = summary.actions[0]?.next as string;
    expect(startedNames()).toEqual([next]);
    expect(await ledger.getInFlight(svc)).toMatchObject({ executionName: next, status: 'STARTED' });
    const record = await ledger.getOutcome(svc, remediationId(svc, held.executionName));
    expect(record).toMatchObject({ outcome: 'Failed', executionName: held.executionName });
    expect(record?.reason).toContain('States.Runtime: boom');
  });

  it('after a DynamoDB fault that outlived the finish step: the lock is released once DynamoDB is back', async () => {
    // Prepare: GetItem and DeleteItem fail while `down` (the fault the finish step's retries could not outlast).
    const svc = 'prod/cart';
    const held = await running(svc);
    let down = true;
    const faulty = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'fake', secretAccessKey: 'fake' },
      maxAttempts: 1,
    });
    faulty.middlewareStack.add(
      (next, context) => async (args) => {
        if (down && ['GetItemCommand', 'DeleteItemCommand'].includes(context.commandName as string)) {
          const error = new Error('We currently do not have sufficient capacity');
          error.name = 'InternalServerError';
          throw error;
        }
        return next(args);
      },
      { step: 'initialize', name: 'fault' },
    );
    const faultyLedger = new Ledger({
      client: faulty,
      tableName: (ledger as unknown as { tableName: string }).tableName,
      now: () => clock,
    });
    const state: WorkflowState = { ...held, lock: { status: 'acquired', reason: 'held' } };
    const ended = finish(
      {
        outcome: 'Failed',
        state,
        executionName: held.executionName,
        executionArn: arnOf(held.executionName),
        stateMachineArn: STATE_MACHINE,
        startedAt: T0.toISOString(),
        releaseOnly: true,
      },
      {
        ledger: faultyLedger,
        sfn: new SFNClient({}),
        ssm: new SSMClient({}),
        events: new EventBridgeClient({}),
        sns: new SNSClient({}),
        topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
      },
    );
    await expect(ended).rejects.toThrow(/InternalServerError/);
    executions({
      [held.executionName]: { status: 'FAILED', error: 'Failed', cause: 'with the lock still held' },
    });
    const whileDown = await reconcile(
      { ledger: faultyLedger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(31),
    );

    // Act: DynamoDB recovers; the next round.
    down = false;
    const recovered = await reconcile(
      { ledger: faultyLedger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(36),
    );

    // Assess: reported while down, released after.
    expect(whileDown.errors.length).toBeGreaterThan(0);
    expect(recovered.actions.map((a) => a.action)).toEqual(['released']);
    expect(await ledger.getInFlight(svc)).toBeUndefined();
    faulty.destroy();
  });

  it('leaves the lock of a running execution alone', async () => {
    const held = await running('prod/search');
    executions({ [held.executionName]: { status: 'RUNNING' } });

    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(90),
    );

    expect(summary).toMatchObject({ checked: 1, healthy: 1, actions: [], errors: [] });
    expect(await ledger.getInFlight('prod/search')).toMatchObject({ executionName: held.executionName });
  });

  it('releases only the lock it found: a lock taken over meanwhile is left to its new holder', async () => {
    // Prepare: while the reconciler asks Step Functions, the ended execution's own finish releases the
    // lock and a new claim takes the service.
    const svc = 'prod/orders';
    const held = await running(svc);
    const newcomer = requestFor(svc, 'CVE-2024-7777', minutes(40));
    sfn.on(DescribeExecutionCommand).callsFake(async () => {
      await ledger.release(svc, held.executionName);
      await ledger.claim(newcomer);
      return {
        executionArn: arnOf(held.executionName),
        status: 'FAILED',
        startDate: T0,
        stopDate: minutes(30),
      };
    });

    // Act
    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(41),
    );

    // Assess
    expect(summary.actions[0]).toMatchObject({ action: 'released' });
    expect(summary.actions[0]?.next).toBeUndefined();
    expect(await ledger.getInFlight(svc)).toMatchObject({
      executionName: newcomer.executionName,
      status: 'STARTING',
    });
  });

  it('forgets services whose lock is gone', async () => {
    const svc = 'prod/users';
    const held = await running(svc);
    await ledger.release(svc, held.executionName);

    const first = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(5),
    );
    const again = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(10),
    );

    expect(first.checked).toBe(0);
    expect(again.checked).toBe(0);
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(0);
  });
});

describe('reconcile: claims that never started', () => {
  const claimOnly = async (svc: string) => {
    const request = requestFor(svc, `CVE-2024-${++serial}`);
    expect(await ledger.claim(request)).toEqual({ kind: 'claimed' });
    return request;
  };

  it('starts a STARTING claim older than the bound with its stored name and input; a young one is left to its claimer', async () => {
    // Prepare
    const old = await claimOnly('prod/shipping');
    clock = minutes(4);
    const young = await claimOnly('prod/catalog');
    executions({});

    // Act: 6 minutes after the first claim, 2 after the second.
    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(6),
    );

    // Assess
    expect(summary.actions).toEqual([
      expect.objectContaining({
        serviceKey: 'prod/shipping',
        action: 'started',
        executionStatus: 'NOT_FOUND',
      }),
    ]);
    expect(summary.healthy).toBe(1);
    const call = sfn.commandCalls(StartExecutionCommand)[0]?.args[0].input;
    expect(call?.name).toBe(old.executionName);
    expect(JSON.parse(call?.input ?? '{}')).toEqual(old);
    expect(await ledger.getInFlight('prod/shipping')).toMatchObject({ status: 'STARTED' });
    expect(await ledger.getInFlight('prod/catalog')).toMatchObject({
      executionName: young.executionName,
      status: 'STARTING',
    });
  });

  it('marks a claim started when its execution turns out to be running', async () => {
    const claimed = await claimOnly('prod/checkout');
    executions({ [claimed.executionName]: { status: 'RUNNING' } });

    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(10),
    );

    expect(summary.actions.map((a) => a.action)).toEqual(['marked-started']);
    expect(startedNames()).toEqual([]);
    expect(await ledger.getInFlight('prod/checkout')).toMatchObject({ status: 'STARTED' });
  });

  it('releases a claim Step Functions rejects for good, reports its request, and starts the ones behind it', async () => {
    // Prepare: a claim whose input Step Functions refuses; a request queued behind it by a console re-run.
    const svc = 'prod/inventory';
    const rejected = await claimOnly(svc);
    const behind = requestFor(svc, 'CVE-2024-8888', minutes(1));
    expect(await ledger.acquire(svc, behind.executionName, behind)).toBe('superseded');
    executions({});
    sfn
      .on(StartExecutionCommand, { name: rejected.executionName })
      .rejects(new InvalidExecutionInput({ message: 'input too large', $metadata: {} }));

    // Act
    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(10),
    );

    // Assess
    const [action] = summary.actions;
    expect(action).toMatchObject({ action: 'abandoned', request: rejected });
    expect(action?.next).toBeDefined();
    expect(await ledger.getInFlight(svc)).toMatchObject({ executionName: action?.next, status: 'STARTED' });
  });

  it('keeps a claim whose start fails for a reason outside the request, and says why', async () => {
    const claimed = await claimOnly('prod/billing');
    executions({});
    const denied = new Error('not authorized to perform: states:StartExecution');
    denied.name = 'AccessDeniedException';
    sfn.on(StartExecutionCommand).rejects(denied);

    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(10),
    );

    expect(summary.actions).toEqual([]);
    expect(summary.errors).toEqual([
      { serviceKey: 'prod/billing', error: expect.stringContaining('AccessDenied') },
    ]);
    expect(await ledger.getInFlight('prod/billing')).toMatchObject({
      executionName: claimed.executionName,
      status: 'STARTING',
    });
  });
});

describe('reconcile: outcomes recorded but not announced', () => {
  const record = (svc: string, name: string, finishedAt: Date): OutcomeRecord => ({
    serviceKey: svc,
    remediationId: remediationId(svc, name),
    executionName: name,
    outcome: 'Patched',
    reason: 'patched',
    images: [],
    cvesClosed: ['CVE-2024-1'],
    startedAt: T0.toISOString(),
    finishedAt: finishedAt.toISOString(),
  });

  it('lists the ones older than the grace period, re-sends them through announce, and then no more', async () => {
    // Prepare: one never announced (old), one announced, one still being finished (recent).
    const lost = record('prod/a', 'lost', minutes(0));
    const announced = record('prod/a', 'announced', minutes(0));
    const recent = record('prod/b', 'recent', minutes(25));
    for (const r of [lost, announced, recent]) await ledger.recordOutcome(r);
    await ledger.markAnnounced(announced.serviceKey, announced.remediationId);
    const sent: string[] = [];

    // Act
    const listed = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(30),
    );
    const resent = await reconcile(
      {
        ledger,
        sfn: new SFNClient({}),
        stateMachineArn: STATE_MACHINE,
        announce: async (r) => {
          sent.push(r.executionName);
        },
      },
      minutes(30),
    );
    const after = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(30),
    );

    // Assess
    expect(listed.unannounced).toEqual([lost]);
    expect(resent.reannounced).toEqual([lost.remediationId]);
    expect(sent).toEqual(['lost']);
    expect(after.unannounced).toEqual([]);
    expect(await ledger.history('prod/a')).toEqual(expect.arrayContaining([lost, announced]));
  });

  it('the finish step marks what it announced', async () => {
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
    sns.on(PublishCommand).resolves({ MessageId: 'm' });
    const held = await running('prod/z');
    await finish(
      {
        outcome: 'Failed',
        state: { ...held, lock: { status: 'acquired', reason: 'held' } },
        executionName: held.executionName,
        executionArn: arnOf(held.executionName),
        stateMachineArn: STATE_MACHINE,
        startedAt: T0.toISOString(),
      },
      {
        ledger,
        sfn: new SFNClient({}),
        ssm: new SSMClient({}),
        events: new EventBridgeClient({}),
        sns: new SNSClient({}),
        topicArn: 'arn:aws:sns:eu-central-1:123456789012:autopatch',
        now: () => minutes(1),
      },
    );

    const summary = await reconcile(
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
      minutes(60),
    );

    expect(summary.unannounced).toEqual([]);
  });
});
