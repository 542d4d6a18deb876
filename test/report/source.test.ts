import { Inspector2Client, ListCoverageCommand } from '@aws-sdk/client-inspector2';
import { mockClient } from 'aws-sdk-client-mock';
import { Ledger, type OutcomeRecord } from '../../lambdas/shared/ledger';
import { type LocalDynamo, startDynalite } from '../../local/dynalite';
import { fromTable, ReportSourceError, readCoverage, scenarioPath } from '../../report/source';

const inspector = mockClient(Inspector2Client);
let dynamo: LocalDynamo;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(() => {
  inspector.reset();
});

const RECORD: OutcomeRecord = {
  serviceKey: 'prod/checkout',
  remediationId: 'r-1',
  executionName: 'e-1',
  outcome: 'Patched',
  reason: 'Patched prod/checkout',
  images: [
    { repository: 'payments/checkout', oldDigest: 'sha256:a', newDigest: 'sha256:b', cves: ['CVE-1'] },
  ],
  cvesClosed: ['CVE-1'],
  startedAt: '2026-01-02T00:00:00.000Z',
  finishedAt: '2026-01-02T01:00:00.000Z',
  timings: { totalSeconds: 3600 },
};

describe('fromTable', () => {
  it('reads the history records as the ledger wrote them, without its bookkeeping or the outbox', async () => {
    // Prepare: one record announced, one not (its outbox entry, pk OUTBOX, stays in the table).
    const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
    await ledger.recordOutcome(RECORD);
    await ledger.markAnnounced(RECORD.serviceKey, RECORD.remediationId);
    await ledger.recordOutcome({ ...RECORD, remediationId: 'r-2', outcome: 'RolledBack' });
    inspector.on(ListCoverageCommand).resolves({ coveredResources: [] });

    // Act
    const history = await fromTable(dynamo.tableName, {
      dynamo: dynamo.client,
      inspector: new Inspector2Client({}),
    });

    // Assess
    expect([...history.records].sort((a, b) => a.remediationId.localeCompare(b.remediationId))).toEqual([
      RECORD,
      { ...RECORD, remediationId: 'r-2', outcome: 'RolledBack' },
    ]);
    expect(history.coverage).toEqual({ active: 0, total: 0, source: 'inspector2 ListCoverage' });
  });

  it('reports fleet coverage as not measured when ListCoverage is refused, and still reads the history', async () => {
    inspector
      .on(ListCoverageCommand)
      .rejects(Object.assign(new Error('not authorized'), { name: 'AccessDeniedException' }));
    const history = await fromTable(dynamo.tableName, {
      dynamo: dynamo.client,
      inspector: new Inspector2Client({}),
    });
    expect(history.coverage).toBeUndefined();
    expect(history.coverageUnavailable).toBe(
      'inspector2 ListCoverage failed: AccessDeniedException: not authorized',
    );
    expect(history.records.length).toBeGreaterThan(0);
  });

  it('names the table it could not read', async () => {
    await expect(
      fromTable('no-such-table', { dynamo: dynamo.client, inspector: new Inspector2Client({}) }),
    ).rejects.toThrow(ReportSourceError);
  });
});

describe('readCoverage', () => {
  it('counts ACTIVE container images over every page', async () => {
    inspector
      .on(ListCoverageCommand)
      .resolvesOnce({
        coveredResources: [
          {
            resourceId: 'a',
            resourceType: 'AWS_ECR_CONTAINER_IMAGE',
            accountId: '1',
            scanType: 'PACKAGE',
            scanStatus: { statusCode: 'ACTIVE', reason: 'SUCCESSFUL' },
          },
          {
            resourceId: 'b',
            resourceType: 'AWS_ECR_CONTAINER_IMAGE',
            accountId: '1',
            scanType: 'PACKAGE',
            scanStatus: { statusCode: 'INACTIVE', reason: 'UNSUPPORTED_OS' },
          },
        ],
        nextToken: 'page-2',
      })
      .resolvesOnce({
        coveredResources: [
          {
            resourceId: 'c',
            resourceType: 'AWS_ECR_CONTAINER_IMAGE',
            accountId: '1',
            scanType: 'PACKAGE',
            scanStatus: { statusCode: 'ACTIVE', reason: 'SUCCESSFUL' },
          },
        ],
      });
    expect(await readCoverage(new Inspector2Client({}))).toEqual({
      active: 2,
      total: 3,
      source: 'inspector2 ListCoverage',
    });
    expect(inspector.commandCalls(ListCoverageCommand)[1]?.args[0].input.nextToken).toBe('page-2');
  });
});

describe('scenarioPath', () => {
  it('finds shipped scenarios by name, safety ones too', () => {
    expect(scenarioPath('happy-path')).toMatch(/simulation\/scenarios\/happy-path\.json$/);
    expect(scenarioPath('circuit-breaker')).toMatch(/scenarios\/safety\/circuit-breaker\.json$/);
    expect(() => scenarioPath('nope')).toThrow('no scenario "nope"');
  });
});
