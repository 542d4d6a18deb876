/**
 * Inspector's timestamps, in every format it and the AWS tooling around it write them, as a parser
 * and as the zod fields the event schemas use.
 */
import * as z from 'zod';
import { InvalidEventError } from '../../shared/errors';
import { quote } from './issues';

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

const num = (v: string | undefined): number => (v === undefined ? 0 : Number(v));

/**
 * Where a format's capture groups put each field (1-based group numbers). `month` is numeric unless
 * `monthName`; `meridiem` (AM/PM) is present only in 12-hour formats.
 */
interface Groups {
  readonly year: number;
  readonly month: number;
  readonly monthName?: true;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly fraction: number;
  readonly zone: number;
  readonly meridiem?: number;
}

/** ISO-8601 extended and basic write the fields in the same order. */
const ISO_GROUPS: Groups = { year: 1, month: 2, day: 3, hour: 4, minute: 5, second: 6, fraction: 7, zone: 8 };

/** Each format with the capture groups that make up its fields, in the order they are tried. */
const FORMATS: ReadonlyArray<readonly [RegExp, Groups]> = [
  [ISO_DATE, ISO_GROUPS],
  [
    JAVA_DATE,
    { year: 8, month: 1, monthName: true, day: 2, hour: 3, minute: 4, second: 5, fraction: 6, zone: 7 },
  ],
  [
    MEDIUM_DATE,
    {
      year: 3,
      month: 1,
      monthName: true,
      day: 2,
      hour: 4,
      minute: 5,
      second: 6,
      fraction: 7,
      meridiem: 8,
      zone: 9,
    },
  ],
  [
    RFC_DATE,
    { year: 3, month: 2, monthName: true, day: 1, hour: 4, minute: 5, second: 6, fraction: 7, zone: 8 },
  ],
  [ISO_BASIC, ISO_GROUPS],
];

/** The one mapper from a format's match to its fields. */
const fieldsOf = (m: RegExpExecArray, g: Groups, raw: string): Fields => ({
  year: num(m[g.year]),
  month: g.monthName ? monthNumber(m[g.month] as string, raw) : num(m[g.month]),
  day: num(m[g.day]),
  hour: to24h(num(m[g.hour]), g.meridiem === undefined ? undefined : m[g.meridiem], raw),
  minute: num(m[g.minute]),
  second: num(m[g.second]),
  fraction: m[g.fraction],
  offsetMinutes: zoneOffset(m[g.zone], raw),
});

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
  for (const [pattern, groups] of FORMATS) {
    const m = pattern.exec(text);
    if (m) return build(fieldsOf(m, groups, s), s);
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
export const isoTimestamp = timestampText.transform((s, ctx) => {
  try {
    return toIso(s);
  } catch (error) {
    ctx.issues.push({ code: 'custom', message: (error as Error).message, input: s });
    return z.NEVER;
  }
});

/** A timestamp field whose raw text matters too (`updatedAt` is half of the deduplication key). */
export const rawAndIsoTimestamp = timestampText.transform((s, ctx) => {
  try {
    return { raw: s, iso: toIso(s) };
  } catch (error) {
    ctx.issues.push({ code: 'custom', message: (error as Error).message, input: s });
    return z.NEVER;
  }
});
