/**
 * Durations as people write them in a policy: a whole number and a unit, "30m", "12h", "2d", "1w".
 * Minutes, hours, days (24 h) and weeks (7 days) only: months and years have no fixed length, and a
 * deadline should mean the same span whenever it is read.
 */
const UNITS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^([1-9]\d{0,5})(m|h|d|w)$/;

/** The longest deadline a policy may set: a year. */
export const MAX_DURATION_MS = 366 * UNITS.d;

/** Milliseconds in a duration such as "2d", or undefined when it does not parse or exceeds a year. */
export const durationMs = (text: string): number | undefined => {
  const m = DURATION.exec(text);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
  return ms <= MAX_DURATION_MS ? ms : undefined;
};
