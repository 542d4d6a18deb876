import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DescribeImagesCommand, ECRClient } from '@aws-sdk/client-ecr';
import {
  Inspector2Client,
  ListCoverageCommand,
  ListFindingsCommand,
  ScanStatusReason,
} from '@aws-sdk/client-inspector2';
import { mockClient } from 'aws-sdk-client-mock';
import {
  coverageVerdict,
  readBuild,
  type ScanEvidence,
  scanEvidenceFromEvent,
  type VerifyRescanInput,
  verifyRescan,
} from '../../../lambdas/workflow/verify-rescan';
import { digest, image } from '../../support/workflow-harness';

const inspector = mockClient(Inspector2Client);
const ecr = mockClient(ECRClient);
const NEW = digest('b2');
const OLD = image().imageDigest;
const NOW = new Date('2024-09-04T18:00:00Z');
const deps = { inspector: new Inspector2Client({}), ecr: new ECRClient({}), now: () => NOW };

const input = (overrides: Partial<VerifyRescanInput> = {}): VerifyRescanInput => ({
  image: image({ cves: ['CVE-2024-6387', 'CVE-2024-0001'] }),
  targetTag: 'autopatch-a1a1a1a1a1a1-20240904T165538Z',
  build: {
    Id: 'p:1',
    ExportedEnvironmentVariables: [{ Name: 'IMAGE_DIGEST', Value: NEW }],
    Logs: { DeepLink: 'https://logs' },
  },
  rescanTimeoutSeconds: 3600,
  ...overrides,
});

const covered = (reason: string, statusCode = 'ACTIVE') =>
  inspector.on(ListCoverageCommand).resolves({
    coveredResources: [
      {
        resourceId: `arn:aws:ecr:eu-central-1:123456789012:repository/payments/api/${NEW}`,
        resourceType: 'AWS_ECR_CONTAINER_IMAGE',
        accountId: '123456789012',
        scanType: 'PACKAGE',
        scanStatus: { statusCode: statusCode as 'ACTIVE', reason: reason as 'SUCCESSFUL' },
      },
    ],
  });

/** Findings by image digest: ListFindings answers for the digest its filter names. */
const findings = (byDigest: Record<string, Array<[string, string]>>) =>
  inspector
    .on(ListFindingsCommand)
    .callsFake((req: { filterCriteria?: { ecrImageHash?: Array<{ value?: string }> } }) => ({
      findings: (byDigest[req.filterCriteria?.ecrImageHash?.[0]?.value ?? ''] ?? []).map(
        ([id, severity]) => ({
          findingArn: `f-${id}`,
          awsAccountId: '1',
          type: 'PACKAGE_VULNERABILITY',
          description: '',
          remediation: {},
          severity,
          firstObservedAt: NOW,
          lastObservedAt: NOW,
          status: 'ACTIVE',
          resources: [],
          packageVulnerabilityDetails: { vulnerabilityId: id, source: 'NVD' },
        }),
      ),
    }));

beforeEach(() => {
  inspector.reset();
  ecr.reset();
  ecr
    .on(DescribeImagesCommand)
    .resolves({ imageDetails: [{ imagePushedAt: new Date(NOW.getTime() - 600_000) }] });
});

describe('verifyRescan', () => {
  it('returns the image with the CVEs it closed when the rescan no longer reports them', async () => {
    covered('SUCCESSFUL');
    findings({ [NEW]: [['CVE-2023-9999', 'MEDIUM']] });

    const out = await verifyRescan(input(), deps);

    expect(out).toEqual(
      expect.objectContaining({
        oldDigest: OLD,
        newDigest: NEW,
        cvesClosed: ['CVE-2024-6387', 'CVE-2024-0001'],
        buildLogLink: 'https://logs',
      }),
    );
    expect(
      inspector.commandCalls(ListCoverageCommand)[0]?.args[0].input.filterCriteria?.ecrImageTags,
    ).toEqual([{ comparison: 'EQUALS', value: input().targetTag }]);
  });

  it('asks to be polled again (RescanPendingError) while Inspector has not scanned the new digest', async () => {
    inspector.on(ListCoverageCommand).resolves({ coveredResources: [] });
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'RescanPendingError',
      message: expect.stringMatching(/not in Inspector coverage yet after 600 s/),
    });
  });

  it('gives up (RescanTimedOutError) once rescanTimeoutSeconds have passed since the push', async () => {
    covered('PENDING_INITIAL_SCAN');
    await expect(verifyRescan(input({ rescanTimeoutSeconds: 300 }), deps)).rejects.toMatchObject({
      name: 'RescanTimedOutError',
    });
  });

  it('fails at once (RescanUnavailableError) when Inspector cannot scan the image at all', async () => {
    covered('UNSUPPORTED_OS', 'INACTIVE');
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'RescanUnavailableError',
      message: expect.stringContaining('UNSUPPORTED_OS'),
    });
  });

  it('is PatchIneffective, listing what remains, when a target CVE is still reported', async () => {
    covered('SUCCESSFUL');
    findings({ [NEW]: [['CVE-2024-0001', 'HIGH']], [OLD]: [['CVE-2024-0001', 'HIGH']] });
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'PatchIneffectiveError',
      message: expect.stringMatching(/still has CVE-2024-0001\.$/),
    });
  });

  it('is PatchIneffective when the rebuild brings a new CRITICAL/HIGH finding', async () => {
    covered('SUCCESSFUL');
    findings({
      [NEW]: [
        ['CVE-2024-7777', 'CRITICAL'],
        ['CVE-2024-5555', 'HIGH'],
      ],
      [OLD]: [
        ['CVE-2024-5555', 'HIGH'],
        ['CVE-2024-6387', 'CRITICAL'],
      ],
    });
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'PatchIneffectiveError',
      message: expect.stringContaining('has new CRITICAL/HIGH findings CVE-2024-7777'),
    });
  });

  it('is PatchIneffective when the rebuild produced the same digest (no update available)', async () => {
    const same = input({ build: { ExportedEnvironmentVariables: [{ Name: 'IMAGE_DIGEST', Value: OLD }] } });
    await expect(verifyRescan(same, deps)).rejects.toMatchObject({
      name: 'PatchIneffectiveError',
      message: expect.stringContaining('produced the same image'),
    });
    expect(inspector.calls()).toHaveLength(0);
  });

  it('fails clearly (BuildOutputError) when the build did not export IMAGE_DIGEST', async () => {
    await expect(verifyRescan(input({ build: { Id: 'own-project:7' } }), deps)).rejects.toMatchObject({
      name: 'BuildOutputError',
      message: expect.stringContaining('exported-variables: [IMAGE_DIGEST]'),
    });
  });

  it('turns throttling into TransientError, which the state retries', async () => {
    const throttled = Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    inspector.on(ListCoverageCommand).rejects(throttled);
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({ name: 'TransientError' });
  });

  it('reads the build in PascalCase (Step Functions) and camelCase (CodeBuild API)', () => {
    expect(
      readBuild({ id: 'x', exportedEnvironmentVariables: [{ name: 'IMAGE_DIGEST', value: NEW }] }),
    ).toEqual({
      id: 'x',
      digest: NEW,
    });
    expect(readBuild('nonsense')).toEqual({});
  });
});

// ---------------------------------------------------------------- coverage states other than ACTIVE/SUCCESSFUL

const PUSHED = new Date(NOW.getTime() - 600_000);
const AFTER_PUSH = new Date(PUSHED.getTime() + 90_000);
const BEFORE_PUSH = new Date(PUSHED.getTime() - 86_400_000);

const coveredAs = (statusCode: string, reason: string, lastScannedAt?: Date) =>
  inspector.on(ListCoverageCommand).resolves({
    coveredResources: [
      {
        resourceId: `arn:aws:ecr:eu-central-1:123456789012:repository/payments/api/${NEW}`,
        resourceType: 'AWS_ECR_CONTAINER_IMAGE',
        accountId: '123456789012',
        scanType: 'PACKAGE',
        scanStatus: { statusCode: statusCode as 'ACTIVE', reason: reason as 'SUCCESSFUL' },
        ...(lastScannedAt ? { lastScannedAt } : {}),
      },
    ],
  });

type Filters = {
  filterCriteria?: {
    ecrImageHash?: Array<{ value?: string }>;
    findingStatus?: Array<{ value?: string }>;
  };
};
/** Findings by digest, each with its status: ListFindings answers for the digest and statuses its filter names. */
const findingsWithStatus = (byDigest: Record<string, Array<[string, string, string]>>) =>
  inspector.on(ListFindingsCommand).callsFake((req: Filters) => {
    const statuses = new Set((req.filterCriteria?.findingStatus ?? []).map((f) => f.value));
    return {
      findings: (byDigest[req.filterCriteria?.ecrImageHash?.[0]?.value ?? ''] ?? [])
        .filter(([, , status]) => statuses.has(status))
        .map(([id, severity, status]) => ({
          findingArn: `f-${id}`,
          awsAccountId: '1',
          type: 'PACKAGE_VULNERABILITY',
          description: '',
          remediation: {},
          severity,
          firstObservedAt: NOW,
          lastObservedAt: NOW,
          status,
          resources: [],
          packageVulnerabilityDetails: { vulnerabilityId: id, source: 'NVD' },
        })),
    };
  });

const scanEvent = (
  overrides: { digest?: string; repositoryArn?: string; time?: string; total?: number } = {},
) => {
  const fixture = JSON.parse(
    readFileSync(
      path.join(__dirname, '..', '..', 'fixtures', 'events', 'scan-initial-complete.json'),
      'utf8',
    ),
  );
  return {
    ...fixture,
    time: overrides.time ?? new Date(PUSHED.getTime() + 60_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    detail: {
      ...fixture.detail,
      'repository-name':
        overrides.repositoryArn ?? `arn:aws:ecr:eu-central-1:${image().registry}:repository/payments/api`,
      'image-digest': overrides.digest ?? NEW,
      'finding-severity-counts': {
        CRITICAL: 0,
        HIGH: 0,
        MEDIUM: overrides.total ?? 1,
        TOTAL: overrides.total ?? 1,
      },
    },
  };
};

describe('coverageVerdict: every documented coverage state of an ECR image', () => {
  const verdictOf = (
    statusCode: string | undefined,
    reason?: string,
    lastScannedAt?: Date,
    event?: ScanEvidence,
  ) =>
    coverageVerdict({
      ...(statusCode
        ? { status: { statusCode: statusCode as 'ACTIVE', reason: reason as 'SUCCESSFUL' } }
        : {}),
      lastScannedAt,
      pushedAt: PUSHED,
      event,
    }).kind;

  test.each([
    // Monitored continually.
    ['ACTIVE', 'SUCCESSFUL', undefined, 'scanned'],
    // Scanned once, at or after the push: scanned. Before the push, or no scan time: not yet / never.
    ['ACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', AFTER_PUSH, 'scanned'],
    ['INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', AFTER_PUSH, 'scanned'],
    ['INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', undefined, 'pending'],
    ['INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', BEFORE_PUSH, 'pending'],
    ['INACTIVE', 'SCAN_FREQUENCY_MANUAL', AFTER_PUSH, 'scanned'],
    ['INACTIVE', 'SCAN_FREQUENCY_MANUAL', undefined, 'never'],
    ['INACTIVE', 'SCAN_FREQUENCY_MANUAL', BEFORE_PUSH, 'never'],
    ['INACTIVE', 'SCAN_ELIGIBILITY_EXPIRED', AFTER_PUSH, 'scanned'],
    ['INACTIVE', 'SCAN_ELIGIBILITY_EXPIRED', undefined, 'never'],
    // A scan is coming.
    ['ACTIVE', 'PENDING_INITIAL_SCAN', undefined, 'pending'],
    ['ACTIVE', 'SCAN_IN_PROGRESS', undefined, 'pending'],
    ['ACTIVE', 'PENDING_REVIVAL_SCAN', undefined, 'pending'],
    ['INACTIVE', 'PENDING_INITIAL_SCAN', undefined, 'pending'],
    ['INACTIVE', 'INTERNAL_ERROR', undefined, 'pending'],
    [undefined, undefined, undefined, 'pending'],
    // A scan is never coming, whatever the scan time says.
    ['INACTIVE', 'UNSUPPORTED_OS', undefined, 'never'],
    ['INACTIVE', 'UNSUPPORTED_MEDIA_TYPE', undefined, 'never'],
    ['INACTIVE', 'IMAGE_SIZE_EXCEEDED', undefined, 'never'],
    ['INACTIVE', 'EXCLUDED_BY_TAG', AFTER_PUSH, 'never'],
    ['INACTIVE', 'ACCESS_DENIED', AFTER_PUSH, 'never'],
    ['INACTIVE', 'ACCESS_DENIED_TO_ENCRYPTION_KEY', undefined, 'never'],
    ['INACTIVE', 'IMAGE_ARCHIVED', AFTER_PUSH, 'never'],
    ['INACTIVE', 'RESOURCE_TERMINATED', undefined, 'never'],
    ['INACTIVE', 'PENDING_DISABLE', AFTER_PUSH, 'never'],
    ['INACTIVE', 'SOMETHING_NEW', undefined, 'never'],
    // An active state this code does not know: wait, the timeout ends it.
    ['ACTIVE', 'SOMETHING_NEW', AFTER_PUSH, 'pending'],
  ] as const)('%s/%s, last scanned %s → %s', (statusCode, reason, lastScannedAt, expected) => {
    expect(verdictOf(statusCode, reason, lastScannedAt)).toBe(expected);
  });

  test('every reason the SDK model documents gets a deliberate answer (none falls through by accident)', () => {
    const ecrImageReasons = Object.values(ScanStatusReason).filter(
      (r) =>
        !/^(AGENTLESS|DEEP_INSPECTION|EC2_|UNMANAGED_EC2|NO_INVENTORY|STALE_INVENTORY|UNSUPPORTED_(CODE|CONFIG|LANGUAGE|RUNTIME)|INTEGRATION|NO_SCAN_CONFIG|NO_RESOURCES|RESOURCE_STOPPED|RESOURCE_UNMANAGED)/.test(
          r,
        ),
    );
    expect(ecrImageReasons.sort()).toEqual(
      [
        'ACCESS_DENIED',
        'ACCESS_DENIED_TO_ENCRYPTION_KEY',
        'EXCLUDED_BY_TAG',
        'IMAGE_ARCHIVED',
        'IMAGE_SIZE_EXCEEDED',
        'INTERNAL_ERROR',
        'PENDING_DISABLE',
        'PENDING_INITIAL_SCAN',
        'PENDING_REVIVAL_SCAN',
        'RESOURCE_TERMINATED',
        'SCAN_ELIGIBILITY_EXPIRED',
        'SCAN_FREQUENCY_MANUAL',
        'SCAN_FREQUENCY_SCAN_ON_PUSH',
        'SCAN_IN_PROGRESS',
        'SUCCESSFUL',
        'UNSUPPORTED_MEDIA_TYPE',
        'UNSUPPORTED_OS',
      ].sort(),
    );
  });

  test('a matching scan event counts while coverage lags (not listed, pending, scan on push), never against a "never" state', () => {
    const event = scanEvidenceFromEvent(scanEvent()) as ScanEvidence;
    expect(verdictOf(undefined, undefined, undefined, event)).toBe('scanned');
    expect(verdictOf('ACTIVE', 'PENDING_INITIAL_SCAN', undefined, event)).toBe('scanned');
    expect(verdictOf('INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', undefined, event)).toBe('scanned');
    expect(verdictOf('INACTIVE', 'UNSUPPORTED_OS', undefined, event)).toBe('never');
    const stale = scanEvidenceFromEvent(scanEvent({ time: BEFORE_PUSH.toISOString() })) as ScanEvidence;
    expect(verdictOf(undefined, undefined, undefined, stale)).toBe('pending');
  });
});

describe('verifyRescan with coverage states other than ACTIVE/SUCCESSFUL', () => {
  beforeEach(() => {
    ecr.on(DescribeImagesCommand).resolves({ imageDetails: [{ imagePushedAt: PUSHED }] });
  });

  test('scan on push, scanned after the push: verified, and findings the state closed are asked for too', async () => {
    coveredAs('INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH', AFTER_PUSH);
    findingsWithStatus({ [NEW]: [['CVE-2023-9999', 'MEDIUM', 'ACTIVE']] });

    const out = await verifyRescan(input(), deps);

    expect(out.cvesClosed).toEqual(['CVE-2024-6387', 'CVE-2024-0001']);
    const statuses = inspector
      .commandCalls(ListFindingsCommand)
      .map((c) => c.args[0].input.filterCriteria?.findingStatus?.map((f) => f.value));
    expect(statuses[0]).toEqual(['ACTIVE', 'CLOSED']);
  });

  test('scan eligibility expired after the scan: a target CVE whose finding it CLOSED is still there (PatchIneffective)', async () => {
    coveredAs('INACTIVE', 'SCAN_ELIGIBILITY_EXPIRED', AFTER_PUSH);
    findingsWithStatus({ [NEW]: [['CVE-2024-0001', 'HIGH', 'CLOSED']], [OLD]: [] });
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'PatchIneffectiveError',
      message: expect.stringContaining('still has CVE-2024-0001'),
    });
  });

  test('ACTIVE/SUCCESSFUL keeps asking for ACTIVE findings only, and does not call ECR', async () => {
    covered('SUCCESSFUL');
    findingsWithStatus({ [NEW]: [['CVE-2024-0001', 'HIGH', 'CLOSED']] });
    await verifyRescan(input(), deps);
    expect(
      inspector.commandCalls(ListFindingsCommand)[0]?.args[0].input.filterCriteria?.findingStatus,
    ).toEqual([{ comparison: 'EQUALS', value: 'ACTIVE' }]);
    expect(ecr.commandCalls(DescribeImagesCommand)).toHaveLength(0);
  });

  test('scan on push not done yet: RescanPendingError, then RescanTimedOutError after the timeout', async () => {
    coveredAs('INACTIVE', 'SCAN_FREQUENCY_SCAN_ON_PUSH');
    await expect(verifyRescan(input(), deps)).rejects.toMatchObject({
      name: 'RescanPendingError',
      message: expect.stringContaining('INACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH after 600 s'),
    });
    await expect(verifyRescan(input({ rescanTimeoutSeconds: 300 }), deps)).rejects.toMatchObject({
      name: 'RescanTimedOutError',
    });
  });

  test.each([
    ['SCAN_FREQUENCY_MANUAL', /continuous or on-push scan filter/],
    ['IMAGE_SIZE_EXCEEDED', /larger than Inspector scans/],
    ['SCAN_ELIGIBILITY_EXPIRED', /re-scan duration/],
  ])(
    '%s without a scan after the push: RescanUnavailableError at once, naming the state and what to do',
    async (reason, advice) => {
      coveredAs('INACTIVE', reason);
      const error = await verifyRescan(input(), deps).catch((e: Error) => e);
      expect(error).toMatchObject({
        name: 'RescanUnavailableError',
        message: expect.stringContaining(`(${reason})`),
      });
      expect((error as Error).message).toMatch(advice);
      expect(inspector.commandCalls(ListFindingsCommand)).toHaveLength(0);
    },
  );
});

describe('verifyRescan with an Inspector2 Scan event as evidence', () => {
  beforeEach(() => {
    ecr.on(DescribeImagesCommand).resolves({ imageDetails: [{ imagePushedAt: PUSHED }] });
    inspector.on(ListCoverageCommand).resolves({ coveredResources: [] });
  });

  test('coverage has not caught up, the event names the rebuilt digest and its findings are listed: verified', async () => {
    findingsWithStatus({ [NEW]: [['CVE-2023-9999', 'MEDIUM', 'ACTIVE']] });
    const out = await verifyRescan(input({ scanEvent: scanEvent({ total: 1 }) }), deps);
    expect(out.newDigest).toBe(NEW);
  });

  test('the event reports more findings than ListFindings shows yet: keep waiting (RescanPendingError)', async () => {
    findingsWithStatus({ [NEW]: [['CVE-2023-9999', 'MEDIUM', 'ACTIVE']] });
    await expect(verifyRescan(input({ scanEvent: scanEvent({ total: 3 }) }), deps)).rejects.toMatchObject({
      name: 'RescanPendingError',
      message: expect.stringContaining('it reported 3 findings, 1 listed so far'),
    });
  });

  test('the event still proves a target CVE present: PatchIneffective', async () => {
    findingsWithStatus({ [NEW]: [['CVE-2024-6387', 'CRITICAL', 'ACTIVE']], [OLD]: [] });
    await expect(verifyRescan(input({ scanEvent: scanEvent({ total: 1 }) }), deps)).rejects.toMatchObject({
      name: 'PatchIneffectiveError',
    });
  });

  test.each([
    ['another digest', { digest: digest('c3') }],
    [
      'another repository',
      { repositoryArn: `arn:aws:ecr:eu-central-1:${image().registry}:repository/payments/web` },
    ],
    ['another registry', { repositoryArn: 'arn:aws:ecr:eu-central-1:999999999999:repository/payments/api' }],
  ])('an event about %s is no evidence (RescanPendingError)', async (_, overrides) => {
    await expect(verifyRescan(input({ scanEvent: scanEvent(overrides) }), deps)).rejects.toMatchObject({
      name: 'RescanPendingError',
    });
    expect(inspector.commandCalls(ListFindingsCommand)).toHaveLength(0);
  });
});

describe('scanEvidenceFromEvent', () => {
  test('reads the documented Inspector2 Scan event (repository-name is an ARN)', () => {
    const fixture = JSON.parse(
      readFileSync(
        path.join(__dirname, '..', '..', 'fixtures', 'events', 'scan-initial-complete.json'),
        'utf8',
      ),
    );
    expect(scanEvidenceFromEvent(fixture)).toEqual({
      repositoryArn: 'arn:aws:ecr:us-east-1:111122223333:repository/inspector2',
      repository: 'inspector2',
      registry: '111122223333',
      digest: 'sha256:965fbcae990b0467ed5657caceaec165018ef44a4d2d46c7cdea80a9dff0d1ea',
      scanStatus: 'INITIAL_SCAN_COMPLETE',
      scannedAt: new Date('2023-01-20T23:15:18Z'),
      severityCounts: { CRITICAL: 0, HIGH: 0, MEDIUM: 0, TOTAL: 0 },
    });
  });

  test('keeps slashes in a nested repository name', () => {
    expect(scanEvidenceFromEvent(scanEvent())?.repository).toBe('payments/api');
  });

  test.each([
    ['nothing', undefined],
    ['a finding event', { source: 'aws.inspector2', 'detail-type': 'Inspector2 Finding', detail: {} }],
    ['another source', { ...scanEvent(), source: 'autopatch' }],
    [
      'a scan that did not complete',
      { ...scanEvent(), detail: { ...scanEvent().detail, 'scan-status': 'SCAN_STARTED' } },
    ],
    [
      'a repository name instead of an ARN',
      { ...scanEvent(), detail: { ...scanEvent().detail, 'repository-name': 'payments/api' } },
    ],
    ['no digest', { ...scanEvent(), detail: { ...scanEvent().detail, 'image-digest': undefined } }],
    ['a bad time', { ...scanEvent(), time: 'yesterday' }],
  ])('is undefined for %s', (_, event) => {
    expect(scanEvidenceFromEvent(event)).toBeUndefined();
  });
});
