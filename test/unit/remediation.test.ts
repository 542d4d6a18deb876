import {
  type AffectedImage,
  MAX_FINDING_ARNS_PER_IMAGE,
  type RemediationRequest,
} from '../../lambdas/shared/contracts';
import { executionName, mergeImages, mergeRequests, remediationId } from '../../lambdas/shared/remediation';

const image = (over: Partial<AffectedImage> = {}): AffectedImage => ({
  repository: 'payments/api',
  registry: '123456789012',
  repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/payments/api',
  imageDigest: `sha256:${'a'.repeat(64)}`,
  imageTags: ['v1'],
  containers: ['app'],
  packageManagers: ['OS'],
  cves: ['CVE-2024-6119'],
  severity: 'HIGH',
  findingArns: ['arn:aws:inspector2:eu-central-1:123456789012:finding/1'],
  rebuild: { mode: 'patch-os' },
  ...over,
});

const at = new Date('2024-09-04T16:55:38.411Z');
/** A service of the prod cluster, as ServiceRef names it. */
const prod = (serviceName: string) => ({ serviceName, key: `prod/${serviceName}` });
const FORBIDDEN = /[\s<>{}[\]?*"#%\\^|~`$&,;:/]/;

describe('executionName', () => {
  it('reads as service, CVE, short digest, time', () => {
    // Act
    const name = executionName(prod('checkout'), [image()], at);
    // Assess
    expect(name).toMatch(/^checkout-CVE-2024-6119-aaaaaaaa-[0-9a-f]{6}-20240904T165538Z$/);
  });

  it('counts CVEs when there are several and marks several images', () => {
    const name = executionName(
      prod('checkout'),
      [image(), image({ imageDigest: `sha256:${'b'.repeat(64)}`, cves: ['CVE-2024-1', 'CVE-2024-2'] })],
      at,
    );
    expect(name).toMatch(/^checkout-3cves-aaaaaaaax2-[0-9a-f]{6}-20240904T165538Z$/);
  });

  it.each([
    ['a very long service name', 'x'.repeat(200)],
    ['forbidden characters', 'svc with spaces/and:colons#1'],
    ['unicode', 'späti-dienst'],
  ])('stays within 80 allowed characters for %s', (_label, service) => {
    const name = executionName(prod(service), [image()], at);
    expect(name.length).toBeLessThanOrEqual(80);
    expect(name).not.toMatch(FORBIDDEN);
    expect(name).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('is deterministic and differs when the CVE set differs with the same count', () => {
    const a = executionName(prod('svc'), [image({ cves: ['CVE-1', 'CVE-2'] })], at);
    const b = executionName(prod('svc'), [image({ cves: ['CVE-1', 'CVE-2'] })], at);
    const c = executionName(prod('svc'), [image({ cves: ['CVE-1', 'CVE-3'] })], at);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  it('differs for services of the same name in two clusters, the same findings at the same time', () => {
    const prodCart = executionName({ serviceName: 'cart', key: 'prod/cart' }, [image()], at);
    const stagingCart = executionName({ serviceName: 'cart', key: 'staging/cart' }, [image()], at);
    expect(prodCart).toMatch(/^cart-CVE-2024-6119-/);
    expect(stagingCart).toMatch(/^cart-CVE-2024-6119-/);
    expect(stagingCart).not.toBe(prodCart);
  });

  it.each([
    ['an md5 digest', { imageDigest: 'md5:0123456789abcdef' }],
    ['an uppercase digest', { imageDigest: `SHA256:${'A'.repeat(64)}` }],
    ['an empty digest', { imageDigest: '' }],
    ['a CVE id with a newline and a colon', { cves: ['CVE-1\nRHSA-2023:1'] }],
    ['a 300-character CVE id', { cves: [`CVE-2024-${'9'.repeat(300)}`] }],
    ['a unicode CVE id', { cves: ['CVE-２０２４-٦١١٩'] }],
  ])('stays a valid, unique name with %s', (_, over) => {
    // Act
    const name = executionName(prod('checkout'), [image(over)], at);
    const other = executionName(
      prod('checkout'),
      [image({ ...over, containers: ['x'] })],
      new Date(at.getTime() + 1_000),
    );

    // Assess: allowed characters only, the time and fingerprint kept (they make it unique).
    expect(name).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
    expect(name).not.toMatch(FORBIDDEN);
    expect(name).toMatch(/-[0-9a-f]{6}-20240904T165538Z$/);
    expect(other).not.toBe(name);
  });

  it('keeps a readable service part when the service name has nothing allowed in it', () => {
    const name = executionName(prod('ü'), [image()], at);
    expect(name).toMatch(/^_-CVE-2024-6119-aaaaaaaa-/);
  });

  it('gives a stable remediation id per service and name', () => {
    expect(remediationId('prod/svc', 'n')).toBe(remediationId('prod/svc', 'n'));
    expect(remediationId('prod/svc', 'n')).not.toBe(remediationId('prod/other', 'n'));
  });
});

describe('mergeImages', () => {
  it('folds entries of one digest, keeping the worst severity and the union of CVEs and containers', () => {
    const merged = mergeImages(
      [image({ cves: ['CVE-B'], severity: 'HIGH', containers: ['app'] })],
      [image({ cves: ['CVE-A'], severity: 'CRITICAL', containers: ['worker'] })],
    );
    expect(merged).toHaveLength(1);
    expect(merged[0]).toMatchObject({
      cves: ['CVE-A', 'CVE-B'],
      severity: 'CRITICAL',
      containers: ['app', 'worker'],
    });
  });

  it('keeps a source rebuild once any finding asks for one', () => {
    const merged = mergeImages(
      [image()],
      [image({ rebuild: { mode: 'source', sourceLocation: 'https://git.example.com/app.git' } })],
    );
    expect(merged[0]?.rebuild.mode).toBe('source');
  });

  it('keeps distinct digests apart, in a stable order', () => {
    const b = image({ imageDigest: `sha256:${'b'.repeat(64)}` });
    const a = image();
    expect(mergeImages([b, a]).map((i) => i.imageDigest)).toEqual([a.imageDigest, b.imageDigest]);
  });
});

describe('mergeRequests', () => {
  const request = (over: Partial<RemediationRequest> = {}): RemediationRequest => ({
    remediationId: 'r1',
    executionName: 'svc-1',
    service: {
      clusterArn: 'arn:aws:ecs:eu-central-1:123456789012:cluster/prod',
      serviceName: 'svc',
      key: 'prod/svc',
    },
    images: [image()],
    decision: { action: 'remediate', reason: 'r' },
    target: {
      alarmNames: [],
      bakeTimeMinutes: 60,
      deploymentTimeoutSeconds: 7200,
      rescanTimeoutSeconds: 3600,
      approvalTimeoutSeconds: 86400,
    },
    findingsCount: 1,
    requestedAt: '2024-09-04T17:00:00.000Z',
    ...over,
  });

  it('keeps the earlier identity, adds findings and lets approval win', () => {
    const merged = mergeRequests(
      request(),
      request({
        remediationId: 'r2',
        images: [image({ cves: ['CVE-2'], findingArns: ['arn:finding/2'] })],
        decision: { action: 'approve', reason: 'needs approval' },
        requestedAt: '2024-09-04T16:00:00.000Z',
      }),
    );
    expect(merged.remediationId).toBe('r1');
    expect(merged.findingsCount).toBe(2);
    expect(merged.decision.action).toBe('approve');
    expect(merged.images[0]?.cves).toEqual(['CVE-2', 'CVE-2024-6119']);
    expect(merged.requestedAt).toBe('2024-09-04T16:00:00.000Z');
  });

  it('counts each finding (one per CVE per image) once when the two requests overlap', () => {
    const both = image({ cves: ['CVE-1', 'CVE-2'], findingArns: ['arn:finding/1', 'arn:finding/2'] });
    const merged = mergeRequests(
      request({ images: [image({ cves: ['CVE-1'], findingArns: ['arn:finding/1'] })] }),
      request({ images: [both], findingsCount: 2 }),
    );
    expect(merged.findingsCount).toBe(2);
  });

  it('keeps a bounded sample of finding ARNs per image, however many findings merge', () => {
    const many = Array.from({ length: 30 }, (_, i) =>
      request({ images: [image({ cves: [`CVE-${i}`], findingArns: [`arn:finding/${i}`] })] }),
    );
    const merged = many.reduce(mergeRequests);
    expect(merged.images[0]?.cves).toHaveLength(30);
    expect(merged.findingsCount).toBe(30);
    expect(merged.images[0]?.findingArns.length).toBe(MAX_FINDING_ARNS_PER_IMAGE);
  });

  it.each([
    ['both wait: the earlier window', '2024-09-07T02:00:00Z', '2024-09-06T02:00:00Z', '2024-09-06T02:00:00Z'],
    [
      'one need not wait (no window, or the CRITICAL exploit override): nobody waits',
      '2024-09-07T02:00:00Z',
      undefined,
      undefined,
    ],
    ['neither waits', undefined, undefined, undefined],
  ])('merges maintenance windows: %s', (_label, a, b, expected) => {
    const decision = (notBefore: string | undefined) => ({
      action: 'remediate' as const,
      reason: notBefore ? `window ${notBefore}` : 'now',
      ...(notBefore ? { notBefore } : {}),
    });
    const merged = mergeRequests(request({ decision: decision(a) }), request({ decision: decision(b) }));
    expect(merged.decision.notBefore).toBe(expected);
    expect(merged.decision.reason).toBe(expected ? `window ${expected}` : 'now');
  });
});
