import { DescribeImagesCommand, ECRClient } from '@aws-sdk/client-ecr';
import { Inspector2Client, ListCoverageCommand, ListFindingsCommand } from '@aws-sdk/client-inspector2';
import { mockClient } from 'aws-sdk-client-mock';
import { readBuild, type VerifyRescanInput, verifyRescan } from '../../../lambdas/workflow/verify-rescan';
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
