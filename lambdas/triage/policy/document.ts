/**
 * The policy document: what Autopatch does with each finding, as JSON that can live in cdk.json or a
 * policy.json file. Strict: an unknown field is an error (a misspelt "severity" must not silently
 * turn a rule into a catch-all), and every error names its field path.
 *
 * ```json
 * {
 *   "rules": [
 *     { "name": "payments-critical", "match": { "severities": ["CRITICAL"], "repositories": ["payments/*"] }, "action": "approve" },
 *     { "name": "critical-high-fixable", "match": { "severities": ["CRITICAL", "HIGH"], "fixAvailable": ["YES", "PARTIAL", "UNKNOWN"] }, "action": "remediate" }
 *   ],
 *   "defaultAction": "notify",
 *   "exceptions": [{ "cves": ["CVE-2024-6119"], "repositories": ["legacy/**"], "reason": "RISK-42: not reachable", "expires": "2025-03-31" }],
 *   "maintenanceWindows": [{ "name": "weekend", "schedule": { "days": ["SAT", "SUN"], "start": "02:00" }, "timeZone": "Europe/Berlin", "durationMinutes": 240 }],
 *   "criticalExploitOverride": true
 * }
 * ```
 *
 * Semantics (see evaluate.ts): rules are tried in order and the first whose `match` holds decides;
 * within a `match` every given field must hold, and a list holds when any of its values does.
 */
import * as z from 'zod';
import type { Action } from '../../shared/contracts';
import { SEVERITIES } from '../../shared/contracts';
import { ConfigurationError } from '../../shared/errors';
import { formatProblems, issueProblems, type Problem } from '../schema/issues';
import { durationMs } from './durations';
import { REPOSITORY_PATTERN } from './glob';
import { isTimeZone, parseStart, WEEKDAYS } from './windows';

/** Every Action, checked by the compiler against the contract type. */
const ACTIONS = {
  remediate: 'remediate',
  approve: 'approve',
  notify: 'notify',
  ignore: 'ignore',
} as const satisfies { [A in Action]: A };

/** Inspector's package managers, plus LANGUAGE (any package manager other than OS). */
export const PACKAGE_MANAGERS = [
  'OS',
  'LANGUAGE',
  'BUNDLER',
  'CARGO',
  'COMPOSER',
  'DOTNET_CORE',
  'GEMSPEC',
  'GOBINARY',
  'GOMOD',
  'JAR',
  'NODEPKG',
  'NPM',
  'NUGET',
  'PIP',
  'PIPENV',
  'POETRY',
  'POM',
  'PYTHONPKG',
  'YARN',
] as const;

/** `fixAvailable` values a rule can match; UNKNOWN stands for "Inspector did not say". */
export const FIX_MATCH_VALUES = ['YES', 'NO', 'PARTIAL', 'UNKNOWN'] as const;

const name = z.string().trim().min(1).max(128);

/** Lists in a match must not be empty: an empty list could never match, which is surely a mistake. */
const list = <T extends z.ZodType>(item: T) => z.array(item).min(1);

const repositoryPattern = z
  .string()
  .min(1)
  .refine((p) => REPOSITORY_PATTERN.test(p), {
    error: (iss) =>
      `invalid repository pattern ${JSON.stringify(iss.input)}: ECR repository names are lowercase letters, digits and . _ - /; wildcards are *, ** and ?`,
  });

const vulnerabilityId = z.string().trim().min(1);

export const matchSchema = z.strictObject({
  /** Finding severity is one of these. */
  severities: list(z.enum(SEVERITIES)).optional(),
  /** Inspector score (0-10) is at least this; a finding without a score does not match. */
  minInspectorScore: z.number().min(0).max(10).optional(),
  /** EPSS score (0-1) is at least this; a finding without one does not match. */
  minEpssScore: z.number().min(0).max(1).optional(),
  /** true: Inspector reports a known exploit (YES); false: it does not (NO or not reported). */
  exploitAvailable: z.boolean().optional(),
  /** Inspector's fixAvailable is one of these; UNKNOWN matches findings that do not report it. */
  fixAvailable: list(z.enum(FIX_MATCH_VALUES)).optional(),
  /** Any vulnerable package is managed by one of these; LANGUAGE means any manager but OS. */
  packageManagers: list(z.enum(PACKAGE_MANAGERS)).optional(),
  /** The finding's vulnerability id (CVE, GHSA...) is one of these, case-insensitively. */
  cves: list(vulnerabilityId).optional(),
  /** The image's repository matches one of these patterns (see glob.ts). */
  repositories: list(repositoryPattern).optional(),
  /**
   * The ECS service carries all of these tags with these exact values. Only known once triage has
   * resolved which services run the image; until then such a rule does not match.
   */
  serviceTags: z
    .record(z.string().min(1), z.string())
    .refine((tags) => Object.keys(tags).length > 0, { error: 'must have at least 1 tag' })
    .optional(),
  /**
   * true: the vulnerability is in CISA's Known Exploited Vulnerabilities catalog; false: it is not.
   * Read from Inspector's finding details (BatchGetFindingDetails), only when a rule asks. When the
   * details cannot be read, the rule neither matches nor fails to match: it is skipped, and the
   * decision's reason says so.
   */
  knownExploited: z.boolean().optional(),
  /** true: Inspector's threat intelligence has observed exploitation in the wild; false: it has not. As knownExploited. */
  exploitObserved: z.boolean().optional(),
});

/** A duration: a whole number and a unit (m, h, d, w), e.g. "48h", "2d", "1w"; at most a year. */
export const durationSchema = z.string().refine((d) => durationMs(d) !== undefined, {
  error: (iss) =>
    `invalid duration ${JSON.stringify(iss.input)}: expected a whole number and a unit m, h, d or w (e.g. "48h", "2d", "1w"), at most a year`,
});

export const ruleSchema = z.strictObject({
  name,
  description: z.string().optional(),
  match: matchSchema,
  action: z.enum(ACTIONS),
  /**
   * The deadline for findings this rule decides, replacing the severity's (`deadlines`): tighter for
   * known-exploited, internet-facing or tagged-critical services, say.
   */
  deadline: durationSchema.optional(),
});

/**
 * How long after a vulnerability was first observed (Inspector's firstObservedAt) a remediation must
 * be deployed, per severity. The defaults follow the usual remediation SLAs; a severity left out of a
 * written `deadlines` keeps its default; INFORMATIONAL and UNTRIAGED have none unless given.
 */
export const DEFAULT_DEADLINES = { CRITICAL: '2d', HIGH: '7d', MEDIUM: '30d', LOW: '90d' } as const;

export const deadlinesSchema = z.strictObject({
  CRITICAL: durationSchema.default(DEFAULT_DEADLINES.CRITICAL),
  HIGH: durationSchema.default(DEFAULT_DEADLINES.HIGH),
  MEDIUM: durationSchema.default(DEFAULT_DEADLINES.MEDIUM),
  LOW: durationSchema.default(DEFAULT_DEADLINES.LOW),
  INFORMATIONAL: durationSchema.optional(),
  UNTRIAGED: durationSchema.optional(),
});

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

/**
 * When an exception stops applying, in ms since the epoch. A date alone means "through the end of
 * that day, UTC": an exception that "expires 2025-03-31" still applies on March 31st.
 */
export const expiryInstant = (expires: string): number | undefined => {
  const date = DATE_ONLY.exec(expires);
  if (date) {
    const [y, m, d] = [Number(date[1]), Number(date[2]), Number(date[3])];
    const start = new Date(Date.UTC(y, m - 1, d));
    const real = start.getUTCFullYear() === y && start.getUTCMonth() === m - 1 && start.getUTCDate() === d;
    return real ? Date.UTC(y, m - 1, d + 1) : undefined;
  }
  if (!DATE_TIME.test(expires)) return undefined;
  const ms = Date.parse(expires);
  return Number.isNaN(ms) ? undefined : ms;
};

export const exceptionSchema = z
  .strictObject({
    /** Vulnerability ids the exception covers; omitted: any. */
    cves: list(vulnerabilityId).optional(),
    /** Repository patterns the exception covers; omitted: any. */
    repositories: list(repositoryPattern).optional(),
    /** Why the risk is accepted: shown in every decision the exception makes. */
    reason: z.string().trim().min(1),
    /** "YYYY-MM-DD" (through the end of that day, UTC) or an ISO-8601 date-time with a zone. */
    expires: z.string().refine((e) => expiryInstant(e) !== undefined, {
      error: (iss) =>
        `invalid expiry ${JSON.stringify(iss.input)}: expected a date "YYYY-MM-DD" or an ISO-8601 date-time with a zone, e.g. "2025-03-31T18:00:00Z"`,
    }),
  })
  .superRefine((e, ctx) => {
    // An exception for everything would silently switch Autopatch off; defaultAction "ignore" says so openly.
    if (e.cves === undefined && e.repositories === undefined) {
      ctx.addIssue({ code: 'custom', message: 'an exception needs cves, repositories or both' });
    }
  });

export const maintenanceWindowSchema = z.strictObject({
  name,
  /**
   * A weekly schedule in the window's time zone: it opens on each of `days` at `start` ("HH:MM",
   * 24-hour clock) and stays open for `durationMinutes` (it may run past midnight).
   * Chosen over cron because it reads at a glance and cannot express "every minute" by accident.
   */
  schedule: z.strictObject({
    days: list(z.enum(WEEKDAYS)).refine((days) => new Set(days).size === days.length, {
      error: 'lists a day more than once',
    }),
    start: z.string().refine((s) => parseStart(s) !== undefined, {
      error: (iss) => `invalid start time ${JSON.stringify(iss.input)}: expected "HH:MM" from 00:00 to 23:59`,
    }),
  }),
  /** IANA time zone name, e.g. "Europe/Berlin", "America/New_York", "UTC". */
  timeZone: z.string().refine(isTimeZone, {
    error: (iss) =>
      `unknown time zone ${JSON.stringify(iss.input)}: expected an IANA name such as "Europe/Berlin"`,
  }),
  /** Up to a week. */
  durationMinutes: z.number().int().min(1).max(10_080),
});

export const policySchema = z
  .strictObject({
    /** Lets editors validate a policy.json against a JSON Schema (see policyJsonSchema). */
    $schema: z.string().optional(),
    /** Tried in order: the first rule that matches decides. */
    rules: z.array(ruleSchema),
    /** When no rule matches. */
    defaultAction: z.enum(ACTIONS).default('notify'),
    /** Accepted risks: a finding an active exception covers is ignored; expired ones are reported. */
    exceptions: z.array(exceptionSchema).default([]),
    /** When remediations may roll out; none means any time. */
    maintenanceWindows: z.array(maintenanceWindowSchema).default([]),
    /** A CRITICAL finding with a known exploit does not wait for a maintenance window. */
    criticalExploitOverride: z.boolean().default(true),
    /** Per-severity deadlines (see deadlinesSchema); a rule's own `deadline` replaces its severity's. */
    // Optional, not defaulted here: evaluate applies DEFAULT_DEADLINES when absent, and only a policy
    // that writes `deadlines` lets them shorten a maintenance-window wait (existing policies keep
    // deploying when they did).
    deadlines: deadlinesSchema.optional(),
    /**
     * true: when the vulnerability is in CISA's KEV catalog and its due date is earlier than the
     * deadline, the due date is the deadline. Costs a BatchGetFindingDetails call per 10 findings
     * that policy acts on (cached), so off unless asked for.
     */
    kevDueDate: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    // Names appear in every decision's reason: two rules with one name would make reasons ambiguous.
    const seen = new Map<string, number>();
    p.rules.forEach((r, i) => {
      const first = seen.get(r.name);
      if (first === undefined) seen.set(r.name, i);
      else
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, 'name'],
          message: `duplicate rule name "${r.name}" (also rules[${first}])`,
        });
    });
    const windows = new Map<string, number>();
    p.maintenanceWindows.forEach((w, i) => {
      const first = windows.get(w.name);
      if (first === undefined) windows.set(w.name, i);
      else {
        ctx.addIssue({
          code: 'custom',
          path: ['maintenanceWindows', i, 'name'],
          message: `duplicate window name "${w.name}" (also maintenanceWindows[${first}])`,
        });
      }
    });
  });

/** A policy as written (optional fields may be left out). */
export type PolicyDocument = z.input<typeof policySchema>;
/** A policy after parsing: defaults filled in. Deeply frozen by parsePolicy. */
export type Policy = z.output<typeof policySchema>;
export type PolicyRule = Policy['rules'][number];
export type PolicyMatch = PolicyRule['match'];
export type PolicyException = Policy['exceptions'][number];

/** The field names allowed at each kind of object in a policy, for "did you mean" hints. */
const KEYS: Record<string, readonly string[]> = {
  '': Object.keys(policySchema.shape),
  rules: Object.keys(ruleSchema.shape),
  'rules.match': Object.keys(matchSchema.shape),
  exceptions: ['cves', 'repositories', 'reason', 'expires'],
  maintenanceWindows: Object.keys(maintenanceWindowSchema.shape),
  'maintenanceWindows.schedule': ['days', 'start'],
  deadlines: Object.keys(deadlinesSchema.shape),
};

const knownKeys = (path: readonly PropertyKey[]): readonly string[] =>
  KEYS[path.filter((k) => typeof k === 'string').join('.')] ?? [];

const deepFreeze = <T>(value: T): T => {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
};

/**
 * A policy that does not parse, with every problem kept apart (`problems`) for callers that report
 * them one per line; `message` is all of them on one line. Its name stays `ConfigurationError`: that
 * is what operators and tests know a bad policy by.
 */
export class InvalidPolicyError extends ConfigurationError {
  constructor(
    readonly problems: readonly Problem[],
    options?: { cause?: unknown },
  ) {
    super(`invalid policy: ${formatProblems(problems)}`, options);
  }
}

/**
 * What is wrong with a policy document: every bad field, e.g.
 * `{ path: 'policy.rules[2].match.severities[0]', message: 'invalid value "URGENT", expected one of CRITICAL, HIGH, ...' }`;
 * or the policy, parsed (defaults filled in, deeply frozen).
 */
export const checkPolicy = (
  input: unknown,
):
  | { readonly policy: Policy; readonly problems?: undefined }
  | { readonly policy?: undefined; readonly problems: Problem[]; readonly cause: z.ZodError } => {
  const result = policySchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    return {
      problems: issueProblems(result.error.issues, { root: 'policy', knownKeys }),
      cause: result.error,
    };
  }
  // Frozen: evaluate caches compiled matchers per policy object, which must not change underneath.
  return { policy: deepFreeze(result.data) };
};

/**
 * Parse a policy document.
 * @throws InvalidPolicyError (a ConfigurationError) naming every bad field in `problems`.
 */
export const parsePolicy = (input: unknown): Policy => {
  const checked = checkPolicy(input);
  if (checked.problems) throw new InvalidPolicyError(checked.problems, { cause: checked.cause });
  return checked.policy;
};

/** JSON Schema of the policy document (for editors: reference it from "$schema" in policy.json). */
export const policyJsonSchema = (): Record<string, unknown> =>
  z.toJSONSchema(policySchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;

/**
 * The policy Autopatch uses when none is given: remediate ACTIVE CRITICAL and HIGH findings that
 * have a fix (YES or PARTIAL) or whose fix availability Inspector does not report; notify for the
 * rest. No maintenance windows. (Suppressed, closed, non-ECR and non-package findings are ignored
 * before any rule; see evaluate.ts.)
 */
export const DEFAULT_POLICY: PolicyDocument = deepFreeze({
  rules: [
    {
      name: 'critical-high-fixable',
      description:
        'CRITICAL and HIGH findings with a fix (or whose fix availability Inspector does not report) are remediated',
      match: { severities: ['CRITICAL', 'HIGH'], fixAvailable: ['YES', 'PARTIAL', 'UNKNOWN'] },
      action: 'remediate',
    },
  ],
  defaultAction: 'notify',
  exceptions: [],
  maintenanceWindows: [],
  criticalExploitOverride: true,
});

/** DEFAULT_POLICY, parsed. */
export const DEFAULT_POLICY_PARSED: Policy = parsePolicy(DEFAULT_POLICY);
