/**
 * Zod issues as sentences that name their field: the one formatter of validation problems for the
 * event schemas, the policy, the Lambda's configuration and the simulation's scenarios.
 */
import type * as z from 'zod';

/**
 * A value as a short JSON string for an error message. JSON escapes C0 controls; format and separator
 * characters (bidi overrides, U+2028...) and C1 controls are escaped too, so a reason never carries
 * a hostile value's line breaks or reordering into a log or a report.
 */
export const quote = (s: string, max = 64): string =>
  printable(JSON.stringify(s.length > max ? `${s.slice(0, max - 3)}...` : s));

/** Text with its control, format and separator characters shown as `\uXXXX` escapes instead of acting. */
export const printable = (s: string): string =>
  s.replace(
    /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu,
    (c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`,
  );

export type Issue = z.core.$ZodIssue;

// Names, and keys such as "prod/checkout" (a service key) that read unambiguously after a dot.
const IDENTIFIER = /^[A-Za-z_$][\w$/-]*$/;

/** `detail.resources[0].details`: dots for names, brackets for indexes and odd keys. */
export const formatPath = (root: string | undefined, path: readonly PropertyKey[]): string => {
  let out = root ?? '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && IDENTIFIER.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(root)' : out;
};

export const show = (value: unknown): string => {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
};

/** Levenshtein distance, for "did you mean" hints on misspelt field names (short strings only). */
const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number;
      row[j] = Math.min(above + 1, (row[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] as number;
};

const suggestion = (key: string, known: readonly string[]): string => {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const d = distance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length * 0.4))
    ? ` (did you mean "${best}"?)`
    : '';
};

const bound = (issue: { inclusive?: boolean }, strict: string, loose: string): string =>
  issue.inclusive === false ? strict : loose;

/** The field names allowed at a path, for "did you mean" hints on unknown fields. */
export type KnownKeys = (path: readonly PropertyKey[]) => readonly string[];

const noKeys: KnownKeys = () => [];

/** One issue as a sentence, without its path. */
export const describeIssue = (issue: Issue, knownKeys: KnownKeys = noKeys): string => {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined
        ? `expected ${issue.expected}, but the field is missing`
        : `expected ${issue.expected}, received ${show(issue.input)}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${show(issue.values[0])}, received ${show(issue.input)}`
        : `invalid value ${show(issue.input)}, expected one of ${issue.values.map(String).join(', ')}`;
    case 'unrecognized_keys':
      return issue.keys
        .map((k) => `unknown field ${quote(k)}${suggestion(k, knownKeys(issue.path))}`)
        .join(', ');
    case 'too_small':
      if (issue.origin === 'string')
        return issue.minimum === 1 ? 'must not be empty' : `must have at least ${issue.minimum} characters`;
      if (issue.origin === 'array' || issue.origin === 'set')
        return `must have at least ${issue.minimum} item(s)`;
      return `must be ${bound(issue, '>', '≥')} ${issue.minimum}, received ${show(issue.input)}`;
    case 'too_big':
      if (issue.origin === 'string') return `must have at most ${issue.maximum} characters`;
      if (issue.origin === 'array' || issue.origin === 'set')
        return `must have at most ${issue.maximum} item(s)`;
      return `must be ${bound(issue, '<', '≤')} ${issue.maximum}, received ${show(issue.input)}`;
    case 'invalid_format':
      return `expected ${issue.format === 'regex' ? `text matching ${issue.pattern}` : `a valid ${issue.format}`}, received ${show(issue.input)}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}, received ${show(issue.input)}`;
    case 'invalid_key':
      return `invalid key ${show(issue.input)}: ${issue.issues.map((i) => describeIssue(i, knownKeys)).join('; ')}`;
    case 'invalid_element':
      return `invalid element: ${issue.issues.map((i) => describeIssue(i, knownKeys)).join('; ')}`;
    case 'invalid_union': {
      // Report the alternative that came closest (fewest issues): that is usually the one meant.
      const closest = [...issue.errors].sort((a, b) => a.length - b.length)[0];
      if (!closest || closest.length === 0) return issue.message;
      return closest.map((i) => describeIssue(i, knownKeys)).join('; ');
    }
    default:
      return issue.message;
  }
};

/** One validation problem: the field it is about, and what is wrong with it. */
export interface Problem {
  /** The field's path from the document's root, e.g. `policy.rules[0].action`; `(root)` for the whole. */
  readonly path: string;
  readonly message: string;
}

export interface ProblemOptions {
  /** Name of the document the paths start from, e.g. `policy`. */
  readonly root?: string;
  /** The field names allowed at a path, for "did you mean" hints. */
  readonly knownKeys?: KnownKeys;
  /**
   * `explained` (default): each issue as a sentence of describeIssue. `zod`: zod's own message
   * (for documents whose schemas write their own messages, such as simulation scenarios).
   */
  readonly messages?: 'explained' | 'zod';
}

/**
 * Zod issues as problems, each naming its field path from `root`. Issues under a union are reported
 * at their own (deeper) paths, from the alternative that came closest.
 */
export const issueProblems = (issues: readonly Issue[], options: ProblemOptions = {}): Problem[] => {
  const { root, knownKeys = noKeys, messages = 'explained' } = options;
  return issues
    .flatMap((issue) => {
      if (messages === 'explained' && issue.code === 'invalid_union' && issue.errors.length > 0) {
        const closest = [...issue.errors].sort((a, b) => a.length - b.length)[0] ?? [];
        return closest.map((i) => ({ ...i, path: [...issue.path, ...i.path] }) as Issue);
      }
      return [issue];
    })
    .map((issue) => ({
      path: formatPath(root, issue.path),
      message: messages === 'zod' ? issue.message : describeIssue(issue, knownKeys),
    }));
};

/** Problems as one line: `<path>: <message>; <path>: <message>`. */
export const formatProblems = (problems: readonly Problem[]): string =>
  problems.map((p) => `${p.path}: ${p.message}`).join('; ');

/**
 * All issues as one message, each naming its field path from `root`:
 * `detail.findingArn: expected string, but the field is missing; detail.severity: invalid value ...`.
 */
export const formatIssues = (
  issues: readonly Issue[],
  root?: string,
  knownKeys: KnownKeys = noKeys,
): string => formatProblems(issueProblems(issues, { ...(root === undefined ? {} : { root }), knownKeys }));
