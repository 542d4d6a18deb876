import {
  MAX_PATCH_PACKAGES_CHARS,
  packageManagerFor,
  planBuilds,
} from '../../../lambdas/workflow/plan-builds';
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
    const { architecture: _unknown, ...ofUnknownArchitecture } = image({
      rebuild: { mode: 'project', projectName: 'payments-image' },
    });
    const [source, own] = plan([
      image({
        rebuild: { mode: 'source', sourceLocation: 's3://src/app.zip', dockerfile: 'docker/Dockerfile' },
      }),
      ofUnknownArchitecture,
    ]);
    expect(source?.projectName).toBe('SourceArmProject');
    expect(env(source)).toEqual(
      expect.objectContaining({ SOURCE_LOCATION: 's3://src/app.zip', DOCKERFILE: 'docker/Dockerfile' }),
    );
    expect(own?.projectName).toBe('payments-image');
    expect(env(own).ARCHITECTURE).toBe('');
  });

  describe('the packages a patch layer upgrades', () => {
    const libssl = { name: 'libssl3', fixedInVersion: '0:3.0.13-1~deb12u1' };

    it('passes the findings’ packages as PATCH_PACKAGES and patches only those by default', () => {
      const [build] = plan([image({ packages: [libssl, { name: 'zlib1g' }] })]);
      expect(env(build)).toEqual(
        expect.objectContaining({
          PATCH_SCOPE: 'vulnerable',
          PATCH_PACKAGES: 'libssl3=0:3.0.13-1~deb12u1 zlib1g',
        }),
      );
    });

    it('takes every update when the target asks for it, still naming the packages to check', () => {
      const [build] = plan([image({ packages: [libssl], rebuild: { mode: 'patch-os', packages: 'all' } })]);
      expect(env(build)).toEqual(
        expect.objectContaining({ PATCH_SCOPE: 'all', PATCH_PACKAGES: 'libssl3=0:3.0.13-1~deb12u1' }),
      );
    });

    it.each([
      ['a request from before the field', undefined],
      ['an empty list', []],
      ['a name that could reach a shell', [{ name: 'libssl3$(id)', fixedInVersion: '1' }]],
      ['a version that could reach a shell', [{ name: 'libssl3', fixedInVersion: "1'; id; '" }]],
      [
        'a list too long for a build variable',
        Array.from({ length: 90 }, (_, i) => ({ name: `lib${'x'.repeat(80)}${i}`, fixedInVersion: '1.0' })),
      ],
    ])('takes every update, PATCH_PACKAGES empty, for %s', (_, packages) => {
      const [build] = plan([image(packages === undefined ? {} : { packages })]);
      expect(env(build)).toEqual(expect.objectContaining({ PATCH_SCOPE: 'all', PATCH_PACKAGES: '' }));
      expect(MAX_PATCH_PACKAGES_CHARS).toBeLessThan(90 * 90);
    });

    it('always sets both variables, empty where they do not apply', () => {
      const builds = plan([
        image({ packages: [libssl], rebuild: { mode: 'source', sourceLocation: 's3://src/app.zip' } }),
        image({ rebuild: { mode: 'project', projectName: 'payments-image' } }),
      ]);
      expect(builds.map((b) => [env(b).PATCH_SCOPE, env(b).PATCH_PACKAGES])).toEqual([
        ['', 'libssl3=0:3.0.13-1~deb12u1'],
        ['', ''],
      ]);
    });
  });
});
