import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidEventError } from '../../lambdas/shared/errors';
import {
  type Finding,
  formatPath,
  parseEvent,
  parseInspectorTimestamp,
  parseSqsRecord,
  type ScanEvent,
} from '../../lambdas/triage/schema';

type Json = Record<string, unknown>;

const fixture = (name: string): Json =>
  JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'events', name), 'utf8')) as Json;

const REAL_FINDING = fixture('finding-ecr-ubuntu-2024.json');
const REAL_SCAN = fixture('scan-initial-complete.json');
const CONSOLE_FINDING = fixture('finding-ecr-critical-npm-console-timestamps.json');
const EC2_FINDING = fixture('finding-ec2-instance-high.json');

const DELETE = Symbol('delete');

/** A copy of `event` with the value at `path` replaced (or deleted). */
const withValue = (event: Json, path: ReadonlyArray<string | number>, value: unknown): Json => {
  const copy = structuredClone(event);
  let node = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (value === DELETE) delete node[last];
  else node[last] = value;
  return copy;
};

const findingOf = (event: unknown): Finding => {
  const parsed = parseEvent(event);
  if (parsed.kind !== 'finding') throw new Error(`expected a finding, got ${parsed.kind}`);
  return parsed.finding;
};

const scanOf = (event: unknown): ScanEvent => {
  const parsed = parseEvent(event);
  if (parsed.kind !== 'scan') throw new Error(`expected a scan, got ${parsed.kind}`);
  return parsed.scan;
};

const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error, but none was thrown');
};

const DIGEST = 'sha256:84f507df33c6864d49c296fb734192696e4cb6f78166ac51ac8b9b118181085d';

describe('parseInspectorTimestamp', () => {
  it.each([
    // Java Date.toString(), as in Inspector events
    ['Wed Sep 04 16:55:38.411 UTC 2024', '2024-09-04T16:55:38.411Z'],
    ['Tue Sep 03 00:00:00.000 UTC 2024', '2024-09-03T00:00:00.000Z'],
    ['Wed Sep 04 16:55:38 UTC 2024', '2024-09-04T16:55:38.000Z'],
    ['Wed Sep 04 16:55:38.411 GMT 2024', '2024-09-04T16:55:38.411Z'],
    ['Sep 04 16:55:38.411 UTC 2024', '2024-09-04T16:55:38.411Z'],
    ['Wed Sep 04 18:55:38.411 +0200 2024', '2024-09-04T16:55:38.411Z'],
    ['wed sep 04 16:55:38.411 utc 2024', '2024-09-04T16:55:38.411Z'],
    // console "medium" style; no zone means UTC
    ['Dec 3, 2021, 6:02:30 PM', '2021-12-03T18:02:30.000Z'],
    ['Dec 3, 2021, 6:02:30 AM', '2021-12-03T06:02:30.000Z'],
    ['Dec 3, 2021, 12:02:30 AM', '2021-12-03T00:02:30.000Z'],
    ['Dec 3, 2021, 12:02:30 PM', '2021-12-03T12:02:30.000Z'],
    ['Dec 3, 2021, 6:02:30\u202fPM', '2021-12-03T18:02:30.000Z'],
    ['Dec 3, 2021 6:02:30 pm', '2021-12-03T18:02:30.000Z'],
    ['Dec 3, 2021, 6:02 PM', '2021-12-03T18:02:00.000Z'],
    ['December 3, 2021, 6:02:30 PM', '2021-12-03T18:02:30.000Z'],
    ['Sept 3, 2021, 6:02:30 PM', '2021-09-03T18:02:30.000Z'],
    ['Dec 3, 2021, 6:02:30 PM UTC', '2021-12-03T18:02:30.000Z'],
    ['Dec 3, 2021, 18:02:30', '2021-12-03T18:02:30.000Z'],
    ['Fri, Dec 3, 2021, 6:02:30 PM', '2021-12-03T18:02:30.000Z'],
    ['  Dec  3,  2021,  6:02:30 PM ', '2021-12-03T18:02:30.000Z'],
    // ISO-8601; no zone means UTC (Date.parse would use the machine's zone)
    ['2024-09-04T16:55:38Z', '2024-09-04T16:55:38.000Z'],
    ['2024-09-04T16:55:38.411Z', '2024-09-04T16:55:38.411Z'],
    ['2024-09-04T16:55:38.411123456Z', '2024-09-04T16:55:38.411Z'],
    ['2024-09-04T18:55:38+02:00', '2024-09-04T16:55:38.000Z'],
    ['2024-09-04T11:55:38-0500', '2024-09-04T16:55:38.000Z'],
    ['2024-09-04T16:55:38', '2024-09-04T16:55:38.000Z'],
    ['2024-09-04 16:55:38', '2024-09-04T16:55:38.000Z'],
    ['2024-09-04T16:55Z', '2024-09-04T16:55:00.000Z'],
    ['2024-09-04', '2024-09-04T00:00:00.000Z'],
    ['20240904T165538Z', '2024-09-04T16:55:38.000Z'],
    // RFC 1123
    ['Wed, 04 Sep 2024 16:55:38 GMT', '2024-09-04T16:55:38.000Z'],
    ['4 Sep 2024 18:55:38 +0200', '2024-09-04T16:55:38.000Z'],
    // epoch seconds and milliseconds
    ['1725468938', '2024-09-04T16:55:38.000Z'],
    ['1725468938.411', '2024-09-04T16:55:38.411Z'],
    ['1725468938411', '2024-09-04T16:55:38.411Z'],
    // leap day
    ['Feb 29, 2024, 1:00:00 PM', '2024-02-29T13:00:00.000Z'],
  ])('parses %j as %s', (input, iso) => {
    // Act
    const parsed = parseInspectorTimestamp(input);

    // Assess
    expect(parsed.toISOString()).toBe(iso);
  });

  it.each([
    ['garbage', /^unrecognised timestamp "garbage": expected ISO-8601, "Wed Sep 04 16:55:38.411 UTC 2024"/],
    ['', /^unrecognised timestamp "": expected ISO-8601/],
    ['yesterday at noon', /^unrecognised timestamp "yesterday at noon"/],
    [
      'Feb 30, 2024, 1:00:00 PM',
      /^invalid timestamp "Feb 30, 2024, 1:00:00 PM": day 30 is out of range for 2024-02$/,
    ],
    ['Feb 29, 2023, 1:00:00 PM', /day 29 is out of range for 2023-02$/],
    ['2024-13-01T00:00:00Z', /month 13 is out of range$/],
    ['2024-09-04T24:00:00Z', /hour 24 is out of range$/],
    ['2024-09-04T16:60:00Z', /minute 60 is out of range$/],
    ['2024-09-04T16:55:61Z', /second 61 is out of range$/],
    ['Dec 3, 2021, 13:02:30 PM', /hour 13 is out of range for a 12-hour clock$/],
    ['Dec 3, 2021, 0:02:30 AM', /hour 0 is out of range for a 12-hour clock$/],
    [
      'Wed Sep 04 16:55:38.411 PDT 2024',
      /unsupported time zone "PDT" \(use UTC, GMT, Z or a numeric offset\)$/,
    ],
    ['Wed Foo 04 16:55:38.411 UTC 2024', /unknown month "Foo"$/],
    ['Septx 3, 2021, 6:02:30 PM', /unknown month "Septx"$/],
    ['2024-09-04T16:55:38+15:00', /bad offset "\+15:00"$/],
    ['0999-01-01', /year 999 is out of range$/],
  ])('rejects %j with a clear message', (input, message) => {
    // Act
    const error = errorOf(() => parseInspectorTimestamp(input));

    // Assess
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error.name).toBe('InvalidEventError');
    expect(error.message).toMatch(message);
  });

  it('shortens a very long input in its message', () => {
    // Prepare
    const input = `x${'y'.repeat(500)}`;

    // Act
    const error = errorOf(() => parseInspectorTimestamp(input));

    // Assess
    expect(error.message.length).toBeLessThan(200);
    expect(error.message).toContain('..."');
  });
});

describe('parseEvent: Inspector2 Finding', () => {
  it('parses the real ECR finding from the Inspector documentation', () => {
    // Act
    const finding = findingOf(REAL_FINDING);

    // Assess
    expect(finding).toEqual({
      findingArn: 'arn:aws:inspector2:eu-central-1:123456789012:finding/{{FINDING_ID}}',
      updatedAtRaw: 'Wed Sep 04 16:55:38.411 UTC 2024',
      updatedAt: '2024-09-04T16:55:38.411Z',
      firstObservedAt: '2024-09-04T16:55:38.411Z',
      lastObservedAt: '2024-09-04T16:55:38.411Z',
      account: '123456789012',
      region: 'eu-central-1',
      severity: 'MEDIUM',
      status: 'ACTIVE',
      type: 'PACKAGE_VULNERABILITY',
      title: 'CVE-2024-6119 - libssl3t64, openssl',
      vulnerabilityId: 'CVE-2024-6119',
      epssScore: 0.00045,
      exploitAvailable: 'NO',
      fixAvailable: 'YES',
      packageManagers: ['OS'],
      packages: [
        {
          name: 'libssl3t64',
          version: '3.0.13',
          fixedInVersion: '0:3.0.13-0ubuntu3.4',
          packageManager: 'OS',
        },
        { name: 'openssl', version: '3.0.13', fixedInVersion: '0:3.0.13-0ubuntu3.4', packageManager: 'OS' },
      ],
      resourceType: 'AWS_ECR_CONTAINER_IMAGE',
      resourceId: `arn:aws:ecr:eu-central-1:123456789012:repository/inspector2/${DIGEST}`,
      image: {
        registry: '123456789012',
        repository: 'inspector2',
        repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/inspector2',
        imageDigest: DIGEST,
        imageTags: ['ubuntu_latest'],
        platform: 'UBUNTU_24_04',
        architecture: 'arm64',
        pushedAt: '2024-09-04T16:55:28.000Z',
      },
    });
    expect(finding).not.toHaveProperty('inspectorScore');
  });

  it('parses a hand-made CRITICAL finding with console timestamps and only awsEcrContainerImage', () => {
    // Act
    const finding = findingOf(CONSOLE_FINDING);

    // Assess
    expect(finding).toMatchObject({
      updatedAtRaw: 'Sep 5, 2024, 8:12:03 AM',
      updatedAt: '2024-09-05T08:12:03.000Z',
      firstObservedAt: '2021-12-03T18:02:30.000Z',
      severity: 'CRITICAL',
      inspectorScore: 9.8,
      epssScore: 0.91234,
      exploitAvailable: 'YES',
      vulnerabilityId: 'CVE-2021-23337',
      packageManagers: ['NPM', 'OS'],
      image: {
        repository: 'payments/api',
        repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/payments/api',
        imageTags: ['v1.42.0', 'latest'],
        pushedAt: '2024-08-30T16:20:00.000Z',
      },
    });
  });

  it('parses an EC2 instance finding without image details', () => {
    // Act
    const finding = findingOf(EC2_FINDING);

    // Assess
    expect(finding.resourceType).toBe('AWS_EC2_INSTANCE');
    expect(finding.resourceId).toBe('i-0abc1234def567890');
    expect(finding.image).toBeUndefined();
    expect(finding.vulnerabilityId).toBe('CVE-2024-6387');
    expect(finding.epssScore).toBeUndefined();
  });

  it.each([
    ['updatedAt', 'Wed Sep 04 16:55:38.411 UTC 2024', '2024-09-04T16:55:38.411Z'],
    ['updatedAt', 'Dec 3, 2021, 6:02:30 PM', '2021-12-03T18:02:30.000Z'],
    ['updatedAt', '2024-09-04T16:55:38Z', '2024-09-04T16:55:38.000Z'],
    ['updatedAt', '2024-09-04T18:55:38.411+02:00', '2024-09-04T16:55:38.411Z'],
    ['updatedAt', 'Wed, 04 Sep 2024 16:55:38 GMT', '2024-09-04T16:55:38.000Z'],
    ['firstObservedAt', 'Dec 3, 2021, 6:02:30 PM', '2021-12-03T18:02:30.000Z'],
    ['lastObservedAt', '2024-09-04 16:55:38', '2024-09-04T16:55:38.000Z'],
  ])('normalises detail.%s %j to ISO-8601', (field, raw, iso) => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', field], raw);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding[field as 'updatedAt' | 'firstObservedAt' | 'lastObservedAt']).toBe(iso);
  });

  it('keeps updatedAt exactly as sent, for the deduplication key', () => {
    // Prepare
    const raw = 'Dec 3, 2021, 6:02:30\u202fPM';
    const event = withValue(REAL_FINDING, ['detail', 'updatedAt'], raw);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.updatedAtRaw).toBe(raw);
    expect(finding.updatedAt).toBe('2021-12-03T18:02:30.000Z');
  });

  it.each([
    ['inspectorScore', 'inspectorScore'],
    ['epss', 'epssScore'],
    ['exploitAvailable', 'exploitAvailable'],
    ['fixAvailable', 'fixAvailable'],
    ['firstObservedAt', 'firstObservedAt'],
    ['lastObservedAt', 'lastObservedAt'],
  ])('accepts a finding without detail.%s', (field, output) => {
    // Prepare
    const event = withValue(
      withValue(REAL_FINDING, ['detail', 'inspectorScore'], 8.1),
      ['detail', field],
      DELETE,
    );

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding).not.toHaveProperty(output);
    expect(finding.findingArn).toContain('{{FINDING_ID}}');
  });

  it('reads inspectorScore when present', () => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'inspectorScore'], 7.5);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.inspectorScore).toBe(7.5);
  });

  it.each(['YES', 'NO', 'PARTIAL'])('reads fixAvailable %s', (value) => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'fixAvailable'], value);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.fixAvailable).toBe(value);
  });

  it.each(['SUPPRESSED', 'CLOSED', 'ACTIVE'])('parses status %s', (status) => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'status'], status);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.status).toBe(status);
  });

  it.each(['CRITICAL', 'HIGH', 'LOW', 'INFORMATIONAL', 'UNTRIAGED'])('parses severity %s', (severity) => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'severity'], severity);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.severity).toBe(severity);
  });

  it('reads the image from details.image alone (digest from imageDigest)', () => {
    // Prepare
    const event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage'],
      DELETE,
    );

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.image).toEqual({
      registry: '123456789012',
      repository: 'inspector2',
      repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/inspector2',
      imageDigest: DIGEST,
      imageTags: ['ubuntu_latest'],
      platform: 'UBUNTU_24_04',
      architecture: 'arm64',
      pushedAt: '2024-09-04T16:55:28.000Z',
    });
  });

  it('reads the image from details.awsEcrContainerImage alone (digest from imageHash)', () => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'resources', 0, 'details', 'image'], DELETE);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.image?.imageDigest).toBe(DIGEST);
    expect(finding.image?.repository).toBe('inspector2');
    expect(finding.image?.pushedAt).toBe('2024-09-04T16:55:28.000Z');
  });

  it('merges the two image shapes field by field', () => {
    // Prepare
    let event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage', 'platform'],
      DELETE,
    );
    event = withValue(
      event,
      ['detail', 'resources', 0, 'details', 'image', 'imageTags'],
      ['ubuntu_latest', '24.04'],
    );
    event = withValue(
      event,
      ['detail', 'resources', 0, 'details', 'image', 'platform'],
      'UBUNTU_24_04_NEUTRAL',
    );

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.image?.platform).toBe('UBUNTU_24_04_NEUTRAL');
    expect(finding.image?.imageTags).toEqual(['ubuntu_latest', '24.04']);
  });

  it('takes the registry from the image details, which may be another account than the finding', () => {
    // Prepare
    let event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage', 'registry'],
      '210987654321',
    );
    event = withValue(event, ['detail', 'resources', 0, 'details', 'image', 'registry'], '210987654321');

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.account).toBe('123456789012');
    expect(finding.image?.registry).toBe('210987654321');
    expect(finding.image?.repositoryUri).toBe('210987654321.dkr.ecr.eu-central-1.amazonaws.com/inspector2');
  });

  it('falls back to the account for the registry and to the event region for the repository URI', () => {
    // Prepare
    let event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage'],
      DELETE,
    );
    event = withValue(event, ['detail', 'resources', 0, 'details', 'image', 'registry'], DELETE);
    event = withValue(event, ['detail', 'resources', 0, 'region'], DELETE);
    event = withValue(event, ['region'], 'us-west-2');

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.region).toBe('us-west-2');
    expect(finding.image?.repositoryUri).toBe('123456789012.dkr.ecr.us-west-2.amazonaws.com/inspector2');
  });

  it('tolerates unknown keys at every level', () => {
    // Prepare
    let event = withValue(REAL_FINDING, ['detail', 'somethingNew'], { nested: true });
    event = withValue(event, ['detail', 'resources', 0, 'details', 'image', 'inUseCount'], 4);
    event = withValue(event, ['detail', 'packageVulnerabilityDetails', 'vulnerablePackages', 0, 'sbom'], 'x');
    event = withValue(event, ['another-envelope-key'], 'x');

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.vulnerabilityId).toBe('CVE-2024-6119');
    expect(finding).not.toHaveProperty('somethingNew');
  });

  it('accepts resource types it does not know (policy ignores them)', () => {
    // Prepare
    let event = withValue(EC2_FINDING, ['detail', 'resources', 0, 'type'], 'AWS_SOMETHING_NEW');
    event = withValue(event, ['detail', 'resources', 0, 'details'], DELETE);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.resourceType).toBe('AWS_SOMETHING_NEW');
    expect(finding.image).toBeUndefined();
  });

  it('parses a NETWORK_REACHABILITY finding, which has no package details', () => {
    // Prepare
    let event = withValue(EC2_FINDING, ['detail', 'type'], 'NETWORK_REACHABILITY');
    event = withValue(event, ['detail', 'packageVulnerabilityDetails'], DELETE);
    event = withValue(event, ['detail', 'networkReachabilityDetails'], { protocol: 'TCP' });

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.type).toBe('NETWORK_REACHABILITY');
    expect(finding.vulnerabilityId).toBe('NETWORK_REACHABILITY');
    expect(finding.packages).toEqual([]);
    expect(finding.packageManagers).toEqual([]);
  });

  it('uses the detector id as the vulnerability id of a CODE_VULNERABILITY finding', () => {
    // Prepare
    let event = withValue(EC2_FINDING, ['detail', 'type'], 'CODE_VULNERABILITY');
    event = withValue(event, ['detail', 'packageVulnerabilityDetails'], DELETE);
    event = withValue(event, ['detail', 'codeVulnerabilityDetails'], {
      detectorId: 'python/sql-injection@v1.0',
    });

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.vulnerabilityId).toBe('python/sql-injection@v1.0');
  });

  it.each([
    [
      'a missing findingArn',
      ['detail', 'findingArn'],
      DELETE,
      'detail.findingArn: expected string, but the field is missing',
    ],
    [
      'a numeric findingArn',
      ['detail', 'findingArn'],
      42,
      'detail.findingArn: expected string, received number 42',
    ],
    ['an empty findingArn', ['detail', 'findingArn'], '', 'detail.findingArn: must not be empty'],
    [
      'an unknown severity',
      ['detail', 'severity'],
      'URGENT',
      'detail.severity: invalid value "URGENT", expected one of CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNTRIAGED',
    ],
    [
      'an unknown status',
      ['detail', 'status'],
      'OPEN',
      'detail.status: invalid value "OPEN", expected one of ACTIVE, SUPPRESSED, CLOSED',
    ],
    [
      'an unknown type',
      ['detail', 'type'],
      'MALWARE',
      'detail.type: invalid value "MALWARE", expected one of PACKAGE_VULNERABILITY, CODE_VULNERABILITY, NETWORK_REACHABILITY',
    ],
    [
      'an unknown fixAvailable',
      ['detail', 'fixAvailable'],
      'MAYBE',
      'detail.fixAvailable: invalid value "MAYBE", expected one of YES, NO, PARTIAL',
    ],
    [
      'an unparseable updatedAt',
      ['detail', 'updatedAt'],
      'soon',
      'detail.updatedAt: unrecognised timestamp "soon"',
    ],
    [
      'a missing updatedAt',
      ['detail', 'updatedAt'],
      DELETE,
      'detail.updatedAt: expected string, but the field is missing',
    ],
    [
      'an impossible firstObservedAt',
      ['detail', 'firstObservedAt'],
      'Feb 30, 2024, 1:00:00 PM',
      'detail.firstObservedAt: invalid timestamp "Feb 30, 2024, 1:00:00 PM": day 30 is out of range for 2024-02',
    ],
    [
      'an unparseable pushedAt',
      ['detail', 'resources', 0, 'details', 'image', 'pushedAt'],
      'last week',
      'detail.resources[0].details.image.pushedAt: unrecognised timestamp "last week"',
    ],
    [
      'an inspectorScore above 10',
      ['detail', 'inspectorScore'],
      11,
      'detail.inspectorScore: must be ≤ 10, received number 11',
    ],
    [
      'a string epss score',
      ['detail', 'epss', 'score'],
      'high',
      'detail.epss.score: expected number, received "high"',
    ],
    ['no resources', ['detail', 'resources'], [], 'detail.resources: must have at least 1 item(s)'],
    [
      'a resource without a type',
      ['detail', 'resources', 0, 'type'],
      DELETE,
      'detail.resources[0].type: expected string, but the field is missing',
    ],
    [
      'a package without a name',
      ['detail', 'packageVulnerabilityDetails', 'vulnerablePackages', 1, 'name'],
      DELETE,
      'detail.packageVulnerabilityDetails.vulnerablePackages[1].name: expected string, but the field is missing',
    ],
    [
      'a PACKAGE_VULNERABILITY without package details',
      ['detail', 'packageVulnerabilityDetails'],
      DELETE,
      'detail.packageVulnerabilityDetails: expected object for a PACKAGE_VULNERABILITY finding, but the field is missing',
    ],
    [
      'an ECR resource without image details',
      ['detail', 'resources', 0, 'details'],
      {},
      'detail.resources[0].details: an AWS_ECR_CONTAINER_IMAGE resource needs details.awsEcrContainerImage or details.image',
    ],
    [
      'image tags that are not a list',
      ['detail', 'resources', 0, 'details', 'image', 'imageTags'],
      'latest',
      'detail.resources[0].details.image.imageTags: expected array, received "latest"',
    ],
    ['a detail that is not an object', ['detail'], 'finding', 'detail: expected object, received "finding"'],
    [
      'an envelope without an account',
      ['account'],
      DELETE,
      'account: expected string, but the field is missing',
    ],
    [
      'an envelope time that is not ISO-8601',
      ['time'],
      'yesterday',
      'time: expected a valid datetime, received "yesterday"',
    ],
  ])('rejects %s', (_what, path, value, message) => {
    // Prepare
    const event = withValue(REAL_FINDING, path as Array<string | number>, value);

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error.message).toContain(message);
    expect(error.message).toMatch(/^invalid Inspector2 Finding event: /);
  });

  it('finds the ECR image wherever it is listed among the resources', () => {
    // Prepare
    const [ecr] = (REAL_FINDING.detail as { resources: unknown[] }).resources;
    const ec2 = { type: 'AWS_EC2_INSTANCE', id: 'arn:aws:ec2:eu-central-1:123456789012:instance/i-1' };
    const event = withValue(REAL_FINDING, ['detail', 'resources'], [ec2, ec2, ecr]);

    // Act
    const finding = findingOf(event);

    // Assess
    expect(finding.resourceType).toBe('AWS_ECR_CONTAINER_IMAGE');
    expect(finding.image?.repository).toBe('inspector2');
  });

  it('rejects a finding naming two different ECR images', () => {
    const [ecr] = (REAL_FINDING.detail as { resources: unknown[] }).resources;
    const other = withValue(
      withValue(
        ecr as Record<string, unknown>,
        ['details', 'awsEcrContainerImage', 'repositoryName'],
        'other',
      ),
      ['details', 'image', 'repositoryName'],
      'other',
    );
    expect(() => parseEvent(withValue(REAL_FINDING, ['detail', 'resources'], [ecr, other]))).toThrow(
      /detail\.resources: names 2 different ECR images/,
    );
  });

  it.each([
    ['an md5 digest', ['imageHash', 'imageDigest'], 'md5:0123', /expected an image digest/],
    [
      'a repository name with a newline',
      ['repositoryName', 'repositoryName'],
      'a\nb',
      /expected an ECR repository name/,
    ],
    ['a 300 KB tag', ['imageTags', 'imageTags'], ['t'.repeat(300_000)], /must have at most 128 characters/],
    [
      'a registry that is not an account id',
      ['registry', 'registry'],
      '12345',
      /expected a 12-digit registry/,
    ],
  ])('rejects %s, naming the field', (_, [ecrField, neutralField], value, message) => {
    // Prepare
    const path = (shape: string, field: string) => ['detail', 'resources', 0, 'details', shape, field];
    const event = withValue(
      withValue(REAL_FINDING, path('awsEcrContainerImage', ecrField as string), value),
      path('image', neutralField as string),
      value,
    );

    // Act / Assess
    expect(() => parseEvent(event)).toThrow(message);
  });

  it('rejects a 2,000-character updatedAt or findingArn before it can reach a DynamoDB key', () => {
    expect(() => parseEvent(withValue(REAL_FINDING, ['detail', 'updatedAt'], 'x'.repeat(2_000)))).toThrow(
      /detail\.updatedAt: must have at most 64 characters/,
    );
    expect(() =>
      parseEvent(
        withValue(
          REAL_FINDING,
          ['detail', 'findingArn'],
          `arn:aws:inspector2:eu-central-1:123456789012:finding/${'a'.repeat(2_000)}`,
        ),
      ),
    ).toThrow(/detail\.findingArn: must have at most 256 characters/);
  });

  it('rejects a CVE id that would inject lines into a notification', () => {
    expect(() =>
      parseEvent(
        withValue(
          REAL_FINDING,
          ['detail', 'packageVulnerabilityDetails', 'vulnerabilityId'],
          'CVE-1\nApproved: yes',
        ),
      ),
    ).toThrow(/vulnerabilityId: expected a vulnerability id .*received "CVE-1\\nApproved: yes"/);
  });

  it('rejects an ECR image without any digest', () => {
    // Prepare
    let event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage', 'imageHash'],
      DELETE,
    );
    event = withValue(event, ['detail', 'resources', 0, 'details', 'image', 'imageDigest'], DELETE);

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error.message).toBe(
      'invalid Inspector2 Finding event: detail.resources[0].details.awsEcrContainerImage.imageHash: expected an image digest, but the field is missing',
    );
  });

  it('rejects an ECR image without a repository name', () => {
    // Prepare
    let event = withValue(REAL_FINDING, ['detail', 'resources', 0, 'details', 'image'], DELETE);
    event = withValue(
      event,
      ['detail', 'resources', 0, 'details', 'awsEcrContainerImage', 'repositoryName'],
      DELETE,
    );

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error.message).toContain(
      'detail.resources[0].details.awsEcrContainerImage.repositoryName: expected string, but the field is missing',
    );
  });

  it('rejects a finding whose two image shapes name different digests', () => {
    // Prepare
    const event = withValue(
      REAL_FINDING,
      ['detail', 'resources', 0, 'details', 'image', 'imageDigest'],
      `sha256:${'f'.repeat(64)}`,
    );

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error.message).toContain(
      `detail.resources[0].details: awsEcrContainerImage.imageHash "${DIGEST}" and image.imageDigest "sha256:${'f'.repeat(64)}" disagree`,
    );
  });

  it('names every offending field at once', () => {
    // Prepare
    let event = withValue(REAL_FINDING, ['detail', 'findingArn'], DELETE);
    event = withValue(event, ['detail', 'severity'], 'URGENT');
    event = withValue(event, ['detail', 'updatedAt'], 'soon');

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(
      error.message
        .split('; ')
        .map((part) => part.replace(/^invalid Inspector2 Finding event: /, '').split(':')[0]),
    ).toEqual(['detail.findingArn', 'detail.severity', 'detail.updatedAt']);
  });

  it('keeps the zod error as the cause', () => {
    // Prepare
    const event = withValue(REAL_FINDING, ['detail', 'findingArn'], DELETE);

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect((error.cause as { issues?: unknown[] }).issues).toHaveLength(1);
  });
});

describe('parseEvent: Inspector2 Scan', () => {
  it('parses the real scan event, taking the repository out of its ARN', () => {
    // Act
    const scan = scanOf(REAL_SCAN);

    // Assess
    expect(scan).toEqual({
      scanStatus: 'INITIAL_SCAN_COMPLETE',
      account: '111122223333',
      region: 'us-east-1',
      time: '2023-01-20T23:15:18.000Z',
      repositoryArn: 'arn:aws:ecr:us-east-1:111122223333:repository/inspector2',
      repository: 'inspector2',
      registry: '111122223333',
      repositoryUri: '111122223333.dkr.ecr.us-east-1.amazonaws.com/inspector2',
      imageDigest: 'sha256:965fbcae990b0467ed5657caceaec165018ef44a4d2d46c7cdea80a9dff0d1ea',
      imageTags: ['ubuntu22'],
      severityCounts: { CRITICAL: 0, HIGH: 0, MEDIUM: 0, TOTAL: 0 },
    });
  });

  it.each([
    [
      'arn:aws:ecr:eu-west-1:444455556666:repository/payments/api',
      'payments/api',
      '444455556666',
      'eu-west-1',
    ],
    ['arn:aws-cn:ecr:cn-north-1:444455556666:repository/team/a/b', 'team/a/b', '444455556666', 'cn-north-1'],
    ['inspector2', 'inspector2', '111122223333', 'us-east-1'],
  ])('reads repository-name %s', (value, repository, registry, region) => {
    // Prepare
    const event = withValue(REAL_SCAN, ['detail', 'repository-name'], value);

    // Act
    const scan = scanOf(event);

    // Assess
    expect({ repository: scan.repository, registry: scan.registry, region: scan.region }).toEqual({
      repository,
      registry,
      region,
    });
  });

  it('builds a China-partition repository URI', () => {
    // Prepare
    const event = withValue(
      REAL_SCAN,
      ['detail', 'repository-name'],
      'arn:aws-cn:ecr:cn-north-1:444455556666:repository/app',
    );

    // Act
    const scan = scanOf(event);

    // Assess
    expect(scan.repositoryUri).toBe('444455556666.dkr.ecr.cn-north-1.amazonaws.com.cn/app');
  });

  it('accepts missing severity counts and image tags', () => {
    // Prepare
    let event = withValue(REAL_SCAN, ['detail', 'finding-severity-counts'], DELETE);
    event = withValue(event, ['detail', 'image-tags'], DELETE);

    // Act
    const scan = scanOf(event);

    // Assess
    expect(scan.severityCounts).toEqual({});
    expect(scan.imageTags).toEqual([]);
  });

  it.each([
    ['image-digest', DELETE, 'detail.image-digest: expected string, but the field is missing'],
    ['repository-name', 7, 'detail.repository-name: expected string, received number 7'],
    [
      'finding-severity-counts',
      { CRITICAL: -1 },
      'detail.finding-severity-counts.CRITICAL: must be ≥ 0, received number -1',
    ],
  ])('rejects a bad detail.%s', (field, value, message) => {
    // Prepare
    const event = withValue(REAL_SCAN, ['detail', field], value);

    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error.message).toBe(`invalid Inspector2 Scan event: ${message}`);
  });
});

describe('parseEvent: foreign and malformed input', () => {
  it.each([
    [
      { ...REAL_FINDING, source: 'aws.ec2', 'detail-type': 'EC2 Instance State-change Notification' },
      'not an Amazon Inspector finding or scan event: source "aws.ec2", detail-type "EC2 Instance State-change Notification" (expected source "aws.inspector2" with detail-type "Inspector2 Finding" or "Inspector2 Scan")',
    ],
    [
      { ...REAL_FINDING, 'detail-type': 'Inspector2 Coverage' },
      'not an Amazon Inspector finding or scan event: source "aws.inspector2", detail-type "Inspector2 Coverage"',
    ],
    [
      { hello: 'world' },
      'not an Amazon Inspector finding or scan event: source nothing, detail-type nothing',
    ],
  ])('rejects a foreign event (%#)', (event, message) => {
    // Act
    const error = errorOf(() => parseEvent(event));

    // Assess
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error.message).toContain(message);
  });

  it.each([
    [null, 'event is not a JSON object (received null)'],
    [
      '{"source":"aws.inspector2"}',
      'event is not a JSON object (received "{\\"source\\":\\"aws.inspector2\\"}")',
    ],
    [[REAL_FINDING], 'event is not a JSON object (received an array)'],
    [42, 'event is not a JSON object (received number 42)'],
  ])('rejects %j, which is not an event object', (input, message) => {
    // Act
    const error = errorOf(() => parseEvent(input));

    // Assess
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error.message).toBe(message);
  });
});

describe('parseSqsRecord', () => {
  it('parses the EventBridge event in a record body', () => {
    // Prepare
    const record = { messageId: 'm-1', body: JSON.stringify(REAL_FINDING) };

    // Act
    const parsed = parseSqsRecord(record);

    // Assess
    expect(parsed.kind).toBe('finding');
  });

  it.each([
    [{ messageId: 'm-1', body: '{not json' }, /^body is not JSON: /],
    [{ messageId: 'm-1' }, /^record\.body: expected string, received nothing$/],
    ['just a string', /^record\.body: expected string, received nothing$/],
    [{ body: JSON.stringify({ source: 'aws.s3' }) }, /^not an Amazon Inspector finding or scan event/],
  ])('rejects a bad record (%#)', (record, message) => {
    // Act
    const error = errorOf(() => parseSqsRecord(record));

    // Assess
    expect(error).toBeInstanceOf(InvalidEventError);
    expect(error.message).toMatch(message);
  });
});

describe('formatPath', () => {
  it.each([
    [undefined, [], '(root)'],
    ['policy', [], 'policy'],
    [undefined, ['detail', 'resources', 0, 'details'], 'detail.resources[0].details'],
    [undefined, ['detail', 'image-digest'], 'detail.image-digest'],
    ['policy', ['rules', 2, 'match', 'severities', 0], 'policy.rules[2].match.severities[0]'],
    [undefined, ['tags', 'team name'], 'tags["team name"]'],
  ])('formats %j %j as %s', (root, path, expected) => {
    // Act
    const formatted = formatPath(root, path);

    // Assess
    expect(formatted).toBe(expected);
  });
});
