import { packageManagerFor, planBuilds } from '../../../lambdas/workflow/plan-builds';
import { FAKE_PROJECTS, image } from '../../support/workflow-harness';

const plan = (images: Parameters<typeof planBuilds>[0]['images']) =>
  planBuilds({ images, executionName: 'exec-1', startedAt: '2024-09-04T16:55:38.411Z' }, FAKE_PROJECTS)
    .builds;
const env = (build: ReturnType<typeof plan>[number] | undefined) =>
  Object.fromEntries((build?.environment ?? []).map((v) => [v.Name, v.Value]));

describe('planBuilds', () => {
  it('gives two executions that rebuild the same image in the same second different tags', () => {
    const at = '2024-09-04T16:55:38.411Z';
    const [cart] = planBuilds(
      { images: [image()], executionName: 'cart-1', startedAt: at },
      FAKE_PROJECTS,
    ).builds;
    const [orders] = planBuilds(
      { images: [image()], executionName: 'orders-1', startedAt: at },
      FAKE_PROJECTS,
    ).builds;
    expect(cart?.targetTag).not.toBe(orders?.targetTag);
  });

  it.each([
    ['DEBIAN_12', 'apt'],
    ['UBUNTU_22_04', 'apt'],
    ['ALPINE_LINUX_3_19', 'apk'],
    ['AMAZON_LINUX_2023', 'dnf'],
    ['AMAZON_LINUX_2', 'yum'],
    ['RHEL_9', 'dnf'],
    ['CENTOS_7', 'yum'],
    ['ORACLE_LINUX_8', 'dnf'],
    ['OPENSUSE_LEAP_15_5', 'zypper'],
    [undefined, 'auto'],
    ['WINDOWS_SERVER_2022', 'auto'],
  ])('maps platform %s to package manager %s', (platform, manager) => {
    expect(packageManagerFor(platform)).toBe(manager);
  });

  it('patches on the project of the image architecture, pinned to the running digest, with a deterministic tag', () => {
    const [arm] = plan([image({ architecture: 'arm64' })]);
    const [x86] = plan([image({ architecture: 'amd64', imageDigest: `sha256:${'c3'.repeat(32)}` })]);

    expect(arm?.projectName).toBe('PatchOsArmProject');
    expect(x86?.projectName).toBe('PatchOsX86Project');
    expect(arm?.targetTag).toMatch(new RegExp(`^autopatch-${'a1'.repeat(6)}-20240904T165538Z-[0-9a-f]{8}$`));
    expect(plan([image({ architecture: 'arm64' })])[0]?.targetTag).toBe(arm?.targetTag);
    expect(env(arm)).toEqual(
      expect.objectContaining({
        IMAGE_URI: `${image().repositoryUri}@${image().imageDigest}`,
        TARGET_IMAGE: `${image().repositoryUri}:${arm?.targetTag}`,
        PACKAGE_MANAGER: 'apt',
        REBUILD_MODE: 'patch-os',
        SOURCE_LOCATION: '',
      }),
    );
    expect(arm?.environment.every((v) => v.Type === 'PLAINTEXT')).toBe(true);
  });

  it('rebuilds from source on the source project, or on the service’s own project', () => {
    const [source, own] = plan([
      image({
        rebuild: { mode: 'source', sourceLocation: 's3://src/app.zip', dockerfile: 'docker/Dockerfile' },
      }),
      image({ rebuild: { mode: 'project', projectName: 'payments-image' }, architecture: undefined }),
    ]);
    expect(source?.projectName).toBe('SourceArmProject');
    expect(env(source)).toEqual(
      expect.objectContaining({ SOURCE_LOCATION: 's3://src/app.zip', DOCKERFILE: 'docker/Dockerfile' }),
    );
    expect(own?.projectName).toBe('payments-image');
    expect(env(own).ARCHITECTURE).toBe('');
  });
});
