import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { type ReleaseHoldIo, runReleaseHold, TABLE_ENV } from '../../bin/release-hold';
import type { AffectedImage, Outcome, RemediationRequest } from '../../lambdas/shared/contracts';
import { type Hold, Ledger, withoutHeld } from '../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { executePlan } from '../../lambdas/triage/triage';
import { finish, holdRequests } from '../../lambdas/workflow/finish';
import type { WorkflowState } from '../../lambdas/workflow/state';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { digest, image, remediationRequest } from '../support/workflow-harness';

const STATE_MACHINE = 'arn:aws:states:eu-central-1:123456789012:stateMachine:autopatch';
const T0 = new Date('2024-09-04T17:00:00.000Z');
const OLD = digest('a1');
const NEW = digest('b2');
const sfn = mockClient(SFNClient);
const events = mockClient(EventBridgeClient);
const sns = mockClient(SNSClient);
const ssm = mockClient(SSMClient);
let dynamo: LocalDynamo;
let ledger: Ledger;
let serial = 0;
let at = T0.getTime();

beforeAll(async () => {
  dynamo = await startDynalite();
  ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => T0 });
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(() => {
  sfn.on(StartExecutionCommand).callsFake(async (input: { name: string }) => ({
    executionArn: `arn:aws:states:eu-central-1:123456789012:execution:autopatch:${input.name}`,
    startDate: T0,
  }));
  events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: '1' }] });
  sns.on(PublishCommand).resolves({ MessageId: 'm' });
  ssm.on(PutParameterCommand).resolves({ Version: 1 });
});
afterEach(() => {
  for (const m of [sfn, events, sns, ssm]) m.reset();
});

const svcKey = () => `prod/held-${++serial}`;
/** A request for `images` with a fresh name (each finding update is a new request). */
const requestFor = (serviceKey: string, images: AffectedImage[]): RemediationRequest => {
  const base = remediationRequest();
  const service = { ...base.service, key: serviceKey, serviceName: serviceKey.split('/')[1] as string };
  at += 1000;
  const name = executionName(service, images, new Date(at));
  return { ...base, service, images, executionName: name, remediationId: remediationId(serviceKey, name) };
};
const img = (d: string, cves: string[], fixedInVersions?: Record<string, string>) =>
  image({ imageDigest: d, cves, ...(fixedInVersions ? { fixedInVersions } : {}) });

const hold = (cve: string, digests: string[], fixedInVersion?: string): Hold => ({
  serviceKey: 'prod/x',
  cve,
  digests,
  ...(fixedInVersion ? { fixedInVersion } : {}),
  outcome: 'RolledBack',
  reason: 'alarm',
  executionName: 'e',
  heldAt: T0.toISOString(),
});

/** The finish step of a run on `images` that ended with `outcome`. */
const finishRun = async (serviceKey: string, images: AffectedImage[], outcome: Outcome) => {
  const request = requestFor(serviceKey, images);
  await ledger.claim(request);
  await ledger.markStarted(serviceKey, request.executionName, 'arn:exec');
  await ledger.acquire(serviceKey, request.executionName);
  await ledger.seal(serviceKey, request.executionName);
  const state: WorkflowState = {
    ...request,
    lock: { status: 'acquired', reason: 'held' },
    ...(outcome === 'Patched'
      ? {
          patched: images.map((i) => ({
            repository: i.repository,
            registry: i.registry,
            repositoryUri: i.repositoryUri,
            containers: i.containers,
            cves: i.cves,
            severity: i.severity,
            oldDigest: i.imageDigest,
            newDigest: NEW,
            targetTag: 't',
            cvesClosed: i.cves,
          })),
          taskDefinition: { previousArn: 'arn:td:1', patchedArn: 'arn:td:2' },
        }
      : { error: { Error: 'States.TaskFailed', Cause: 'it failed' } }),
  };
  return finish(
    {
      outcome,
      state,
      executionName: request.executionName,
      executionArn: `arn:aws:states:eu-central-1:123456789012:execution:autopatch:${request.executionName}`,
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
      now: () => T0,
    },
  );
};

describe('withoutHeld', () => {
  it('takes out held pairs on the held digests only, and lets a newer fixed version through', () => {
    const request = requestFor('prod/x', [
      img(OLD, ['CVE-1', 'CVE-2', 'CVE-3'], { 'CVE-3': '1.2.4' }),
      img(NEW, ['CVE-1']),
    ]);
    const { request: left, held } = withoutHeld(request, [
      hold('CVE-1', [OLD]),
      hold('CVE-3', [OLD], '1.2.3'),
    ]);
    expect(held.map((h) => [h.digest, h.cve])).toEqual([[OLD, 'CVE-1']]);
    expect(left?.images.map((i) => [i.imageDigest, i.cves])).toEqual([
      [OLD, ['CVE-2', 'CVE-3']],
      [NEW, ['CVE-1']],
    ]);
    expect(left?.executionName).toBe(request.executionName);
    expect(left?.findingsCount).toBe(3);
  });

  it('leaves nothing when every pair is held, and the request untouched when none is', () => {
    const request = requestFor('prod/x', [img(OLD, ['CVE-1'])]);
    expect(withoutHeld(request, [hold('CVE-1', [OLD])]).request).toBeUndefined();
    expect(withoutHeld(request, [hold('CVE-9', [OLD])]).request).toBe(request);
  });
});

describe('churn holds', () => {
  it.each(['RolledBack', 'PatchIneffective', 'BuildFailed'] as const)(
    'after %s, updates of the same findings are held with the reason, and a new digest is not',
    async (outcome) => {
      // Prepare
      const svc = svcKey();
      await finishRun(svc, [img(OLD, ['CVE-2024-1'])], outcome);

      // Act: Inspector updates the finding (a new delivery, same digest and CVE), then the image changes.
      const update = await ledger.claim(requestFor(svc, [img(OLD, ['CVE-2024-1'])]));
      const newImage = await ledger.claim(requestFor(svc, [img(NEW, ['CVE-2024-1'])]));

      // Assess
      expect(update).toMatchObject({ kind: 'held', holds: [{ cve: 'CVE-2024-1', outcome, digests: [OLD] }] });
      expect((update as { holds: readonly Hold[] }).holds[0]?.reason.length).toBeGreaterThan(10);
      expect(newImage).toEqual({ kind: 'claimed' });
    },
  );

  it('does not hold after other outcomes', async () => {
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1'])], 'Failed');
    expect(await ledger.holds(svc)).toEqual([]);
  });

  it('claims what is not held, and starts exactly that', async () => {
    // Prepare
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1'])], 'RolledBack');
    const mixed = requestFor(svc, [img(OLD, ['CVE-2024-1', 'CVE-2024-2'])]);

    // Act
    const out = await executePlan(
      {
        findings: [],
        remediations: [{ request: mixed, itemIds: ['m1'] }],
        seenKeys: [
          { findingArn: 'f', updatedAt: 'u', updatedAtIso: '2024-09-04T16:00:00.000Z', itemIds: ['m1'] },
        ],
        failedIds: [],
      },
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
    );

    // Assess
    expect(out.failedIds).toEqual([]);
    const input = JSON.parse(sfn.commandCalls(StartExecutionCommand)[0]?.args[0].input.input ?? '{}');
    expect(input.images[0].cves).toEqual(['CVE-2024-2']);
    expect((await ledger.getInFlight(svc))?.request.images[0]?.cves).toEqual(['CVE-2024-2']);
  });

  it('reports a wholly held request as settled: nothing started, nothing retried', async () => {
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1'])], 'PatchIneffective');

    const out = await executePlan(
      {
        findings: [],
        remediations: [{ request: requestFor(svc, [img(OLD, ['CVE-2024-1'])]), itemIds: ['m1'] }],
        seenKeys: [
          { findingArn: 'f', updatedAt: 'u', updatedAtIso: '2024-09-04T16:00:00.000Z', itemIds: ['m1'] },
        ],
        failedIds: [],
      },
      { ledger, sfn: new SFNClient({}), stateMachineArn: STATE_MACHINE },
    );

    expect(out).toMatchObject({ failedIds: [], results: [{ kind: 'held', cves: ['CVE-2024-1'] }] });
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
  });

  it('does not start a queued follow-up for findings the run just failed to fix', async () => {
    // Prepare: a request for the same finding queued behind the run that then rolls back.
    const svc = svcKey();
    const first = requestFor(svc, [img(OLD, ['CVE-2024-1'])]);
    await ledger.claim(first);
    await ledger.markStarted(svc, first.executionName, 'arn:exec');
    await ledger.acquire(svc, first.executionName);
    await ledger.seal(svc, first.executionName);
    await ledger.claim(requestFor(svc, [img(OLD, ['CVE-2024-1', 'CVE-2024-5'])]));
    await ledger.hold(svc, [{ cve: 'CVE-2024-1', digests: [OLD] }], {
      outcome: 'RolledBack',
      reason: 'alarm',
      executionName: first.executionName,
    });

    // Act
    const { next } = await ledger.release(svc, first.executionName);

    // Assess
    expect(next?.images.map((i) => i.cves)).toEqual([['CVE-2024-5']]);
  });

  it('a Patched run lifts the holds of the CVEs it closed', async () => {
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1', 'CVE-2024-2'])], 'BuildFailed');
    await finishRun(svc, [img(NEW, ['CVE-2024-1'])], 'Patched');
    expect((await ledger.holds(svc)).map((h) => h.cve)).toEqual(['CVE-2024-2']);
  });

  it('a second failure on another digest adds it to the hold', async () => {
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1'])], 'RolledBack');
    await finishRun(svc, [img(NEW, ['CVE-2024-1'])], 'RolledBack');
    expect((await ledger.holds(svc))[0]?.digests).toEqual([OLD, NEW].sort());
  });

  it('holdRequests: one per CVE, with its digests and the fixed version when there is one', () => {
    expect(
      holdRequests({
        images: [img(OLD, ['CVE-1', 'CVE-2'], { 'CVE-1': '2.0' }), img(NEW, ['CVE-1'], { 'CVE-1': '2.0' })],
      }),
    ).toEqual([
      { cve: 'CVE-1', digests: [OLD, NEW].sort(), fixedInVersion: '2.0' },
      { cve: 'CVE-2', digests: [OLD] },
    ]);
  });
});

describe('npm run release-hold', () => {
  const run = async (argv: string[], env: NodeJS.ProcessEnv = { [TABLE_ENV]: dynamo.tableName }) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: ReleaseHoldIo = {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      env,
      dynamodb: () => dynamo.client,
    };
    const status = await runReleaseHold(argv, io);
    return { status, out: out.join('\n'), err: err.join('\n') };
  };

  it('lists, then releases one CVE, then the rest; a released CVE is remediated again', async () => {
    // Prepare
    const svc = svcKey();
    await finishRun(svc, [img(OLD, ['CVE-2024-1', 'CVE-2024-2'])], 'RolledBack');

    // Act
    const listed = await run([svc, '--list']);
    const one = await run([svc, '--cve', 'CVE-2024-1']);
    const claim = await ledger.claim(requestFor(svc, [img(OLD, ['CVE-2024-1'])]));
    const rest = await run([svc, '--table', dynamo.tableName], {});
    const none = await run([svc]);

    // Assess
    expect(listed).toMatchObject({ status: 0 });
    expect(listed.out).toContain('CVE-2024-1: RolledBack');
    expect(listed.out).toContain('CVE-2024-2: RolledBack');
    expect(one.status).toBe(0);
    expect(one.out).toContain('Released 1 hold(s)');
    expect(claim.kind).toBe('claimed');
    expect(rest.out).toContain('CVE-2024-2');
    expect(none.out).toContain('nothing to release');
    expect(await ledger.holds(svc, { fresh: true })).toEqual([]);
  });

  it('rejects bad usage with exit status 2', async () => {
    expect((await run([])).status).toBe(2);
    expect((await run(['not-a-service'])).err).toContain('is not <cluster>/<service>');
    expect((await run(['prod/a'], {})).err).toContain(TABLE_ENV);
    expect((await run(['prod/a', '--bogus'])).status).toBe(2);
    expect((await run(['--help'])).status).toBe(0);
  });
});
