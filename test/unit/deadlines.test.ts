/**
 * Deadlines past policy: a service's request carries its most pressing finding's deadline, merges
 * keep the earliest, queued requests run earliest deadline first, and an approval request shows it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { workflowDefaultsSchema } from '../../lambdas/shared/config';
import type { RemediationRequest } from '../../lambdas/shared/contracts';
import { isUrgent, urgentFirst } from '../../lambdas/shared/ledger/requests';
import { mergeDecisions } from '../../lambdas/shared/remediation';
import { aggregate, type Contribution, gatherWithin } from '../../lambdas/triage/aggregate';
import { type Finding, parseEvent } from '../../lambdas/triage/schema';
import { approvalMessage } from '../../lambdas/workflow/request-approval';
import { contribution } from '../support/contribution';

const NOW = new Date('2024-09-04T12:00:00.000Z');

const FIXTURE = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'events', 'finding-ecr-ubuntu-2024.json'), 'utf8'),
) as Record<string, unknown>;

const finding = (id: string, cve: string): Finding => {
  const event = structuredClone(FIXTURE) as { detail: Record<string, unknown> };
  event.detail.findingArn = `arn:aws:inspector2:eu-central-1:123456789012:finding/${id}`;
  (event.detail.packageVulnerabilityDetails as Record<string, unknown>).vulnerabilityId = cve;
  event.detail.title = `${cve} - openssl`;
  const parsed = parseEvent(event);
  if (parsed.kind !== 'finding') throw new Error('the fixture is a finding');
  return parsed.finding;
};

const plan = (contributions: Contribution[]) =>
  aggregate(contributions, { targets: [], defaults: workflowDefaultsSchema.parse({}), now: NOW });

const request = (
  name: string,
  decision: Partial<RemediationRequest['decision']>,
  severity = 'HIGH',
): RemediationRequest => {
  const [p] = plan([contribution(finding('f1', 'CVE-2024-6119'))]);
  if (!p) throw new Error('one plan');
  return {
    ...p.request,
    executionName: name,
    images: p.request.images.map((i) => ({ ...i, severity: severity as 'HIGH' })),
    decision: { action: 'remediate', reason: name, ...decision },
  };
};

describe('aggregate: the service deadline', () => {
  it('is the earliest of its findings, and KEV membership of any', () => {
    // Act
    const [p] = plan([
      contribution(finding('a', 'CVE-2024-0001'), { deadline: '2024-09-11T10:00:00.000Z' }),
      contribution(finding('b', 'CVE-2024-0002'), {
        deadline: '2024-09-05T00:00:00.000Z',
        knownExploited: true,
      }),
      contribution(finding('c', 'CVE-2024-0003')),
    ]);

    // Assess
    expect(p?.request.decision.deadline).toBe('2024-09-05T00:00:00.000Z');
    expect(p?.request.decision.knownExploited).toBe(true);
  });

  it('is absent when no finding has one (as before deadlines)', () => {
    // Act
    const [p] = plan([contribution(finding('a', 'CVE-2024-0001'))]);

    // Assess
    expect(p?.request.decision).not.toHaveProperty('deadline');
    expect(p?.request.decision).not.toHaveProperty('knownExploited');
  });
});

describe('gatherWithin: the gather window against the deadline', () => {
  it.each<[string, string | undefined, { gatherSeconds: number; gatherMaxSeconds: number }]>([
    ['no deadline: as configured', undefined, { gatherSeconds: 300, gatherMaxSeconds: 1800 }],
    [
      '2 days left: as configured',
      '2024-09-06T12:00:00.000Z',
      { gatherSeconds: 300, gatherMaxSeconds: 1800 },
    ],
    [
      '1 hour left: a quarter of it',
      '2024-09-04T13:00:00.000Z',
      { gatherSeconds: 300, gatherMaxSeconds: 900 },
    ],
    ['10 minutes left', '2024-09-04T12:10:00.000Z', { gatherSeconds: 150, gatherMaxSeconds: 150 }],
    ['passed: no gathering', '2024-09-04T11:00:00.000Z', { gatherSeconds: 0, gatherMaxSeconds: 0 }],
  ])('%s', (_what, deadline, expected) => {
    expect(gatherWithin(300, 1800, deadline, NOW)).toEqual(expected);
  });

  it('is applied to the request triage builds', () => {
    // Act
    const [p] = plan([contribution(finding('a', 'CVE-2024-0001'), { deadline: '2024-09-04T12:10:00.000Z' })]);

    // Assess
    expect(p?.request.target).toMatchObject({ gatherSeconds: 150, gatherMaxSeconds: 150 });
  });
});

describe('mergeDecisions: deadlines', () => {
  it.each<[string | undefined, string | undefined, string | undefined]>([
    ['2024-09-11T10:00:00.000Z', '2024-09-05T00:00:00.000Z', '2024-09-05T00:00:00.000Z'],
    ['2024-09-05T00:00:00.000Z', undefined, '2024-09-05T00:00:00.000Z'],
    [undefined, '2024-09-05T00:00:00.000Z', '2024-09-05T00:00:00.000Z'],
    [undefined, undefined, undefined],
  ])('%s and %s → %s', (a, b, merged) => {
    // Act
    const d = mergeDecisions(
      { action: 'remediate', reason: 'a', ...(a === undefined ? {} : { deadline: a }) },
      { action: 'remediate', reason: 'b', ...(b === undefined ? {} : { deadline: b }) },
    );

    // Assess
    expect(d.deadline).toBe(merged);
  });
});

describe('urgency and order', () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: NOW });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it.each<[string, Partial<RemediationRequest['decision']>, string, boolean]>([
    ['CRITICAL, no window (as before)', {}, 'CRITICAL', true],
    ['HIGH without a deadline (as before)', {}, 'HIGH', false],
    ['HIGH due within 48 h', { deadline: '2024-09-06T11:00:00.000Z' }, 'HIGH', true],
    ['HIGH due in 3 days', { deadline: '2024-09-07T12:00:00.000Z' }, 'HIGH', false],
    ['HIGH past its deadline', { deadline: '2024-09-01T00:00:00.000Z' }, 'HIGH', true],
    ['HIGH in CISA KEV', { knownExploited: true }, 'HIGH', true],
    [
      'due within 48 h but waiting for a window',
      { deadline: '2024-09-05T00:00:00.000Z', notBefore: '2024-09-04T20:00:00.000Z' },
      'HIGH',
      false,
    ],
    [
      'due within 48 h but needing approval',
      { action: 'approve', deadline: '2024-09-05T00:00:00.000Z' },
      'HIGH',
      false,
    ],
  ])('%s → urgent: %s', (name, decision, severity, urgent) => {
    // Act & Assess
    expect(isUrgent(request(name, decision, severity))).toBe(urgent);
  });

  it('runs urgent requests first, then each group by deadline (none last, ties in order)', () => {
    // Prepare
    const queued = [
      request('later-no-deadline', {}),
      request('in-20-days', { deadline: '2024-09-24T00:00:00.000Z' }),
      request('in-5-days', { deadline: '2024-09-09T00:00:00.000Z' }),
      request('critical', {}, 'CRITICAL'),
      request('due-tomorrow', { deadline: '2024-09-05T00:00:00.000Z' }),
      request('also-no-deadline', {}),
    ];

    // Act
    const ordered = urgentFirst(queued).map((r) => r.executionName);

    // Assess
    expect(ordered).toEqual([
      'due-tomorrow',
      'critical',
      'in-5-days',
      'in-20-days',
      'later-no-deadline',
      'also-no-deadline',
    ]);
  });
});

describe('approvalMessage: the deadline', () => {
  it('shows the deadline when the request has one', () => {
    // Prepare
    const r = request('x', { action: 'approve', deadline: '2024-09-06T10:00:00.000Z' });

    // Act
    const { message } = approvalMessage({
      request: r,
      executionArn: 'arn:aws:states:eu-central-1:123456789012:execution:autopatch:x',
      executionName: 'x',
    });

    // Assess
    expect(message).toContain('Deadline: 2024-09-06T10:00:00.000Z (deploy by then)');
  });
});
