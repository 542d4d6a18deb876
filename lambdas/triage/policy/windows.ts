/**
 * Maintenance windows: weekly recurring local-time slots, e.g. every SAT and SUN from 02:00 for four
 * hours in Europe/Berlin. Local times are converted to instants with Intl.DateTimeFormat (no
 * time-zone database of our own), so daylight-saving changes follow the runtime's ICU data:
 * - a start time that does not exist on a spring-forward day (02:30 in Berlin on the last Sunday of
 *   March) starts the window that much later (03:30 local), as Temporal's "compatible" mode does;
 * - a start time that occurs twice on a fall-back day starts at its first occurrence;
 * - durations are elapsed minutes, so a 4-hour window is 4 real hours even across a DST change.
 */

export const WEEKDAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** A maintenance window as written in a policy document. */
export interface MaintenanceWindow {
  readonly name: string;
  readonly schedule: {
    /** Days on which the window starts (in its time zone). */
    readonly days: readonly Weekday[];
    /** Local start time, "HH:MM" on a 24-hour clock. */
    readonly start: string;
  };
  /** IANA time zone name, e.g. "Europe/Berlin". */
  readonly timeZone: string;
  readonly durationMinutes: number;
}

export interface WindowOccurrence {
  readonly name: string;
  readonly start: Date;
  readonly end: Date;
}

export interface WindowState {
  /** True when `now` is inside an occurrence of any window. */
  readonly inside: boolean;
  /** The occurrence `now` is inside of (the one that started first, if several overlap). */
  readonly current?: WindowOccurrence;
  /** Start of the earliest occurrence after `now`; absent only when there are no windows. */
  readonly nextStart?: Date;
  /** That next occurrence. */
  readonly next?: WindowOccurrence;
}

/** A window in the form the engine computes with: parsed once per policy. */
export interface CompiledWindow {
  readonly name: string;
  readonly timeZone: string;
  /** Bit i set when the window starts on weekday i (0 = Sunday, as Date.getUTCDay). */
  readonly dayMask: number;
  readonly startMinutes: number;
  readonly durationMs: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Formatters are expensive to create and immutable: one per time zone per process. */
const formatterFor = (timeZone: string): Intl.DateTimeFormat => {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
};

/** True when the runtime knows the IANA time zone. */
export const isTimeZone = (timeZone: string): boolean => {
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
};

/** The wall-clock time in `timeZone` at instant `ms`, expressed as if it were a UTC instant. */
const wallClock = (timeZone: string, ms: number): number => {
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  let second = 0;
  for (const part of formatterFor(timeZone).formatToParts(ms)) {
    switch (part.type) {
      case 'year':
        year = Number(part.value);
        break;
      case 'month':
        month = Number(part.value);
        break;
      case 'day':
        day = Number(part.value);
        break;
      case 'hour':
        // Some ICU versions write midnight as "24" even with h23.
        hour = Number(part.value) % 24;
        break;
      case 'minute':
        minute = Number(part.value);
        break;
      case 'second':
        second = Number(part.value);
        break;
      default:
    }
  }
  return Date.UTC(year, month - 1, day, hour, minute, second);
};

/** Offset of `timeZone` from UTC at instant `ms`, in milliseconds (positive east of Greenwich). */
const offsetAt = (timeZone: string, ms: number): number => {
  const whole = Math.floor(ms / 1000) * 1000;
  return wallClock(timeZone, whole) - whole;
};

/** The instant at which the wall clock in `timeZone` shows `local` (a wall time encoded as UTC). */
export const localToInstant = (timeZone: string, local: number): number => {
  // The offsets a day either side bracket any transition near `local` (zones change at most once
  // a day); each candidate is right if the zone really has that offset at that instant.
  const before = offsetAt(timeZone, local - DAY);
  const after = offsetAt(timeZone, local + DAY);
  const early = local - before;
  const late = local - after;
  const earlyOk = offsetAt(timeZone, early) === before;
  const lateOk = offsetAt(timeZone, late) === after;
  if (earlyOk && lateOk) return Math.min(early, late); // a repeated hour: its first occurrence
  if (earlyOk) return early;
  if (lateOk) return late;
  return early; // a skipped hour: pushed forward by the length of the gap
};

const START = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Parse "HH:MM" into minutes after midnight, or undefined when malformed. */
export const parseStart = (start: string): number | undefined => {
  const m = START.exec(start);
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
};

export const compileWindow = (w: MaintenanceWindow): CompiledWindow => {
  const startMinutes = parseStart(w.schedule.start);
  if (startMinutes === undefined)
    throw new RangeError(`window "${w.name}": start ${w.schedule.start} is not HH:MM`);
  let dayMask = 0;
  for (const d of w.schedule.days) dayMask |= 1 << WEEKDAYS.indexOf(d);
  return {
    name: w.name,
    timeZone: w.timeZone,
    dayMask,
    startMinutes,
    durationMs: w.durationMinutes * MINUTE,
  };
};

/** Current and next occurrence of one window around `now` (ms). */
const around = (w: CompiledWindow, now: number): { current?: WindowOccurrence; next?: WindowOccurrence } => {
  const today = Math.floor(wallClock(w.timeZone, now) / DAY);
  // Start far enough back to catch an occurrence that began on an earlier day and is still running.
  const lookBack = Math.ceil(w.durationMs / DAY) + 1;
  let current: WindowOccurrence | undefined;
  for (let day = today - lookBack; day <= today + 8; day++) {
    const weekday = (((day + 4) % 7) + 7) % 7; // 1970-01-01, day 0, was a Thursday
    if ((w.dayMask & (1 << weekday)) === 0) continue;
    const start = localToInstant(w.timeZone, day * DAY + w.startMinutes * MINUTE);
    const end = start + w.durationMs;
    if (start <= now && now < end) current ??= { name: w.name, start: new Date(start), end: new Date(end) };
    else if (start > now) {
      return {
        ...(current ? { current } : {}),
        next: { name: w.name, start: new Date(start), end: new Date(end) },
      };
    }
  }
  return current ? { current } : {};
};

/** Whether `now` is inside any of the windows, and when the next one starts. */
export const nextCompiledWindow = (windows: readonly CompiledWindow[], now: Date): WindowState => {
  const at = now.getTime();
  let current: WindowOccurrence | undefined;
  let next: WindowOccurrence | undefined;
  for (const w of windows) {
    const o = around(w, at);
    if (o.current && (!current || o.current.start < current.start)) current = o.current;
    if (o.next && (!next || o.next.start < next.start)) next = o.next;
  }
  return {
    inside: current !== undefined,
    ...(current ? { current } : {}),
    ...(next ? { nextStart: next.start, next } : {}),
  };
};

/**
 * Whether `now` is inside any of the windows, and when the next one starts.
 * @throws RangeError for a malformed start time or an unknown time zone (parsePolicy rejects both).
 */
export const nextWindow = (windows: readonly MaintenanceWindow[], now: Date): WindowState =>
  nextCompiledWindow(windows.map(compileWindow), now);
