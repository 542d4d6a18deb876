/**
 * Synthetic bursts of Inspector2 Finding events, as the intake queue receives them after a new
 * advisory: many CVEs, each raised on every image of the fleet that carries the vulnerable package.
 *
 * Each event is a copy of one of the real event shapes in test/fixtures/events (copies of the AWS
 * documentation's samples in shared/fixtures/inspector), with the fields that differ between findings
 * rewritten: ids, ARNs, CVE, severity, scores, packages, image details and timestamps, in each shape's
 * own timestamp style. The three shapes:
 * - the documented ECR finding: `awsEcrContainerImage` and `image`, Java-style timestamps
 *   ("Wed Sep 04 16:55:38.411 UTC 2024"), no inspectorScore, a stray top-level key;
 * - the hand-made CRITICAL NPM finding: `awsEcrContainerImage` only, console timestamps
 *   ("Dec 3, 2021, 6:02:30 PM"), inspectorScore, EPSS, exploit, keys the schema does not know;
 * - the documented finding with only the provider-neutral `image` and ISO-8601 timestamps.
 * Every event matches the intake rule (ACTIVE PACKAGE_VULNERABILITY on AWS_ECR_CONTAINER_IMAGE),
 * so this is what triage really receives; which findings policy remediates is up to triage.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { seededRandom } from '../simulation/clock';
import { ACCOUNT_ID, type Fleet, type FleetImage, pick, REGION, shuffle } from './fleet';

const FIXTURES = path.join(__dirname, '..', 'test', 'fixtures', 'events');

type Json = Record<string, unknown>;

const load = (file: string): Json => JSON.parse(readFileSync(path.join(FIXTURES, file), 'utf8')) as Json;

/** The fixture shapes the generator copies. */
export const TEMPLATES = {
  documented: 'finding-ecr-ubuntu-2024.json',
  npmConsole: 'finding-ecr-critical-npm-console-timestamps.json',
} as const;

type Severity = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW';
type Fix = 'YES' | 'NO' | 'PARTIAL' | undefined;

export interface Advisory {
  readonly cve: string;
  readonly severity: Severity;
  readonly fixAvailable: Fix;
  readonly ecosystem: 'OS' | 'NPM';
  readonly package: string;
  readonly epss: number;
  readonly score: number;
  readonly exploit: boolean;
}

export interface BurstFinding {
  readonly cve: string;
  readonly digest: string;
  readonly shape: 'documented' | 'npmConsole' | 'neutralIso';
}

export interface Burst {
  /** SQS message bodies: each one EventBridge event, as JSON text. */
  readonly bodies: string[];
  readonly findings: readonly BurstFinding[];
  readonly advisories: readonly Advisory[];
  /** Distinct images with at least one finding. */
  readonly images: number;
  /** Total JSON size of the bodies. */
  readonly bytes: number;
  /**
   * Services the default policy should remediate: tagged services running an image with a CRITICAL
   * or HIGH finding whose fix is not reported missing, on OS packages only (language packages need a
   * source rebuild, which discovered services do not have). An independent oracle for the benchmark.
   */
  readonly expectedServices: readonly string[];
}

const OS_PACKAGES = ['openssl', 'libssl3', 'glibc', 'zlib1g', 'curl', 'libexpat1', 'libxml2', 'sqlite3'];
const NPM_PACKAGES = ['lodash', 'express', 'axios', 'semver', 'ws', 'tar', 'jsonwebtoken', 'undici'];

const hex = (text: string, length = 32): string =>
  createHash('sha256').update(text).digest('hex').slice(0, length);

const uuidOf = (text: string): string => {
  const h = hex(text, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Java's Date.toString() with milliseconds, as Inspector writes it: "Wed Sep 04 16:55:38.411 UTC 2024". */
export const javaTime = (ms: number): string => {
  const d = new Date(ms);
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)} UTC ${d.getUTCFullYear()}`;
};

/** The console's medium style, no zone (UTC): "Sep 5, 2024, 8:12:03 AM". */
export const consoleTime = (ms: number): string => {
  const d = new Date(ms);
  const h = d.getUTCHours();
  return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}, ${d.getUTCFullYear()}, ${h % 12 === 0 ? 12 : h % 12}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} ${h < 12 ? 'AM' : 'PM'}`;
};

const isoTime = (ms: number): string => new Date(ms).toISOString();

const generateAdvisory = (random: () => number, index: number): Advisory => {
  const ecosystem = random() < 0.7 ? 'OS' : 'NPM';
  const s = random();
  const severity: Severity = s < 0.1 ? 'CRITICAL' : s < 0.5 ? 'HIGH' : s < 0.85 ? 'MEDIUM' : 'LOW';
  const f = random();
  const fixAvailable: Fix = f < 0.7 ? 'YES' : f < 0.8 ? 'NO' : f < 0.85 ? 'PARTIAL' : undefined;
  return {
    cve: `CVE-2026-${pad(10_000 + index * 7 + Math.floor(random() * 7), 5)}`,
    severity,
    fixAvailable,
    ecosystem,
    package: pick(random, ecosystem === 'OS' ? OS_PACKAGES : NPM_PACKAGES),
    epss: Math.round(random() * 100_000) / 100_000,
    score: Math.round((severity === 'CRITICAL' ? 9 : severity === 'HIGH' ? 7 : 4) * 10 + random() * 9) / 10,
    exploit: severity === 'CRITICAL' && random() < 0.3,
  };
};

const imageDetailsEcr = (image: FleetImage, pushedAt: string) => ({
  architecture: image.architecture,
  imageHash: image.digest,
  imageTags: [...image.tags],
  platform: image.platform,
  pushedAt,
  registry: ACCOUNT_ID,
  repositoryName: image.repository,
});

const imageDetailsNeutral = (image: FleetImage, pushedAt: string) => ({
  repositoryName: image.repository,
  registry: ACCOUNT_ID,
  imageTags: [...image.tags],
  imageDigest: image.digest,
  pushedAt,
  architecture: image.architecture,
  platform: image.platform,
});

/** One event for `advisory` on `image`, observed at `at` (epoch ms). */
const findingEvent = (
  templates: { documented: Json; npmConsole: Json },
  shape: BurstFinding['shape'],
  advisory: Advisory,
  image: FleetImage,
  at: number,
): Json => {
  const template = shape === 'npmConsole' ? templates.npmConsole : templates.documented;
  const event = structuredClone(template) as Json & { detail: Json & Record<string, unknown> };
  const detail = event.detail as Record<string, unknown> & {
    packageVulnerabilityDetails: Record<string, unknown> & { vulnerablePackages: Json[] };
    resources: Array<Json & { details: Record<string, unknown> }>;
  };
  const format = shape === 'documented' ? javaTime : shape === 'npmConsole' ? consoleTime : isoTime;
  const findingId = hex(`${advisory.cve}\n${image.digest}`);
  const resourceId = `arn:aws:ecr:${REGION}:${ACCOUNT_ID}:repository/${image.repository}/${image.digest}`;
  const observed = format(at);

  event.id = uuidOf(`${findingId}\n${at}`);
  event.time = new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
  event.account = ACCOUNT_ID;
  event.region = REGION;
  event.resources = [resourceId];
  detail.awsAccountId = ACCOUNT_ID;
  detail.findingArn = `arn:aws:inspector2:${REGION}:${ACCOUNT_ID}:finding/${findingId}`;
  detail.firstObservedAt = observed;
  detail.lastObservedAt = observed;
  detail.updatedAt = observed;
  detail.severity = advisory.severity;
  detail.status = 'ACTIVE';
  detail.type = 'PACKAGE_VULNERABILITY';
  detail.title = `${advisory.cve} - ${advisory.package}`;
  detail.description = `${advisory.package}: a vulnerability tracked as ${advisory.cve}.`;
  detail.epss = { score: advisory.epss };
  if (advisory.fixAvailable === undefined) delete detail.fixAvailable;
  else detail.fixAvailable = advisory.fixAvailable;
  detail.exploitAvailable = advisory.exploit ? 'YES' : 'NO';
  // Only the hand-made shape carries an Inspector score (the documented sample has none).
  if (shape === 'npmConsole') detail.inspectorScore = advisory.score;

  const pvd = detail.packageVulnerabilityDetails;
  pvd.vulnerabilityId = advisory.cve;
  pvd.referenceUrls = [`https://www.cve.org/CVERecord?id=${advisory.cve}`];
  pvd.sourceUrl = `https://nvd.nist.gov/vuln/detail/${advisory.cve}`;
  pvd.vendorCreatedAt = format(at - 86_400_000);
  const packages = pvd.vulnerablePackages;
  if (advisory.ecosystem === 'NPM') {
    // The template's NPM package (and its OS one: a language finding often lists both).
    const npm = {
      ...(packages[0] as Json),
      name: advisory.package,
      remediation: `npm update ${advisory.package}`,
    };
    pvd.vulnerablePackages = [npm, ...packages.slice(1)];
  } else {
    pvd.vulnerablePackages = packages.map((p, i) => ({
      ...p,
      name: i === 0 ? advisory.package : `${advisory.package}-dev`,
      packageManager: 'OS',
      arch: image.architecture === 'arm64' ? 'ARM64' : 'X86_64',
    }));
  }

  const resource = detail.resources[0] as Json & { details: Record<string, unknown> };
  resource.id = resourceId;
  resource.region = REGION;
  resource.providerAccountId = ACCOUNT_ID;
  const pushedAt = format(Date.parse(image.pushedAt));
  if (shape === 'documented') {
    resource.details = {
      awsEcrContainerImage: imageDetailsEcr(image, pushedAt),
      image: imageDetailsNeutral(image, pushedAt),
    };
  } else if (shape === 'npmConsole') {
    resource.details = {
      awsEcrContainerImage: {
        ...(resource.details.awsEcrContainerImage as Json),
        ...imageDetailsEcr(image, pushedAt),
      },
    };
  } else {
    resource.details = { image: imageDetailsNeutral(image, pushedAt) };
  }
  return event;
};

export interface BurstOptions {
  readonly size: number;
  readonly seed?: number;
  /** Epoch ms of the first finding. */
  readonly startMs?: number;
  /** How long Inspector takes to raise the whole burst. @default 10 minutes */
  readonly spreadMs?: number;
}

/**
 * A burst of exactly `size` events: advisories are drawn one by one, each raised on a share (25 % to
 * 100 %) of the images that carry its ecosystem (OS packages: every image; NPM: application images
 * with language packages), until there are enough findings; they arrive in shuffled order (EventBridge
 * does not keep order), spread over `spreadMs`.
 */
export const generateBurst = (fleet: Fleet, options: BurstOptions): Burst => {
  const random = seededRandom(options.seed ?? 11);
  const start = options.startMs ?? Date.parse('2024-09-04T16:00:00.000Z');
  const spread = options.spreadMs ?? 600_000;
  const templates = { documented: load(TEMPLATES.documented), npmConsole: load(TEMPLATES.npmConsole) };
  const advisories: Advisory[] = [];
  const pairs: Array<{ advisory: Advisory; image: FleetImage }> = [];
  while (pairs.length < options.size) {
    const advisory = generateAdvisory(random, advisories.length);
    advisories.push(advisory);
    const candidates = fleet.images.filter((i) => advisory.ecosystem === 'OS' || i.language);
    const share = 0.25 + random() * 0.75;
    for (const image of candidates) if (random() < share) pairs.push({ advisory, image });
  }
  const chosen = shuffle(random, pairs).slice(0, options.size);

  const bodies: string[] = [];
  const findings: BurstFinding[] = [];
  const expected = new Set<string>();
  const enabled = new Set(fleet.services.filter((s) => s.enabled).map((s) => s.key));
  let bytes = 0;
  chosen.forEach(({ advisory, image }, k) => {
    const shape: BurstFinding['shape'] =
      advisory.ecosystem === 'NPM' ? 'npmConsole' : random() < 0.7 ? 'documented' : 'neutralIso';
    const at = start + Math.floor((k * spread) / Math.max(1, options.size)) + Math.floor(random() * 5);
    const body = JSON.stringify(findingEvent(templates, shape, advisory, image, at));
    bodies.push(body);
    bytes += Buffer.byteLength(body);
    findings.push({ cve: advisory.cve, digest: image.digest, shape });
    const remediable =
      (advisory.severity === 'CRITICAL' || advisory.severity === 'HIGH') &&
      advisory.fixAvailable !== 'NO' &&
      advisory.ecosystem === 'OS';
    if (remediable) {
      for (const key of fleet.runBy.get(image.digest) ?? []) if (enabled.has(key)) expected.add(key);
    }
  });
  return {
    bodies,
    findings,
    advisories,
    images: new Set(findings.map((f) => f.digest)).size,
    bytes,
    expectedServices: [...expected].sort(),
  };
};
