import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_POLICY_PARSED,
  evaluate,
  type Policy,
  type PolicyDocument,
  type PolicyMatch,
  parsePolicy,
} from '../../lambdas/triage/policy';
import { type Finding, parseEvent } from '../../lambdas/triage/schema';

const NOW = new Date('2024-09-04T12:00:00Z'); // a Wednesday
/** What the reason says of the default deadlines, for BASE (first observed 2024-09-04T10:00Z). */
const HIGH_DUE =
  '; deadline 2024-09-11T10:00:00.000Z (7d for HIGH after first observed 2024-09-04T10:00:00.000Z)';
const CRITICAL_DUE =
  '; deadline 2024-09-06T10:00:00.000Z (2d for CRITICAL after first observed 2024-09-04T10:00:00.000Z)';

const BASE: Finding = {
  findingArn: 'arn:aws:inspector2:eu-central-1:123456789012:finding/0123456789abcdef',
  updatedAtRaw: 'Wed Sep 04 10:00:00.000 UTC 2024',
  updatedAt: '2024-09-04T10:00:00.000Z',
  firstObservedAt: '2024-09-04T10:00:00.000Z',
  account: '123456789012',
  region: 'eu-central-1',
  severity: 'HIGH',
  status: 'ACTIVE',
  type: 'PACKAGE_VULNERABILITY',
  title: 'CVE-2024-6119 - openssl',
  vulnerabilityId: 'CVE-2024-6119',
  inspectorScore: 7.5,
  epssScore: 0.2,
  exploitAvailable: 'NO',
  fixAvailable: 'YES',
  packageManagers: ['OS'],
  packages: [
    { name: 'openssl', version: '3.0.13', fixedInVersion: '3.0.13-0ubuntu3.4', packageManager: 'OS' },
  ],
  resourceType: 'AWS_ECR_CONTAINER_IMAGE',
  resourceId: 'arn:aws:ecr:eu-central-1:123456789012:repository/payments/api/sha256:84f5',
  image: {
    registry: '123456789012',
    repository: 'payments/api',
    repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/payments/api',
    imageDigest: 'sha256:84f507df33c6864d49c296fb734192696e4cb6f78166ac51ac8b9b118181085d',
    imageTags: ['v1'],
  },
};

type Optional = 'inspectorScore' | 'epssScore' | 'exploitAvailable' | 'fixAvailable' | 'image';

/** BASE with some fields changed and some removed (`{ inspectorScore: undefined }` removes it). */
const finding = (over: { [K in keyof Finding]?: Finding[K] | undefined } = {}): Finding => {
  const f: Record<string, unknown> = { ...BASE, ...over };
  for (const [key, value] of Object.entries(over)) if (value === undefined) delete f[key as Optional];
  return f as unknown as Finding;
};

const onlyRule = (match: Partial<PolicyMatch>, extra: Partial<PolicyDocument> = {}): Policy =>
  parsePolicy({
    rules: [{ name: 'the-rule', match, action: 'remediate' }],
    defaultAction: 'notify',
    ...extra,
  });

const WEEKEND_BERLIN = {
  name: 'weekend',
  schedule: { days: ['SAT', 'SUN'] as Array<'SAT' | 'SUN'>, start: '02:00' },
  timeZone: 'Europe/Berlin',
  durationMinutes: 240,
};

describe('evaluate: one rule, one field at a time', () => {
  it.each<[string, Partial<PolicyMatch>, Parameters<typeof finding>[0], boolean]>([
    ['severities: listed', { severities: ['HIGH', 'CRITICAL'] }, {}, true],
    ['severities: not listed', { severities: ['CRITICAL'] }, {}, false],
    ['minInspectorScore: above', { minInspectorScore: 7 }, {}, true],
    ['minInspectorScore: equal', { minInspectorScore: 7.5 }, {}, true],
    ['minInspectorScore: below', { minInspectorScore: 7.6 }, {}, false],
    ['minInspectorScore: score not reported', { minInspectorScore: 0 }, { inspectorScore: undefined }, false],
    ['minEpssScore: above', { minEpssScore: 0.1 }, {}, true],
    ['minEpssScore: below', { minEpssScore: 0.5 }, {}, false],
    ['minEpssScore: EPSS not reported', { minEpssScore: 0 }, { epssScore: undefined }, false],
    ['exploitAvailable true: YES', { exploitAvailable: true }, { exploitAvailable: 'YES' }, true],
    ['exploitAvailable true: NO', { exploitAvailable: true }, {}, false],
    [
      'exploitAvailable true: not reported',
      { exploitAvailable: true },
      { exploitAvailable: undefined },
      false,
    ],
    ['exploitAvailable false: NO', { exploitAvailable: false }, {}, true],
    [
      'exploitAvailable false: not reported',
      { exploitAvailable: false },
      { exploitAvailable: undefined },
      true,
    ],
    ['exploitAvailable false: YES', { exploitAvailable: false }, { exploitAvailable: 'YES' }, false],
    ['fixAvailable: YES listed', { fixAvailable: ['YES'] }, {}, true],
    ['fixAvailable: PARTIAL not listed', { fixAvailable: ['YES'] }, { fixAvailable: 'PARTIAL' }, false],
    [
      'fixAvailable: UNKNOWN matches not reported',
      { fixAvailable: ['UNKNOWN'] },
      { fixAvailable: undefined },
      true,
    ],
    ['fixAvailable: UNKNOWN does not match NO', { fixAvailable: ['UNKNOWN'] }, { fixAvailable: 'NO' }, false],
    [
      'fixAvailable: not reported, UNKNOWN not listed',
      { fixAvailable: ['YES', 'NO'] },
      { fixAvailable: undefined },
      false,
    ],
    ['packageManagers: OS', { packageManagers: ['OS'] }, {}, true],
    ['packageManagers: OS, finding NPM', { packageManagers: ['OS'] }, { packageManagers: ['NPM'] }, false],
    [
      'packageManagers: NPM, finding NPM+OS',
      { packageManagers: ['NPM'] },
      { packageManagers: ['NPM', 'OS'] },
      true,
    ],
    [
      'packageManagers: LANGUAGE, finding NPM',
      { packageManagers: ['LANGUAGE'] },
      { packageManagers: ['NPM'] },
      true,
    ],
    ['packageManagers: LANGUAGE, finding OS', { packageManagers: ['LANGUAGE'] }, {}, false],
    [
      'packageManagers: LANGUAGE, finding none',
      { packageManagers: ['LANGUAGE'] },
      { packageManagers: [] },
      false,
    ],
    ['cves: listed', { cves: ['CVE-2024-0001', 'CVE-2024-6119'] }, {}, true],
    ['cves: not listed', { cves: ['CVE-2024-0001'] }, {}, false],
    ['cves: case-insensitive', { cves: ['cve-2024-6119'] }, {}, true],
    ['cves: GHSA id', { cves: ['GHSA-jfh8-c2jp-5v3q'] }, { vulnerabilityId: 'GHSA-JFH8-C2JP-5V3Q' }, true],
    ['repositories: glob matches', { repositories: ['payments/*'] }, {}, true],
    [
      'repositories: * stays within one segment',
      { repositories: ['payments/*'] },
      { image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'payments/api/v2' } },
      false,
    ],
    [
      'repositories: ** crosses segments',
      { repositories: ['payments/**'] },
      { image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'payments/api/v2' } },
      true,
    ],
    ['repositories: other repository', { repositories: ['billing/*', 'orders/**'] }, {}, false],
    ['repositories: exact name', { repositories: ['payments/api'] }, {}, true],
    [
      'combined: all hold',
      { severities: ['HIGH'], fixAvailable: ['YES'], packageManagers: ['OS'] },
      {},
      true,
    ],
    ['combined: one fails', { severities: ['HIGH'], fixAvailable: ['NO'] }, {}, false],
    ['empty match: any finding', {}, {}, true],
  ])('%s', (_what, match, over, matched) => {
    // Prepare
    const policy = onlyRule(match);

    // Act
    const decision = evaluate(policy, finding(over), { now: NOW });

    // Assess
    expect(decision.action).toBe(matched ? 'remediate' : 'notify');
    expect(decision.rule).toBe(matched ? 'the-rule' : undefined);
  });

  it.each<[string, Record<string, string> | undefined, boolean]>([
    ['all tags equal', { team: 'payments', env: 'prod', extra: 'x' }, true],
    ['a value differs', { team: 'payments', env: 'dev' }, false],
    ['a tag is missing', { team: 'payments' }, false],
    ['service not known yet', undefined, false],
  ])('serviceTags: %s', (_what, serviceTags, matched) => {
    // Prepare
    const policy = onlyRule({ serviceTags: { team: 'payments', env: 'prod' } });

    // Act
    const decision = evaluate(policy, finding(), { now: NOW, ...(serviceTags ? { serviceTags } : {}) });

    // Assess
    expect(decision.action).toBe(matched ? 'remediate' : 'notify');
  });
});

describe('evaluate: rules in order, default action', () => {
  const policy = parsePolicy({
    rules: [
      {
        name: 'payments-critical',
        match: { severities: ['CRITICAL'], repositories: ['payments/*'] },
        action: 'approve',
      },
      { name: 'critical', match: { severities: ['CRITICAL'] }, action: 'remediate' },
      { name: 'low-noise', match: { severities: ['LOW', 'INFORMATIONAL'] }, action: 'ignore' },
      { name: 'critical-again', match: { severities: ['CRITICAL'] }, action: 'notify' },
    ],
    defaultAction: 'notify',
  });

  it.each<[string, Parameters<typeof finding>[0], string, string | undefined]>([
    [
      'the first matching rule wins over a later one',
      { severity: 'CRITICAL' },
      'approve',
      'payments-critical',
    ],
    [
      'a later rule decides when earlier ones do not match',
      {
        severity: 'CRITICAL',
        image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'billing/api' },
      },
      'remediate',
      'critical',
    ],
    ['a rule can ignore', { severity: 'LOW' }, 'ignore', 'low-noise'],
    ['no rule matches: default action', { severity: 'MEDIUM' }, 'notify', undefined],
  ])('%s', (_what, over, action, rule) => {
    // Act
    const decision = evaluate(policy, finding(over), { now: NOW });

    // Assess
    expect(decision.action).toBe(action);
    expect(decision.rule).toBe(rule);
  });

  it.each(['remediate', 'approve', 'notify', 'ignore'] as const)('uses defaultAction %s', (defaultAction) => {
    // Prepare
    const p = parsePolicy({ rules: [], defaultAction });

    // Act
    const decision = evaluate(p, finding(), { now: NOW });

    // Assess
    const acting = defaultAction === 'remediate' || defaultAction === 'approve';
    expect(decision).toEqual({
      action: defaultAction,
      reason: `no rule matched (HIGH, fix YES) → default ${defaultAction}${acting ? HIGH_DUE : ''}`,
      // The built-in deadline is named in the reason, and enforced only when the policy writes deadlines.
    });
  });

  it('names the rule and the facts it matched in the reason', () => {
    // Act
    const decision = evaluate(DEFAULT_POLICY_PARSED, finding({ severity: 'CRITICAL' }), { now: NOW });

    // Assess
    expect(decision.reason).toBe(
      `rule "critical-high-fixable": CRITICAL, fix YES → remediate${CRITICAL_DUE}`,
    );
  });

  it('describes every kind of fact', () => {
    // Prepare
    const p = onlyRule({
      severities: ['HIGH'],
      minInspectorScore: 7,
      minEpssScore: 0.1,
      exploitAvailable: false,
      fixAvailable: ['UNKNOWN'],
      packageManagers: ['OS', 'LANGUAGE'],
      cves: ['CVE-2024-6119'],
      repositories: ['payments/*'],
      serviceTags: { team: 'payments' },
    });

    // Act
    const decision = evaluate(p, finding({ fixAvailable: undefined, packageManagers: ['NPM', 'OS'] }), {
      now: NOW,
      serviceTags: { team: 'payments' },
    });

    // Assess
    expect(decision.reason).toBe(
      `rule "the-rule": HIGH, score 7.5 ≥ 7, EPSS 0.2 ≥ 0.1, exploit NO, fix not reported, packages NPM+OS, CVE-2024-6119, repository payments/api, tags team=payments → remediate${HIGH_DUE}`,
    );
  });

  it('says "any finding" for a catch-all rule', () => {
    // Act
    const decision = evaluate(onlyRule({}), finding(), { now: NOW });

    // Assess
    expect(decision.reason).toBe(`rule "the-rule": any finding → remediate${HIGH_DUE}`);
  });
});

describe('evaluate: built-in facts come before rules', () => {
  const everything = onlyRule({});

  it.each<[string, Parameters<typeof finding>[0], string]>([
    [
      'SUPPRESSED',
      { status: 'SUPPRESSED' },
      'finding is SUPPRESSED in Inspector (a suppression rule covers it) → ignore',
    ],
    [
      'CLOSED',
      { status: 'CLOSED' },
      'finding is CLOSED in Inspector (which does not mean it was fixed) → ignore',
    ],
    [
      'an EC2 instance',
      { resourceType: 'AWS_EC2_INSTANCE', image: undefined },
      'resource type AWS_EC2_INSTANCE is not an ECR container image → ignore',
    ],
    [
      'a Lambda function',
      { resourceType: 'AWS_LAMBDA_FUNCTION', image: undefined },
      'resource type AWS_LAMBDA_FUNCTION is not an ECR container image → ignore',
    ],
    [
      'an ECR resource without image details',
      { image: undefined },
      'resource type AWS_ECR_CONTAINER_IMAGE is not an ECR container image → ignore',
    ],
    [
      'a code vulnerability',
      { type: 'CODE_VULNERABILITY' },
      'finding type CODE_VULNERABILITY is not a package vulnerability: there is no package to patch → ignore',
    ],
    [
      'a network reachability finding',
      { type: 'NETWORK_REACHABILITY' },
      'finding type NETWORK_REACHABILITY is not a package vulnerability: there is no package to patch → ignore',
    ],
  ])('ignores %s even when a rule matches everything', (_what, over, reason) => {
    // Act
    const decision = evaluate(everything, finding(over), { now: NOW });

    // Assess
    expect(decision).toEqual({ action: 'ignore', reason });
  });
});

describe('evaluate: exceptions', () => {
  const policy = parsePolicy({
    rules: [{ name: 'all', match: {}, action: 'remediate' }],
    exceptions: [
      { cves: ['CVE-2024-6119'], reason: 'RISK-1: openssl path not reachable', expires: '2024-09-30' },
      {
        repositories: ['legacy/**'],
        reason: 'RISK-2: legacy is being retired',
        expires: '2024-12-31T18:00:00+01:00',
      },
      {
        cves: ['CVE-2024-0002'],
        repositories: ['payments/*'],
        reason: 'RISK-3: compensating WAF rule',
        expires: '2025-01-31',
      },
      { cves: ['CVE-2024-0003'], reason: 'RISK-4: expired long ago', expires: '2024-01-31' },
      { cves: ['CVE-2024-0003'], reason: 'RISK-5: renewed', expires: '2025-01-31' },
    ],
  });

  it.each<[string, Parameters<typeof finding>[0], string, string, number | undefined]>([
    ['a CVE exception', {}, '2024-09-04T12:00:00Z', 'ignore', 0],
    ['a CVE exception on its last day', {}, '2024-09-30T23:59:59Z', 'ignore', 0],
    ['a CVE exception the day after it expires', {}, '2024-10-01T00:00:00Z', 'remediate', undefined],
    [
      'a repository exception',
      {
        vulnerabilityId: 'CVE-2024-9999',
        image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'legacy/a/b' },
      },
      '2024-12-31T16:59:59Z',
      'ignore',
      1,
    ],
    [
      'a repository exception at its expiry instant',
      {
        vulnerabilityId: 'CVE-2024-9999',
        image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'legacy/a/b' },
      },
      '2024-12-31T17:00:00Z',
      'remediate',
      undefined,
    ],
    [
      'an exception needing CVE and repository: both hold',
      { vulnerabilityId: 'CVE-2024-0002' },
      '2024-09-04T12:00:00Z',
      'ignore',
      2,
    ],
    [
      'an exception needing CVE and repository: repository differs',
      {
        vulnerabilityId: 'CVE-2024-0002',
        image: { ...(BASE.image as NonNullable<Finding['image']>), repository: 'billing/api' },
      },
      '2024-09-04T12:00:00Z',
      'remediate',
      undefined,
    ],
    [
      'no exception covers the finding',
      { vulnerabilityId: 'CVE-2024-9999' },
      '2024-09-04T12:00:00Z',
      'remediate',
      undefined,
    ],
  ])('%s', (_what, over, now, action, exception) => {
    // Act
    const decision = evaluate(policy, finding(over), { now: new Date(now) });

    // Assess
    expect(decision.action).toBe(action);
    expect(decision.exception).toBe(exception);
  });

  it("gives the exception's reason and expiry", () => {
    // Act
    const decision = evaluate(policy, finding(), { now: NOW });

    // Assess
    expect(decision).toEqual({
      action: 'ignore',
      reason: 'exception for CVE-2024-6119 (expires 2024-09-30): RISK-1: openssl path not reachable → ignore',
      exception: 0,
    });
  });

  it('reports an expired exception and lets the rules decide', () => {
    // Act
    const decision = evaluate(policy, finding(), { now: new Date('2024-10-01T00:00:00Z') });

    // Assess
    expect(decision).toEqual({
      action: 'remediate',
      rule: 'all',
      reason: `rule "all": any finding → remediate${HIGH_DUE}, already passed; exception "RISK-1: openssl path not reachable" expired 2024-09-30 and no longer applies`,
      expiredExceptions: [{ index: 0, reason: 'RISK-1: openssl path not reachable', expires: '2024-09-30' }],
    });
  });

  it('reports an expired exception next to the active one that applies', () => {
    // Act
    const decision = evaluate(policy, finding({ vulnerabilityId: 'CVE-2024-0003' }), { now: NOW });

    // Assess
    expect(decision.action).toBe('ignore');
    expect(decision.exception).toBe(4);
    expect(decision.expiredExceptions).toEqual([
      { index: 3, reason: 'RISK-4: expired long ago', expires: '2024-01-31' },
    ]);
    expect(decision.reason).toContain(
      'RISK-5: renewed → ignore; exception "RISK-4: expired long ago" expired 2024-01-31',
    );
  });

  it('does not consult exceptions for findings the built-in facts ignore', () => {
    // Act
    const decision = evaluate(policy, finding({ status: 'SUPPRESSED' }), { now: NOW });

    // Assess
    expect(decision.exception).toBeUndefined();
    expect(decision.reason).toContain('SUPPRESSED');
  });
});

describe('evaluate: maintenance windows', () => {
  const withWindow = (
    extra: Partial<PolicyDocument> = {},
    action: 'remediate' | 'approve' | 'notify' = 'remediate',
  ) =>
    parsePolicy({
      rules: [{ name: 'all', match: {}, action }],
      maintenanceWindows: [WEEKEND_BERLIN],
      ...extra,
    });

  it.each<[string, Policy, Parameters<typeof finding>[0], string, string | undefined, string]>([
    [
      'outside the window: waits for the next one',
      withWindow(),
      {},
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → remediate${HIGH_DUE}; waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'inside the window: goes now',
      withWindow(),
      {},
      '2024-09-07T01:00:00Z',
      undefined,
      `rule "all": any finding → remediate${HIGH_DUE}; inside maintenance window "weekend" until 2024-09-07T04:00:00.000Z`,
    ],
    [
      'CRITICAL with a known exploit: skips the window',
      withWindow(),
      { severity: 'CRITICAL', exploitAvailable: 'YES' },
      '2024-09-04T12:00:00Z',
      undefined,
      `rule "all": any finding → remediate${CRITICAL_DUE}; CRITICAL with a known exploit: does not wait for a maintenance window`,
    ],
    [
      'CRITICAL with a known exploit, override switched off: waits (the window is before the deadline)',
      withWindow({ criticalExploitOverride: false, deadlines: { CRITICAL: '7d' } }),
      { severity: 'CRITICAL', exploitAvailable: 'YES' },
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → remediate; deadline 2024-09-11T10:00:00.000Z (7d for CRITICAL after first observed 2024-09-04T10:00:00.000Z); waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'HIGH with a known exploit: waits (the override is for CRITICAL only)',
      withWindow(),
      { severity: 'HIGH', exploitAvailable: 'YES' },
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → remediate${HIGH_DUE}; waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'CRITICAL without a known exploit: waits (the window is before the deadline)',
      withWindow({ deadlines: { CRITICAL: '7d' } }),
      { severity: 'CRITICAL', exploitAvailable: 'NO' },
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → remediate; deadline 2024-09-11T10:00:00.000Z (7d for CRITICAL after first observed 2024-09-04T10:00:00.000Z); waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'CRITICAL, the built-in 2-day deadline only reported: a policy that does not write deadlines still waits',
      withWindow(),
      { severity: 'CRITICAL', exploitAvailable: 'NO' },
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → remediate${CRITICAL_DUE}; waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'CRITICAL, the next window after the 2-day deadline the policy writes: does not wait',
      withWindow({ deadlines: { CRITICAL: '2d' } }),
      { severity: 'CRITICAL', exploitAvailable: 'NO' },
      '2024-09-04T12:00:00Z',
      undefined,
      `rule "all": any finding → remediate${CRITICAL_DUE}; the next window is after the deadline (maintenance window "weekend" at 2024-09-07T00:00:00.000Z): does not wait for it`,
    ],
    [
      'a rule deadline tighter than the severity: the window after it does not hold',
      parsePolicy({
        rules: [{ name: 'all', match: {}, action: 'remediate', deadline: '1d' }],
        maintenanceWindows: [WEEKEND_BERLIN],
      }),
      {},
      '2024-09-04T12:00:00Z',
      undefined,
      'rule "all": any finding → remediate; deadline 2024-09-05T10:00:00.000Z (1d after first observed 2024-09-04T10:00:00.000Z, rule "all"); the next window is after the deadline (maintenance window "weekend" at 2024-09-07T00:00:00.000Z): does not wait for it',
    ],
    [
      'a deadline already passed: does not wait',
      withWindow({ deadlines: { HIGH: '7d' } }),
      { firstObservedAt: '2024-08-01T00:00:00.000Z' },
      '2024-09-04T12:00:00Z',
      undefined,
      'rule "all": any finding → remediate; deadline 2024-08-08T00:00:00.000Z (7d for HIGH after first observed 2024-08-01T00:00:00.000Z), already passed; the next window is after the deadline (maintenance window "weekend" at 2024-09-07T00:00:00.000Z): does not wait for it',
    ],
    [
      'approve waits for the window too',
      withWindow({}, 'approve'),
      {},
      '2024-09-04T12:00:00Z',
      '2024-09-07T00:00:00.000Z',
      `rule "all": any finding → approve${HIGH_DUE}; waits for maintenance window "weekend" at 2024-09-07T00:00:00.000Z`,
    ],
    [
      'notify does not wait',
      withWindow({}, 'notify'),
      {},
      '2024-09-04T12:00:00Z',
      undefined,
      'rule "all": any finding → notify',
    ],
    [
      'no windows: goes now',
      parsePolicy({ rules: [{ name: 'all', match: {}, action: 'remediate' }] }),
      {},
      '2024-09-04T12:00:00Z',
      undefined,
      `rule "all": any finding → remediate${HIGH_DUE}`,
    ],
  ])('%s', (_what, policy, over, now, notBefore, reason) => {
    // Act
    const decision = evaluate(policy, finding(over), { now: new Date(now) });

    // Assess
    expect(decision.notBefore).toBe(notBefore);
    expect(decision.reason).toBe(reason);
  });

  it('recomputes the window when now changes', () => {
    // Prepare
    const policy = withWindow();

    // Act
    const first = evaluate(policy, finding(), { now: new Date('2024-09-04T12:00:00Z') });
    const second = evaluate(policy, finding(), { now: new Date('2024-09-07T05:00:00Z') });
    const third = evaluate(policy, finding(), { now: new Date('2024-09-04T12:00:00Z') });

    // Assess
    expect([first.notBefore, second.notBefore, third.notBefore]).toEqual([
      '2024-09-07T00:00:00.000Z',
      '2024-09-08T00:00:00.000Z',
      '2024-09-07T00:00:00.000Z',
    ]);
  });

  it('notices a window opening and closing as now moves forward', () => {
    // Prepare
    const policy = withWindow();
    const times = [
      '2024-09-04T12:00:00.000Z',
      '2024-09-06T23:59:59.999Z',
      '2024-09-07T00:00:00.000Z',
      '2024-09-07T03:59:59.999Z',
      '2024-09-07T04:00:00.000Z',
    ];

    // Act
    const decisions = times.map((t) => evaluate(policy, finding(), { now: new Date(t) }));

    // Assess
    expect(decisions.map((d) => d.notBefore)).toEqual([
      '2024-09-07T00:00:00.000Z',
      '2024-09-07T00:00:00.000Z',
      undefined,
      undefined,
      '2024-09-08T00:00:00.000Z',
    ]);
  });
});

describe('evaluate: the default policy', () => {
  it.each<[string, Parameters<typeof finding>[0], string]>([
    ['CRITICAL, fix YES', { severity: 'CRITICAL', fixAvailable: 'YES' }, 'remediate'],
    ['HIGH, fix PARTIAL', { severity: 'HIGH', fixAvailable: 'PARTIAL' }, 'remediate'],
    ['HIGH, fix not reported', { severity: 'HIGH', fixAvailable: undefined }, 'remediate'],
    ['CRITICAL, fix NO', { severity: 'CRITICAL', fixAvailable: 'NO' }, 'notify'],
    ['MEDIUM, fix YES', { severity: 'MEDIUM', fixAvailable: 'YES' }, 'notify'],
    ['LOW, fix YES', { severity: 'LOW' }, 'notify'],
    ['UNTRIAGED, fix YES', { severity: 'UNTRIAGED' }, 'notify'],
    ['CRITICAL, fix YES, SUPPRESSED', { severity: 'CRITICAL', status: 'SUPPRESSED' }, 'ignore'],
  ])('%s → expected action', (_what, over, action) => {
    // Act
    const decision = evaluate(DEFAULT_POLICY_PARSED, finding(over), { now: NOW });

    // Assess
    expect(decision.action).toBe(action);
  });

  it.each([
    ['finding-ecr-ubuntu-2024.json', 'notify', 'no rule matched (MEDIUM, fix YES) → default notify'],
    [
      'finding-ecr-critical-npm-console-timestamps.json',
      'remediate',
      'rule "critical-high-fixable": CRITICAL, fix YES → remediate; deadline 2021-12-05T18:02:30.000Z (2d for CRITICAL after first observed 2021-12-03T18:02:30.000Z), already passed',
    ],
    [
      'finding-ec2-instance-high.json',
      'ignore',
      'resource type AWS_EC2_INSTANCE is not an ECR container image → ignore',
    ],
  ])('decides the fixture %s: %s', (file, action, reason) => {
    // Prepare
    const parsed = parseEvent(
      JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'events', file), 'utf8')),
    );
    if (parsed.kind !== 'finding') throw new Error('expected a finding');

    // Act
    const decision = evaluate(DEFAULT_POLICY_PARSED, parsed.finding, { now: NOW });

    // Assess
    expect(decision).toEqual({
      action,
      reason,
      ...(action === 'remediate' ? { rule: 'critical-high-fixable' } : {}),
    });
  });
});

describe('evaluate: deadlines and exploitation', () => {
  const KEV = { kev: { dateAdded: '2024-08-30T00:00:00.000Z', dateDue: '2024-09-05T00:00:00.000Z' } };

  it('sets the deadline to the CISA KEV due date when kevDueDate is on and it is earlier', () => {
    // Prepare
    const p = onlyRule({}, { kevDueDate: true });

    // Act
    const decision = evaluate(p, finding(), { now: NOW, exploitation: KEV });

    // Assess
    expect(decision.deadline).toBe('2024-09-05T00:00:00.000Z');
    expect(decision.reason).toContain(
      'deadline 2024-09-05T00:00:00.000Z (CISA KEV due date 2024-09-05T00:00:00.000Z)',
    );
  });

  it('keeps the policy deadline when the KEV due date is later, or kevDueDate is off', () => {
    // Prepare
    const late = { kev: { dateDue: '2024-12-01T00:00:00.000Z' } };

    // Act
    const written = { deadlines: { HIGH: '7d' } };
    const later = evaluate(onlyRule({}, { ...written, kevDueDate: true }), finding(), {
      now: NOW,
      exploitation: late,
    });
    const off = evaluate(onlyRule({}, written), finding(), { now: NOW, exploitation: KEV });

    // Assess
    expect(later.deadline).toBe('2024-09-11T10:00:00.000Z');
    expect(off.deadline).toBe('2024-09-11T10:00:00.000Z');
  });

  it('a KEV due date before the next window: does not wait for it', () => {
    // Prepare
    const p = parsePolicy({
      rules: [{ name: 'all', match: {}, action: 'remediate' }],
      maintenanceWindows: [WEEKEND_BERLIN],
      deadlines: { HIGH: '30d' },
      kevDueDate: true,
    });

    // Act
    const decision = evaluate(p, finding(), { now: NOW, exploitation: KEV });

    // Assess
    expect(decision.notBefore).toBeUndefined();
    expect(decision.reason).toContain('the next window is after the deadline');
  });

  it('enforces no built-in deadline a policy did not write (existing policies behave as before)', () => {
    const decision = evaluate(onlyRule({}), finding(), { now: NOW });
    expect(decision.deadline).toBeUndefined();
    expect(decision.reason).toContain('deadline 2024-09-11T10:00:00.000Z');
  });

  it('has no deadline for notify, and none for a severity without one', () => {
    // Act
    const notify = evaluate(parsePolicy({ rules: [] }), finding(), { now: NOW });
    const info = evaluate(onlyRule({}), finding({ severity: 'INFORMATIONAL' }), { now: NOW });

    // Assess
    expect(notify.deadline).toBeUndefined();
    expect(info.deadline).toBeUndefined();
    expect(info.reason).not.toContain('deadline');
  });

  it('measures from updatedAt when Inspector does not report firstObservedAt', () => {
    // Act
    const decision = evaluate(
      onlyRule({}, { deadlines: { HIGH: '7d' } }),
      finding({ firstObservedAt: undefined, updatedAt: '2024-09-01T00:00:00.000Z' }),
      {
        now: NOW,
      },
    );

    // Assess
    expect(decision.deadline).toBe('2024-09-08T00:00:00.000Z');
  });

  it.each<[string, Partial<PolicyMatch>, Parameters<typeof evaluate>[2]['exploitation'], boolean]>([
    ['knownExploited: true, in KEV', { knownExploited: true }, KEV, true],
    ['knownExploited: true, not in KEV', { knownExploited: true }, {}, false],
    ['knownExploited: false, not in KEV', { knownExploited: false }, {}, true],
    ['knownExploited: false, in KEV', { knownExploited: false }, KEV, false],
    [
      'exploitObserved: true, observed',
      { exploitObserved: true },
      { exploitObserved: { lastSeen: '2024-09-01T00:00:00Z' } },
      true,
    ],
    ['exploitObserved: true, not observed', { exploitObserved: true }, {}, false],
    ['exploitObserved: false, not observed', { exploitObserved: false }, {}, true],
  ])('%s → matches: %s', (_what, match, exploitation, matched) => {
    // Act
    const decision = evaluate(onlyRule(match), finding(), {
      now: NOW,
      ...(exploitation ? { exploitation } : {}),
    });

    // Assess
    expect(decision.rule === 'the-rule').toBe(matched);
  });

  it('skips a rule on exploitation when the details are unknown, in either direction, and says why', () => {
    // Prepare
    const p = parsePolicy({
      rules: [
        { name: 'kev-now', match: { knownExploited: true }, action: 'remediate', deadline: '1d' },
        { name: 'not-kev-ignore', match: { knownExploited: false }, action: 'ignore' },
        { name: 'rest', match: {}, action: 'approve' },
      ],
    });

    // Act
    const decision = evaluate(p, finding(), { now: NOW, exploitation: { unknown: 'AccessDeniedException' } });
    const unread = evaluate(p, finding(), { now: NOW });

    // Assess
    expect(decision.rule).toBe('rest');
    expect(decision.reason).toContain(
      'rule "kev-now" skipped: exploitation unknown (AccessDeniedException); rule "not-kev-ignore" skipped: exploitation unknown (AccessDeniedException)',
    );
    expect(unread.rule).toBe('rest');
    expect(unread.reason).toContain('exploitation unknown (finding details not read)');
  });

  it('names KEV membership and observed exploitation in the reason', () => {
    // Act
    const decision = evaluate(onlyRule({ knownExploited: true, exploitObserved: false }), finding(), {
      now: NOW,
      exploitation: KEV,
    });

    // Assess
    expect(decision.reason).toMatch(/^rule "the-rule": in CISA KEV, no exploitation observed → remediate/);
  });
});
