/**
 * Schemas for the EventBridge events Autopatch receives from Amazon Inspector, written against the
 * formats Inspector really sends (see test/fixtures/events and the Inspector user guide, "Amazon
 * EventBridge event schema for Amazon Inspector events"), not against an idealised model:
 *
 * - timestamps are not ISO-8601 ("Wed Sep 04 16:55:38.411 UTC 2024", "Dec 3, 2021, 6:02:30 PM");
 * - `inspectorScore`, `epss`, `exploitAvailable` and `fixAvailable` can be absent;
 * - image details come as `awsEcrContainerImage`, as the newer provider-neutral `image`, or both;
 * - events grow new keys over time, so unknown keys are tolerated (and dropped) everywhere.
 *
 * Parse, don't validate: the schemas' output is the normalised `Finding` / `ScanEvent` that the rest
 * of triage works with, and a bad event fails with an `InvalidEventError` naming each bad field.
 */
import * as z from 'zod';
import { SEVERITIES, type Severity } from '../shared/contracts';
import { InvalidEventError } from '../shared/errors';

// ---------------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------------

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MONTH_NAMES = [
  'january',
  'february',
  'march',
  'april',
  'may',
  'june',
  'july',
  'august',
  'september',
  'october',
  'november',
  'december',
];

const WEEKDAY = '(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\\.?,?';
const MONTH = '([a-z]{3,9}\\.?)';
const TIME = '(\\d{1,2}):(\\d{2})(?::(\\d{2})(?:[.,](\\d{1,9}))?)?';
// A zone as Inspector and the usual serialisers write it: a name we can map, or a numeric offset.
const ZONE = '([a-z]{1,5}(?:[+-]\\d{1,2}(?::?\\d{2})?)?|[+-]\\d{1,2}(?::?\\d{2})?)';

/** Java's Date.toString(), which Inspector uses: "Wed Sep 04 16:55:38.411 UTC 2024". */
const JAVA_DATE = new RegExp(`^(?:${WEEKDAY} )?${MONTH} (\\d{1,2}),? ${TIME} ${ZONE} (\\d{4})$`, 'i');
/** The console / CLI "medium" style: "Dec 3, 2021, 6:02:30 PM", optionally with "at" or a zone. */
const MEDIUM_DATE = new RegExp(
  `^(?:${WEEKDAY} )?${MONTH} (\\d{1,2}),? (\\d{4}),?(?: at)? ${TIME}(?: ?([ap])\\.?m\\.?)?(?: ${ZONE})?$`,
  'i',
);
/** RFC 1123 / RFC 2822, as HTTP headers and some SDKs write it: "Wed, 04 Sep 2024 16:55:38 GMT". */
const RFC_DATE = new RegExp(`^(?:${WEEKDAY} )?(\\d{1,2}) ${MONTH} (\\d{4}) ${TIME}(?: ${ZONE})?$`, 'i');
/** ISO-8601 extended ("2024-09-04T16:55:38.411Z", "2024-09-04 16:55:38+02:00", "2024-09-04"). */
const ISO_DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[t ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)? ?(z|[+-]\d{2}(?::?\d{2})?)?$/i;
/** ISO-8601 basic ("20240904T165538Z"), as some AWS services write it. */
const ISO_BASIC = /^(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})(?:[.,](\d{1,9}))?(z|[+-]\d{4})?$/i;
/** Epoch seconds (10 digits, optional fraction) or epoch milliseconds (13 digits). */
const EPOCH_SECONDS = /^\d{9,10}(?:\.\d{1,6})?$/;
const EPOCH_MILLIS = /^\d{12,13}$/;

const EXAMPLES = 'expected ISO-8601, "Wed Sep 04 16:55:38.411 UTC 2024" or "Dec 3, 2021, 6:02:30 PM"';

/**
 * A value as a short JSON string for an error message. JSON escapes C0 controls; format and separator
 * characters (bidi overrides, U+2028...) and C1 controls are escaped too, so a reason never carries
 * a hostile value's line breaks or reordering into a log or a report.
 */
const quote = (s: string, max = 64): string =>
  printable(JSON.stringify(s.length > max ? `${s.slice(0, max - 3)}...` : s));

/** Text with its control, format and separator characters shown as `\uXXXX` escapes instead of acting. */
export const printable = (s: string): string =>
  s.replace(
    /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu,
    (c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`,
  );

const monthNumber = (name: string, raw: string): number => {
  const word = name.replace(/\.$/, '').toLowerCase();
  const short = MONTHS.indexOf(word.slice(0, 3));
  // "Sep", "Sept" and "September" are all fine; "Septx" is not.
  const ok = short >= 0 && (word.length === 3 || word === 'sept' || MONTH_NAMES[short] === word);
  if (!ok) throw new InvalidEventError(`invalid timestamp ${quote(raw)}: unknown month ${quote(name)}`);
  return short + 1;
};

/** Zone offset in minutes east of UTC. Abbreviations other than UTC/GMT are ambiguous (CST), so refused. */
const zoneOffset = (zone: string | undefined, raw: string): number => {
  if (zone === undefined) return 0;
  const m = /^(?:z|utc|gmt|ut)?(?:([+-])(\d{1,2})(?::?(\d{2}))?)?$/i.exec(zone);
  if (!m || (m[1] === undefined && !/^(?:z|utc|gmt|ut)$/i.test(zone))) {
    throw new InvalidEventError(
      `invalid timestamp ${quote(raw)}: unsupported time zone ${quote(zone)} (use UTC, GMT, Z or a numeric offset)`,
    );
  }
  if (m[1] === undefined) return 0;
  const hours = Number(m[2]);
  const minutes = Number(m[3] ?? '0');
  if (hours > 14 || minutes > 59)
    throw new InvalidEventError(`invalid timestamp ${quote(raw)}: bad offset ${quote(zone)}`);
  return (m[1] === '-' ? -1 : 1) * (hours * 60 + minutes);
};

interface Fields {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  fraction: string | undefined;
  offsetMinutes: number;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const build = (f: Fields, raw: string): Date => {
  const fail = (what: string): never => {
    throw new InvalidEventError(`invalid timestamp ${quote(raw)}: ${what}`);
  };
  if (f.year < 1900 || f.year > 9999) fail(`year ${f.year} is out of range`);
  if (f.month < 1 || f.month > 12) fail(`month ${f.month} is out of range`);
  const leap = f.year % 4 === 0 && (f.year % 100 !== 0 || f.year % 400 === 0);
  const daysInMonth = f.month === 2 && leap ? 29 : (DAYS_IN_MONTH[f.month - 1] as number);
  if (f.day < 1 || f.day > daysInMonth) {
    fail(`day ${f.day} is out of range for ${f.year}-${String(f.month).padStart(2, '0')}`);
  }
  if (f.hour > 23) fail(`hour ${f.hour} is out of range`);
  if (f.minute > 59) fail(`minute ${f.minute} is out of range`);
  if (f.second > 59) fail(`second ${f.second} is out of range`);
  const millis = f.fraction === undefined ? 0 : Number(f.fraction.slice(0, 3).padEnd(3, '0'));
  const utc = Date.UTC(f.year, f.month - 1, f.day, f.hour, f.minute, f.second, millis);
  return new Date(utc - f.offsetMinutes * 60_000);
};

/** 12-hour clock to 24-hour clock; `meridiem` is "a" or "p" (from "AM", "p.m."...). */
const to24h = (hour: number, meridiem: string | undefined, raw: string): number => {
  if (meridiem === undefined) return hour;
  if (hour < 1 || hour > 12) {
    throw new InvalidEventError(
      `invalid timestamp ${quote(raw)}: hour ${hour} is out of range for a 12-hour clock`,
    );
  }
  const pm = meridiem.toLowerCase() === 'p';
  return (hour % 12) + (pm ? 12 : 0);
};

const num = (v: string | undefined, fallback = 0): number => (v === undefined ? fallback : Number(v));

/** Each format with the capture groups that make up its fields, in the order they are tried. */
const FORMATS: ReadonlyArray<readonly [RegExp, (m: RegExpExecArray, raw: string) => Fields]> = [
  [
    ISO_DATE,
    (m, raw) => ({
      year: num(m[1]),
      month: num(m[2]),
      day: num(m[3]),
      hour: num(m[4]),
      minute: num(m[5]),
      second: num(m[6]),
      fraction: m[7],
      offsetMinutes: zoneOffset(m[8], raw),
    }),
  ],
  [
    JAVA_DATE,
    (m, raw) => ({
      year: num(m[8]),
      month: monthNumber(m[1] as string, raw),
      day: num(m[2]),
      hour: num(m[3]),
      minute: num(m[4]),
      second: num(m[5]),
      fraction: m[6],
      offsetMinutes: zoneOffset(m[7], raw),
    }),
  ],
  [
    MEDIUM_DATE,
    (m, raw) => ({
      year: num(m[3]),
      month: monthNumber(m[1] as string, raw),
      day: num(m[2]),
      hour: to24h(num(m[4]), m[8], raw),
      minute: num(m[5]),
      second: num(m[6]),
      fraction: m[7],
      offsetMinutes: zoneOffset(m[9], raw),
    }),
  ],
  [
    RFC_DATE,
    (m, raw) => ({
      year: num(m[3]),
      month: monthNumber(m[2] as string, raw),
      day: num(m[1]),
      hour: num(m[4]),
      minute: num(m[5]),
      second: num(m[6]),
      fraction: m[7],
      offsetMinutes: zoneOffset(m[8], raw),
    }),
  ],
  [
    ISO_BASIC,
    (m, raw) => ({
      year: num(m[1]),
      month: num(m[2]),
      day: num(m[3]),
      hour: num(m[4]),
      minute: num(m[5]),
      second: num(m[6]),
      fraction: m[7],
      offsetMinutes: zoneOffset(m[8], raw),
    }),
  ],
];

/**
 * Parse a timestamp in any of the formats Inspector and the AWS tooling around it emit:
 * - Java `Date.toString()` style, as in Inspector events: "Wed Sep 04 16:55:38.411 UTC 2024";
 * - the console's medium style: "Dec 3, 2021, 6:02:30 PM" (no zone means UTC);
 * - ISO-8601, extended or basic, with or without a zone (none means UTC, unlike `Date.parse`);
 * - RFC 1123: "Wed, 04 Sep 2024 16:55:38 GMT";
 * - epoch seconds or milliseconds.
 * Whitespace (including the narrow no-break space newer ICU puts before "PM") is normalised.
 * A weekday, when present, is not checked against the date: it is redundant, and rejecting an event
 * over it would drop a finding that is otherwise unambiguous.
 * @throws InvalidEventError naming the input and what is wrong with it.
 */
export const parseInspectorTimestamp = (s: string): Date => {
  const text = s.replace(/\s+/g, ' ').trim();
  for (const [pattern, fields] of FORMATS) {
    const m = pattern.exec(text);
    if (m) return build(fields(m, s), s);
  }
  if (EPOCH_SECONDS.test(text)) return new Date(Math.round(Number(text) * 1000));
  if (EPOCH_MILLIS.test(text)) return new Date(Number(text));
  throw new InvalidEventError(`unrecognised timestamp ${quote(s)}: ${EXAMPLES}`);
};

// One event carries the same timestamp several times (updatedAt, firstObservedAt, lastObservedAt),
// and a burst of findings from one scan shares them: parsing dominated the cost of a parse, so
// results are remembered. Bounded; cleared when full rather than tracked as an LRU, for simplicity.
const ISO_CACHE_SIZE = 4096;
const isoCache = new Map<string, string>();

/** parseInspectorTimestamp(s).toISOString(), memoised. */
const toIso = (s: string): string => {
  let iso = isoCache.get(s);
  if (iso === undefined) {
    iso = parseInspectorTimestamp(s).toISOString();
    if (isoCache.size >= ISO_CACHE_SIZE) isoCache.clear();
    isoCache.set(s, iso);
  }
  return iso;
};

/**
 * Longest timestamp text read: the longest real format ("Wednesday, September 04, 2024 at 16:55:38.411
 * PM UTC+02:00") is about 60 characters. Bounded before any pattern runs, so a hostile 2,000-character
 * `updatedAt` is refused in constant time and never reaches a DynamoDB key.
 */
export const MAX_TIMESTAMP_LENGTH = 64;

// No control or format characters either: `updatedAt` is kept as sent (half of the dedup key).
const timestampText = z
  .string()
  .max(MAX_TIMESTAMP_LENGTH, { abort: true })
  .superRefine((value, ctx) => {
    if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(value)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a timestamp without control characters, received ${quote(value)}`,
        input: value,
        abort: true,
      });
    }
  });

/** A timestamp field, normalised to ISO-8601 (UTC, milliseconds). */
const isoTimestamp = timestampText.transform((s, ctx) => {
  try {
    return toIso(s);
  } catch (error) {
    ctx.issues.push({ code: 'custom', message: (error as Error).message, input: s });
    return z.NEVER;
  }
});

/** A timestamp field whose raw text matters too (`updatedAt` is half of the deduplication key). */
const rawAndIsoTimestamp = timestampText.transform((s, ctx) => {
  try {
    return { raw: s, iso: toIso(s) };
  } catch (error) {
    ctx.issues.push({ code: 'custom', message: (error as Error).message, input: s });
    return z.NEVER;
  }
});

// ---------------------------------------------------------------------------------------------------
// Issue formatting (shared with the policy parser)
// ---------------------------------------------------------------------------------------------------

type Issue = z.core.$ZodIssue;

const IDENTIFIER = /^[A-Za-z_$][\w$-]*$/;

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

const show = (value: unknown): string => {
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

/**
 * All issues as one message, each naming its field path from `root`:
 * `detail.findingArn: expected string, but the field is missing; detail.severity: invalid value ...`.
 * Issues under a union are reported at their own (deeper) paths.
 */
export const formatIssues = (
  issues: readonly Issue[],
  root?: string,
  knownKeys: KnownKeys = noKeys,
): string =>
  issues
    .flatMap((issue) => {
      if (issue.code === 'invalid_union' && issue.errors.length > 0) {
        const closest = [...issue.errors].sort((a, b) => a.length - b.length)[0] ?? [];
        return closest.map((i) => ({ ...i, path: [...issue.path, ...i.path] }) as Issue);
      }
      return [issue];
    })
    .map((issue) => `${formatPath(root, issue.path)}: ${describeIssue(issue, knownKeys)}`)
    .join('; ');

// ---------------------------------------------------------------------------------------------------
// Bounded values
// ---------------------------------------------------------------------------------------------------

/*
 * Every string of an event that can reach a DynamoDB key, an execution name, a shell, a Dockerfile
 * or a notification is checked here, before anything else sees it: lengths first (so no pattern runs
 * on a huge input and no key exceeds DynamoDB's 2,048 / 1,024-byte limits), then the value's own
 * grammar. A value that fails is a poison event, rejected with a reason naming the field.
 */

/** An ECR image digest: "sha256:" and 64 lowercase hex digits, as ECR and the registry API write it. */
export const IMAGE_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** An ECR repository name: AWS's own pattern (ecr:CreateRepository), 2-256 characters. */
export const ECR_REPOSITORY_NAME = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
/** A registry id (the AWS account that owns the repository). */
export const REGISTRY_ID = /^\d{12}$/;
/** An ECR image tag: the Docker tag grammar ECR enforces, at most 128 characters. */
export const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/**
 * A CVE or vendor advisory id: "CVE-2024-6119", "GHSA-jfh8-c2jp-5v3q", "ALAS2-2023-2065",
 * "RHSA-2023:1234", "USN-6986-1". Letters, digits, '.', '_', ':' and '-'; at most 128 characters.
 */
export const VULNERABILITY_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** An AWS region name: "eu-central-1", "us-gov-west-1", "cn-north-1". */
export const AWS_REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/** An Inspector finding ARN. Its id is printable ASCII (the documented example holds a placeholder). */
export const FINDING_ARN =
  /^arn:aws[a-z-]{0,20}:inspector2:[a-z0-9-]{1,32}:\d{12}:finding\/[\x21-\x7e]{1,128}$/;
/** A short identifier Inspector defines: platform, architecture, package manager, source, detector id. */
const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._/+@:-]*$/;
/**
 * Free text without control, format or line-separator characters: no newline can start a forged line
 * in a log or a notification, no bidi override can make text read other than it is.
 */
const PLAIN_TEXT = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u;

/** The bounds, in characters (every value bounded here is ASCII or checked to be short). */
export const LIMITS = {
  findingArn: 256,
  repositoryName: 256,
  imageTag: 128,
  imageTags: 1_000,
  vulnerabilityId: 128,
  token: 128,
  title: 1_024,
  text: 2_048,
  description: 65_536,
  packages: 1_000,
  resources: 100,
  resourceTags: 50,
} as const;

/** A string of `min`..`max` characters matching `pattern`; the message says what was expected. */
const matching = (pattern: RegExp, expected: string, max: number, min = 1) =>
  z
    .string()
    .min(min, { abort: true })
    .max(max, { abort: true })
    .superRefine((value, ctx) => {
      if (!pattern.test(value)) {
        ctx.addIssue({
          code: 'custom',
          message: `expected ${expected}, received ${quote(value)}`,
          input: value,
        });
      }
    });

const plainText = (max: number) =>
  matching(PLAIN_TEXT, 'text without control or line-separator characters', max, 0);

export const imageDigestSchema = matching(
  IMAGE_DIGEST,
  'an image digest: "sha256:" and 64 lowercase hex digits',
  71,
);
export const repositoryNameSchema = matching(
  ECR_REPOSITORY_NAME,
  'an ECR repository name (lowercase letters and digits, separated by ".", "_", "-" or "/")',
  LIMITS.repositoryName,
  2,
);
export const registryIdSchema = matching(REGISTRY_ID, 'a 12-digit registry (account) id', 12);
export const imageTagSchema = matching(
  IMAGE_TAG,
  'an image tag (letters, digits, "_", "." and "-", not starting with "." or "-")',
  LIMITS.imageTag,
);
export const vulnerabilityIdSchema = matching(
  VULNERABILITY_ID,
  'a vulnerability id such as "CVE-2024-6119" (letters, digits, ".", "_", ":" and "-")',
  LIMITS.vulnerabilityId,
);
export const regionSchema = matching(AWS_REGION, 'an AWS region such as "eu-central-1"', 32);
const tokenSchema = matching(TOKEN, 'an identifier (letters, digits and . _ / + @ : -)', LIMITS.token);
const accountIdSchema = matching(REGISTRY_ID, 'a 12-digit account id', 12);

// ---------------------------------------------------------------------------------------------------
// Inspector2 Finding
// ---------------------------------------------------------------------------------------------------

export const FINDING_STATUSES = ['ACTIVE', 'SUPPRESSED', 'CLOSED'] as const;
export type FindingStatus = (typeof FINDING_STATUSES)[number];
export const FINDING_TYPES = ['PACKAGE_VULNERABILITY', 'CODE_VULNERABILITY', 'NETWORK_REACHABILITY'] as const;
export type FindingType = (typeof FINDING_TYPES)[number];
export const FIX_AVAILABILITIES = ['YES', 'NO', 'PARTIAL'] as const;
export type FixAvailable = (typeof FIX_AVAILABILITIES)[number];
export const EXPLOIT_AVAILABILITIES = ['YES', 'NO'] as const;
export type ExploitAvailable = (typeof EXPLOIT_AVAILABILITIES)[number];
export const ECR_IMAGE_RESOURCE = 'AWS_ECR_CONTAINER_IMAGE';

const vulnerablePackageSchema = z.object({
  name: plainText(LIMITS.text).pipe(z.string().min(1)),
  version: plainText(LIMITS.text),
  // Inspector writes "NotAvailable" when no fixed version exists; kept as reported.
  fixedInVersion: plainText(LIMITS.text).optional(),
  packageManager: tokenSchema.optional(),
  arch: plainText(LIMITS.text).optional(),
  release: plainText(LIMITS.text).optional(),
  epoch: z.number().optional(),
  filePath: plainText(LIMITS.text).optional(),
  remediation: plainText(LIMITS.text).optional(),
});

/** `awsEcrContainerImage`: the long-documented ECR shape (digest in `imageHash`). */
const ecrImageDetailsSchema = z.object({
  repositoryName: repositoryNameSchema.optional(),
  registry: registryIdSchema.optional(),
  imageHash: imageDigestSchema.optional(),
  imageTags: z.array(imageTagSchema).max(LIMITS.imageTags).optional(),
  platform: tokenSchema.optional(),
  architecture: tokenSchema.optional(),
  pushedAt: isoTimestamp.optional(),
});

/** `image`: the newer provider-neutral shape (digest in `imageDigest`). */
const neutralImageDetailsSchema = z.object({
  repositoryName: repositoryNameSchema.optional(),
  registry: registryIdSchema.optional(),
  imageDigest: imageDigestSchema.optional(),
  imageTags: z.array(imageTagSchema).max(LIMITS.imageTags).optional(),
  platform: tokenSchema.optional(),
  architecture: tokenSchema.optional(),
  pushedAt: isoTimestamp.optional(),
});

const resourceSchema = z.object({
  id: plainText(LIMITS.text).pipe(z.string().min(1)),
  // Any identifier: EC2 instances, Lambda functions and resource types Inspector adds later are
  // parsed (so they can be reported and ignored by policy), not rejected as poison.
  type: tokenSchema,
  region: regionSchema.optional(),
  partition: tokenSchema.optional(),
  details: z
    .object({
      awsEcrContainerImage: ecrImageDetailsSchema.optional(),
      image: neutralImageDetailsSchema.optional(),
    })
    .optional(),
  tags: z
    .record(plainText(LIMITS.token), plainText(LIMITS.text))
    .refine((tags) => Object.keys(tags).length <= LIMITS.resourceTags, {
      message: `must have at most ${LIMITS.resourceTags} tags`,
    })
    .optional(),
});

const findingDetailSchema = z.object({
  awsAccountId: accountIdSchema,
  findingArn: matching(
    FINDING_ARN,
    'an Inspector finding ARN ("arn:aws:inspector2:<region>:<account>:finding/<id>")',
    LIMITS.findingArn,
  ),
  title: plainText(LIMITS.title),
  description: z.string().max(LIMITS.description).optional(),
  severity: z.enum(SEVERITIES),
  status: z.enum(FINDING_STATUSES),
  type: z.enum(FINDING_TYPES),
  updatedAt: rawAndIsoTimestamp,
  firstObservedAt: isoTimestamp.optional(),
  lastObservedAt: isoTimestamp.optional(),
  inspectorScore: z.number().min(0).max(10).optional(),
  epss: z.object({ score: z.number().min(0).max(1) }).optional(),
  exploitAvailable: z.enum(EXPLOIT_AVAILABILITIES).optional(),
  fixAvailable: z.enum(FIX_AVAILABILITIES).optional(),
  packageVulnerabilityDetails: z
    .object({
      vulnerabilityId: vulnerabilityIdSchema,
      vulnerablePackages: z.array(vulnerablePackageSchema).max(LIMITS.packages).default([]),
      source: tokenSchema.optional(),
    })
    .optional(),
  codeVulnerabilityDetails: z.object({ detectorId: tokenSchema.optional() }).optional(),
  resources: z.array(resourceSchema).min(1).max(LIMITS.resources),
});

export interface FindingPackage {
  readonly name: string;
  readonly version: string;
  readonly fixedInVersion?: string;
  readonly packageManager?: string;
}

export interface FindingImage {
  /** Registry (account id) that holds the repository. */
  readonly registry: string;
  /** ECR repository name, e.g. "payments/api". */
  readonly repository: string;
  /** "<registry>.dkr.ecr.<region>.amazonaws.com/<repository>" */
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
  readonly platform?: string;
  readonly architecture?: string;
  /** ISO-8601. */
  readonly pushedAt?: string;
}

/** An Inspector finding, normalised. Times are ISO-8601 in UTC. */
export interface Finding {
  readonly findingArn: string;
  /** `updatedAt` exactly as Inspector wrote it: with `findingArn`, the deduplication key. */
  readonly updatedAtRaw: string;
  readonly updatedAt: string;
  readonly firstObservedAt?: string;
  readonly lastObservedAt?: string;
  /** Account that owns the resource (`detail.awsAccountId`). */
  readonly account: string;
  /** Region of the resource (falls back to the event's region). */
  readonly region: string;
  readonly severity: Severity;
  readonly status: FindingStatus;
  readonly type: FindingType;
  readonly title: string;
  /**
   * CVE or vendor id (e.g. "CVE-2024-6119") for package vulnerabilities; for other finding types,
   * which carry no CVE, the code detector id or the finding type.
   */
  readonly vulnerabilityId: string;
  readonly inspectorScore?: number;
  readonly epssScore?: number;
  readonly exploitAvailable?: ExploitAvailable;
  readonly fixAvailable?: FixAvailable;
  /** Sorted, unique package managers of the vulnerable packages, e.g. ["NPM", "OS"]. */
  readonly packageManagers: readonly string[];
  readonly packages: readonly FindingPackage[];
  readonly resourceType: string;
  readonly resourceId: string;
  /** Present only for ECR container images. */
  readonly image?: FindingImage;
}

type FindingDetail = z.output<typeof findingDetailSchema>;

/**
 * The resource a finding is about. Inspector lists one resource per finding today, but nothing in the
 * format says the image comes first: the first ECR image resource wherever it is listed, else the first.
 */
const subjectIndex = (resources: FindingDetail['resources']): number =>
  Math.max(
    0,
    resources.findIndex((r) => r.type === ECR_IMAGE_RESOURCE),
  );

/** The digest and repository one ECR resource names (either shape), for comparing resources. */
const imageIdentity = (resource: FindingDetail['resources'][number]): string => {
  const ecr = resource.details?.awsEcrContainerImage;
  const neutral = resource.details?.image;
  return `${ecr?.repositoryName ?? neutral?.repositoryName}@${ecr?.imageHash ?? neutral?.imageDigest}`;
};

/**
 * Cross-field facts the shape alone cannot express. Checked before normalising, so that `toFinding`
 * can rely on them.
 */
const checkFinding = (detail: FindingDetail, ctx: z.core.$RefinementCtx<FindingDetail>): void => {
  if (detail.type === 'PACKAGE_VULNERABILITY' && detail.packageVulnerabilityDetails === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['packageVulnerabilityDetails'],
      message: 'expected object for a PACKAGE_VULNERABILITY finding, but the field is missing',
    });
  }
  const index = subjectIndex(detail.resources);
  const resource = detail.resources[index];
  if (resource?.type !== ECR_IMAGE_RESOURCE) return;
  // Two different images in one finding: patching either could be patching the wrong one.
  const images = new Set(
    detail.resources.filter((r) => r.type === ECR_IMAGE_RESOURCE).map((r) => imageIdentity(r)),
  );
  if (images.size > 1) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources'],
      message: `names ${images.size} different ECR images (${[...images].slice(0, 3).map(quote).join(', ')}); a finding is about one image`,
    });
  }
  const ecr = resource.details?.awsEcrContainerImage;
  const neutral = resource.details?.image;
  if (!ecr && !neutral) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details'],
      message: `an ${ECR_IMAGE_RESOURCE} resource needs details.awsEcrContainerImage or details.image`,
    });
    return;
  }
  const where = ecr ? 'awsEcrContainerImage' : 'image';
  if (!ecr?.imageHash && !neutral?.imageDigest) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details', where, ecr ? 'imageHash' : 'imageDigest'],
      message: 'expected an image digest, but the field is missing',
    });
  }
  // Both shapes describe the same image: when they disagree, either could be the wrong one.
  for (const [field, a, b] of [
    ['imageHash and image.imageDigest', ecr?.imageHash, neutral?.imageDigest],
    ['repositoryName and image.repositoryName', ecr?.repositoryName, neutral?.repositoryName],
    ['registry and image.registry', ecr?.registry, neutral?.registry],
  ] as const) {
    if (a && b && a !== b) {
      ctx.addIssue({
        code: 'custom',
        path: ['resources', index, 'details'],
        message: `awsEcrContainerImage.${field.replace(' and ', ` ${quote(a, 80)} and `)} ${quote(b, 80)} disagree`,
      });
    }
  }
  if (!ecr?.repositoryName && !neutral?.repositoryName) {
    ctx.addIssue({
      code: 'custom',
      path: ['resources', index, 'details', where, 'repositoryName'],
      message: 'expected string, but the field is missing',
    });
  }
};

const ecrRepositoryUri = (registry: string, region: string, repository: string): string =>
  `${registry}.dkr.ecr.${region}.${region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com'}/${repository}`;

const toFinding = (event: { region: string; detail: FindingDetail }): Finding => {
  const d = event.detail;
  const resource = d.resources[subjectIndex(d.resources)] as FindingDetail['resources'][number];
  const region = resource.region ?? event.region;
  const vulnerablePackages = d.packageVulnerabilityDetails?.vulnerablePackages ?? [];
  const packages: FindingPackage[] = vulnerablePackages.map((p) => ({
    name: p.name,
    version: p.version,
    ...(p.fixedInVersion === undefined ? {} : { fixedInVersion: p.fixedInVersion }),
    ...(p.packageManager === undefined ? {} : { packageManager: p.packageManager }),
  }));
  const packageManagers = [
    ...new Set(vulnerablePackages.flatMap((p) => (p.packageManager ? [p.packageManager] : []))),
  ].sort();

  let image: FindingImage | undefined;
  if (resource.type === ECR_IMAGE_RESOURCE) {
    // Both shapes describe the same image: take each field from whichever has it (checked above
    // that the digests agree), the long-documented ECR shape first.
    const ecr = resource.details?.awsEcrContainerImage;
    const neutral = resource.details?.image;
    const registry = ecr?.registry ?? neutral?.registry ?? d.awsAccountId;
    const repository = (ecr?.repositoryName ?? neutral?.repositoryName) as string;
    const platform = ecr?.platform ?? neutral?.platform;
    const architecture = ecr?.architecture ?? neutral?.architecture;
    const pushedAt = ecr?.pushedAt ?? neutral?.pushedAt;
    image = {
      registry,
      repository,
      repositoryUri: ecrRepositoryUri(registry, region, repository),
      imageDigest: (ecr?.imageHash ?? neutral?.imageDigest) as string,
      imageTags: [...new Set([...(ecr?.imageTags ?? []), ...(neutral?.imageTags ?? [])])],
      ...(platform === undefined ? {} : { platform }),
      ...(architecture === undefined ? {} : { architecture }),
      ...(pushedAt === undefined ? {} : { pushedAt }),
    };
  }

  return {
    findingArn: d.findingArn,
    updatedAtRaw: d.updatedAt.raw,
    updatedAt: d.updatedAt.iso,
    ...(d.firstObservedAt === undefined ? {} : { firstObservedAt: d.firstObservedAt }),
    ...(d.lastObservedAt === undefined ? {} : { lastObservedAt: d.lastObservedAt }),
    account: d.awsAccountId,
    region,
    severity: d.severity,
    status: d.status,
    type: d.type,
    title: d.title,
    vulnerabilityId:
      d.packageVulnerabilityDetails?.vulnerabilityId ?? d.codeVulnerabilityDetails?.detectorId ?? d.type,
    ...(d.inspectorScore === undefined ? {} : { inspectorScore: d.inspectorScore }),
    ...(d.epss === undefined ? {} : { epssScore: d.epss.score }),
    ...(d.exploitAvailable === undefined ? {} : { exploitAvailable: d.exploitAvailable }),
    ...(d.fixAvailable === undefined ? {} : { fixAvailable: d.fixAvailable }),
    packageManagers,
    packages,
    resourceType: resource.type,
    resourceId: resource.id,
    ...(image === undefined ? {} : { image }),
  };
};

/**
 * The EventBridge envelope, field for field as Powertools' `EventBridgeSchema`
 * (@aws-lambda-powertools/parser/schemas/eventbridge). Declared here because that module imports
 * `{ z }` from zod, which makes the bundler keep all of zod (445 KB of the triage bundle's 1,254 KB,
 * every locale included); with `import * as z` only what is used stays (97 KB).
 */
const EventBridgeSchema = z.object({
  version: plainText(LIMITS.token),
  id: plainText(LIMITS.token),
  source: z.string(),
  account: accountIdSchema,
  time: z.iso.datetime(),
  region: regionSchema,
  resources: z.array(plainText(LIMITS.text)).max(LIMITS.resources),
  'detail-type': z.string(),
  detail: z.unknown(),
  'replay-name': plainText(LIMITS.token).optional(),
});

export const FINDING_DETAIL_TYPE = 'Inspector2 Finding';
export const SCAN_DETAIL_TYPE = 'Inspector2 Scan';
export const INSPECTOR_SOURCE = 'aws.inspector2';

/** The whole `Inspector2 Finding` EventBridge event; its output is the normalised `Finding`. */
export const inspectorFindingEventSchema = EventBridgeSchema.extend({
  source: z.literal(INSPECTOR_SOURCE),
  'detail-type': z.literal(FINDING_DETAIL_TYPE),
  detail: findingDetailSchema.superRefine(checkFinding),
}).transform(toFinding);

// ---------------------------------------------------------------------------------------------------
// Inspector2 Scan
// ---------------------------------------------------------------------------------------------------

const REPOSITORY_ARN = /^arn:(aws[a-z-]*):ecr:([a-z0-9-]+):(\d{12}):repository\/(.+)$/;

const scanDetailSchema = z.object({
  'scan-status': tokenSchema,
  // Documented as a repository ARN; a bare repository name is accepted too (registry = event account).
  'repository-name': plainText(LIMITS.text).pipe(z.string().min(1)),
  'image-digest': imageDigestSchema,
  'image-tags': z.array(imageTagSchema).max(LIMITS.imageTags).default([]),
  // Inspector lists only some levels (CRITICAL, HIGH, MEDIUM, TOTAL in the documented example).
  'finding-severity-counts': z
    .object({
      CRITICAL: z.number().int().min(0).optional(),
      HIGH: z.number().int().min(0).optional(),
      MEDIUM: z.number().int().min(0).optional(),
      LOW: z.number().int().min(0).optional(),
      INFORMATIONAL: z.number().int().min(0).optional(),
      UNTRIAGED: z.number().int().min(0).optional(),
      TOTAL: z.number().int().min(0).optional(),
    })
    .default({}),
});

export interface ScanEvent {
  /** E.g. "INITIAL_SCAN_COMPLETE", "SCAN_ELIGIBILITY_EXPIRED". */
  readonly scanStatus: string;
  readonly account: string;
  readonly region: string;
  /** ISO-8601 time of the event. */
  readonly time: string;
  /** The repository ARN as Inspector reported it (or the bare name, if it sent one). */
  readonly repositoryArn?: string;
  readonly repository: string;
  readonly registry: string;
  readonly repositoryUri: string;
  readonly imageDigest: string;
  readonly imageTags: readonly string[];
  /** Counts per severity, only for the levels Inspector reported, plus TOTAL when reported. */
  readonly severityCounts: Readonly<Partial<Record<Severity | 'TOTAL', number>>>;
}

/** The whole `Inspector2 Scan` EventBridge event; its output is the normalised `ScanEvent`. */
export const inspectorScanEventSchema = EventBridgeSchema.extend({
  source: z.literal(INSPECTOR_SOURCE),
  'detail-type': z.literal(SCAN_DETAIL_TYPE),
  detail: scanDetailSchema,
}).transform((event, ctx): ScanEvent => {
  const d = event.detail;
  const arn = REPOSITORY_ARN.exec(d['repository-name']);
  const region = arn ? (arn[2] as string) : event.region;
  const registry = arn ? (arn[3] as string) : event.account;
  const repository = arn ? (arn[4] as string) : d['repository-name'];
  // The parts of the ARN reach the rescan's repository URI: held to the same grammar as a finding's.
  for (const [schema, value] of [
    [repositoryNameSchema, repository],
    [regionSchema, region],
  ] as const) {
    const checked = schema.safeParse(value);
    if (!checked.success) {
      for (const issue of checked.error.issues) {
        ctx.issues.push({
          code: 'custom',
          message: describeIssue(issue),
          path: ['detail', 'repository-name'],
          input: value,
        });
      }
    }
  }
  const counts: Partial<Record<Severity | 'TOTAL', number>> = {};
  for (const [level, count] of Object.entries(d['finding-severity-counts'])) {
    if (count !== undefined) counts[level as Severity | 'TOTAL'] = count;
  }
  return {
    scanStatus: d['scan-status'],
    account: event.account,
    region,
    time: new Date(event.time).toISOString(),
    ...(arn ? { repositoryArn: d['repository-name'] } : {}),
    repository,
    registry,
    repositoryUri: ecrRepositoryUri(registry, region, repository),
    imageDigest: d['image-digest'],
    imageTags: d['image-tags'],
    severityCounts: counts,
  };
});

// ---------------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------------

export type ParsedEvent =
  | { readonly kind: 'finding'; readonly finding: Finding }
  | { readonly kind: 'scan'; readonly scan: ScanEvent };

const describeValue = (v: unknown): string => (typeof v === 'string' ? quote(v) : show(v));

/** Issues shown in a rejection reason: a hostile event can fail thousands of checks at once. */
const MAX_ISSUES_SHOWN = 10;

const someIssues = (issues: readonly Issue[]): string =>
  issues.length <= MAX_ISSUES_SHOWN
    ? formatIssues(issues)
    : `${formatIssues(issues.slice(0, MAX_ISSUES_SHOWN))}; and ${issues.length - MAX_ISSUES_SHOWN} more issues`;

/**
 * Parse one EventBridge event (already JSON-decoded) into a finding or a scan.
 * @throws InvalidEventError naming every offending field path, or saying the event is not one of
 * Inspector's (another source or detail-type on the same bus or queue).
 */
export const parseEvent = (raw: unknown): ParsedEvent => {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidEventError(`event is not a JSON object (received ${show(raw)})`);
  }
  const source = (raw as Record<string, unknown>).source;
  const detailType = (raw as Record<string, unknown>)['detail-type'];
  if (
    source !== INSPECTOR_SOURCE ||
    (detailType !== FINDING_DETAIL_TYPE && detailType !== SCAN_DETAIL_TYPE)
  ) {
    throw new InvalidEventError(
      `not an Amazon Inspector finding or scan event: source ${describeValue(source)}, detail-type ${describeValue(detailType)} ` +
        `(expected source "${INSPECTOR_SOURCE}" with detail-type "${FINDING_DETAIL_TYPE}" or "${SCAN_DETAIL_TYPE}")`,
    );
  }
  if (detailType === FINDING_DETAIL_TYPE) {
    const result = inspectorFindingEventSchema.safeParse(raw, { reportInput: true });
    if (!result.success) {
      throw new InvalidEventError(
        `invalid ${FINDING_DETAIL_TYPE} event: ${someIssues(result.error.issues)}`,
        {
          cause: result.error,
        },
      );
    }
    return { kind: 'finding', finding: result.data };
  }
  const result = inspectorScanEventSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw new InvalidEventError(`invalid ${SCAN_DETAIL_TYPE} event: ${someIssues(result.error.issues)}`, {
      cause: result.error,
    });
  }
  return { kind: 'scan', scan: result.data };
};

/**
 * Parse an SQS record whose body is the EventBridge event as JSON (an EventBridge rule targeting
 * the intake queue delivers exactly that).
 * @throws InvalidEventError when the record has no body, the body is not JSON, or the event is invalid.
 */
export const parseSqsRecord = (record: unknown): ParsedEvent => {
  const body =
    typeof record === 'object' && record !== null ? (record as { body?: unknown }).body : undefined;
  if (typeof body !== 'string') {
    throw new InvalidEventError(`record.body: expected string, received ${show(body)}`);
  }
  let event: unknown;
  try {
    event = JSON.parse(body);
  } catch (error) {
    throw new InvalidEventError(`body is not JSON: ${printable((error as Error).message)}`, { cause: error });
  }
  return parseEvent(event);
};
