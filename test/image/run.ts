/**
 * `npm run test:image`: the buildspecs' own commands, run for real. The patch-os and source buildspecs
 * (the objects the CodeBuild projects are synthesized from) are executed phase by phase against a
 * Debian 12 image in an OCI registry on 127.0.0.1, with the build environment planBuilds gives them,
 * and the images they push are checked: the exported digest is the registry's, the vulnerable packages
 * were upgraded (and, when targeted, nothing else), the runtime contract and the labels are right.
 * Every shell script of every buildspec goes through shellcheck first. Multi-architecture images: an
 * amd64 + arm64 index made by buildah is read, planned per platform and reassembled by the workflow's
 * own code against the registry (the platform images are built from scratch: no arm64 emulation here).
 *
 * Needs root and Debian (apt-get installs podman, buildah, skopeo, debootstrap, docker-registry,
 * shellcheck and git when missing). Talks only to 127.0.0.1 and, through apt, Debian's mirrors.
 * Stand-ins for `docker` (podman/buildah: there is no Docker engine here) and for
 * `aws ecr get-login-password` come first on the builds' PATH; the buildspecs know nothing of them.
 *
 *   npm run test:image [-- --keep] [-- --only <name>]
 *
 * Environment: AUTOPATCH_IMAGE_TEST_CACHE (default /var/cache/autopatch-image-test) keeps the
 * debootstrap rootfs between runs.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchGetImageCommand, PutImageCommand } from '@aws-sdk/client-ecr';
import {
  type AffectedImage,
  INDEX_MEDIA_TYPES,
  MANIFEST_MEDIA_TYPES,
  type PatchPackage,
  type RebuildMode,
} from '../../lambdas/shared/contracts';
import { parseIndexManifest } from '../../lambdas/triage/inventory';
import { type AssembleIndexesDeps, assembleIndexes } from '../../lambdas/workflow/assemble-indexes';
import { planBuilds } from '../../lambdas/workflow/plan-builds';
import { BASE_CONFIG, type BaseImage, buildBaseImage, debianRootfs } from './base-image';
import { type BuildSpec, commandsAsScript, driverScript, loadBuildSpecs } from './buildspecs';
import { containerEnv, ensurePrerequisites, freePort, registryDigest, run, startRegistry } from './tools';

const STANDINS = join(__dirname, 'standins');
const CACHE = process.env.AUTOPATCH_IMAGE_TEST_CACHE ?? '/var/cache/autopatch-image-test';
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const say = (line: string) => console.log(`[test:image ${elapsed()}] ${line}`);

// ---- results -------------------------------------------------------------------------------------

const results: { name: string; ok: boolean; detail?: string }[] = [];
const check = (name: string, ok: boolean, detail?: string) => {
  results.push({ name, ok, ...(detail === undefined ? {} : { detail }) });
  console.log(
    `  ${ok ? 'ok  ' : 'FAIL'} ${name}${!ok && detail ? `\n         ${detail.split('\n').join('\n         ')}` : ''}`,
  );
};
const same = (name: string, actual: unknown, expected: unknown) => {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(name, a === e, `expected ${e}\n got      ${a}`);
};

// ---- the machine ---------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'autopatch-image-test-'));
const logFile = join(work, 'commands.log');
const standinLog = join(work, 'standins.log');

/** Debian version order, from dpkg itself. */
const dpkgLt = (a: string, b: string): boolean =>
  spawnSync('dpkg', ['--compare-versions', a, 'lt', b], { stdio: 'ignore' }).status === 0;

interface Context {
  readonly env: NodeJS.ProcessEnv;
  readonly registry: string;
  readonly base: BaseImage;
  /** The base image as the running service's image: autopatch-test/app@<digest>. */
  readonly appDigest: string;
  readonly specs: ReadonlyMap<string, BuildSpec>;
}

const REPOSITORY = 'autopatch-test/app';

/**
 * The installed packages of an image the registry holds (package → version), read from its dpkg
 * status file: vfs storage mounts an image's top layer in place, where a container would copy it.
 */
const dpkgList = (ctx: Context, ref: string): Promise<Map<string, string>> =>
  inImage(ctx, ref, (root) => {
    const packages = new Map<string, string>();
    for (const stanza of readFileSync(join(root, 'var/lib/dpkg/status'), 'utf8').split(/\n\n+/)) {
      const field = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(stanza)?.[1];
      const pkg = field('Package');
      const version = field('Version');
      if (pkg && version && field('Status') === 'install ok installed') packages.set(pkg, version);
    }
    return packages;
  });

/** Reads the files of an image the registry holds (vfs storage mounts an image's top layer in place). */
const inImage = async <T>(ctx: Context, ref: string, read: (root: string) => T): Promise<T> => {
  const opts = { env: ctx.env, logFile };
  await run('podman', ['pull', '--quiet', ref], opts);
  const root = (await run('podman', ['image', 'mount', ref], opts)).stdout.trim();
  try {
    return read(root);
  } finally {
    await run('podman', ['image', 'unmount', ref], { ...opts, allowFailure: true });
  }
};

/** The image config the registry holds for a reference (not what the local store says). */
const registryConfig = async (ctx: Context, ref: string) =>
  JSON.parse(
    (
      await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${ref}`], {
        env: ctx.env,
        logFile,
      })
    ).stdout,
  ).config as {
    User?: string;
    WorkingDir?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[];
    Labels?: Record<string, string>;
  };

/** The affected image as triage would hand it to the workflow, pointing at the local registry. */
const affectedImage = (
  ctx: Context,
  rebuild: RebuildMode,
  packages?: PatchPackage[],
  platform?: string,
): AffectedImage => ({
  repository: REPOSITORY,
  registry: ctx.registry,
  repositoryUri: `${ctx.registry}/${REPOSITORY}`,
  imageDigest: ctx.appDigest,
  imageTags: ['base'],
  containers: ['app'],
  ...(platform === undefined ? {} : { platform }),
  architecture: 'amd64',
  packageManagers: ['OS'],
  cves: ['CVE-2024-0001'],
  severity: 'HIGH',
  findingArns: ['arn:aws:inspector2:us-east-1:123456789012:finding/test'],
  rebuild,
  ...(packages === undefined ? {} : { packages }),
});

interface BuildOutcome {
  readonly succeeded: boolean;
  readonly exported: Record<string, string>;
  readonly output: string;
  readonly environment: Record<string, string>;
  readonly targetTag: string;
  readonly seconds: number;
}

/** Plans the build with the workflow's own planBuilds, then runs the buildspec's commands as CodeBuild would. */
const runBuild = async (ctx: Context, name: string, image: AffectedImage): Promise<BuildOutcome> => {
  const [build] = planBuilds(
    { images: [image], executionName: `image-test-${name}`, startedAt: new Date().toISOString() },
    { patchOs: { x86: 'patch-os', arm: 'patch-os-arm' }, source: { x86: 'source', arm: 'source-arm' } },
  ).builds;
  if (!build) throw new Error('planBuilds planned no build');
  const spec = ctx.specs.get(
    build.mode === 'source' ? 'source.ts:sourceBuildSpec' : 'patch-os.ts:patchOsBuildSpec',
  );
  if (!spec) throw new Error(`no buildspec for mode ${build.mode}`);
  const environment = Object.fromEntries(build.environment.map((v) => [v.Name, v.Value]));
  const dir = join(work, 'builds', name);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const driver = join(dir, 'buildspec.sh');
  const exportsFile = join(dir, 'exported.env');
  writeFileSync(driver, driverScript(spec, exportsFile));
  const t0 = Date.now();
  const result = await run('bash', [driver], {
    env: {
      ...ctx.env,
      ...environment,
      PATH: `${STANDINS}:${ctx.env.PATH ?? ''}`,
      AWS_REGION: 'us-east-1',
      CODEBUILD_SRC_DIR: dir,
      TMPDIR: join(dir, 'tmp'),
      STANDIN_LOG: standinLog,
    },
    allowFailure: true,
    logFile: join(dir, 'build.log'),
    timeoutMs: 10 * 60_000,
  });
  const exported = Object.fromEntries(
    readFileSync(exportsFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    succeeded: result.status === 0,
    exported,
    output: `${result.stdout}\n${result.stderr}`,
    environment,
    targetTag: build.targetTag,
    seconds: (Date.now() - t0) / 1000,
  };
};

/** The checks every successful build must pass: the digest is the registry's, labels are set. */
const checkPushed = async (
  ctx: Context,
  name: string,
  outcome: BuildOutcome,
): Promise<string | undefined> => {
  check(
    `${name}: the build succeeds (${outcome.seconds.toFixed(0)} s)`,
    outcome.succeeded,
    lastLines(outcome.output),
  );
  if (!outcome.succeeded) return undefined;
  const held = await registryDigest(ctx.registry, REPOSITORY, outcome.targetTag);
  const digest = outcome.exported.IMAGE_DIGEST;
  check(
    `${name}: the exported IMAGE_DIGEST is the digest the registry holds for ${outcome.targetTag}`,
    held !== undefined && digest === held,
    `IMAGE_DIGEST=${digest}, registry: ${held}`,
  );
  same(
    `${name}: PATCHED_IMAGE is the repository pinned by that digest`,
    outcome.exported.PATCHED_IMAGE,
    `${ctx.registry}/${REPOSITORY}@${held}`,
  );
  return held;
};

const lastLines = (text: string, n = 25) => text.trim().split('\n').slice(-n).join('\n');

// ---- the scenarios -------------------------------------------------------------------------------

const pinnedNames = (ctx: Context) => [...ctx.base.pinned.keys()];

/** Findings name the first pinned package by its binary name and the second by its source name, as Inspector fixes read. */
const vulnerablePackages = (ctx: Context): PatchPackage[] => {
  const [one, two] = [...ctx.base.pinned];
  if (!one || !two) throw new Error('the base pins two packages');
  const [[first, a], [second, b]] = [one, two];
  return [
    { name: first, fixedInVersion: a.newest.includes(':') ? a.newest : `0:${a.newest}` },
    { name: b.source !== second ? b.source : second, fixedInVersion: b.newest },
  ];
};

const contractChecks = async (ctx: Context, name: string, ref: string) => {
  const config = await registryConfig(ctx, ref);
  same(`${name}: USER unchanged`, config.User, BASE_CONFIG.User);
  same(`${name}: ENTRYPOINT unchanged`, config.Entrypoint, BASE_CONFIG.Entrypoint);
  same(`${name}: CMD unchanged`, config.Cmd, BASE_CONFIG.Cmd);
  same(`${name}: WORKDIR unchanged`, config.WorkingDir, BASE_CONFIG.WorkingDir);
  same(`${name}: ENV unchanged`, config.Env, BASE_CONFIG.Env);
  return config;
};

const labelChecks = (
  name: string,
  labels: Record<string, string> | undefined,
  ctx: Context,
  execution: string,
) => {
  same(
    `${name}: label autopatch.source is the running image`,
    labels?.['autopatch.source'],
    `${ctx.registry}/${REPOSITORY}@${ctx.appDigest}`,
  );
  same(`${name}: label autopatch.execution is the execution`, labels?.['autopatch.execution'], execution);
};

const scenarios: Record<string, (ctx: Context, baseline: Map<string, string>) => Promise<void>> = {
  /** Default mode: only what the findings name, to at least the fixed version; nothing else moves. */
  'patch-os-vulnerable': async (ctx, baseline) => {
    const name = 'patch-os (vulnerable packages only)';
    const packages = vulnerablePackages(ctx);
    const outcome = await runBuild(
      ctx,
      'vulnerable',
      affectedImage(ctx, { mode: 'patch-os' }, packages, 'DEBIAN_12'),
    );
    same(
      `${name}: planBuilds asks for a targeted patch`,
      [outcome.environment.PATCH_SCOPE, outcome.environment.PACKAGE_MANAGER],
      ['vulnerable', 'apt'],
    );
    const digest = await checkPushed(ctx, name, outcome);
    if (!digest) return;
    const ref = `${ctx.registry}/${REPOSITORY}@${digest}`;
    const after = await dpkgList(ctx, ref);
    for (const [pkg, v] of ctx.base.pinned) {
      const now = after.get(pkg) ?? '(missing)';
      console.log(`         ${pkg}: ${baseline.get(pkg)} -> ${now}`);
      check(
        `${name}: ${pkg} raised from ${v.old} to at least ${v.newest}`,
        !dpkgLt(now, v.newest) && baseline.get(pkg) === v.old,
        `now ${now}`,
      );
    }
    const changed = [...new Set([...baseline.keys(), ...after.keys()])]
      .filter((p) => baseline.get(p) !== after.get(p))
      .sort();
    same(
      `${name}: nothing but the named packages changed (full dpkg list)`,
      changed,
      pinnedNames(ctx).sort(),
    );
    const otherUpgradable = [...ctx.base.upgradable.keys()].filter((p) => !ctx.base.pinned.has(p));
    check(
      `${name}: ...although ${otherUpgradable.length} other packages had updates (${otherUpgradable.slice(0, 4).join(', ')}, ...)`,
      otherUpgradable.length > 0,
    );
    const leftovers = await inImage(ctx, ref, (root) => [
      ...readdirSync(join(root, 'var/lib/apt/lists')),
      ...(existsSync(join(root, 'autopatch-patch-layer.sh')) ? ['/autopatch-patch-layer.sh'] : []),
    ]);
    same(`${name}: no package lists or patch script left in the image`, leftovers, []);
    const config = await contractChecks(ctx, name, ref);
    labelChecks(name, config.Labels, ctx, 'image-test-vulnerable');
    same(
      `${name}: the base's own labels are kept`,
      config.Labels?.['org.opencontainers.image.title'],
      BASE_CONFIG.Labels['org.opencontainers.image.title'],
    );
  },

  /** "all": every update; the package manager is found by probing the image (no platform named). */
  'patch-os-all': async (ctx, baseline) => {
    const name = 'patch-os (all updates, package manager probed)';
    const before = readLog(standinLog);
    const outcome = await runBuild(
      ctx,
      'all',
      affectedImage(ctx, { mode: 'patch-os', packages: 'all' }, vulnerablePackages(ctx), undefined),
    );
    same(
      `${name}: planBuilds asks for every update, package manager unknown`,
      [outcome.environment.PATCH_SCOPE, outcome.environment.PACKAGE_MANAGER],
      ['all', 'auto'],
    );
    check(
      `${name}: the buildspec probed the image with docker run`,
      readLog(standinLog)
        .slice(before.length)
        .some((l) => l.startsWith('docker run --rm --user 0 --entrypoint /bin/sh')),
    );
    check(
      `${name}: the probe found apt`,
      /--- patch layer \(apt, all:/.test(outcome.output),
      lastLines(outcome.output),
    );
    const digest = await checkPushed(ctx, name, outcome);
    if (!digest) return;
    const ref = `${ctx.registry}/${REPOSITORY}@${digest}`;
    const after = await dpkgList(ctx, ref);
    const behind = [...ctx.base.upgradable]
      .filter(([p, v]) => dpkgLt(after.get(p) ?? '0', v))
      .map(([p, v]) => `${p} ${after.get(p)} < ${v}`);
    check(
      `${name}: all ${ctx.base.upgradable.size} packages with updates were upgraded`,
      behind.length === 0 && ctx.base.upgradable.size > 2,
      behind.join(', '),
    );
    const downgraded = [...baseline].filter(([p, v]) => after.has(p) && dpkgLt(after.get(p) as string, v));
    same(
      `${name}: nothing was downgraded or removed`,
      [downgraded, [...baseline.keys()].filter((p) => !after.has(p))],
      [[], []],
    );
    for (const p of [...ctx.base.upgradable.keys()].slice(0, 6))
      console.log(`         ${p}: ${baseline.get(p) ?? '(new)'} -> ${after.get(p)}`);
    const config = await contractChecks(ctx, name, ref);
    labelChecks(name, config.Labels, ctx, 'image-test-all');
    patchedAll = ref;
  },

  /** A fix the image's sources do not have: the build fails naming the package, and nothing is pushed. */
  'patch-os-fix-unavailable': async (ctx) => {
    const name = 'patch-os (fixed version not available)';
    const [pkg] = pinnedNames(ctx) as [string];
    const outcome = await runBuild(
      ctx,
      'unavailable',
      affectedImage(ctx, { mode: 'patch-os' }, [{ name: pkg, fixedInVersion: '99:1.0-1' }], 'DEBIAN_12'),
    );
    check(
      `${name}: the build fails (${outcome.seconds.toFixed(0)} s)`,
      !outcome.succeeded,
      lastLines(outcome.output),
    );
    check(
      `${name}: the build log names ${pkg} and its fixed version`,
      new RegExp(
        `still below the fixed version after the upgrade: ${pkg.replace(/[+.]/g, '\\$&')} \\S+ \\(fixed in 99:1.0-1\\)`,
      ).test(outcome.output),
      lastLines(outcome.output, 8),
    );
    same(
      `${name}: nothing was pushed`,
      await registryDigest(ctx.registry, REPOSITORY, outcome.targetTag),
      undefined,
    );
    same(`${name}: no digest was exported`, outcome.exported.IMAGE_DIGEST ?? '', '');
  },

  /** A package the image does not have: fail at once, naming it, rather than at the rescan. */
  'patch-os-not-installed': async (ctx) => {
    const name = 'patch-os (named package not installed)';
    const outcome = await runBuild(
      ctx,
      'not-installed',
      affectedImage(
        ctx,
        { mode: 'patch-os' },
        [{ name: 'openssh-server', fixedInVersion: '1:9.2p1-2+deb12u9' }],
        'DEBIAN_12',
      ),
    );
    check(`${name}: the build fails`, !outcome.succeeded, lastLines(outcome.output));
    check(
      `${name}: the build log names openssh-server`,
      /openssh-server is named by the findings but no installed package/.test(outcome.output),
      lastLines(outcome.output, 8),
    );
  },

  /**
   * Source mode: a small Dockerfile project in a git repository, rebuilt with its base pulled fresh.
   * The base tag was moved to a patched image after the project's first build, so only a real pull
   * picks the fixes up.
   */
  'multi-arch-index': (ctx) => multiArch(ctx),
  source: async (ctx) => {
    const name = 'source (Dockerfile project, base pulled fresh)';
    const opts = { env: ctx.env, logFile };
    const baseRef = `${ctx.registry}/autopatch-test/base:bookworm`;
    // The project's base as it was: pulled into the local store, as a stale cache would have it.
    const copy = (from: string, to: string) =>
      run(
        'skopeo',
        ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${from}`, `docker://${to}`],
        opts,
      );
    await copy(`${ctx.registry}/${REPOSITORY}@${ctx.appDigest}`, baseRef);
    await run('podman', ['pull', '--quiet', baseRef], opts);
    if (!patchedAll)
      await scenarios['patch-os-all']?.(
        ctx,
        await dpkgList(ctx, `${ctx.registry}/${REPOSITORY}@${ctx.appDigest}`),
      );
    if (!patchedAll)
      return check(`${name}: a patched base to rebuild on`, false, 'the patch-os (all) build failed');
    await copy(patchedAll, baseRef);

    const repo = join(work, 'source-repo');
    mkdirSync(join(repo, 'docker'), { recursive: true });
    writeFileSync(
      join(repo, 'docker', 'Dockerfile'),
      [
        `FROM ${baseRef}`,
        'USER root',
        'RUN echo "hello from source" > /srv/app/greeting',
        'USER app',
        'WORKDIR /srv/app',
        'ENV GREETING_FILE=/srv/app/greeting',
        'ENTRYPOINT ["/usr/local/bin/app-entry"]',
        'CMD ["greet"]',
        '',
      ].join('\n'),
    );
    const git = (...a: string[]) =>
      run('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', ...a], { ...opts, cwd: repo });
    await git('init', '--quiet', '--initial-branch=main');
    await git('add', '.');
    await git('commit', '--quiet', '-m', 'app');
    await git('tag', 'v1');
    // Work after the tag must not be built: the location pins v1.
    writeFileSync(join(repo, 'docker', 'Dockerfile'), 'FROM scratch\n');
    await git('commit', '--quiet', '-am', 'after v1');

    const outcome = await runBuild(
      ctx,
      'source',
      affectedImage(
        ctx,
        { mode: 'source', sourceLocation: `file://${repo}#v1`, dockerfile: 'docker/Dockerfile' },
        undefined,
        'DEBIAN_12',
      ),
    );
    const digest = await checkPushed(ctx, name, outcome);
    if (!digest) return;
    const ref = `${ctx.registry}/${REPOSITORY}@${digest}`;
    const config = await registryConfig(ctx, ref);
    same(`${name}: USER as the Dockerfile says`, config.User, 'app');
    same(`${name}: ENTRYPOINT as the Dockerfile says`, config.Entrypoint, ['/usr/local/bin/app-entry']);
    same(`${name}: CMD as the Dockerfile says`, config.Cmd, ['greet']);
    same(`${name}: WORKDIR as the Dockerfile says`, config.WorkingDir, '/srv/app');
    same(`${name}: ENV is the base's plus the Dockerfile's`, config.Env, [
      ...BASE_CONFIG.Env,
      'GREETING_FILE=/srv/app/greeting',
    ]);
    labelChecks(name, config.Labels, ctx, 'image-test-source');
    const after = await dpkgList(ctx, ref);
    for (const [pkg, v] of ctx.base.pinned) {
      check(
        `${name}: ${pkg} comes from the freshly pulled base (${after.get(pkg)} >= ${v.newest})`,
        !dpkgLt(after.get(pkg) ?? '0', v.newest),
      );
    }
  },
};

let patchedAll: string | undefined;

// ---- multi-architecture images -------------------------------------------------------------------

const INDEX_ACCEPT = [...INDEX_MEDIA_TYPES, ...MANIFEST_MEDIA_TYPES].join(', ');

/**
 * The two ECR calls "Assemble the patched image indexes" makes, answered by the local registry's own
 * distribution API (GET and PUT of manifests): the registry computes the digests and checks that an
 * index references manifests it holds, as ECR does.
 */
const registryAsEcr = (registry: string): AssembleIndexesDeps['ecr'] => ({
  send: (async (command: unknown) => {
    if (command instanceof BatchGetImageCommand) {
      const { repositoryName, imageIds = [] } = command.input;
      const images = [];
      const failures = [];
      for (const id of imageIds) {
        const res = await fetch(`http://${registry}/v2/${repositoryName}/manifests/${id.imageDigest}`, {
          headers: { Accept: MANIFEST_MEDIA_TYPES.join(', ') },
        });
        if (!res.ok) failures.push({ imageId: id, failureCode: 'ImageNotFound' as const });
        else
          images.push({
            imageId: { imageDigest: id.imageDigest },
            imageManifest: await res.text(),
            imageManifestMediaType: res.headers.get('content-type') ?? undefined,
          });
      }
      return { images, failures };
    }
    if (command instanceof PutImageCommand) {
      const { repositoryName, imageTag, imageManifest, imageManifestMediaType } = command.input;
      const res = await fetch(`http://${registry}/v2/${repositoryName}/manifests/${imageTag}`, {
        method: 'PUT',
        headers: { 'Content-Type': imageManifestMediaType ?? '' },
        body: imageManifest ?? '',
      });
      if (!res.ok) throw new Error(`registry refused the index: ${res.status} ${await res.text()}`);
      return { image: { imageId: { imageDigest: res.headers.get('docker-content-digest') ?? undefined } } };
    }
    throw new Error('the registry stands in for BatchGetImage and PutImage only');
  }) as AssembleIndexesDeps['ecr']['send'],
});

/**
 * A tiny image for one platform, built without running anything (no emulation needed): one file, the
 * platform in its config. Pushed as OCI; returns its digest in the registry.
 */
const platformImage = async (ctx: Context, arch: string, tag: string, content: string): Promise<string> => {
  const opts = { env: ctx.env, logFile };
  const dir = join(work, 'multi-arch', tag);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'platform'), content);
  const container = (await run('buildah', ['from', '--quiet', 'scratch'], opts)).stdout.trim();
  try {
    await run('buildah', ['copy', '--quiet', container, join(dir, 'platform'), '/platform'], opts);
    await run(
      'buildah',
      [
        'config',
        '--arch',
        arch,
        '--os',
        'linux',
        ...(arch === 'arm64' ? ['--variant', 'v8'] : []),
        container,
      ],
      opts,
    );
    await run(
      'buildah',
      ['commit', '--quiet', '--format', 'oci', container, `localhost/multi-arch:${tag}`],
      opts,
    );
  } finally {
    await run('buildah', ['rm', container], { ...opts, allowFailure: true });
  }
  const digestFile = join(dir, 'digest');
  await run(
    'buildah',
    [
      'push',
      '--quiet',
      '--tls-verify=false',
      '--digestfile',
      digestFile,
      `localhost/multi-arch:${tag}`,
      `docker://${ctx.registry}/${REPOSITORY}:${tag}`,
    ],
    opts,
  );
  return readFileSync(digestFile, 'utf8').trim();
};

/**
 * What `skopeo` resolves a reference to for one platform, as a pull on that machine would: the
 * chosen image's architecture and layers (skopeo 1.9 reports the index's own digest, not the
 * instance's, so the layers tell which platform image it picked).
 */
const resolvedFor = async (
  ctx: Context,
  ref: string,
  arch?: string,
): Promise<{ Architecture: string; Layers: string[] }> =>
  JSON.parse(
    (
      await run(
        'skopeo',
        [
          'inspect',
          '--tls-verify=false',
          ...(arch === undefined
            ? []
            : [
                '--override-os',
                'linux',
                '--override-arch',
                arch,
                ...(arch === 'arm64' ? ['--override-variant', 'v8'] : []),
              ]),
          `docker://${ref}`,
        ],
        { env: ctx.env, logFile },
      )
    ).stdout,
  );

/**
 * Multi-architecture images: an index made by buildah (amd64 + arm64) is read by triage's parser,
 * planned per platform by planBuilds, and the "patched" platforms are assembled by the workflow's own
 * assembleIndexes into a new index in the registry, which must keep every platform. What is NOT
 * exercised: the patch layer on an arm64 image (this machine cannot run arm64 binaries), so the
 * platform images here are built from scratch, not by the buildspecs.
 */
const multiArch = async (ctx: Context): Promise<void> => {
  const name = 'multi-arch-index';
  const opts = { env: ctx.env, logFile };
  const oldAmd64 = await platformImage(ctx, 'amd64', 'ma-amd64-old', 'amd64 old\n');
  const oldArm64 = await platformImage(ctx, 'arm64', 'ma-arm64-old', 'arm64 old\n');
  const list = `autopatch-index-${process.pid}`;
  await run('buildah', ['manifest', 'create', list], opts);
  try {
    for (const [arch, digest] of [
      ['amd64', oldAmd64],
      ['arm64', oldArm64],
    ] as const)
      await run(
        'buildah',
        [
          'manifest',
          'add',
          '--tls-verify=false',
          '--arch',
          arch,
          '--os',
          'linux',
          ...(arch === 'arm64' ? ['--variant', 'v8'] : []),
          list,
          `docker://${ctx.registry}/${REPOSITORY}@${digest}`,
        ],
        opts,
      );
    await run(
      'buildah',
      [
        'manifest',
        'push',
        '--all',
        '--format',
        'oci',
        '--tls-verify=false',
        list,
        `docker://${ctx.registry}/${REPOSITORY}:multi`,
      ],
      opts,
    );
  } finally {
    await run('buildah', ['manifest', 'rm', list], { ...opts, allowFailure: true });
  }
  const indexDigest = (await registryDigest(ctx.registry, REPOSITORY, 'multi')) as string;
  const res = await fetch(`http://${ctx.registry}/v2/${REPOSITORY}/manifests/multi`, {
    headers: { Accept: INDEX_ACCEPT },
  });
  const index = parseIndexManifest(await res.text(), res.headers.get('content-type') ?? undefined);
  same(
    `${name}: triage reads buildah's index as amd64 + arm64 platforms`,
    index?.platforms.map((p) => [p.architecture, p.digest]),
    [
      ['amd64', oldAmd64],
      ['arm64', oldArm64],
    ],
  );
  if (!index) return;

  const image: AffectedImage = {
    ...affectedImage(ctx, { mode: 'patch-os' }),
    imageDigest: indexDigest,
    index,
  };
  const execution = { executionName: `image-test-${name}`, startedAt: new Date().toISOString() };
  const { builds } = planBuilds(
    { images: [image], ...execution },
    { patchOs: { x86: 'patch-os', arm: 'patch-os-arm' }, source: { x86: 'source', arm: 'source-arm' } },
  );
  same(
    `${name}: one build per platform, on its architecture's project`,
    builds.map((b) => [b.projectName, b.environment.find((v) => v.Name === 'IMAGE_URI')?.Value]),
    [
      ['patch-os', `${ctx.registry}/${REPOSITORY}@${oldAmd64}`],
      ['patch-os-arm', `${ctx.registry}/${REPOSITORY}@${oldArm64}`],
    ],
  );

  // The platforms as the builds would have pushed and the rescans verified them.
  const newAmd64 = await platformImage(ctx, 'amd64', 'ma-amd64-new', 'amd64 patched\n');
  const newArm64 = await platformImage(ctx, 'arm64', 'ma-arm64-new', 'arm64 patched\n');
  const verified = builds.map((b, i) => ({
    repository: REPOSITORY,
    registry: ctx.registry,
    repositoryUri: `${ctx.registry}/${REPOSITORY}`,
    containers: ['app'],
    cves: ['CVE-2024-0001'],
    severity: 'HIGH' as const,
    oldDigest: b.image.imageDigest,
    newDigest: i === 0 ? newAmd64 : newArm64,
    targetTag: b.targetTag,
    cvesClosed: ['CVE-2024-0001'],
  }));
  const ecr = registryAsEcr(ctx.registry);

  // An index that would lose a platform is refused before anything is pushed.
  const lost = await assembleIndexes({ ...execution, builds, patched: verified.slice(0, 1) }, { ecr }).then(
    () => 'assembled',
    (e: Error) => e.name,
  );
  same(`${name}: one platform missing → ImageIndexError, nothing pushed`, lost, 'ImageIndexError');

  const { patched } = await assembleIndexes({ ...execution, builds, patched: verified }, { ecr });
  const out = patched[0];
  same(`${name}: one patched image, the index`, [patched.length, out?.oldDigest], [1, indexDigest]);
  if (!out) return;
  same(
    `${name}: the registry holds the new index under its tag, with the digest Autopatch computed`,
    await registryDigest(ctx.registry, REPOSITORY, out.targetTag),
    out.newDigest,
  );
  const raw = JSON.parse(
    (
      await run(
        'skopeo',
        ['inspect', '--tls-verify=false', '--raw', `docker://${ctx.registry}/${REPOSITORY}@${out.newDigest}`],
        opts,
      )
    ).stdout,
  ) as { mediaType?: string; manifests?: Array<{ digest: string; platform?: { architecture?: string } }> };
  same(
    `${name}: the new index keeps every platform, each the patched one`,
    [raw.mediaType, raw.manifests?.map((m) => [m.platform?.architecture, m.digest])],
    [
      INDEX_MEDIA_TYPES[0],
      [
        ['amd64', newAmd64],
        ['arm64', newArm64],
      ],
    ],
  );
  const ref = `${ctx.registry}/${REPOSITORY}@${out.newDigest}`;
  same(
    `${name}: an amd64 and an arm64 machine pulling the new index get their patched image (skopeo --override-arch)`,
    [await resolvedFor(ctx, ref, 'amd64'), await resolvedFor(ctx, ref, 'arm64')].map((r) => [
      r.Architecture,
      r.Layers,
    ]),
    [
      await resolvedFor(ctx, `${ctx.registry}/${REPOSITORY}@${newAmd64}`),
      await resolvedFor(ctx, `${ctx.registry}/${REPOSITORY}@${newArm64}`),
    ].map((r) => [r.Architecture, r.Layers]),
  );
};

const readLog = (file: string): string[] => {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
};

// ---- main ----------------------------------------------------------------------------------------

const shellcheck = async (specs: ReadonlyMap<string, BuildSpec>, scripts: ReadonlyMap<string, string>) => {
  const dir = join(work, 'shellcheck');
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [];
  for (const [name, spec] of specs) files.push([name, commandsAsScript(spec)]);
  // Embedded scripts run under /bin/sh in the image, with the variables the buildspec prepends.
  for (const [name, script] of scripts)
    files.push([name, `#!/bin/sh\nPATCH_PM=apt PATCH_SCOPE=all PATCH_PACKAGES=\n${script}`]);
  for (const standin of ['docker', 'aws'])
    files.push([`stand-in ${standin}`, readFileSync(join(STANDINS, standin), 'utf8')]);
  for (const [name, text] of files) {
    const file = join(dir, name.replace(/[^A-Za-z0-9.-]+/g, '_'));
    writeFileSync(file, text);
    const result = await run('shellcheck', ['--severity=style', file], { allowFailure: true });
    check(`shellcheck: ${name}`, result.status === 0, lastLines(result.stdout, 30));
  }
};

const main = async () => {
  say(`work directory ${work}`);
  ensurePrerequisites(say);
  // Keeps the stand-ins runnable after a checkout that lost the executable bit.
  for (const standin of ['docker', 'aws']) chmodSync(join(STANDINS, standin), 0o755);
  const { specs, scripts } = await loadBuildSpecs();
  check(`the buildspecs are found (${[...specs.keys()].join(', ')})`, specs.size >= 2);
  await shellcheck(specs, scripts);

  const rootfs = await debianRootfs(CACHE, say, logFile);
  const port = await freePort();
  const registry = await startRegistry(join(work, 'registry'), port);
  try {
    const env = containerEnv(join(work, 'containers'), registry.address);
    mkdirSync(env.TMPDIR as string, { recursive: true });
    say(`registry on ${registry.address}; building the Debian 12 base image`);
    const base = await buildBaseImage(rootfs, env, logFile);
    const digestFile = join(work, 'base.digest');
    await run(
      'podman',
      ['push', '--quiet', '--digestfile', digestFile, base.name, `${registry.address}/${REPOSITORY}:base`],
      { env, logFile },
    );
    const appDigest = readFileSync(digestFile, 'utf8').trim();
    say(
      `base ${registry.address}/${REPOSITORY}@${appDigest}: pinned ${[...base.pinned].map(([p, v]) => `${p}=${v.old} (newest ${v.newest})`).join(', ')}; ${base.upgradable.size} packages with updates`,
    );
    const ctx: Context = { env, registry: registry.address, base, appDigest, specs };
    const baseline = await dpkgList(ctx, `${registry.address}/${REPOSITORY}@${appDigest}`);
    for (const [name, scenario] of Object.entries(scenarios)) {
      if (only && name !== only) continue;
      say(`scenario ${name}`);
      try {
        await scenario(ctx, baseline);
      } catch (e) {
        check(`${name}: runs to the end`, false, e instanceof Error ? e.message : String(e));
      }
    }
  } finally {
    registry.stop();
  }
};

main()
  .catch((e: unknown) =>
    check('the image test runs', false, e instanceof Error ? (e.stack ?? e.message) : String(e)),
  )
  .finally(() => {
    const failed = results.filter((r) => !r.ok).length;
    if (keep || failed > 0) say(`logs and images kept in ${work} (commands.log, builds/*/build.log)`);
    else rmSync(work, { recursive: true, force: true });
    console.log(`\ntest:image: ${results.length - failed} passed, ${failed} failed (${elapsed()})`);
    process.exitCode = failed > 0 || results.length === 0 ? 1 : 0;
  });
