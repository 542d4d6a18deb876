import {
  ExecutionAlreadyExists,
  SFNClient,
  StartExecutionCommand,
  type StartExecutionCommandInput,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { coveredFindings, type RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger } from '../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { executePlan, type TriagePlan } from '../../lambdas/triage/triage';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { digest, image, remediationRequest } from '../support/workflow-harness';

/**
 * Many triage invocations racing for one service's lock, against a real DynamoDB-compatible server:
 * every claim must settle inside its invocation (no SQS redelivery) and exactly one execution starts.
 */

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const sfn = mockClient(SFNClient);
let dynamo: LocalDynamo;
let serial = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(() => sfn.reset());

/** Step Functions as far as names go: a name starts once; again, it is ExecutionAlreadyExists. */
const stepFunctions = () => {
  const started: string[] = [];
  sfn.on(StartExecutionCommand).callsFake(async (input: StartExecutionCommandInput) => {
    const name = input.name as string;
    if (started.includes(name)) throw new ExecutionAlreadyExists({ message: 'exists', $metadata: {} });
    started.push(name);
    return {
      executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${name}`,
      startDate: new Date(),
    };
  });
  return started;
};

const requestFor = (serviceKey: string, i: number): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  const images = [
    image({
      imageDigest: digest('a1'),
      cves: [`CVE-2024-${String(10_000 + i)}`],
      findingArns: [`arn:aws:inspector2:eu-central-1:123456789012:finding/f${i}`],
    }),
  ];
  const name = executionName(service, images, new Date(Date.parse('2024-09-04T17:00:00Z') + i * 1000));
  return { ...base, service, images, executionName: name, remediationId: remediationId(service.key, name) };
};

/** One triage invocation per finding, the way 100 SQS batches of one message each would arrive. */
const planOf = (request: RemediationRequest, messageId: string): TriagePlan => ({
  findings: [],
  remediations: [{ request, itemIds: [messageId] }],
  seenKeys: [
    {
      findingArn: request.images[0]?.findingArns[0] as string,
      updatedAt: 'u1',
      updatedAtIso: '2024-09-04T16:00:00.000Z',
      itemIds: [messageId],
    },
  ],
  failedIds: [],
});

const concurrently = async (ledger: Ledger, requests: readonly RemediationRequest[]) => {
  // Receive counts of each message: a failed item goes back to the queue and is received again.
  const receives = new Map<string, number>();
  const messages = requests.map((r, i) => ({ request: r, id: `m${i}` }));
  let pending = messages;
  for (let round = 0; pending.length > 0 && round < 5; round++) {
    for (const m of pending) receives.set(m.id, (receives.get(m.id) ?? 0) + 1);
    const outcomes = await Promise.all(
      pending.map((m) =>
        executePlan(planOf(m.request, m.id), {
          ledger,
          sfn: new SFNClient({}),
          stateMachineArn: STATE_MACHINE,
          remainingTimeMs: () => 120_000,
        }),
      ),
    );
    const failed = new Set(outcomes.flatMap((o) => o.failedIds));
    pending = pending.filter((m) => failed.has(m.id));
  }
  return { maxReceives: Math.max(...receives.values()), receives };
};

describe('100 concurrent distinct findings for one service', () => {
  it('start exactly one execution that carries all of them, and no message is received twice', async () => {
    // Prepare
    const serviceKey = `prod/burst-${++serial}`;
    const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
    const requests = Array.from({ length: 100 }, (_, i) => requestFor(serviceKey, i));
    const started = stepFunctions();

    // Act
    const { maxReceives } = await concurrently(ledger, requests);

    // Assess: one execution; all 100 findings merged into it (it has not sealed yet).
    expect(started).toHaveLength(1);
    expect(maxReceives).toBe(1);
    const inFlight = await ledger.getInFlight(serviceKey);
    expect(inFlight?.executionName).toBe(started[0]);
    const covered = new Set(coveredFindings(inFlight?.request.images ?? []));
    for (const r of requests)
      for (const pair of coveredFindings(r.images)) expect(covered.has(pair)).toBe(true);
    expect(inFlight?.queued).toBe(0);
  }, 60_000);

  it('queue behind a sealed run without redelivery, and start as one next run on release', async () => {
    // Prepare: a run in flight that took its findings already.
    const serviceKey = `prod/burst-${++serial}`;
    const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
    const first = requestFor(serviceKey, 1_000);
    expect(await ledger.claim(first)).toEqual({ kind: 'claimed' });
    await ledger.markStarted(serviceKey, first.executionName, 'arn:exec:first');
    await ledger.acquire(serviceKey, first.executionName);
    await ledger.seal(serviceKey, first.executionName);
    const requests = Array.from({ length: 100 }, (_, i) => requestFor(serviceKey, i));
    const started = stepFunctions();

    // Act
    const { maxReceives } = await concurrently(ledger, requests);
    const { next } = await ledger.release(serviceKey, first.executionName);

    // Assess
    expect(started).toHaveLength(0);
    expect(maxReceives).toBe(1);
    const covered = new Set(coveredFindings(next?.images ?? []));
    expect(covered.size).toBe(100);
  }, 60_000);
});
