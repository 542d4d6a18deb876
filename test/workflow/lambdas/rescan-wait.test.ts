import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DescribeImagesCommand, ECRClient } from '@aws-sdk/client-ecr';
import { Inspector2Client, ListCoverageCommand, ListFindingsCommand } from '@aws-sdk/client-inspector2';
import { SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { RescanRegistry } from '../../../lambdas/workflow/rescan-registry';
import {
  inspectorScanEventSchema,
  RESCAN_SWEEP_LIMIT,
  type RescanVerdict,
  type RescanWaitDeps,
  type RescanWaitInput,
  resumeRescanWaits,
  startRescanWait,
  sweepRescans,
} from '../../../lambdas/workflow/verify-rescan';
import { type LocalDynamo, startDynalite } from '../../../local/dynalite';
import { digest, image } from '../../support/workflow-harness';

const inspector = mockClient(Inspector2Client);
const ecr = mockClient(ECRClient);
const sfn = mockClient(SFNClient);
const NEW = digest('b2');
const OLD = image().imageDigest;
const PUSHED = new Date('2024-09-04T17:50:00.000Z');
const at = (seconds: number) => new Date(PUSHED.getTime() + seconds * 1000);
const RESOURCE = `arn:aws:ecr:eu-central-1:123456789012:repository/payments/api/${NEW}`;

let dynamo: LocalDynamo;
let registry: RescanRegistry;
let clock: Date;
let tables = 0;

const deps = (): RescanWaitDeps => ({
  inspector: new Inspector2Client({}),
  ecr: new ECRClient({}),
  sfn: new SFNClient({}),
  registry,
  now: () => clock,
});

const input = (overrides: Partial<RescanWaitInput> = {}): RescanWaitInput => ({
  taskToken: 'token-1',
  executionName: 'payments-api-CVE-2024-6387-a1a1a1a1-1a2b3c-20240904T165538Z',
  image: image(),
  targetTag: 'autopatch-a1a1a1a1a1a1-20240904T165538Z',
  build: {
    Id: 'p:1',
    BuildStatus: 'SUCCEEDED',
    Phases: [{ PhaseType: 'BUILD', PhaseStatus: 'SUCCEEDED' }],
    ExportedEnvironmentVariables: [{ Name: 'IMAGE_DIGEST', Value: NEW }],
    Logs: { DeepLink: 'https://logs', GroupName: 'g' },
  },
  rescanTimeoutSeconds: 3600,
  ...overrides,
});

/** Inspector's coverage of the rebuilt digest: scanned (ACTIVE/SUCCESSFUL), pending, or not listed yet. */
const coverage = (state: 'scanned' | 'pending' | 'absent') =>
  inspector.on(ListCoverageCommand).resolves({
    coveredResources:
      state === 'absent'
        ? []
        : [
            {
              resourceId: RESOURCE,
              resourceType: 'AWS_ECR_CONTAINER_IMAGE',
              accountId: '123456789012',
              scanType: 'PACKAGE',
              scanStatus:
                state === 'scanned'
                  ? { statusCode: 'ACTIVE', reason: 'SUCCESSFUL' }
                  : { statusCode: 'ACTIVE', reason: 'PENDING_INITIAL_SCAN' },
            },
          ],
  });

/** The verdicts sent with SendTaskSuccess, by token. */
const answers = (): Array<[string | undefined, RescanVerdict]> =>
  sfn
    .commandCalls(SendTaskSuccessCommand)
    .map((c) => [c.args[0].input.taskToken, JSON.parse(c.args[0].input.output ?? 'null') as RescanVerdict]);

/** The documented Inspector2 Scan event, about the rebuilt digest of payments/api. */
const scanEvent = (about = NEW) => {
  const fixture = JSON.parse(
    readFileSync(
      path.join(__dirname, '..', '..', 'fixtures', 'events', 'scan-initial-complete.json'),
      'utf8',
    ),
  );
  return inspectorScanEventSchema.parse({
    ...fixture,
    time: at(240)
      .toISOString()
      .replace(/\.\d+Z$/, 'Z'),
    detail: {
      ...fixture.detail,
      'repository-name': `arn:aws:ecr:eu-central-1:${image().registry}:repository/payments/api`,
      'image-digest': about,
      'finding-severity-counts': { TOTAL: 0 },
    },
  });
};

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
beforeEach(async () => {
  // A table per test: the sweep lists every wait of the table.
  const tableName = `rescans-${++tables}`;
  await dynamo.createTable(tableName);
  clock = at(60);
  registry = new RescanRegistry({ client: dynamo.client, tableName, now: () => clock });
  ecr.on(DescribeImagesCommand).resolves({ imageDetails: [{ imagePushedAt: PUSHED }] });
  inspector.on(ListFindingsCommand).resolves({ findings: [] });
  sfn.on(SendTaskSuccessCommand).resolves({});
});
afterEach(() => {
  for (const m of [inspector, ecr, sfn]) m.reset();
});

describe('startRescanWait ("Verify the patched image by rescan", invoked with a task token)', () => {
  it('answers at once when Inspector already scanned the digest, and keeps no wait', async () => {
    coverage('scanned');

    const out = await startRescanWait(input(), deps());

    expect(out).toEqual({ decided: true, verdict: 'verified' });
    expect(answers()).toEqual([
      [
        'token-1',
        { verdict: 'verified', image: expect.objectContaining({ oldDigest: OLD, newDigest: NEW }) },
      ],
    ]);
    expect(await registry.list()).toEqual([]);
  });

  it('registers the wait (deadline = push + rescan timeout, the build reduced) and answers nothing while Inspector has not scanned', async () => {
    coverage('pending');

    const out = await startRescanWait(input(), deps());

    expect(out).toEqual(expect.objectContaining({ decided: false, verdict: 'pending' }));
    expect(answers()).toEqual([]);
    expect(await registry.waitsFor(NEW)).toEqual([
      expect.objectContaining({
        taskToken: 'token-1',
        digest: NEW,
        repository: 'payments/api',
        pushedAt: PUSHED.toISOString(),
        deadline: at(3600).toISOString(),
        input: expect.objectContaining({
          pushedAt: PUSHED.toISOString(),
          build: {
            Id: 'p:1',
            Logs: { DeepLink: 'https://logs' },
            ExportedEnvironmentVariables: [{ Name: 'IMAGE_DIGEST', Value: NEW }],
          },
        }),
      }),
    ]);
  });

  it('answers PatchIneffectiveError without asking Inspector when the rebuild produced the same image', async () => {
    const same = input({
      build: { Id: 'p:1', ExportedEnvironmentVariables: [{ Name: 'IMAGE_DIGEST', Value: OLD }] },
    });

    await startRescanWait(same, deps());

    expect(answers()).toEqual([
      [
        'token-1',
        { verdict: 'failed', error: 'PatchIneffectiveError', cause: expect.stringMatching(/same image/) },
      ],
    ]);
    expect(inspector.calls()).toHaveLength(0);
    expect(await registry.list()).toEqual([]);
  });

  it('answers BuildOutputError when the build exported no digest', async () => {
    await startRescanWait(input({ build: { Id: 'p:1' } }), deps());

    expect(answers()).toEqual([
      [
        'token-1',
        { verdict: 'failed', error: 'BuildOutputError', cause: expect.stringMatching(/IMAGE_DIGEST/) },
      ],
    ]);
  });

  it('keeps the wait for the sweep when the first look fails in a way worth retrying', async () => {
    inspector
      .on(ListCoverageCommand)
      .rejects(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }));

    const out = await startRescanWait(input(), deps());

    expect(out).toEqual(expect.objectContaining({ decided: false, verdict: 'unknown' }));
    expect(await registry.waitsFor(NEW)).toHaveLength(1);
  });

  it('measures the wait from now when ECR cannot say when the digest was pushed (an outage)', async () => {
    ecr
      .on(DescribeImagesCommand)
      .rejects(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }));
    coverage('pending');

    await startRescanWait(input(), deps());

    expect((await registry.waitsFor(NEW))[0]?.deadline).toBe(
      new Date(clock.getTime() + 3600_000).toISOString(),
    );
  });

  it('fails the Task (and forgets the wait) on any other error, as the verify Lambda always did', async () => {
    inspector
      .on(ListCoverageCommand)
      .rejects(Object.assign(new Error('no'), { name: 'AccessDeniedException' }));

    await expect(startRescanWait(input(), deps())).rejects.toMatchObject({ name: 'AccessDeniedException' });
    expect(await registry.list()).toEqual([]);
  });
});

describe('resumeRescanWaits (the Inspector2 Scan event)', () => {
  it('answers the waits on the digest, with the event as evidence while coverage has not caught up', async () => {
    coverage('pending');
    await startRescanWait(input(), deps());
    await startRescanWait(input({ taskToken: 'token-2', executionName: 'other' }), deps());
    coverage('absent');
    clock = at(241);

    const handled = await resumeRescanWaits(scanEvent(), deps(), clock);

    expect(handled.map((h) => h.action)).toEqual(['answered', 'answered']);
    expect(
      answers()
        .map(([token, v]) => [token, v.verdict])
        .sort(),
    ).toEqual([
      ['token-1', 'verified'],
      ['token-2', 'verified'],
    ]);
    expect(await registry.list()).toEqual([]);
  });

  it('ignores a scan of another digest', async () => {
    coverage('pending');
    await startRescanWait(input(), deps());

    expect(await resumeRescanWaits(scanEvent(digest('c3')), deps(), clock)).toEqual([]);
    expect(answers()).toEqual([]);
    expect(await registry.list()).toHaveLength(1);
  });

  it('rethrows when Inspector cannot be read, so EventBridge delivers the event again', async () => {
    coverage('pending');
    await startRescanWait(input(), deps());
    inspector
      .on(ListCoverageCommand)
      .rejects(Object.assign(new Error('down'), { name: 'InternalServerException' }));

    await expect(resumeRescanWaits(scanEvent(), deps(), clock)).rejects.toMatchObject({
      name: 'TransientError',
    });
    expect(await registry.list()).toHaveLength(1);
  });
});

describe('sweepRescans (every minute)', () => {
  beforeEach(async () => {
    coverage('pending');
    await startRescanWait(input(), deps());
  });

  it('re-assesses a pending wait and notes the look, answering nothing', async () => {
    clock = at(120);

    expect((await sweepRescans(deps(), clock)).map((h) => h.action)).toEqual(['pending']);
    expect(answers()).toEqual([]);
    expect((await registry.list())[0]?.lastAssessedAt).toBe(at(120).toISOString());
  });

  it('answers the verdict once Inspector scanned (the event was lost)', async () => {
    coverage('scanned');
    clock = at(300);

    expect((await sweepRescans(deps(), clock)).map((h) => h.action)).toEqual(['answered']);
    expect(answers()).toEqual([['token-1', expect.objectContaining({ verdict: 'verified' })]]);
    expect(await registry.list()).toEqual([]);
  });

  it('answers RescanTimedOutError past the deadline, naming the coverage state', async () => {
    clock = at(3601);

    await sweepRescans(deps(), clock);

    expect(answers()).toEqual([
      [
        'token-1',
        {
          verdict: 'failed',
          error: 'RescanTimedOutError',
          cause: expect.stringMatching(
            /3601 s after the push \(limit 3600 s; coverage: ACTIVE\/PENDING_INITIAL_SCAN\)/,
          ),
        },
      ],
    ]);
  });

  it('keeps waiting while Inspector is unreadable, and times the wait out once past the deadline', async () => {
    inspector
      .on(ListCoverageCommand)
      .rejects(Object.assign(new Error('down'), { name: 'InternalServerException' }));
    clock = at(600);
    expect((await sweepRescans(deps(), clock)).map((h) => h.action)).toEqual(['unreadable']);
    expect(answers()).toEqual([]);

    clock = at(3600);
    await sweepRescans(deps(), clock);
    expect(answers()).toEqual([
      ['token-1', expect.objectContaining({ verdict: 'failed', error: 'RescanTimedOutError' })],
    ]);
    expect(await registry.list()).toEqual([]);
  });

  it('answers an error no retry cures at once, with its own name and message (the remediation fails)', async () => {
    inspector
      .on(ListFindingsCommand)
      .rejects(Object.assign(new Error('not authorized'), { name: 'AccessDeniedException' }));
    coverage('scanned');

    await sweepRescans(deps(), clock);

    expect(answers()).toEqual([
      ['token-1', { verdict: 'error', error: 'AccessDeniedException', cause: 'not authorized' }],
    ]);
    expect(await registry.list()).toEqual([]);
  });

  it('forgets a wait whose execution no longer waits', async () => {
    coverage('scanned');
    sfn.on(SendTaskSuccessCommand).rejects(Object.assign(new Error('gone'), { name: 'TaskDoesNotExist' }));

    expect((await sweepRescans(deps(), clock)).map((h) => h.action)).toEqual(['already-answered']);
    expect(await registry.list()).toEqual([]);
  });

  it(`assesses at most ${RESCAN_SWEEP_LIMIT} waits a run, those past their deadline first`, async () => {
    for (let n = 2; n <= RESCAN_SWEEP_LIMIT + 5; n++)
      await startRescanWait(
        input({ taskToken: `token-${n}`, rescanTimeoutSeconds: n === 30 ? 60 : 3600 }),
        deps(),
      );
    clock = at(120);

    const handled = await sweepRescans(deps(), clock);

    expect(handled).toHaveLength(RESCAN_SWEEP_LIMIT);
    expect(answers()).toEqual([['token-30', expect.objectContaining({ error: 'RescanTimedOutError' })]]);
  });
});
