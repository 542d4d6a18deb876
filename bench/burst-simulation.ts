/**
 * A burst end to end: the synthetic fleet as a simulation scenario (simulation/runner.ts), with a
 * burst of exactly `size` HIGH OS findings spread over `spread`, and every remediation run to its end
 * by the real workflow on the virtual clock. Unlike the triage-only amplification benchmark, the
 * executions here take their locks, gather, seal and release, so findings that arrive after a
 * service's remediation sealed its request start another execution later: this counts them all.
 */
import type { SimulationReport } from '../simulation/report';
import { runScenario } from '../simulation/runner';
import { parseScenario, type Scenario } from '../simulation/scenario';
import { type Fleet, generateFleet, REGISTRY_HOST } from './fleet';

export interface BurstSimulationOptions {
  readonly size: number;
  /** How long Inspector takes to raise the whole burst, as a scenario duration. @default "10m" */
  readonly spread?: string;
  readonly fleet?: Fleet;
}

export interface BurstSimulationResult {
  readonly size: number;
  readonly spread: string;
  readonly findingsSent: number;
  /** Tagged services that run an image of the burst: every one should be remediated. */
  readonly affectedServices: number;
  /** Affected services no execution was started for. */
  readonly servicesWithoutExecution: readonly string[];
  readonly executions: number;
  readonly executionsPerService: number;
  readonly outcomes: Readonly<Record<string, number>>;
  readonly apiCalls: Readonly<Record<string, number>>;
  /** Every AWS API call of the run (triage and workflow) ÷ findings. */
  readonly apiCallsPerFinding: number;
  /** The same, by AWS service ("lambda" is Step Functions invoking the workflow's functions). */
  readonly perFindingByService: Readonly<Record<string, number>>;
  readonly virtualMinutes: number;
  readonly wallMs: number;
  readonly errors: readonly string[];
}

const stripRegistry = (image: string): string => image.slice(REGISTRY_HOST.length + 1);

/** The fleet and a burst of `size` findings as a scenario. */
export const burstScenario = (fleet: Fleet, size: number, spread = '10m'): Scenario => {
  const images = fleet.images;
  const perCve = images.length;
  const full = Math.floor(size / perCve);
  const rest = size % perCve;
  const burst = {
    kind: 'burst',
    severity: 'HIGH',
    packageManager: 'OS',
    package: 'openssl',
    fixAvailable: 'YES',
    order: 'by-cve',
  } as const;
  // Both parts of the burst share the spread in proportion to their size.
  const spreadOf = (n: number) => `${Math.max(0, Math.round((parseSpreadSeconds(spread) * n) / size))}s`;
  return parseScenario(
    {
      name: `bench-burst-${size}`,
      description: `${size} findings over ${spread} on the benchmark fleet (${images.length} images, ${fleet.services.length} services)`,
      startTime: '2024-09-04T16:00:00Z',
      account: {
        repositories: fleet.repositories.map((name) => ({
          name,
          images: images
            .filter((i) => i.repository === name)
            .map((i) => ({
              digest: i.digest,
              tags: [...i.tags],
              platform: i.platform,
              architecture: i.architecture,
            })),
        })),
        clusters: [...new Set(fleet.services.map((s) => s.cluster))].map((cluster) => ({
          name: cluster,
          services: fleet.services
            .filter((s) => s.cluster === cluster)
            .map((s) => ({
              name: s.name,
              containers: s.containers.map((c) => ({ name: c.name, image: stripRegistry(c.image) })),
              bakeTimeMinutes: 30,
              tags: { ...s.tags },
            })),
        })),
      },
      events: [
        ...(full > 0
          ? [
              {
                ...burst,
                at: '+1m',
                cves: { prefix: 'CVE-2099-', count: full },
                images: 'all',
                spread: spreadOf(full * perCve),
              },
            ]
          : []),
        ...(rest > 0
          ? [
              {
                ...burst,
                at: `${60 + parseSpreadSeconds(spreadOf(full * perCve))}s`,
                cves: ['CVE-2099-99999'],
                images: images.slice(0, rest).map((i) => `${i.repository}@${i.digest}`),
                spread: spreadOf(rest),
              },
            ]
          : []),
      ],
    },
    'bench',
  );
};

const parseSpreadSeconds = (text: string): number => {
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) throw new Error(`spread ${text}: expected <n>s, <n>m or <n>h`);
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
};

/** Tagged services running an image of the burst. */
const affectedBy = (fleet: Fleet, size: number): string[] => {
  const hit = new Set(
    size >= fleet.images.length
      ? fleet.images.map((i) => i.digest)
      : fleet.images.slice(0, size).map((i) => i.digest),
  );
  return fleet.services
    .filter((s) => s.enabled && s.containers.some((c) => hit.has(c.digest)))
    .map((s) => s.key)
    .sort();
};

const summarize = (
  size: number,
  spread: string,
  affected: readonly string[],
  report: SimulationReport,
): BurstSimulationResult => {
  const services = new Set(report.executions.flatMap((e) => (e.service ? [e.service] : [])));
  const outcomes: Record<string, number> = {};
  for (const e of report.executions) {
    const o = e.outcome ?? e.status;
    outcomes[o] = (outcomes[o] ?? 0) + 1;
  }
  const total = Object.values(report.apiCalls).reduce((a, b) => a + b, 0);
  const byService: Record<string, number> = {};
  for (const [key, n] of Object.entries(report.apiCalls)) {
    const service = key.split(':')[0] as string;
    byService[service] = (byService[service] ?? 0) + n / Math.max(1, report.intake.sent);
  }
  return {
    size,
    spread,
    findingsSent: report.intake.sent,
    affectedServices: affected.length,
    servicesWithoutExecution: affected.filter((s) => !services.has(s)),
    executions: report.executions.length,
    // Undefined (NaN) when the burst affects no service.
    executionsPerService: report.executions.length / affected.length,
    outcomes,
    apiCalls: report.apiCalls,
    apiCallsPerFinding: total / Math.max(1, report.intake.sent),
    perFindingByService: byService,
    virtualMinutes: report.virtual.durationMs / 60_000,
    wallMs: report.wallMs,
    errors: [...report.errors, ...report.mismatches].slice(0, 5),
  };
};

export const measureBurstSimulation = async (
  options: BurstSimulationOptions,
): Promise<BurstSimulationResult> => {
  const fleet = options.fleet ?? generateFleet();
  const spread = options.spread ?? '10m';
  const report = await runScenario(burstScenario(fleet, options.size, spread));
  return summarize(options.size, spread, affectedBy(fleet, options.size), report);
};
