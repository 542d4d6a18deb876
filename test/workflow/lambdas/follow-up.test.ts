import type { TaskDefinition } from '@aws-sdk/client-ecs';
import type { AffectedImage, RemediationRequest } from '../../../lambdas/shared/contracts';
import { Ledger, type OutcomeRecord } from '../../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../../lambdas/shared/remediation';
import { resolveFollowUp } from '../../../lambdas/workflow/follow-up';
import { takeGatheredFindings } from '../../../lambdas/workflow/lock';
import { patchedRegistration } from '../../../lambdas/workflow/register-task-definition';
import { type LocalDynamo, startDynalite } from '../../../local/dynalite';
import { digest, image, remediationRequest } from '../../support/workflow-harness';

const A = digest('a1');
const A1 = digest('b2'); // what the first run patched A to
const A2 = digest('c3'); // what a second run patched A1 to
const X = digest('d4'); // what the owner deployed
const T0 = new Date('2024-09-04T17:00:00.000Z');

const img = (d: string, cves: string[], containers = ['app']): AffectedImage =>
  image({ imageDigest: d, cves, containers });

const patched = (name: string, from: string, to: string, cves: string[], finishedAt = T0): OutcomeRecord => ({
  serviceKey: 'prod/payments-api',
  remediationId: name,
  executionName: name,
  outcome: 'Patched',
  reason: 'patched',
  images: [{ repository: 'payments/api', oldDigest: from, newDigest: to, cves }],
  cvesClosed: cves,
  startedAt: T0.toISOString(),
  finishedAt: finishedAt.toISOString(),
});

describe('resolveFollowUp', () => {
  it('closes what the previous run fixed and rebuilds the rest from the digest it deployed', () => {
    const r = resolveFollowUp([img(A, ['CVE-1', 'CVE-2'])], [patched('run-1', A, A1, ['CVE-1'])]);
    expect(r.alreadyFixed).toEqual([{ digest: A, cve: 'CVE-1', by: 'run-1' }]);
    expect(r.rebased).toEqual([{ from: A, to: A1, by: 'run-1' }]);
    expect(r.images).toEqual([expect.objectContaining({ imageDigest: A1, cves: ['CVE-2'], imageTags: [] })]);
    expect(r.nothingLeft).toBe(false);
  });

  it('leaves an image index patched meanwhile to the findings on its new platforms (never rebuilds the old ones)', () => {
    // Prepare: the request knows the old index's platforms only.
    const index = image({
      imageDigest: A,
      cves: ['CVE-1', 'CVE-2'],
      index: {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        platforms: [
          {
            digest: X,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            architecture: 'amd64',
            os: 'linux',
          },
        ],
      },
    });

    // Act
    const r = resolveFollowUp([index], [patched('run-1', A, A1, ['CVE-1'])]);

    // Assess
    expect(r.alreadyFixed).toEqual([{ digest: A, cve: 'CVE-1', by: 'run-1' }]);
    expect(r.rebased).toEqual([]);
    expect(r.dropped).toEqual([{ digest: A, runs: A1 }]);
    expect(r.images).toEqual([]);
  });

  it('leaves nothing when every finding was fixed, following a digest patched twice', () => {
    const history = [
      patched('run-2', A1, A2, ['CVE-2'], new Date(T0.getTime() + 60_000)),
      patched('run-1', A, A1, ['CVE-1']),
    ];
    const r = resolveFollowUp([img(A, ['CVE-1', 'CVE-2'])], history);
    expect(r.nothingLeft).toBe(true);
    expect(r.alreadyFixed.map((f) => [f.cve, f.by])).toEqual([
      ['CVE-1', 'run-2'],
      ['CVE-2', 'run-2'],
    ]);
  });

  it('ignores runs that did not patch, and images nobody patched', () => {
    const failed = { ...patched('run-1', A, A1, ['CVE-1']), outcome: 'RolledBack' as const };
    const images = [img(A, ['CVE-1']), img(X, ['CVE-9'], ['sidecar'])];
    const r = resolveFollowUp(images, [failed]);
    expect(r.images).toEqual(images);
    expect([r.alreadyFixed, r.rebased, r.dropped]).toEqual([[], [], []]);
  });

  it('believes what the containers run over the history: the old image back, or another one', () => {
    const history = [patched('run-1', A, A1, ['CVE-1'])];
    // Someone put the pre-patch image back: rebuild it, all CVEs.
    expect(resolveFollowUp([img(A, ['CVE-1'])], history, new Map([['app', A]])).images).toEqual([
      img(A, ['CVE-1']),
    ]);
    // The owner deployed an image of their own: the finding's image no longer runs.
    const other = resolveFollowUp([img(A, ['CVE-1', 'CVE-2'])], history, new Map([['app', X]]));
    expect(other).toMatchObject({ dropped: [{ digest: A, runs: X }], nothingLeft: true });
    // Runs the patched digest: as without the map.
    expect(resolveFollowUp([img(A, ['CVE-2'])], history, new Map([['app', A1]])).rebased).toHaveLength(1);
  });

  it('folds two images rebased onto the same digest into one', () => {
    const r = resolveFollowUp([img(A, ['CVE-2']), img(A1, ['CVE-3'])], [patched('run-1', A, A1, ['CVE-1'])]);
    expect(r.images).toEqual([expect.objectContaining({ imageDigest: A1, cves: ['CVE-2', 'CVE-3'] })]);
  });
});

describe('a follow-up queued behind a run that patched the service', () => {
  let dynamo: LocalDynamo;
  beforeAll(async () => {
    dynamo = await startDynalite();
  });
  afterAll(async () => {
    await dynamo.stop();
  });

  const requestFor = (images: AffectedImage[], at: Date): RemediationRequest => {
    const base = remediationRequest();
    const name = executionName(base.service, images, at);
    return { ...base, images, executionName: name, remediationId: remediationId(base.service.key, name) };
  };

  it('rebuilds what remains from the patched digest, and registers over it without a mismatch', async () => {
    // Prepare: run 1 (CVE-1 on A) is in flight; a finding for CVE-2 on A queues behind it.
    const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName, now: () => T0 });
    const svc = remediationRequest().service.key;
    const first = requestFor([img(A, ['CVE-1'])], T0);
    await ledger.claim(first);
    await ledger.markStarted(svc, first.executionName, 'arn:exec:1');
    await ledger.acquire(svc, first.executionName);
    await ledger.seal(svc, first.executionName);
    expect(
      (await ledger.claim(requestFor([img(A, ['CVE-1', 'CVE-2'])], new Date(T0.getTime() + 1000)))).kind,
    ).toBe('queued');
    // Run 1 patched A → A1 and records it before releasing (the finish step's order).
    await ledger.recordOutcome({
      ...patched(first.executionName, A, A1, ['CVE-1']),
      serviceKey: svc,
      remediationId: first.remediationId,
    });
    const { next } = await ledger.release(svc, first.executionName);
    if (!next) throw new Error('nothing queued');
    await ledger.markStarted(svc, next.executionName, 'arn:exec:2');
    await ledger.acquire(svc, next.executionName);

    // Act: the follow-up takes its findings.
    const state = await takeGatheredFindings(ledger, {
      step: 'take-findings',
      serviceKey: svc,
      executionName: next.executionName,
      startedAt: T0.toISOString(),
      state: { ...next, target: { ...next.target, gatherSeconds: 0, gatherMaxSeconds: 0 } },
    });

    // Assess: only CVE-2 is rebuilt, from A1; registering its patch over the running A1 works.
    expect(state.images).toEqual([expect.objectContaining({ imageDigest: A1, cves: ['CVE-2'] })]);
    expect(state.findingsCount).toBe(1);
    // CVE-1 never reached the queue: the ledger queues only the findings the run in flight does not
    // carry already (lambdas/shared/ledger/lock.ts), so nothing is left to call already fixed.
    expect(state.resolution).toMatchObject({ nothingLeft: false, alreadyFixed: 0 });
    const repo = image().repositoryUri;
    const runningTd: TaskDefinition = {
      taskDefinitionArn: 'arn:aws:ecs:eu-central-1:123456789012:task-definition/payments-api:42',
      family: 'payments-api',
      containerDefinitions: [{ name: 'app', image: `${repo}@${A1}` }],
    };
    const { replaced } = patchedRegistration(
      runningTd,
      [],
      [{ repositoryUri: repo, containers: ['app'], oldDigest: A1, newDigest: A2 }],
      next.executionName,
    );
    expect(replaced).toEqual({ app: `${repo}@${A2}` });
  });
});
