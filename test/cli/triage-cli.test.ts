import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { parsePolicy } from '../../lambdas/triage/policy';

const ROOT = join(__dirname, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const ENTRY = join(ROOT, 'bin', 'triage.ts');

/**
 * bin/triage.ts bundled once: every run is still its own process, without tsx compiling the same
 * TypeScript again in each (two seconds of CPU a run). The first test runs it through tsx, as
 * `npm run triage` does.
 */
let bundle: string | undefined;
const bundled = (): string => {
  if (bundle) return bundle;
  const outfile = join(mkdtempSync(join(tmpdir(), 'autopatch-triage-cli-')), 'triage.cjs');
  buildSync({
    entryPoints: [ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    logLevel: 'error',
  });
  bundle = outfile;
  return bundle;
};

/** Run the triage CLI in its own process (from the bundle, or with `{ tsx: true }` as `npm run triage` does). */
const run = (options: { tsx?: boolean }, args: string[]) => {
  const [command, entry] = options.tsx ? [TSX, ENTRY] : [process.execPath, bundled()];
  const out = spawnSync(command, [entry, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
};
const triage = (...args: string[]) => run({}, args);

interface TriageOutput {
  findings: Array<{ id: string; action: string; reason: string; services: string[] }>;
  remediations: Array<{ service: string; images: Array<{ cves: string[] }>; executionName: string }>;
}

describe('npm run triage', () => {
  const events = readdirSync(join(ROOT, 'examples', 'events')).map((f) => join('examples', 'events', f));

  it('decides every example event, rejects the bad ones with their reason, and plans one run per service', () => {
    // Act
    const cli = run({ tsx: true }, [
      '--inventory',
      'examples/inventory.json',
      '--now',
      '2024-09-04T17:00:00Z',
      ...events,
    ]);

    // Assess
    expect(cli.status).toBe(0);
    const out = JSON.parse(cli.stdout) as TriageOutput;
    expect(out.findings).toHaveLength(events.length + 1); // critical-envoy-sidecar.json holds two events
    const byId = new Map(out.findings.map((f) => [f.id, f]));
    expect(byId.get('examples/events/not-json.json')).toMatchObject({ action: 'reject' });
    expect(byId.get('examples/events/malformed.json')?.reason).toMatch(/detail\.severity/);
    expect(byId.get('examples/events/image-nothing-runs.json')?.reason).toMatch(/no ECS service runs/);
    const services = out.remediations.map((r) => r.service);
    expect(services.sort()).toEqual(['prod/checkout', 'prod/ledger-api']);
    expect(new Set(services).size).toBe(services.length);
    for (const r of out.remediations) expect(r.executionName).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
  });

  it('applies the example policy, which itself is valid', () => {
    // Prepare
    expect(() =>
      parsePolicy(JSON.parse(readFileSync(join(ROOT, 'examples', 'policy.json'), 'utf8'))),
    ).not.toThrow();

    // Act
    const run = triage(
      '--inventory',
      'examples/inventory.json',
      '--policy',
      'examples/policy.json',
      '--now',
      '2024-09-04T17:00:00Z',
      'examples/events/low-notify.json',
    );

    // Assess
    expect(run.status).toBe(0);
    const [low] = (JSON.parse(run.stdout) as TriageOutput).findings;
    expect(low).toMatchObject({ action: 'ignore', reason: expect.stringMatching(/low-noise/) });
  });

  it('prints a valid, empty result for a file holding no events', () => {
    // Prepare
    const dir = mkdtempSync(join(tmpdir(), 'autopatch-triage-'));
    const empty = join(dir, 'empty.json');
    writeFileSync(empty, '[]\n');

    // Act
    const run = triage('--inventory', 'examples/inventory.json', empty);

    // Assess
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ findings: [], remediations: [] });
  });

  it('decides notify, before any build, for a service another deployment controller deploys', () => {
    // Prepare: the example account, with ledger-api deployed by an external tool.
    const inventory = JSON.parse(readFileSync(join(ROOT, 'examples', 'inventory.json'), 'utf8')) as {
      services: Array<{ serviceName: string; deploymentController?: string }>;
    };
    for (const s of inventory.services)
      if (s.serviceName === 'ledger-api') s.deploymentController = 'EXTERNAL';
    const file = join(mkdtempSync(join(tmpdir(), 'autopatch-')), 'inventory.json');
    writeFileSync(file, JSON.stringify(inventory));
    const events = readdirSync(join(ROOT, 'examples', 'events')).map((f) => join('examples', 'events', f));

    // Act
    const run = triage('--inventory', file, '--now', '2024-09-04T17:00:00Z', ...events);

    // Assess
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout) as TriageOutput;
    expect(out.remediations.map((r) => r.service)).toEqual(['prod/checkout']);
    const external = out.findings.filter((f) => /EXTERNAL deployment controller/.test(f.reason));
    expect(external.length).toBeGreaterThan(0);
    for (const f of external) expect(f.action).toBe('notify');
  });

  it('exits 2 with the usage on bad command-line use', () => {
    for (const args of [[], ['--inventory', 'examples/inventory.json'], ['--bogus', 'x']]) {
      const run = triage(...args);
      expect(run.status).toBe(2);
      expect(run.stderr).toMatch(/usage: npm run triage/);
    }
  });
});
