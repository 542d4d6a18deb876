/**
 * The benchmark's generators and measurement functions at tiny sizes: correctness only, never speed
 * (timings vary from machine to machine and are what `npm run bench` reports, not what tests check).
 */
import { measureAmplification } from '../../bench/amplification';
import { burstScenario } from '../../bench/burst-simulation';
import { FLOOR, lambdaEntries, TRIAGE } from '../../bench/cold-start';
import { consoleTime, generateBurst, javaTime } from '../../bench/events';
import { generateFleet, REGISTRY_HOST } from '../../bench/fleet';
import { type BenchReport, checkGoals, renderReport } from '../../bench/report';
import { measureThroughput } from '../../bench/throughput';
import { accountSpans, VARIANTS, workflowScenario } from '../../bench/workflow';
import { parseEvent, parseInspectorTimestamp } from '../../lambdas/triage/schema';
import { parseScenario } from '../../simulation/scenario';

const fleet = generateFleet();

describe('the synthetic fleet', () => {
  it('has a few hundred images used by tens of services, most images running nowhere', () => {
    expect(fleet.images).toHaveLength(300);
    expect(fleet.services).toHaveLength(40);
    expect(new Set(fleet.images.map((i) => i.digest)).size).toBe(300);
    expect(fleet.runBy.size).toBeGreaterThan(20);
    expect(fleet.runBy.size).toBeLessThan(fleet.images.length / 2);
    for (const s of fleet.services) {
      for (const c of s.containers) {
        expect(c.image.startsWith(`${REGISTRY_HOST}/`)).toBe(true);
        expect(fleet.images.some((i) => i.digest === c.digest)).toBe(true);
      }
    }
  });

  it('is the same for the same seed', () => {
    expect(generateFleet()).toEqual(fleet);
  });
});

describe('the burst generator', () => {
  it('yields exactly the requested number of events, each one the real schema parses as an ACTIVE ECR package finding', () => {
    const burst = generateBurst(fleet, { size: 50, seed: 1 });
    expect(burst.bodies).toHaveLength(50);
    for (const body of burst.bodies) {
      const raw = JSON.parse(body) as { source: string; 'detail-type': string };
      expect(raw.source).toBe('aws.inspector2');
      expect(raw['detail-type']).toBe('Inspector2 Finding');
      const parsed = parseEvent(raw);
      expect(parsed.kind).toBe('finding');
      if (parsed.kind !== 'finding') continue;
      expect(parsed.finding.status).toBe('ACTIVE');
      expect(parsed.finding.type).toBe('PACKAGE_VULNERABILITY');
      expect(parsed.finding.resourceType).toBe('AWS_ECR_CONTAINER_IMAGE');
      expect(fleet.images.some((i) => i.digest === parsed.finding.image?.imageDigest)).toBe(true);
    }
    expect(
      new Set(
        burst.bodies.map((b) => (JSON.parse(b) as { detail: { findingArn: string } }).detail.findingArn),
      ).size,
    ).toBe(50);
  });

  it('uses every fixture shape, with each shape’s own timestamp style', () => {
    const burst = generateBurst(fleet, { size: 400, seed: 3 });
    expect(new Set(burst.findings.map((f) => f.shape))).toEqual(
      new Set(['documented', 'npmConsole', 'neutralIso']),
    );
    for (const [i, f] of burst.findings.entries()) {
      const detail = (JSON.parse(burst.bodies[i] as string) as { detail: { updatedAt: string } }).detail;
      if (f.shape === 'documented')
        expect(detail.updatedAt).toMatch(/^\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC \d{4}$/);
      if (f.shape === 'npmConsole')
        expect(detail.updatedAt).toMatch(/^\w{3} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2} [AP]M$/);
      if (f.shape === 'neutralIso') expect(detail.updatedAt).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    }
  });

  it('writes timestamps the schema reads back to the same instant', () => {
    const at = Date.parse('2024-09-04T16:55:38.411Z');
    expect(parseInspectorTimestamp(javaTime(at)).getTime()).toBe(at);
    expect(parseInspectorTimestamp(consoleTime(at)).getTime()).toBe(Math.floor(at / 1000) * 1000);
  });

  it('is deterministic for a seed', () => {
    expect(generateBurst(fleet, { size: 20, seed: 5 }).bodies).toEqual(
      generateBurst(fleet, { size: 20, seed: 5 }).bodies,
    );
  });
});

describe('measurements at tiny sizes', () => {
  it('throughput: triages every event from the warm cache and compares with the floor', async () => {
    const r = await measureThroughput({ size: 50, batchSize: 10, rounds: 1, fleet });
    expect(r.size).toBe(50);
    expect(Object.values(r.actions).reduce((a, b) => a + b, 0)).toBe(50);
    expect(r.ecsCallsWhileTimed).toBe(0);
    expect(r.ratioToFloor).toBeGreaterThan(0);
    expect(Number.isFinite(r.ratioToFloor)).toBe(true);
  });

  it('amplification: a 50-event burst starts one execution per affected service, calls counted at the SDK', async () => {
    const burst = generateBurst(fleet, { size: 50, seed: 1 });
    expect(burst.expectedServices.length).toBeGreaterThan(1);
    const r = await measureAmplification({ size: 50, batchSize: 10, concurrency: 2, fleet, burst });
    expect(r.invocations).toBe(5);
    expect(r.serviceMismatch).toEqual([]);
    expect(r.affectedServices).toBe(burst.expectedServices.length);
    expect(r.executionsStarted).toBe(r.affectedServices);
    expect(r.executionsPerService).toBe(1);
    expect(r.servicesStartedTwice).toBe(0);
    expect(r.apiCalls['sfn:StartExecution']).toBe(r.affectedServices);
    expect(r.apiCalls['dynamodb:BatchGetItem']).toBe(5);
    expect(r.apiCalls['ecs:ListClusters']).toBe(r.coldStarts);
    expect(r.apiCallsPerFinding).toBeCloseTo(r.apiCallsTotal / 50, 10);
    expect(r.deadLetters).toBe(0);
  }, 30_000);
});

describe('what the other measurements are built from', () => {
  it('cold start covers the triage handler and every workflow handler, not the helpers', () => {
    const names = lambdaEntries().map((e) => e.name);
    expect(names[0]).toBe(FLOOR);
    expect(names).toContain(TRIAGE);
    expect(names).toContain('workflow/acquire-lock');
    expect(names).toContain('workflow/watch-deployment');
    expect(names).not.toContain('workflow/env');
    expect(names.filter((n) => n.startsWith('workflow/')).length).toBeGreaterThanOrEqual(8);
  });

  it('every workflow variant is a valid scenario at every bake time', () => {
    for (const variant of VARIANTS) {
      for (const bake of [10, 60, 240])
        expect(() => parseScenario(workflowScenario(variant, bake))).not.toThrow();
    }
  });

  it('the end-to-end burst scenario carries exactly the requested number of findings', () => {
    for (const size of [50, 1000]) {
      const s = burstScenario(fleet, size);
      const count = s.events.reduce((n, e) => {
        if (e.kind !== 'burst') return n;
        const cves = Array.isArray(e.cves) ? e.cves.length : e.cves.count;
        return n + cves * (e.images === 'all' ? fleet.images.length : e.images.length);
      }, 0);
      expect(count).toBe(size);
    }
  });

  it('reads the account’s busy spans from the timeline', () => {
    const timeline = [
      {
        offsetMs: 1_000,
        source: 'codebuild',
        text: 'build p:1 started for r@abc (will succeed after 7 min)',
      },
      { offsetMs: 5_000, source: 'codebuild', text: 'build p:1 SUCCEEDED: pushed r:t (abc)' },
      { offsetMs: 8_000, source: 'inspector', text: 'scanned r@abc: no findings' },
      { offsetMs: 9_000, source: 'ecs', text: 'prod/x: deployment 1 started (x:2, BLUE_GREEN)' },
      { offsetMs: 20_000, source: 'ecs', text: 'prod/x: deployment 1 completed' },
    ];
    expect(accountSpans(timeline)).toEqual([
      [1_000, 5_000],
      [5_000, 8_000],
      [9_000, 20_000],
    ]);
    expect(accountSpans(timeline.slice(0, 3))).toBeUndefined();
  });

  it('marks goals met and missed, and prints them in the table', () => {
    const base: Omit<BenchReport, 'goals'> = {
      meta: {
        command: 'npm run bench',
        startedAt: '2024-09-04T16:00:00.000Z',
        durationMs: 1,
        node: 'v20',
        os: 'linux',
        cpu: 'cpu',
        cores: 2,
        memoryGb: 1,
        sizes: [1000],
        bakeTimes: [10],
        batchSize: 100,
        concurrency: 5,
      },
      throughput: [],
      amplification: [],
      endToEnd: [],
      coldStart: [
        { lambda: FLOOR, bytes: 1, gzipBytes: 1, loadMs: 10, ratioToFloor: 1 },
        { lambda: TRIAGE, bytes: 1, gzipBytes: 1, loadMs: 20, ratioToFloor: 2 },
      ],
      workflow: [],
      devLoop: [],
      skipped: [],
      errors: [],
    };
    const goals = checkGoals(base);
    expect(goals.find((g) => g.id === 'cold-start')?.met).toBe(false);
    expect(goals.find((g) => g.id === 'throughput')?.met).toBeUndefined();
    const text = renderReport({ ...base, goals });
    expect(text).toContain('| goal');
    expect(text).toContain('met?');
    expect(text).toContain('**no**');
  });
});
