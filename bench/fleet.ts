/**
 * The synthetic account the benchmarks run against: a few hundred images in ECR, most of them old
 * versions nothing runs any more, and tens of ECS services that run an app image plus shared sidecars
 * (envoy, log router, collectors) at a few versions. Deterministic for a given seed.
 */
import { createHash } from 'node:crypto';
import { seededRandom } from '../simulation/clock';

export const ACCOUNT_ID = '123456789012';
export const REGION = 'eu-central-1';
export const REGISTRY_HOST = `${ACCOUNT_ID}.dkr.ecr.${REGION}.amazonaws.com`;
export const DISCOVER_TAG = { key: 'autopatch:enabled', value: 'true' } as const;

export type Platform = 'UBUNTU_24_04' | 'AMAZON_LINUX_2023' | 'ALPINE_3_20';

export interface FleetImage {
  readonly repository: string;
  readonly digest: string;
  readonly tags: readonly string[];
  readonly platform: Platform;
  readonly architecture: 'arm64' | 'amd64';
  /** Does it carry language packages (NPM) besides the OS? */
  readonly language: boolean;
  /** ISO-8601. */
  readonly pushedAt: string;
}

export interface FleetContainer {
  readonly name: string;
  /** The image the container runs (its digest). */
  readonly digest: string;
  /** As the task definition names it: "<registry>/<repo>:<tag>" or "<registry>/<repo>@<digest>". */
  readonly image: string;
}

export interface FleetService {
  readonly cluster: string;
  readonly name: string;
  /** "<cluster>/<service>". */
  readonly key: string;
  readonly containers: readonly FleetContainer[];
  readonly tags: Readonly<Record<string, string>>;
  /** Carries the discovery tag, so Autopatch protects it. */
  readonly enabled: boolean;
}

export interface Fleet {
  readonly images: readonly FleetImage[];
  readonly services: readonly FleetService[];
  readonly repositories: readonly string[];
  /** Digest → services (keys) whose containers run it. */
  readonly runBy: ReadonlyMap<string, readonly string[]>;
}

export interface FleetOptions {
  readonly seed?: number;
  /** Repositories of application images, each with `versions` images. */
  readonly apps?: number;
  readonly versions?: number;
  /** Services in production, staging and batch clusters. */
  readonly services?: { readonly prod: number; readonly staging: number; readonly batch: number };
}

const SIDECARS = [
  { repository: 'platform/envoy', container: 'envoy', versions: ['v1.29.4', 'v1.30.1', 'v1.31.0'] },
  { repository: 'platform/fluent-bit', container: 'log-router', versions: ['3.0.7', '3.1.4', '3.1.9'] },
  { repository: 'platform/otel-collector', container: 'otel', versions: ['0.98.0', '0.99.0', '0.104.0'] },
  { repository: 'platform/nginx', container: 'nginx', versions: ['1.25.5', '1.27.0'] },
  { repository: 'platform/datadog-agent', container: 'datadog', versions: ['7.54.0', '7.55.2'] },
  { repository: 'platform/cloudwatch-agent', container: 'cwagent', versions: ['1.300040.0', '1.300041.0'] },
] as const;
/** Images per sidecar repository (old versions included): only the listed versions run. */
const SIDECAR_IMAGES = 10;

const TEAMS = ['payments', 'shop', 'identity', 'search', 'logistics', 'data'] as const;
const APP_NAMES = [
  'api',
  'checkout',
  'cart',
  'catalog',
  'orders',
  'users',
  'auth',
  'billing',
  'invoices',
  'ledger',
  'search',
  'recommend',
  'shipping',
  'tracking',
  'inventory',
  'pricing',
  'notify',
  'gateway',
  'profile',
  'reviews',
  'media',
  'export',
  'reports',
  'webhooks',
  'etl',
  'scheduler',
  'indexer',
  'backfill',
  'archiver',
  'ml-scoring',
];

const digestOf = (seed: number, repository: string, i: number): string =>
  `sha256:${createHash('sha256').update(`${seed}\n${repository}\n${i}`).digest('hex')}`;

/** Pick one element (deterministic for a given random source). */
export const pick = <T>(random: () => number, items: readonly T[]): T =>
  items[Math.floor(random() * items.length)] as T;

/** A deterministic Fisher-Yates shuffle, in place. */
export const shuffle = <T>(random: () => number, items: T[]): T[] => {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
};

/**
 * Default: 30 application repositories × 8 versions + 6 sidecar repositories × 10 versions = 300
 * images; 40 services (24 prod, 10 staging, 6 batch), 34 of them tagged for Autopatch.
 */
export const generateFleet = (options: FleetOptions = {}): Fleet => {
  const seed = options.seed ?? 7;
  const random = seededRandom(seed);
  const versions = options.versions ?? 8;
  const appCount = Math.min(options.apps ?? 30, APP_NAMES.length);
  const counts = options.services ?? { prod: 24, staging: 10, batch: 6 };
  const base = Date.parse('2024-06-01T00:00:00Z');

  const images: FleetImage[] = [];
  const platformFor = (): Platform => pick(random, ['UBUNTU_24_04', 'AMAZON_LINUX_2023', 'ALPINE_3_20']);
  const apps = APP_NAMES.slice(0, appCount).map((name, i) => {
    const team = TEAMS[i % TEAMS.length] as string;
    const repository = `${team}/${name}`;
    const platform = platformFor();
    const architecture = random() < 0.6 ? 'arm64' : 'amd64';
    const language = random() < 0.5;
    const list: FleetImage[] = [];
    for (let v = 0; v < versions; v++) {
      list.push({
        repository,
        digest: digestOf(seed, repository, v),
        tags: [`v1.${v}.${Math.floor(random() * 10)}`, ...(v === versions - 1 ? ['latest'] : [])],
        platform,
        architecture,
        language,
        pushedAt: new Date(base + (i * versions + v) * 3_600_000).toISOString(),
      });
    }
    images.push(...list);
    return { team, name, repository, images: list };
  });
  const sidecars = SIDECARS.map((s, i) => {
    const list: FleetImage[] = [];
    for (let v = 0; v < SIDECAR_IMAGES; v++) {
      // The running versions are the newest ones; the rest are history.
      const running = v >= SIDECAR_IMAGES - s.versions.length;
      const tag = running ? s.versions[v - (SIDECAR_IMAGES - s.versions.length)] : `old-${v}`;
      list.push({
        repository: s.repository,
        digest: digestOf(seed, s.repository, v),
        tags: [tag as string],
        platform: i % 2 === 0 ? 'UBUNTU_24_04' : 'ALPINE_3_20',
        architecture: 'arm64',
        language: false,
        pushedAt: new Date(base - (SIDECAR_IMAGES - v) * 86_400_000).toISOString(),
      });
    }
    images.push(...list);
    return { ...s, images: list.slice(SIDECAR_IMAGES - s.versions.length) };
  });

  const services: FleetService[] = [];
  const ref = (image: FleetImage, byDigest: boolean): string =>
    byDigest
      ? `${REGISTRY_HOST}/${image.repository}@${image.digest}`
      : `${REGISTRY_HOST}/${image.repository}:${image.tags[0]}`;
  const addService = (cluster: string, app: (typeof apps)[number], image: FleetImage) => {
    const containers: FleetContainer[] = [
      { name: 'app', digest: image.digest, image: ref(image, random() < 0.3) },
    ];
    const sidecarCount = 1 + Math.floor(random() * 3);
    for (const s of shuffle(random, [...sidecars]).slice(0, sidecarCount)) {
      const sidecar = pick(random, s.images);
      containers.push({ name: s.container, digest: sidecar.digest, image: ref(sidecar, false) });
    }
    const enabled = random() < 0.85;
    services.push({
      cluster,
      name: app.name,
      key: `${cluster}/${app.name}`,
      containers,
      tags: { team: app.team, ...(enabled ? { [DISCOVER_TAG.key]: DISCOVER_TAG.value } : {}) },
      enabled,
    });
  };
  const appAt = (i: number) => apps[i % apps.length] as (typeof apps)[number];
  for (let i = 0; i < counts.prod; i++) {
    const app = appAt(i);
    addService('prod', app, app.images[versions - 2] as FleetImage);
  }
  for (let i = 0; i < counts.staging; i++) {
    const app = appAt(i);
    addService('staging', app, app.images[versions - 1] as FleetImage);
  }
  for (let i = 0; i < counts.batch; i++) {
    const app = appAt(counts.prod + i);
    addService('batch', app, app.images[versions - 2] as FleetImage);
  }

  const runBy = new Map<string, string[]>();
  for (const s of services) {
    for (const c of s.containers) {
      const list = runBy.get(c.digest) ?? [];
      if (!list.includes(s.key)) list.push(s.key);
      runBy.set(c.digest, list);
    }
  }
  return {
    images,
    services,
    repositories: [...new Set(images.map((i) => i.repository))],
    runBy,
  };
};
