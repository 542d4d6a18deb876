import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './tools';

const MIRROR = 'http://deb.debian.org/debian';
const SECURITY_MIRROR = 'http://deb.debian.org/debian-security';
const SOURCES = [
  `deb ${MIRROR} bookworm main`,
  `deb ${MIRROR} bookworm-updates main`,
  `deb ${SECURITY_MIRROR} bookworm-security main`,
].join('\n');

/** A cached rootfs is rebuilt after this long, so the base keeps tracking Debian's archive. */
const ROOTFS_MAX_AGE_MS = 30 * 24 * 3_600_000;

/**
 * Small packages that Debian 12 ships in two versions (the release's, and a later security or
 * stable update): the base installs the older one, so that it is really vulnerable and a later
 * version really exists. The first two that have two versions in the archive today are used.
 */
const PIN_CANDIDATES = ['unzip', 'libexpat1', 'jq', 'xz-utils', 'zstd', 'libxml2', 'curl', 'sudo', 'git'];

/** The Debian 12 minbase rootfs as a tarball, made with debootstrap once and cached. */
export const debianRootfs = async (
  cacheDir: string,
  log: (line: string) => void,
  logFile: string,
): Promise<string> => {
  mkdirSync(cacheDir, { recursive: true });
  const tarball = join(cacheDir, 'bookworm-minbase.tar');
  try {
    if (Date.now() - statSync(tarball).mtimeMs < ROOTFS_MAX_AGE_MS) return tarball;
  } catch {
    // not cached yet
  }
  log(`debootstrap --variant=minbase bookworm (cached in ${cacheDir}; takes about 2 minutes)`);
  const dir = join(cacheDir, 'rootfs.tmp');
  rmSync(dir, { recursive: true, force: true });
  await run('debootstrap', ['--variant=minbase', 'bookworm', dir, MIRROR], {
    logFile,
    timeoutMs: 15 * 60_000,
  });
  await run('tar', ['-C', dir, '-cf', `${tarball}.tmp`, '.'], { logFile });
  renameSync(`${tarball}.tmp`, tarball);
  rmSync(dir, { recursive: true, force: true });
  return tarball;
};

/** The runtime contract of the base image: a patch layer must leave every field of it as it was. */
export const BASE_CONFIG = {
  User: 'app',
  WorkingDir: '/srv/app',
  Entrypoint: ['/usr/local/bin/app-entry'],
  Cmd: ['serve', '--port', '8080'],
  Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP_MODE=production'],
  Labels: { 'org.opencontainers.image.title': 'autopatch-test-app' },
} as const;

export interface BaseImage {
  /** The local image name. */
  readonly name: string;
  /** Packages installed at an older version than the archive's newest: name → { old, newest, source }. */
  readonly pinned: ReadonlyMap<
    string,
    { readonly old: string; readonly newest: string; readonly source: string }
  >;
  /** What `apt-get upgrade` would change in the base: name → the version it would install. */
  readonly upgradable: ReadonlyMap<string, string>;
}

/** Parses `apt-cache madison` lines ("pkg | version | source") into the versions, newest first. */
const madison = (out: string): string[] => [
  ...new Set(
    out
      .split('\n')
      .map((l) => l.split('|')[1]?.trim())
      .filter((v): v is string => !!v),
  ),
];

/**
 * The Debian 12 base image: minbase, the sources of bookworm, bookworm-updates and bookworm-security,
 * two packages pinned to an older version, an app user, and a full runtime contract (USER, WORKDIR,
 * ENTRYPOINT, CMD, ENV, a label). Its package lists are removed, as in most real images.
 */
export const buildBaseImage = async (
  rootfs: string,
  env: NodeJS.ProcessEnv,
  logFile: string,
): Promise<BaseImage> => {
  const opts = { env, logFile };
  await run('podman', ['import', rootfs, 'localhost/autopatch-test/rootfs:bookworm'], opts);
  const ctr = (
    await run('buildah', ['from', '--quiet', 'localhost/autopatch-test/rootfs:bookworm'], opts)
  ).stdout.trim();
  const sh = async (script: string) =>
    (
      await run(
        'buildah',
        ['run', '--isolation', 'chroot', '--network', 'host', ctr, '--', '/bin/sh', '-ec', script],
        opts,
      )
    ).stdout;
  try {
    await sh(
      `printf '%s\\n' '${SOURCES.split('\n').join("' '")}' > /etc/apt/sources.list && apt-get -o Acquire::Languages=none update -qq`,
    );
    const pinned = new Map<string, { old: string; newest: string; source: string }>();
    for (const name of PIN_CANDIDATES) {
      const versions = madison(await sh(`apt-cache madison ${name}`));
      if (versions.length < 2) continue;
      // madison lists the newest first; the oldest is the release's own version.
      const sorted = [...versions];
      const old = sorted[sorted.length - 1] as string;
      const newest = sorted[0] as string;
      const source = (
        await sh(`apt-cache show ${name}=${newest} | sed -n 's/^Source: \\([^ ]*\\).*/\\1/p' | head -n 1`)
      ).trim();
      pinned.set(name, { old, newest, source: source || name });
      if (pinned.size === 2) break;
    }
    if (pinned.size < 2) {
      throw new Error(
        `fewer than two of ${PIN_CANDIDATES.join(', ')} have two versions in Debian 12's archive today: add candidates to PIN_CANDIDATES`,
      );
    }
    await sh(
      `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${[...pinned]
        .map(([n, v]) => `${n}=${v.old}`)
        .join(' ')}`,
    );
    const simulated = await sh('apt-get -s -o Debug::NoLocking=1 --with-new-pkgs upgrade');
    const upgradable = new Map<string, string>();
    for (const m of simulated.matchAll(/^Inst (\S+) (?:\[\S+\] )?\((\S+)/gm))
      upgradable.set(m[1] as string, m[2] as string);
    await sh(
      [
        // As slim images do; a smaller rootfs is also what keeps vfs storage's copies quick.
        'apt-get clean',
        'rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*',
        'echo "app:x:10001:10001::/srv/app:/usr/sbin/nologin" >> /etc/passwd',
        'echo "app:x:10001:" >> /etc/group',
        'mkdir -p /srv/app && chown 10001:10001 /srv/app',
        `printf '#!/bin/sh\\necho "app $*"\\n' > /usr/local/bin/app-entry && chmod 755 /usr/local/bin/app-entry`,
      ].join(' && '),
    );
    const config = [
      ['--user', BASE_CONFIG.User],
      ['--workingdir', BASE_CONFIG.WorkingDir],
      ['--entrypoint', JSON.stringify(BASE_CONFIG.Entrypoint)],
      ['--cmd', JSON.stringify(BASE_CONFIG.Cmd)],
      ...BASE_CONFIG.Env.map((e) => ['--env', e]),
      ...Object.entries(BASE_CONFIG.Labels).map(([k, v]) => ['--label', `${k}=${v}`]),
    ].flat();
    await run('buildah', ['config', ...config, ctr], opts);
    await run('buildah', ['commit', '--quiet', ctr, 'localhost/autopatch-test/base:bookworm'], opts);
    return { name: 'localhost/autopatch-test/base:bookworm', pinned, upgradable };
  } finally {
    await run('buildah', ['rm', ctr], { ...opts, allowFailure: true });
  }
};
