/**
 * The policy engine: one finding in, one decision with a human-readable reason out.
 *
 * Order of evaluation:
 * 1. built-in facts: SUPPRESSED and CLOSED findings, resources other than ECR images and finding
 *    types other than PACKAGE_VULNERABILITY are ignored (Autopatch can only rebuild images);
 * 2. exceptions: an active exception that covers the finding ignores it; expired ones that would
 *    have covered it no longer apply and are reported in the decision;
 * 3. rules, in order: the first match decides; otherwise `defaultAction`;
 * 4. the deadline, for remediate and approve: the rule's `deadline` or the severity's (`deadlines`)
 *    after the finding was first observed, or the CISA KEV due date when earlier (`kevDueDate`);
 * 5. maintenance windows, for remediate and approve: outside every window the decision carries
 *    `notBefore` (the next window's start), unless `criticalExploitOverride` applies or the next
 *    window starts after the deadline (a window never holds a remediation past its deadline).
 *
 * Rules that match on exploitation (`knownExploited`, `exploitObserved`) read Inspector's finding
 * details, which triage passes in `ctx.exploitation`. When those could not be read, such a rule is
 * skipped, neither matching nor failing to match, and the reason says so: unknown is never taken
 * as "not exploited" (which a `knownExploited: false` rule would turn into inaction) nor as
 * "exploited".
 *
 * evaluate runs once per finding (tens of thousands in a burst after a new CVE): a policy is
 * compiled once (patterns to RegExp, lists to Sets) and cached by object identity, matching
 * allocates nothing, and the reason string is built only for the rule that decided.
 */
import type { Action, Severity } from '../../shared/contracts';
import type { Finding } from '../schema';
import {
  DEFAULT_DEADLINES,
  expiryInstant,
  type Policy,
  type PolicyException,
  type PolicyMatch,
} from './document';
import { durationMs } from './durations';
import { compileGlobs } from './glob';
import { type CompiledWindow, compileWindow, nextCompiledWindow, type WindowState } from './windows';

export interface EvaluationContext {
  readonly now: Date;
  /** Tags of the ECS service that runs the image, once triage knows it (rules may match on them). */
  readonly serviceTags?: Readonly<Record<string, string>>;
  /**
   * What Inspector's finding details say about exploitation, when a rule or `kevDueDate` needs it:
   * the details, or why they could not be read. Absent: not read (rules that need it are skipped).
   */
  readonly exploitation?: Exploitation | { readonly unknown: string };
}

/** Exploitation facts of one finding (Inspector BatchGetFindingDetails). */
export interface Exploitation {
  /** Present when the vulnerability is in CISA's Known Exploited Vulnerabilities catalog. */
  readonly kev?: { readonly dateAdded?: string; readonly dateDue?: string; readonly action?: string };
  /** Present when Inspector's threat intelligence has observed exploitation. */
  readonly exploitObserved?: { readonly firstSeen?: string; readonly lastSeen?: string };
}

/** An exception that would have covered the finding but has expired. */
export interface ExpiredException {
  /** Index in `policy.exceptions`. */
  readonly index: number;
  readonly reason: string;
  /** As written in the policy. */
  readonly expires: string;
}

export interface Decision {
  readonly action: Action;
  /** For people: names the rule (or built-in fact, or exception) and the facts it matched on. */
  readonly reason: string;
  /** Name of the rule that decided; absent for built-in facts, exceptions and the default action. */
  readonly rule?: string;
  /** Index in `policy.exceptions` of the active exception that decided. */
  readonly exception?: number;
  /** ISO-8601 start of the next maintenance window, when the remediation must wait for it. */
  readonly notBefore?: string;
  /**
   * ISO-8601 time by which the remediation should be deployed (remediate and approve only; absent
   * when the finding's severity has no deadline).
   */
  readonly deadline?: string;
  /** true when the finding details were read and the vulnerability is in CISA's KEV catalog. */
  readonly knownExploited?: true;
  readonly expiredExceptions?: readonly ExpiredException[];
}

type FixMatch = 'YES' | 'NO' | 'PARTIAL' | 'UNKNOWN';

interface CompiledMatch {
  readonly severities?: ReadonlySet<Severity>;
  readonly minInspectorScore?: number;
  readonly minEpssScore?: number;
  readonly exploitAvailable?: boolean;
  readonly fixAvailable?: ReadonlySet<FixMatch>;
  readonly packageManagers?: ReadonlySet<string>;
  /** LANGUAGE was listed: any package manager other than OS matches. */
  readonly anyLanguage: boolean;
  /** Lowercased: vulnerability ids compare case-insensitively (GHSA ids are mixed case). */
  readonly cves?: ReadonlySet<string>;
  readonly repositories?: RegExp;
  readonly serviceTags?: ReadonlyArray<readonly [string, string]>;
  readonly knownExploited?: boolean;
  readonly exploitObserved?: boolean;
}

interface CompiledRule {
  readonly name: string;
  readonly action: Action;
  /** The rule's own deadline, in ms. */
  readonly deadlineMs?: number;
  readonly deadline?: string;
  readonly source: PolicyMatch;
  readonly match: CompiledMatch;
}

interface CompiledException {
  readonly index: number;
  readonly source: PolicyException;
  readonly match: CompiledMatch;
  readonly expiresAt: number;
}

interface CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  readonly exceptions: readonly CompiledException[];
  readonly windows: readonly CompiledWindow[];
  readonly defaultAction: Action;
  readonly criticalExploitOverride: boolean;
  readonly deadlines: ReadonlyMap<Severity, { readonly text: string; readonly ms: number }>;
  /** The policy wrote `deadlines` itself (the defaults never shorten a window wait). */
  readonly deadlinesWritten: boolean;
  readonly kevDueDate: boolean;
  /**
   * The last window state computed and the span of `now` it holds for (until a window opens or the
   * current one closes): a batch evaluates thousands of findings at one `now`, or a few close together.
   */
  lastWindow?: { readonly from: number; readonly until: number; readonly state: WindowState };
}

const compileMatch = (m: Partial<PolicyMatch>): CompiledMatch => {
  const managers = m.packageManagers ? new Set<string>(m.packageManagers) : undefined;
  return {
    ...(m.severities ? { severities: new Set(m.severities) } : {}),
    ...(m.minInspectorScore === undefined ? {} : { minInspectorScore: m.minInspectorScore }),
    ...(m.minEpssScore === undefined ? {} : { minEpssScore: m.minEpssScore }),
    ...(m.exploitAvailable === undefined ? {} : { exploitAvailable: m.exploitAvailable }),
    ...(m.fixAvailable ? { fixAvailable: new Set(m.fixAvailable) } : {}),
    ...(managers ? { packageManagers: managers } : {}),
    anyLanguage: managers?.has('LANGUAGE') ?? false,
    ...(m.cves ? { cves: new Set(m.cves.map((c) => c.toLowerCase())) } : {}),
    ...(m.repositories ? { repositories: compileGlobs(m.repositories) } : {}),
    ...(m.serviceTags ? { serviceTags: Object.entries(m.serviceTags) } : {}),
    ...(m.knownExploited === undefined ? {} : { knownExploited: m.knownExploited }),
    ...(m.exploitObserved === undefined ? {} : { exploitObserved: m.exploitObserved }),
  };
};

/** parsePolicy has checked every duration. */
const ms = (text: string): number => durationMs(text) ?? 0;

const compile = (policy: Policy): CompiledPolicy => ({
  rules: policy.rules.map((r) => ({
    name: r.name,
    action: r.action,
    source: r.match,
    match: compileMatch(r.match),
    ...(r.deadline === undefined ? {} : { deadline: r.deadline, deadlineMs: ms(r.deadline) }),
  })),
  exceptions: policy.exceptions.map((e, index) => ({
    index,
    source: e,
    match: compileMatch(e),
    // parsePolicy has checked that the expiry parses.
    expiresAt: expiryInstant(e.expires) ?? Number.NEGATIVE_INFINITY,
  })),
  windows: policy.maintenanceWindows.map(compileWindow),
  defaultAction: policy.defaultAction,
  criticalExploitOverride: policy.criticalExploitOverride,
  deadlinesWritten: policy.deadlines !== undefined,
  deadlines: new Map(
    Object.entries(policy.deadlines ?? DEFAULT_DEADLINES)
      .filter((e): e is [Severity, string] => e[1] !== undefined)
      .map(([severity, text]) => [severity, { text, ms: ms(text) }]),
  ),
  kevDueDate: policy.kevDueDate,
});

// Keyed by the (frozen) policy object: compiled once, released with the policy.
const cache = new WeakMap<Policy, CompiledPolicy>();

const compiled = (policy: Policy): CompiledPolicy => {
  let c = cache.get(policy);
  if (!c) {
    c = compile(policy);
    cache.set(policy, c);
  }
  return c;
};

const matchesPackageManagers = (m: CompiledMatch, managers: readonly string[]): boolean => {
  const wanted = m.packageManagers as ReadonlySet<string>;
  for (const pm of managers) {
    if (wanted.has(pm) || (m.anyLanguage && pm !== 'OS')) return true;
  }
  return false;
};

const needsExploitation = (m: CompiledMatch): boolean =>
  m.knownExploited !== undefined || m.exploitObserved !== undefined;

/** Why exploitation facts are not known, or undefined when they are. */
const exploitationUnknown = (ctx: EvaluationContext): string | undefined => {
  const e = ctx.exploitation;
  if (e === undefined) return 'finding details not read';
  return 'unknown' in e ? e.unknown : undefined;
};

const matches = (
  m: CompiledMatch,
  f: Finding,
  tags: Readonly<Record<string, string>> | undefined,
  exploitation?: Exploitation,
): boolean => {
  if (m.severities !== undefined && !m.severities.has(f.severity)) return false;
  if (
    m.minInspectorScore !== undefined &&
    !(f.inspectorScore !== undefined && f.inspectorScore >= m.minInspectorScore)
  ) {
    return false;
  }
  if (m.minEpssScore !== undefined && !(f.epssScore !== undefined && f.epssScore >= m.minEpssScore))
    return false;
  if (m.exploitAvailable !== undefined && (f.exploitAvailable === 'YES') !== m.exploitAvailable) return false;
  if (m.fixAvailable !== undefined && !m.fixAvailable.has(f.fixAvailable ?? 'UNKNOWN')) return false;
  if (m.packageManagers !== undefined && !matchesPackageManagers(m, f.packageManagers)) return false;
  if (m.cves !== undefined && !m.cves.has(f.vulnerabilityId.toLowerCase())) return false;
  if (m.repositories !== undefined && !(f.image !== undefined && m.repositories.test(f.image.repository)))
    return false;
  if (m.serviceTags !== undefined) {
    if (tags === undefined) return false;
    for (const [key, value] of m.serviceTags) if (tags[key] !== value) return false;
  }
  if (m.knownExploited !== undefined && (exploitation?.kev !== undefined) !== m.knownExploited) return false;
  if (m.exploitObserved !== undefined && (exploitation?.exploitObserved !== undefined) !== m.exploitObserved)
    return false;
  return true;
};

/** The facts a match relied on, in words: `CRITICAL, fix YES, repository payments/api`. */
const facts = (m: Partial<PolicyMatch>, f: Finding): string => {
  const out: string[] = [];
  if (m.severities) out.push(f.severity);
  if (m.minInspectorScore !== undefined) out.push(`score ${f.inspectorScore} ≥ ${m.minInspectorScore}`);
  if (m.minEpssScore !== undefined) out.push(`EPSS ${f.epssScore} ≥ ${m.minEpssScore}`);
  if (m.exploitAvailable !== undefined) out.push(`exploit ${f.exploitAvailable ?? 'not reported'}`);
  if (m.fixAvailable) out.push(`fix ${f.fixAvailable ?? 'not reported'}`);
  if (m.packageManagers) out.push(`packages ${f.packageManagers.join('+')}`);
  if (m.cves) out.push(f.vulnerabilityId);
  if (m.repositories) out.push(`repository ${f.image?.repository}`);
  if (m.knownExploited !== undefined) out.push(m.knownExploited ? 'in CISA KEV' : 'not in CISA KEV');
  if (m.exploitObserved !== undefined)
    out.push(m.exploitObserved ? 'exploitation observed' : 'no exploitation observed');
  if (m.serviceTags)
    out.push(
      `tags ${Object.entries(m.serviceTags)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
  return out.length > 0 ? out.join(', ') : 'any finding';
};

const describeException = (e: PolicyException): string => {
  const what = [...(e.cves ?? []), ...(e.repositories ?? []).map((r) => `repository ${r}`)].join(', ');
  return `exception for ${what} (expires ${e.expires})`;
};

const expiredNote = (expired: readonly ExpiredException[]): string =>
  expired.map((e) => `; exception "${e.reason}" expired ${e.expires} and no longer applies`).join('');

const ignore = (reason: string): Decision => ({ action: 'ignore', reason: `${reason} → ignore` });

/** Built-in facts, decided before any rule: the findings Autopatch cannot or must not act on. */
const builtIn = (f: Finding): Decision | undefined => {
  if (f.status === 'SUPPRESSED')
    return ignore('finding is SUPPRESSED in Inspector (a suppression rule covers it)');
  if (f.status === 'CLOSED') {
    // CLOSED only means Inspector stopped seeing it; images that age out of rescanning close too.
    return ignore('finding is CLOSED in Inspector (which does not mean it was fixed)');
  }
  if (f.resourceType !== 'AWS_ECR_CONTAINER_IMAGE' || f.image === undefined) {
    return ignore(`resource type ${f.resourceType} is not an ECR container image`);
  }
  if (f.type !== 'PACKAGE_VULNERABILITY') {
    return ignore(`finding type ${f.type} is not a package vulnerability: there is no package to patch`);
  }
  return undefined;
};

const windowState = (c: CompiledPolicy, now: Date): WindowState => {
  const at = now.getTime();
  const last = c.lastWindow;
  if (last && last.from <= at && at < last.until) return last.state;
  const state = nextCompiledWindow(c.windows, now);
  const until = Math.min(
    state.current?.end.getTime() ?? Number.POSITIVE_INFINITY,
    state.next?.start.getTime() ?? Number.POSITIVE_INFINITY,
  );
  c.lastWindow = { from: at, until, state };
  return state;
};

/** Decide what to do with one finding. Pure apart from the per-policy caches; never throws for a parsed policy. */
export const evaluate = (policy: Policy, finding: Finding, ctx: EvaluationContext): Decision => {
  const builtin = builtIn(finding);
  if (builtin) return builtin;
  const c = compiled(policy);
  const now = ctx.now.getTime();

  let expired: ExpiredException[] | undefined;
  for (const e of c.exceptions) {
    if (!matches(e.match, finding, ctx.serviceTags)) continue;
    if (now < e.expiresAt) {
      return {
        action: 'ignore',
        reason: `${describeException(e.source)}: ${e.source.reason} → ignore${expired ? expiredNote(expired) : ''}`,
        exception: e.index,
        ...(expired ? { expiredExceptions: expired } : {}),
      };
    }
    expired ??= [];
    expired.push({ index: e.index, reason: e.source.reason, expires: e.source.expires });
  }

  let action = c.defaultAction;
  let rule: CompiledRule | undefined;
  let skipped = '';
  const unknown = exploitationUnknown(ctx);
  const known = unknown === undefined ? (ctx.exploitation as Exploitation) : undefined;
  for (const r of c.rules) {
    if (unknown !== undefined && needsExploitation(r.match)) {
      skipped += `; rule "${r.name}" skipped: exploitation unknown (${unknown})`;
      continue;
    }
    if (matches(r.match, finding, ctx.serviceTags, known)) {
      rule = r;
      action = r.action;
      break;
    }
  }
  let reason = rule
    ? `rule "${rule.name}": ${facts(rule.source, finding)} → ${action}`
    : `no rule matched (${finding.severity}, fix ${finding.fixAvailable ?? 'not reported'}) → default ${action}`;
  reason += skipped;

  const acting = action === 'remediate' || action === 'approve';
  const due = acting ? deadlineOf(c, rule, finding, known) : undefined;
  if (due) {
    reason += `; deadline ${due.iso} (${due.why})${due.at <= now ? ', already passed' : ''}`;
  }

  let notBefore: string | undefined;
  if (acting && c.windows.length > 0) {
    if (c.criticalExploitOverride && finding.severity === 'CRITICAL' && finding.exploitAvailable === 'YES') {
      reason += '; CRITICAL with a known exploit: does not wait for a maintenance window';
    } else {
      const w = windowState(c, ctx.now);
      if (w.current)
        reason += `; inside maintenance window "${w.current.name}" until ${w.current.end.toISOString()}`;
      else if (w.next && due?.holdsWindows && w.next.start.getTime() > due.at) {
        reason += `; the next window is after the deadline (maintenance window "${w.next.name}" at ${w.next.start.toISOString()}): does not wait for it`;
      } else if (w.next) {
        notBefore = w.next.start.toISOString();
        reason += `; waits for maintenance window "${w.next.name}" at ${notBefore}`;
      }
    }
  }
  if (expired) reason += expiredNote(expired);

  return {
    action,
    reason,
    ...(rule ? { rule: rule.name } : {}),
    ...(notBefore === undefined ? {} : { notBefore }),
    // Only a deadline the policy wrote (or a KEV due date it opted into) is enforced: it orders the
    // queue, makes a remediation urgent, bounds the gather window and is watched by the sweep. The
    // built-in defaults are only named in the reason, so existing policies behave as before.
    ...(due?.holdsWindows ? { deadline: due.iso } : {}),
    ...(known?.kev === undefined ? {} : { knownExploited: true as const }),
    ...(expired ? { expiredExceptions: expired } : {}),
  };
};

/**
 * The deadline: the rule's or the severity's duration after the finding was first observed (when
 * Inspector does not say, the finding's updatedAt: the earliest time Autopatch can know of it), or
 * the CISA KEV due date when `kevDueDate` is on and that is earlier.
 */
const deadlineOf = (
  c: CompiledPolicy,
  rule: CompiledRule | undefined,
  f: Finding,
  exploitation: Exploitation | undefined,
):
  | { readonly at: number; readonly iso: string; readonly why: string; readonly holdsWindows: boolean }
  | undefined => {
  const observed = f.firstObservedAt ?? f.updatedAt;
  const from = Date.parse(observed);
  const own =
    rule?.deadlineMs !== undefined
      ? { ms: rule.deadlineMs, why: `${rule.deadline} after first observed ${observed}, rule "${rule.name}"` }
      : undefined;
  const severity = c.deadlines.get(f.severity);
  const span =
    own ??
    (severity
      ? { ms: severity.ms, why: `${severity.text} for ${f.severity} after first observed ${observed}` }
      : undefined);
  // A deadline the policy wrote (a rule's, the policy's own `deadlines`, or a KEV due date it opted
  // into) shortens a maintenance-window wait; the built-in defaults are reported, never enforced.
  let best =
    span && !Number.isNaN(from)
      ? { at: from + span.ms, why: span.why, holdsWindows: own !== undefined || c.deadlinesWritten }
      : undefined;
  const kevDue = c.kevDueDate ? exploitation?.kev?.dateDue : undefined;
  const kevAt = kevDue === undefined ? Number.NaN : Date.parse(kevDue);
  if (!Number.isNaN(kevAt) && (best === undefined || kevAt < best.at)) {
    best = { at: kevAt, why: `CISA KEV due date ${kevDue}`, holdsWindows: true };
  }
  return best ? { ...best, iso: new Date(best.at).toISOString() } : undefined;
};
