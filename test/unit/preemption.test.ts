import { SendTaskSuccessCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import type { AffectedImage, RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger } from '../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { executePlan, type TriagePlan } from '../../lambdas/triage/triage';
import { takeUrgentFindings, type WindowResult, waitForWindow } from '../../lambdas/workflow/lock';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { digest, image, remediationRequest } from '../support/workflow-harness';

/**
 * Pre-emption: an urgent finding (a CRITICAL with a known exploit) does not wait behind a run that
 * only waits for its maintenance window. Against dynalite: the ledger's takeUrgent, the window step,
 * and triage answering the window wait of the run it queues behind.
 */

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const NOW = new Date('2024-09-04T18:00:00.000Z');
const WINDOW = '2024-09-07T02:00:00.000Z';
const sfn = mockClient(SFNClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let serial = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => NOW });
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(() => sfn.reset());

const requestFor = (
  serviceKey: string,
  images: AffectedImage[],
  decision: RemediationRequest['decision'],
  at: number,
): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  const name = executionName(service, images, new Date(NOW.getTime() + at * 1000));
  return {
    ...base,
    service,
    images,
    decision,
    executionName: name,
    remediationId: remediationId(serviceKey, name),
  };
};
const inWindow = { action: 'remediate' as const, reason: 'HIGH: next window', notBefore: WINDOW };
const urgentNow = { action: 'remediate' as const, reason: 'CRITICAL with a known exploit: now' };
const high = (cve: string) => image({ imageDigest: digest('a1'), cves: [cve], severity: 'HIGH' });
const critical = (cve: string) => image({ imageDigest: digest('a1'), cves: [cve], severity: 'CRITICAL' });

/** A run in flight that sealed its findings and waits for its window. */
const waitingRun = async () => {
  const serviceKey = `prod/window-${++serial}`;
  const run = requestFor(serviceKey, [high('CVE-2024-0001')], inWindow, 0);
  await ledger.claim(run);
  await ledger.markStarted(serviceKey, run.executionName, `arn:exec:${run.executionName}`);
  await ledger.acquire(serviceKey, run.executionName);
  await ledger.seal(serviceKey, run.executionName);
  return { serviceKey, run };
};

describe('takeUrgent', () => {
  it('folds the urgent request and the queued ones that need no approval into the run; approvals stay queued', async () => {
    const { serviceKey, run } = await waitingRun();
    const urgent = requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1);
    const later = requestFor(serviceKey, [high('CVE-2024-0002')], inWindow, 2);
    const approval = requestFor(
      serviceKey,
      [high('CVE-2024-0003')],
      { action: 'approve', reason: 'ask first' },
      3,
    );
    for (const r of [later, urgent, approval]) expect((await ledger.claim(r)).kind).toBe('queued');
    expect((await ledger.getInFlight(serviceKey))?.queuedUrgent).toBe(true);

    const taken = await ledger.takeUrgent(serviceKey, run.executionName);

    expect(taken?.took).toBe(2);
    const cves = new Set(taken?.request.images.flatMap((i) => i.cves));
    expect([...cves].sort()).toEqual(['CVE-2024-0001', 'CVE-2024-0002', 'CVE-2024-6387']);
    // It deploys now: the window no longer holds it.
    expect(taken?.request.decision.notBefore).toBeUndefined();
    const inFlight = await ledger.getInFlight(serviceKey);
    expect(inFlight?.executionName).toBe(run.executionName);
    expect(inFlight?.queued).toBe(1);
    expect(inFlight?.queuedUrgent).toBe(false);
    // The approval runs next, on release.
    const { next } = await ledger.release(serviceKey, run.executionName);
    expect(next?.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-0003']);
  });

  it('takes nothing when nothing urgent is queued, and refuses a run that does not hold the lock', async () => {
    const { serviceKey, run } = await waitingRun();
    await ledger.claim(requestFor(serviceKey, [high('CVE-2024-0002')], inWindow, 1));
    await expect(ledger.takeUrgent(serviceKey, run.executionName)).resolves.toBeUndefined();
    await expect(ledger.takeUrgent(serviceKey, 'someone-else')).rejects.toMatchObject({
      name: 'LockNotHeldError',
    });
  });
});

describe('the window step', () => {
  const resumes: Array<{ token: string; result: WindowResult }> = [];
  const resume = async (token: string, result: WindowResult) => {
    resumes.push({ token, result });
    return true;
  };
  beforeEach(() => resumes.splice(0));

  it('stores its token and waits while the window is ahead and nothing urgent is queued', async () => {
    const { serviceKey, run } = await waitingRun();
    const out = await waitForWindow(
      { ledger, resume },
      {
        step: 'wait-for-window',
        serviceKey,
        executionName: run.executionName,
        taskToken: 't1',
        notBefore: WINDOW,
      },
      NOW,
    );
    expect(out.resumed).toBe(false);
    expect(resumes).toEqual([]);
    expect(await ledger.getTaskToken(run.executionName, 'window')).toEqual({ token: 't1', serviceKey });
  });

  it('goes on at once when the window has started, or when an urgent finding is already queued', async () => {
    const { serviceKey, run } = await waitingRun();
    const input = {
      step: 'wait-for-window' as const,
      serviceKey,
      executionName: run.executionName,
      taskToken: 't2',
    };
    await waitForWindow({ ledger, resume }, { ...input, notBefore: '2024-09-04T17:00:00Z' }, NOW);
    await ledger.claim(requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1));
    await waitForWindow({ ledger, resume }, { ...input, notBefore: WINDOW }, NOW);
    expect(resumes.map((r) => r.result.preempted)).toEqual([false, true]);
  });

  it('takeUrgentFindings returns the state with the urgent images and the decision that no longer waits', async () => {
    const { serviceKey, run } = await waitingRun();
    await ledger.claim(requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1));
    const state = await takeUrgentFindings(ledger, {
      step: 'take-urgent',
      serviceKey,
      executionName: run.executionName,
      state: run,
    });
    expect(state.images.flatMap((i) => i.cves).sort()).toEqual(['CVE-2024-0001', 'CVE-2024-6387']);
    expect(state.decision.notBefore).toBeUndefined();
    expect(state.preemption.took).toBe(1);
  });
});

describe('triage', () => {
  const planOf = (request: RemediationRequest): TriagePlan => ({
    findings: [],
    remediations: [{ request, itemIds: ['m1'] }],
    seenKeys: [],
    failedIds: [],
  });

  it('an urgent finding queued behind a run waiting for its window ends that wait (preempted)', async () => {
    const { serviceKey, run } = await waitingRun();
    await ledger.putTaskToken(run.executionName, 'window', 'window-token', serviceKey);
    sfn.on(SendTaskSuccessCommand).resolves({});
    sfn.on(StartExecutionCommand).rejects(new Error('nothing should start'));

    const out = await executePlan(planOf(requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1)), {
      ledger,
      sfn: new SFNClient({}),
      stateMachineArn: STATE_MACHINE,
    });

    expect(out.failedIds).toEqual([]);
    const sent = sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.taskToken).toBe('window-token');
    expect(JSON.parse(sent[0]?.output ?? '{}')).toMatchObject({ preempted: true });
    // A token is answered once: it is forgotten, so nothing asks again.
    expect(await ledger.getTaskToken(run.executionName, 'window')).toBeUndefined();
  });

  it('a finding that is not urgent queues behind the window and ends nothing', async () => {
    const { serviceKey, run } = await waitingRun();
    await ledger.putTaskToken(run.executionName, 'window', 'window-token', serviceKey);
    await executePlan(planOf(requestFor(serviceKey, [high('CVE-2024-0009')], inWindow, 1)), {
      ledger,
      sfn: new SFNClient({}),
      stateMachineArn: STATE_MACHINE,
    });
    expect(sfn.commandCalls(SendTaskSuccessCommand)).toHaveLength(0);
  });
});

describe('pre-emption of an approval wait', () => {
  const asksApproval = { action: 'approve' as const, reason: 'HIGH: ask first' };

  it('release with requeueOwn starts the urgent request first and queues the run own request behind it', async () => {
    const serviceKey = `prod/approval-${++serial}`;
    const run = requestFor(serviceKey, [high('CVE-2024-0001')], asksApproval, 0);
    await ledger.claim(run);
    await ledger.markStarted(serviceKey, run.executionName, `arn:exec:${run.executionName}`);
    await ledger.acquire(serviceKey, run.executionName);
    await ledger.seal(serviceKey, run.executionName);
    await ledger.claim(requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1));
    // The run needs approval itself: it does not take the urgent request into its own.
    await expect(ledger.takeUrgent(serviceKey, run.executionName)).resolves.toBeUndefined();

    const { next } = await ledger.release(serviceKey, run.executionName, { requeueOwn: true });

    expect(next?.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-6387']);
    expect(next?.decision.action).toBe('remediate');
    const inFlight = await ledger.getInFlight(serviceKey);
    expect(inFlight?.queued).toBe(1);
    const { next: after } = await ledger.release(serviceKey, next?.executionName as string);
    expect(after?.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-0001']);
    expect(after?.decision.action).toBe('approve');
  });

  it('triage answers the approval wait when the run has no window wait', async () => {
    const serviceKey = `prod/approval-${++serial}`;
    const run = requestFor(serviceKey, [high('CVE-2024-0001')], asksApproval, 0);
    await ledger.claim(run);
    await ledger.markStarted(serviceKey, run.executionName, `arn:exec:${run.executionName}`);
    await ledger.acquire(serviceKey, run.executionName);
    await ledger.seal(serviceKey, run.executionName);
    await ledger.putTaskToken(run.executionName, 'approval', 'approval-token', serviceKey);
    sfn.on(SendTaskSuccessCommand).resolves({});

    await executePlan(
      {
        findings: [],
        remediations: [
          { request: requestFor(serviceKey, [critical('CVE-2024-6387')], urgentNow, 1), itemIds: ['m1'] },
        ],
        seenKeys: [],
        failedIds: [],
      },
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
    );

    const sent = sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input);
    expect(sent.map((s) => s.taskToken)).toEqual(['approval-token']);
    expect(JSON.parse(sent[0]?.output ?? '{}')).toMatchObject({ approved: false, preempted: true });
  });
});
