/**
 * Multi-architecture images (issue #15): a finding on a platform manifest maps to the image index a
 * service runs; the plan patches every platform on its architecture's project; the verified platforms
 * are assembled into a new index that keeps every platform.
 */
import { createHash } from 'node:crypto';
import { BatchGetImageCommand, ECRClient, PutImageCommand } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import type { AffectedImage, ImageIndex, IndexPlatform } from '../../lambdas/shared/contracts';
import { mergeImages } from '../../lambdas/shared/remediation';
import { type ImageRef, InventoryResolver, parseIndexManifest } from '../../lambdas/triage/inventory';
import { assembleIndexes, indexManifest } from '../../lambdas/workflow/assemble-indexes';
import { planBuilds } from '../../lambdas/workflow/plan-builds';
import type { PatchedImage } from '../../lambdas/workflow/state';
import { ACCOUNT, clusterArn, installFakeEcs, REGION, taskDefArn } from '../support/fake-ecs';

const REGISTRY = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;
const API = `${REGISTRY}/payments/api`;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const INDEX = digest('1');
const AMD64 = digest('2');
const ARM64 = digest('3');
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

const indexJson = (manifests: unknown[], mediaType = OCI_INDEX) =>
  JSON.stringify({ schemaVersion: 2, mediaType, manifests });
const platformEntry = (d: string, architecture: string, extra: Record<string, unknown> = {}) => ({
  mediaType: OCI_MANIFEST,
  digest: d,
  size: 1234,
  platform: { architecture, os: 'linux', ...(architecture === 'arm64' ? { variant: 'v8' } : {}) },
  ...extra,
});
const TWO_PLATFORMS = indexJson([platformEntry(AMD64, 'amd64'), platformEntry(ARM64, 'arm64')]);

const ecs = mockClient(ECSClient);
const ecr = mockClient(ECRClient);
afterEach(() => {
  ecs.reset();
  ecr.reset();
});

describe('parseIndexManifest', () => {
  it('reads the platforms of an OCI index, leaving build attestations out', () => {
    // Prepare
    const manifest = indexJson([
      platformEntry(AMD64, 'amd64'),
      platformEntry(ARM64, 'arm64'),
      {
        mediaType: OCI_MANIFEST,
        digest: digest('4'),
        size: 566,
        platform: { architecture: 'unknown', os: 'unknown' },
        annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
      },
    ]);

    // Act / Assess
    expect(parseIndexManifest(manifest, OCI_INDEX)).toEqual({
      mediaType: OCI_INDEX,
      platforms: [
        { digest: AMD64, mediaType: OCI_MANIFEST, architecture: 'amd64', os: 'linux' },
        { digest: ARM64, mediaType: OCI_MANIFEST, architecture: 'arm64', os: 'linux', variant: 'v8' },
      ],
      attestations: 1,
    });
  });

  it.each([
    ['a single-platform manifest', JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] })],
    ['not JSON', '{'],
    ['a platform digest that is not a digest', indexJson([platformEntry('sha256:zz', 'amd64')])],
    ['an architecture with shell characters', indexJson([platformEntry(AMD64, 'amd64;rm')])],
    ['no platform at all', indexJson([])],
  ])('is undefined for %s', (_name, manifest) => {
    expect(parseIndexManifest(manifest, undefined)).toBeUndefined();
  });
});

describe('triage: a platform digest maps to the index a service runs', () => {
  const imageRef = (imageDigest: string, imageTags: string[] = []): ImageRef => ({
    registry: ACCOUNT,
    repository: 'payments/api',
    repositoryUri: API,
    imageDigest,
    imageTags,
  });
  const account = (image: string) =>
    installFakeEcs(ecs, {
      clusters: ['prod'],
      services: [
        {
          cluster: 'prod',
          name: 'checkout',
          taskDefinition: taskDefArn('checkout', 1),
          tags: { autopatch: 'enabled' },
          runningCount: 0,
        },
      ],
      taskDefinitions: { [taskDefArn('checkout', 1)]: [{ name: 'app', image }] },
    });
  const resolver = () =>
    new InventoryResolver({
      ecs: new ECSClient({ region: REGION }),
      ecr: new ECRClient({ region: REGION }),
      discoverByTag: { key: 'autopatch', value: 'enabled' },
    });
  const index: ImageIndex = {
    mediaType: OCI_INDEX,
    platforms: [
      { digest: AMD64, mediaType: OCI_MANIFEST, architecture: 'amd64', os: 'linux' },
      { digest: ARM64, mediaType: OCI_MANIFEST, architecture: 'arm64', os: 'linux', variant: 'v8' },
    ],
  };

  it.each([
    ['by tag', `${API}:v2`, { imageTag: 'v2' }, ['v2']],
    ['by index digest', `${API}@${INDEX}`, { imageDigest: INDEX }, []],
  ])('matches the service that references the index %s, with the index', async (_n, image, id, tags) => {
    // Prepare
    account(image);
    ecr.on(BatchGetImageCommand).resolves({
      images: [
        {
          imageId: { imageDigest: INDEX, ...id },
          imageManifest: TWO_PLATFORMS,
          imageManifestMediaType: OCI_INDEX,
        },
      ],
      failures: [],
    });
    const r = resolver();

    // Act
    const arm = await r.servicesForImage(imageRef(ARM64));
    const amd = await r.servicesForImage(imageRef(AMD64));
    const other = await r.servicesForImage(imageRef(digest('9')));

    // Assess
    const expected = {
      service: { clusterArn: clusterArn('prod'), serviceName: 'checkout', key: 'prod/checkout' },
      containers: ['app'],
      deploymentController: 'ECS',
      taskDefinitionArn: taskDefArn('checkout', 1),
      tags: { autopatch: 'enabled' },
      index: { ...index, digest: INDEX, tags },
    };
    expect(arm).toEqual([expected]);
    expect(amd).toEqual([expected]);
    expect(other).toEqual([]);
    // One read of the repository's references, whatever the number of findings, with the index types accepted.
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(1);
    expect(ecr.commandCalls(BatchGetImageCommand)[0]?.args[0].input).toEqual({
      registryId: ACCOUNT,
      repositoryName: 'payments/api',
      imageIds: [id],
      acceptedMediaTypes: [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST],
    });
  });

  it('does not call ECR for a repository no service references, and matches single-platform images as before', async () => {
    // Prepare
    account(`${API}@${AMD64}`);
    ecr.on(BatchGetImageCommand).resolves({
      images: [
        {
          imageId: { imageDigest: AMD64 },
          imageManifest: JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST }),
          imageManifestMediaType: OCI_MANIFEST,
        },
      ],
    });
    const r = resolver();

    // Act
    const direct = await r.servicesForImage(imageRef(AMD64));
    const elsewhere = await r.servicesForImage({
      ...imageRef(ARM64),
      repository: 'other',
      repositoryUri: `${REGISTRY}/other`,
    });

    // Assess
    expect(direct).toEqual([expect.not.objectContaining({ index: expect.anything() })]);
    expect(direct).toHaveLength(1);
    expect(elsewhere).toEqual([]);
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(1);
  });

  it('fails the lookup (the finding is retried) when ECR throttles', async () => {
    // Prepare
    account(`${API}:v2`);
    ecr
      .on(BatchGetImageCommand)
      .rejects(Object.assign(new Error('slow down'), { name: 'ThrottlingException' }));

    // Act / Assess
    await expect(resolver().servicesForImage(imageRef(ARM64))).rejects.toMatchObject({
      name: 'TransientError',
      message: expect.stringContaining('inventory: ECR BatchGetImage failed'),
    });
  });
});

const affected = (overrides: Partial<AffectedImage> = {}): AffectedImage => ({
  repository: 'payments/api',
  registry: ACCOUNT,
  repositoryUri: API,
  imageDigest: INDEX,
  imageTags: ['v2'],
  containers: ['app'],
  platform: 'DEBIAN_12',
  packageManagers: ['OS'],
  cves: ['CVE-2024-6119'],
  severity: 'HIGH',
  findingArns: ['arn:finding'],
  rebuild: { mode: 'patch-os' },
  packages: [{ name: 'openssl', fixedInVersion: '3.0.14-1~deb12u2' }],
  index: {
    mediaType: OCI_INDEX,
    platforms: [
      { digest: AMD64, mediaType: OCI_MANIFEST, architecture: 'amd64', os: 'linux' },
      { digest: ARM64, mediaType: OCI_MANIFEST, architecture: 'arm64', os: 'linux', variant: 'v8' },
    ],
  },
  ...overrides,
});
const PROJECTS = {
  patchOs: { x86: 'patch-x86', arm: 'patch-arm' },
  source: { x86: 'source-x86', arm: 'source-arm' },
};
const PLAN_INPUT = { executionName: 'checkout-CVE-2024-6119-x', startedAt: '2024-09-04T16:55:38.411Z' };

describe('plan: every platform of an index, on its architecture', () => {
  it('plans one build per platform, each from its platform digest, tied back to the index', () => {
    // Act
    const { builds } = planBuilds({ ...PLAN_INPUT, images: [affected()] }, PROJECTS);

    // Assess
    expect(builds.map((b) => [b.projectName, b.image.imageDigest, b.image.architecture])).toEqual([
      ['patch-x86', AMD64, 'amd64'],
      ['patch-arm', ARM64, 'arm64'],
    ]);
    for (const b of builds) {
      expect(b.image.index).toBeUndefined();
      expect(b.platformOf).toEqual(
        expect.objectContaining({ indexDigest: INDEX, indexMediaType: OCI_INDEX, platformCount: 2 }),
      );
      expect(b.environment).toContainEqual({
        Name: 'IMAGE_URI',
        Value: `${API}@${b.image.imageDigest}`,
        Type: 'PLAINTEXT',
      });
    }
    expect(new Set(builds.map((b) => b.targetTag)).size).toBe(2);
  });

  it.each([
    ['linux/s390x', { architecture: 's390x', os: 'linux' }],
    ['linux/arm/v7', { architecture: 'arm', os: 'linux', variant: 'v7' }],
    ['windows/amd64', { architecture: 'amd64', os: 'windows' }],
  ])('fails with PlatformNotPatchableError before any build when the index holds %s', (name, platform) => {
    // Prepare
    const image = affected();
    const index = image.index as ImageIndex;
    const withOdd = affected({
      index: {
        ...index,
        platforms: [...index.platforms, { digest: digest('5'), mediaType: OCI_MANIFEST, ...platform }],
      },
    });

    // Act / Assess
    expect(() => planBuilds({ ...PLAN_INPUT, images: [withOdd] }, PROJECTS)).toThrow(
      expect.objectContaining({ name: 'PlatformNotPatchableError', message: expect.stringContaining(name) }),
    );
  });

  it('refuses an index whose platform digest is not a digest (a request from elsewhere)', () => {
    const image = affected();
    const index = image.index as ImageIndex;
    const bad = affected({
      index: { ...index, platforms: [{ ...(index.platforms[0] as IndexPlatform), digest: 'sha256:x;rm' }] },
    });
    expect(() => planBuilds({ ...PLAN_INPUT, images: [bad] }, PROJECTS)).toThrow(
      /without valid platform digests/,
    );
  });

  it('a request from before multi-arch support (no index) plans as before', () => {
    const { index: _, ...old } = affected({ imageDigest: ARM64, architecture: 'arm64' });
    const { builds } = planBuilds({ ...PLAN_INPUT, images: [old] }, PROJECTS);
    expect(builds).toHaveLength(1);
    expect(builds[0]?.platformOf).toBeUndefined();
    expect(builds[0]?.projectName).toBe('patch-arm');
  });

  it('findings on two platforms of one index fold into one image (one remediation)', () => {
    const merged = mergeImages([affected({ cves: ['CVE-1'] })], [affected({ cves: ['CVE-2'] })]);
    expect(merged).toHaveLength(1);
    expect(merged[0]?.cves).toEqual(['CVE-1', 'CVE-2']);
    expect(merged[0]?.index?.platforms).toHaveLength(2);
  });
});

describe('assemble: a new index that keeps every platform', () => {
  const NEW_AMD64_MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: ['amd64'] });
  const NEW_ARM64_MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: ['arm64'] });
  const NEW_AMD64 = sha256(NEW_AMD64_MANIFEST);
  const NEW_ARM64 = sha256(NEW_ARM64_MANIFEST);
  const builds = planBuilds({ ...PLAN_INPUT, images: [affected()] }, PROJECTS).builds;
  const verified = (oldDigest: string, newDigest: string, n: number): PatchedImage => ({
    repository: 'payments/api',
    registry: ACCOUNT,
    repositoryUri: API,
    containers: ['app'],
    cves: ['CVE-2024-6119'],
    severity: 'HIGH',
    oldDigest,
    newDigest,
    targetTag: builds[n]?.targetTag as string,
    cvesClosed: ['CVE-2024-6119'],
    buildId: `patch:${n}`,
  });
  const patched = [verified(AMD64, NEW_AMD64, 0), verified(ARM64, NEW_ARM64, 1)];
  const ecrHolds = () =>
    ecr.on(BatchGetImageCommand).resolves({
      images: [
        {
          imageId: { imageDigest: NEW_AMD64 },
          imageManifest: NEW_AMD64_MANIFEST,
          imageManifestMediaType: OCI_MANIFEST,
        },
        {
          imageId: { imageDigest: NEW_ARM64 },
          imageManifest: NEW_ARM64_MANIFEST,
          imageManifestMediaType: OCI_MANIFEST,
        },
      ],
    });

  it('pushes an index of both patched platforms and returns it as the patched image', async () => {
    // Prepare
    ecrHolds();
    ecr.on(PutImageCommand).callsFake((input: { imageManifest: string }) => ({
      image: { imageId: { imageDigest: sha256(input.imageManifest) } },
    }));

    // Act
    const out = await assembleIndexes(
      { ...PLAN_INPUT, builds, patched },
      { ecr: new ECRClient({ region: REGION }) },
    );

    // Assess
    const put = ecr.commandCalls(PutImageCommand)[0]?.args[0].input;
    const manifest = JSON.parse(put?.imageManifest as string);
    expect(put?.imageManifestMediaType).toBe(OCI_INDEX);
    expect(put?.imageTag).toMatch(/^autopatch-111111111111-20240904T165538Z-[0-9a-f]{8}$/);
    expect(manifest.manifests).toEqual([
      {
        mediaType: OCI_MANIFEST,
        digest: NEW_AMD64,
        size: NEW_AMD64_MANIFEST.length,
        platform: { architecture: 'amd64', os: 'linux' },
      },
      {
        mediaType: OCI_MANIFEST,
        digest: NEW_ARM64,
        size: NEW_ARM64_MANIFEST.length,
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
      },
    ]);
    expect(out.patched).toEqual([
      expect.objectContaining({
        oldDigest: INDEX,
        newDigest: sha256(put?.imageManifest as string),
        targetTag: put?.imageTag,
        cvesClosed: ['CVE-2024-6119'],
        platforms: [
          expect.objectContaining({ architecture: 'amd64', oldDigest: AMD64, newDigest: NEW_AMD64 }),
          expect.objectContaining({ architecture: 'arm64', oldDigest: ARM64, newDigest: NEW_ARM64 }),
        ],
      }),
    ]);
  });

  it('a retry finds the index already pushed (ImageAlreadyExistsException) and carries on', async () => {
    ecrHolds();
    ecr
      .on(PutImageCommand)
      .rejects(Object.assign(new Error('exists'), { name: 'ImageAlreadyExistsException' }));
    const out = await assembleIndexes(
      { ...PLAN_INPUT, builds, patched },
      { ecr: new ECRClient({ region: REGION }) },
    );
    expect(out.patched[0]?.oldDigest).toBe(INDEX);
  });

  it('never pushes an index that lost a platform', async () => {
    // Prepare: ECR no longer holds the patched arm64 manifest.
    ecr.on(BatchGetImageCommand).resolves({
      images: [
        {
          imageId: { imageDigest: NEW_AMD64 },
          imageManifest: NEW_AMD64_MANIFEST,
          imageManifestMediaType: OCI_MANIFEST,
        },
      ],
      failures: [{ imageId: { imageDigest: NEW_ARM64 }, failureCode: 'ImageNotFound' }],
    });

    // Act / Assess
    await expect(
      assembleIndexes({ ...PLAN_INPUT, builds, patched }, { ecr: new ECRClient({ region: REGION }) }),
    ).rejects.toMatchObject({
      name: 'ImageIndexError',
      message: expect.stringContaining('would lose a platform'),
    });
    await expect(
      assembleIndexes(
        { ...PLAN_INPUT, builds, patched: patched.slice(0, 1) },
        { ecr: new ECRClient({ region: REGION }) },
      ),
    ).rejects.toMatchObject({ name: 'ImageIndexError' });
    expect(ecr.commandCalls(PutImageCommand)).toHaveLength(0);
  });

  it('passes single-platform images through without an AWS call', async () => {
    const { index: _, ...single } = affected({ imageDigest: AMD64 });
    const one = planBuilds({ ...PLAN_INPUT, images: [single] }, PROJECTS).builds;
    const out = await assembleIndexes(
      { ...PLAN_INPUT, builds: one, patched: [verified(AMD64, NEW_AMD64, 0)] },
      { ecr: new ECRClient({ region: REGION }) },
    );
    expect(out.patched).toEqual([verified(AMD64, NEW_AMD64, 0)]);
    expect(ecr.calls()).toHaveLength(0);
  });

  it('keeps a Docker manifest list when every platform is a Docker manifest, else makes an OCI index', () => {
    const entry = (mediaType: string) => ({
      mediaType,
      digest: AMD64,
      size: 1,
      platform: { architecture: 'amd64', os: 'linux' },
    });
    expect(indexManifest(DOCKER_LIST, [entry(DOCKER_MANIFEST)]).mediaType).toBe(DOCKER_LIST);
    expect(indexManifest(DOCKER_LIST, [entry(OCI_MANIFEST)]).mediaType).toBe(OCI_INDEX);
    const built = indexManifest(OCI_INDEX, [entry(OCI_MANIFEST)]);
    expect(built.digest).toBe(sha256(built.manifest));
  });
});
