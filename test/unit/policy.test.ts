import { ConfigurationError } from '../../lambdas/shared/errors';
import {
  checkPolicy,
  DEFAULT_POLICY,
  DEFAULT_POLICY_PARSED,
  expiryInstant,
  InvalidPolicyError,
  type PolicyDocument,
  parsePolicy,
  policyJsonSchema,
} from '../../lambdas/triage/policy';

const errorOf = (fn: () => unknown): Error => {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error, but none was thrown');
};

/** A valid policy with three rules, an exception and a window: bad cases change one thing in it. */
const valid = (): Record<string, unknown> & { rules: Array<Record<string, unknown>> } => ({
  rules: [
    {
      name: 'payments-critical',
      match: { severities: ['CRITICAL'], repositories: ['payments/*'] },
      action: 'approve',
    },
    { name: 'exploited', match: { exploitAvailable: true }, action: 'remediate' },
    { name: 'critical-high', match: { severities: ['CRITICAL', 'HIGH'] }, action: 'remediate' },
  ],
  defaultAction: 'notify',
  exceptions: [{ cves: ['CVE-2024-6119'], reason: 'RISK-42: not reachable', expires: '2025-03-31' }],
  maintenanceWindows: [
    {
      name: 'weekend',
      schedule: { days: ['SAT', 'SUN'], start: '02:00' },
      timeZone: 'Europe/Berlin',
      durationMinutes: 240,
    },
  ],
  criticalExploitOverride: true,
});

/** `valid()` with `edit` applied. */
const policyWith = (edit: (p: ReturnType<typeof valid>) => void): unknown => {
  const p = valid();
  edit(p);
  return p;
};

const rule = (
  p: ReturnType<typeof valid>,
  i: number,
): Record<string, unknown> & { match: Record<string, unknown> } =>
  p.rules[i] as Record<string, unknown> & { match: Record<string, unknown> };
const firstWindow = (
  p: ReturnType<typeof valid>,
): Record<string, unknown> & { schedule: Record<string, unknown> } =>
  (
    p.maintenanceWindows as Array<Record<string, unknown> & { schedule: Record<string, unknown> }>
  )[0] as Record<string, unknown> & { schedule: Record<string, unknown> };
const firstException = (p: ReturnType<typeof valid>): Record<string, unknown> =>
  (p.exceptions as Array<Record<string, unknown>>)[0] as Record<string, unknown>;

describe('parsePolicy', () => {
  it('parses a complete policy', () => {
    // Act
    const policy = parsePolicy(valid());

    // Assess
    expect(policy.rules.map((r) => r.name)).toEqual(['payments-critical', 'exploited', 'critical-high']);
    expect(policy.maintenanceWindows[0]?.timeZone).toBe('Europe/Berlin');
    expect(policy.exceptions[0]?.expires).toBe('2025-03-31');
  });

  it('fills in defaults for everything but the rules', () => {
    // Act
    const policy = parsePolicy({ rules: [] });

    // Assess
    expect(policy).toEqual({
      rules: [],
      defaultAction: 'notify',
      exceptions: [],
      maintenanceWindows: [],
      criticalExploitOverride: true,
      // Absent: the built-in deadlines apply (DEFAULT_DEADLINES) but never shorten a window wait.
      kevDueDate: false,
    });
  });

  it('keeps the default deadline of a severity a written deadlines leaves out', () => {
    // Act
    const policy = parsePolicy({ rules: [], deadlines: { CRITICAL: '24h', INFORMATIONAL: '1w' } });

    // Assess
    expect(policy.deadlines).toEqual({
      CRITICAL: '24h',
      HIGH: '7d',
      MEDIUM: '30d',
      LOW: '90d',
      INFORMATIONAL: '1w',
    });
  });

  it.each<[string, unknown, string]>([
    ['a duration without a unit', { rules: [], deadlines: { HIGH: '7' } }, 'policy.deadlines.HIGH'],
    ['a month unit', { rules: [], deadlines: { LOW: '3mo' } }, 'policy.deadlines.LOW'],
    ['more than a year', { rules: [], deadlines: { LOW: '400d' } }, 'policy.deadlines.LOW'],
    ['a zero duration', { rules: [], deadlines: { LOW: '0d' } }, 'policy.deadlines.LOW'],
    ['an unknown severity', { rules: [], deadlines: { URGENT: '1d' } }, 'policy.deadlines'],
    [
      'a bad rule deadline',
      { rules: [{ name: 'r', match: {}, action: 'remediate', deadline: 'soon' }] },
      'policy.rules[0].deadline',
    ],
    [
      'a non-boolean knownExploited',
      { rules: [{ name: 'r', match: { knownExploited: 'yes' }, action: 'remediate' }] },
      'policy.rules[0].match.knownExploited',
    ],
    [
      'a non-boolean exploitObserved',
      { rules: [{ name: 'r', match: { exploitObserved: 1 }, action: 'remediate' }] },
      'policy.rules[0].match.exploitObserved',
    ],
    ['a non-boolean kevDueDate', { rules: [], kevDueDate: 'true' }, 'policy.kevDueDate'],
  ])('rejects %s, naming the field', (_what, input, path) => {
    // Act
    const checked = checkPolicy(input);

    // Assess
    expect(checked.problems?.map((p) => p.path)).toEqual([path]);
  });

  it('returns a deeply frozen policy (compiled matchers are cached per policy object)', () => {
    // Act
    const policy = parsePolicy(valid());

    // Assess
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.rules[0]?.match.severities)).toBe(true);
    expect(() => {
      (policy.rules as unknown[]).push({});
    }).toThrow(TypeError);
  });

  it('accepts a $schema key, for editors', () => {
    // Act
    const policy = parsePolicy({ $schema: './policy.schema.json', rules: [] });

    // Assess
    expect(policy.$schema).toBe('./policy.schema.json');
  });

  it('parses the default policy document into DEFAULT_POLICY_PARSED', () => {
    // Act
    const parsed = parsePolicy(DEFAULT_POLICY);

    // Assess
    expect(parsed).toEqual(DEFAULT_POLICY_PARSED);
    expect(DEFAULT_POLICY_PARSED.rules).toEqual([
      expect.objectContaining({
        name: 'critical-high-fixable',
        match: { severities: ['CRITICAL', 'HIGH'], fixAvailable: ['YES', 'PARTIAL', 'UNKNOWN'] },
        action: 'remediate',
      }),
    ]);
    expect(DEFAULT_POLICY_PARSED.defaultAction).toBe('notify');
  });

  it('keeps DEFAULT_POLICY a plain JSON document', () => {
    // Act
    const roundTripped = JSON.parse(JSON.stringify(DEFAULT_POLICY)) as PolicyDocument;

    // Assess
    expect(roundTripped).toEqual(DEFAULT_POLICY);
    expect(Object.isFrozen(DEFAULT_POLICY)).toBe(true);
  });

  it.each<[string, (p: ReturnType<typeof valid>) => void, string]>([
    [
      'an unknown severity',
      (p) => {
        rule(p, 2).match.severities = ['URGENT'];
      },
      'policy.rules[2].match.severities[0]: invalid value "URGENT", expected one of CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNTRIAGED',
    ],
    [
      'a misspelt match field',
      (p) => {
        rule(p, 2).match = { severity: ['HIGH'] };
      },
      'policy.rules[2].match: unknown field "severity" (did you mean "severities"?)',
    ],
    [
      'a misspelt top-level field',
      (p) => {
        p.maintenanceWindow = [];
      },
      'policy: unknown field "maintenanceWindow" (did you mean "maintenanceWindows"?)',
    ],
    [
      'an unknown field with no near miss',
      (p) => {
        rule(p, 0).priority = 1;
      },
      'policy.rules[0]: unknown field "priority"',
    ],
    [
      'an unknown action',
      (p) => {
        rule(p, 1).action = 'fix';
      },
      'policy.rules[1].action: invalid value "fix", expected one of remediate, approve, notify, ignore',
    ],
    [
      'a rule without a name',
      (p) => {
        delete rule(p, 0).name;
      },
      'policy.rules[0].name: expected string, but the field is missing',
    ],
    [
      'a rule with a blank name',
      (p) => {
        rule(p, 0).name = '  ';
      },
      'policy.rules[0].name: must not be empty',
    ],
    [
      'a rule without a match',
      (p) => {
        Reflect.deleteProperty(rule(p, 0), 'match');
      },
      'policy.rules[0].match: expected object, but the field is missing',
    ],
    [
      'two rules with one name',
      (p) => {
        rule(p, 2).name = 'payments-critical';
      },
      'policy.rules[2].name: duplicate rule name "payments-critical" (also rules[0])',
    ],
    [
      'an empty severities list',
      (p) => {
        rule(p, 2).match.severities = [];
      },
      'policy.rules[2].match.severities: must have at least 1 item(s)',
    ],
    [
      'an inspector score above 10',
      (p) => {
        rule(p, 1).match.minInspectorScore = 11;
      },
      'policy.rules[1].match.minInspectorScore: must be ≤ 10, received number 11',
    ],
    [
      'a negative EPSS score',
      (p) => {
        rule(p, 1).match.minEpssScore = -0.1;
      },
      'policy.rules[1].match.minEpssScore: must be ≥ 0, received number -0.1',
    ],
    [
      'exploitAvailable as a string',
      (p) => {
        rule(p, 1).match.exploitAvailable = 'YES';
      },
      'policy.rules[1].match.exploitAvailable: expected boolean, received "YES"',
    ],
    [
      'an unknown fixAvailable value',
      (p) => {
        rule(p, 1).match.fixAvailable = ['MAYBE'];
      },
      'policy.rules[1].match.fixAvailable[0]: invalid value "MAYBE", expected one of YES, NO, PARTIAL, UNKNOWN',
    ],
    [
      'a lowercase package manager',
      (p) => {
        rule(p, 1).match.packageManagers = ['OS', 'npm'];
      },
      'policy.rules[1].match.packageManagers[1]: invalid value "npm", expected one of OS, LANGUAGE, BUNDLER',
    ],
    [
      'an empty CVE id',
      (p) => {
        rule(p, 1).match.cves = [''];
      },
      'policy.rules[1].match.cves[0]: must not be empty',
    ],
    [
      'an uppercase repository pattern',
      (p) => {
        rule(p, 0).match.repositories = ['Payments/*'];
      },
      'policy.rules[0].match.repositories[0]: invalid repository pattern "Payments/*": ECR repository names are lowercase letters, digits and . _ - /; wildcards are *, ** and ?',
    ],
    [
      'empty service tags',
      (p) => {
        rule(p, 0).match.serviceTags = {};
      },
      'policy.rules[0].match.serviceTags: must have at least 1 tag',
    ],
    [
      'a non-string service tag value',
      (p) => {
        rule(p, 0).match.serviceTags = { team: 1 };
      },
      'policy.rules[0].match.serviceTags.team: expected string, received number 1',
    ],
    [
      'an unknown default action',
      (p) => {
        p.defaultAction = 'reject';
      },
      'policy.defaultAction: invalid value "reject", expected one of remediate, approve, notify, ignore',
    ],
    [
      'rules that are not a list',
      (p) => {
        p.rules = { name: 'x' } as unknown as Array<Record<string, unknown>>;
      },
      'policy.rules: expected array, received an object',
    ],
    [
      'an exception without a reason',
      (p) => {
        delete firstException(p).reason;
      },
      'policy.exceptions[0].reason: expected string, but the field is missing',
    ],
    [
      'an exception with an unparseable expiry',
      (p) => {
        firstException(p).expires = 'next week';
      },
      'policy.exceptions[0].expires: invalid expiry "next week": expected a date "YYYY-MM-DD" or an ISO-8601 date-time with a zone',
    ],
    [
      'an exception expiring on a day that does not exist',
      (p) => {
        firstException(p).expires = '2025-02-30';
      },
      'policy.exceptions[0].expires: invalid expiry "2025-02-30"',
    ],
    [
      'an exception expiring at a time without a zone',
      (p) => {
        firstException(p).expires = '2025-03-31T18:00:00';
      },
      'policy.exceptions[0].expires: invalid expiry "2025-03-31T18:00:00"',
    ],
    [
      'an exception that covers everything',
      (p) => {
        delete firstException(p).cves;
      },
      'policy.exceptions[0]: an exception needs cves, repositories or both',
    ],
    [
      'a misspelt exception field',
      (p) => {
        firstException(p).reson = 'x';
      },
      'policy.exceptions[0]: unknown field "reson" (did you mean "reason"?)',
    ],
    [
      'an unknown time zone',
      (p) => {
        firstWindow(p).timeZone = 'Mars/Olympus_Mons';
      },
      'policy.maintenanceWindows[0].timeZone: unknown time zone "Mars/Olympus_Mons": expected an IANA name such as "Europe/Berlin"',
    ],
    [
      'a start time past midnight',
      (p) => {
        firstWindow(p).schedule.start = '24:00';
      },
      'policy.maintenanceWindows[0].schedule.start: invalid start time "24:00": expected "HH:MM" from 00:00 to 23:59',
    ],
    [
      'a start time without leading zero',
      (p) => {
        firstWindow(p).schedule.start = '2:00';
      },
      'policy.maintenanceWindows[0].schedule.start: invalid start time "2:00"',
    ],
    [
      'a spelt-out day',
      (p) => {
        firstWindow(p).schedule.days = ['SATURDAY'];
      },
      'policy.maintenanceWindows[0].schedule.days[0]: invalid value "SATURDAY", expected one of SUN, MON, TUE, WED, THU, FRI, SAT',
    ],
    [
      'a repeated day',
      (p) => {
        firstWindow(p).schedule.days = ['SAT', 'SAT'];
      },
      'policy.maintenanceWindows[0].schedule.days: lists a day more than once',
    ],
    [
      'a cron schedule',
      (p) => {
        firstWindow(p).schedule = { cron: '0 2 * * 6' } as unknown as Record<string, unknown>;
      },
      'policy.maintenanceWindows[0].schedule: unknown field "cron"',
    ],
    [
      'a zero-minute window',
      (p) => {
        firstWindow(p).durationMinutes = 0;
      },
      'policy.maintenanceWindows[0].durationMinutes: must be ≥ 1, received number 0',
    ],
    [
      'a fractional duration',
      (p) => {
        firstWindow(p).durationMinutes = 90.5;
      },
      'policy.maintenanceWindows[0].durationMinutes: expected int, received number 90.5',
    ],
    [
      'two windows with one name',
      (p) => {
        (p.maintenanceWindows as unknown[]).push(firstWindow(p));
      },
      'policy.maintenanceWindows[1].name: duplicate window name "weekend" (also maintenanceWindows[0])',
    ],
    [
      'criticalExploitOverride as a string',
      (p) => {
        p.criticalExploitOverride = 'yes';
      },
      'policy.criticalExploitOverride: expected boolean, received "yes"',
    ],
  ])('rejects %s', (_what, edit, message) => {
    // Prepare
    const input = policyWith(edit);

    // Act
    const error = errorOf(() => parsePolicy(input));

    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.name).toBe('ConfigurationError');
    expect(error.message).toContain(message);
    expect(error.message).toMatch(/^invalid policy: policy/);
  });

  it.each([
    [undefined, 'invalid policy: policy: expected object, but the field is missing'],
    ['remediate everything', 'invalid policy: policy: expected object, received "remediate everything"'],
    [[], 'invalid policy: policy: expected object, received an array'],
    [{}, 'invalid policy: policy.rules: expected array, but the field is missing'],
  ])('rejects %j as a whole', (input, message) => {
    // Act
    const error = errorOf(() => parsePolicy(input));

    // Assess
    expect(error.message).toBe(message);
  });

  it('reports every problem at once', () => {
    // Prepare
    const input = policyWith((p) => {
      rule(p, 0).action = 'fix';
      firstWindow(p).timeZone = 'Nowhere';
    });

    // Act
    const error = errorOf(() => parsePolicy(input));

    // Assess
    expect(error.message).toMatch(
      /policy\.rules\[0\]\.action: .*; policy\.maintenanceWindows\[0\]\.timeZone: /,
    );
  });

  it('keeps the problems apart, one {path, message} each, for callers that report them one per line', () => {
    // Prepare
    const input = policyWith((p) => {
      rule(p, 0).action = 'fix';
      firstWindow(p).timeZone = 'Nowhere';
    });

    // Act
    const error = errorOf(() => parsePolicy(input));
    const checked = checkPolicy(input);

    // Assess
    expect(error).toBeInstanceOf(InvalidPolicyError);
    const { problems } = error as InvalidPolicyError;
    expect(problems.map((p) => p.path)).toEqual([
      'policy.rules[0].action',
      'policy.maintenanceWindows[0].timeZone',
    ]);
    expect(problems[0]?.message).toMatch(/^invalid value "fix", expected one of /);
    expect(error.message).toBe(
      `invalid policy: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
    );
    expect(checked.problems).toEqual(problems);
    expect(checkPolicy(DEFAULT_POLICY).policy).toEqual(DEFAULT_POLICY_PARSED);
  });
});

describe('expiryInstant', () => {
  it.each([
    ['2025-03-31', '2025-04-01T00:00:00.000Z'],
    ['2024-02-29', '2024-03-01T00:00:00.000Z'],
    ['2025-03-31T18:00:00Z', '2025-03-31T18:00:00.000Z'],
    ['2025-03-31T18:00:00.250+02:00', '2025-03-31T16:00:00.250Z'],
    ['2025-03-31T18:00Z', '2025-03-31T18:00:00.000Z'],
  ])('%s stops applying at %s', (expires, iso) => {
    // Act
    const at = expiryInstant(expires);

    // Assess
    expect(new Date(at as number).toISOString()).toBe(iso);
  });

  it.each(['2025-02-29', '2025-13-01', '31/03/2025', '2025-03-31T18:00:00', 'soon', ''])(
    'rejects %j',
    (expires) => {
      // Act
      const at = expiryInstant(expires);

      // Assess
      expect(at).toBeUndefined();
    },
  );
});

describe('policyJsonSchema', () => {
  it('describes the document for editors, strictly', () => {
    // Act
    const schema = policyJsonSchema() as {
      type?: string;
      required?: string[];
      additionalProperties?: boolean;
      properties?: Record<string, unknown>;
    };

    // Assess
    expect(schema.type).toBe('object');
    expect(schema.required).toEqual(['rules']);
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties ?? {})).toEqual(
      expect.arrayContaining([
        'rules',
        'defaultAction',
        'exceptions',
        'maintenanceWindows',
        'criticalExploitOverride',
      ]),
    );
  });
});
