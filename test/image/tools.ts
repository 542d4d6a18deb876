import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** What the image test needs on the machine, and the Debian package that brings each. */
const PREREQUISITES: Readonly<Record<string, string>> = {
  podman: 'podman',
  buildah: 'buildah',
  skopeo: 'skopeo',
  debootstrap: 'debootstrap',
  'docker-registry': 'docker-registry',
  shellcheck: 'shellcheck',
  git: 'git',
};

const onPath = (command: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

/** Installs the missing tools with apt-get (CI starts from a fresh Debian machine, as root). */
export const ensurePrerequisites = (log: (line: string) => void): void => {
  const missing = Object.keys(PREREQUISITES).filter((c) => !onPath(c));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((c) => PREREQUISITES[c] as string))];
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    throw new Error(
      `missing ${missing.join(', ')}: install the Debian packages ${packages.join(' ')} (needs root)`,
    );
  }
  log(`installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', ...packages],
  ]) {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (result.status !== 0) throw new Error(`apt-get ${args[0]} failed with exit status ${result.status}`);
  }
};

export interface RunResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to completion, its output kept (and appended to the run's log file). Rejects when it
 * fails, unless `allowFailure`, or when it outlives `timeoutMs`.
 */
export const run = (
  command: string,
  args: readonly string[],
  opts: {
    readonly env?: NodeJS.ProcessEnv;
    readonly input?: string;
    readonly timeoutMs?: number;
    readonly allowFailure?: boolean;
    readonly logFile?: string;
    readonly cwd?: string;
  } = {},
): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    log?.write(`\n$ ${command} ${args.join(' ')}\n`);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      log?.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      log?.write(d);
    });
    const timer = setTimeout(
      () => {
        child.kill('SIGKILL');
        reject(
          new Error(`${command} ${args.join(' ')} did not finish within ${(opts.timeoutMs ?? 0) / 1000} s`),
        );
      },
      opts.timeoutMs ?? 10 * 60_000,
    );
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      log?.end();
      const status = code ?? 1;
      if (status !== 0 && !opts.allowFailure) {
        const tail = `${stdout}\n${stderr}`.trim().split('\n').slice(-15).join('\n');
        reject(new Error(`${command} ${args.join(' ')} failed with exit status ${status}:\n${tail}`));
      } else resolve({ status, stdout, stderr });
    });
    // A command that exits without reading its input closes the pipe first: EPIPE is no failure of ours
    // (its exit status says how it went), and unhandled it would crash the whole run.
    child.stdin.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') reject(error);
    });
    child.stdin.end(opts.input ?? '');
  });

/** A TCP port free on 127.0.0.1 right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });

/**
 * Container tooling confined to this run: vfs storage under `dir` (nothing shared with other users of
 * podman on the machine) and the local registry marked insecure (plain HTTP on 127.0.0.1).
 */
export const containerEnv = (dir: string, registry: string): NodeJS.ProcessEnv => {
  mkdirSync(dir, { recursive: true });
  const storage = join(dir, 'storage.conf');
  const registries = join(dir, 'registries.conf');
  writeFileSync(
    storage,
    `[storage]\ndriver = "vfs"\ngraphroot = "${join(dir, 'storage')}"\nrunroot = "${join(dir, 'run')}"\n`,
  );
  writeFileSync(
    registries,
    `unqualified-search-registries = []\n\n[[registry]]\nlocation = "${registry}"\ninsecure = true\n`,
  );
  writeFileSync(join(dir, 'auth.json'), '{"auths":{}}\n');
  return {
    ...process.env,
    CONTAINERS_STORAGE_CONF: storage,
    CONTAINERS_REGISTRIES_CONF: registries,
    // Keeps podman from reading or writing the invoking user's auth file.
    REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
    TMPDIR: join(dir, 'tmp'),
  };
};

/** An OCI registry (the Docker distribution registry) on 127.0.0.1, storing under `dir`. */
export const startRegistry = async (
  dir: string,
  port: number,
): Promise<{ readonly address: string; readonly process: ChildProcess; stop(): void }> => {
  mkdirSync(join(dir, 'data'), { recursive: true });
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const out = createWriteStream(join(dir, 'registry.log'));
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const address = `127.0.0.1:${port}`;
  const stop = () => {
    if (child.exitCode === null && child.pid !== undefined) child.kill('SIGTERM');
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`http://${address}/v2/`);
      if (res.ok) return { address, process: child, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw new Error(`the registry did not start on ${address} (see ${join(dir, 'registry.log')})`);
};

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** The digest the registry holds for repository:tag, or undefined when it holds no such tag. */
export const registryDigest = async (
  registry: string,
  repository: string,
  tag: string,
): Promise<string | undefined> => {
  const res = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: MANIFEST_TYPES },
  });
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`registry answered ${res.status} for ${repository}:${tag}`);
  return res.headers.get('docker-content-digest') ?? undefined;
};

export const exists = existsSync;
