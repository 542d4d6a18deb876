/**
 * Durations and instants as scenarios write them: "+5m", "90s", "1h30m", "250ms", a number of
 * milliseconds, or (for instants) an ISO-8601 timestamp.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^\+?((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Milliseconds of a duration string, or undefined when it is not one. */
export const parseDuration = (text: string): number | undefined => {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  let total = 0;
  for (const [, amount, unit] of (match[1] as string).matchAll(PART)) {
    total += Number(amount) * (UNIT_MS[unit as string] as number);
  }
  return Math.round(total);
};

/** A validated scenario duration (a duration string or milliseconds) in milliseconds. */
export const durationMs = (value: number | string): number =>
  typeof value === 'number' ? value : (parseDuration(value) ?? Number.NaN);

export const isIsoInstant = (text: string): boolean =>
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text) &&
  !Number.isNaN(Date.parse(text));

/**
 * An instant relative to `origin`: a duration is an offset from it, an ISO timestamp is absolute.
 * Returns milliseconds since the epoch.
 */
export const resolveAt = (at: number | string, origin: number): number => {
  if (typeof at === 'number') return origin + at;
  const offset = parseDuration(at);
  if (offset !== undefined) return origin + offset;
  return Date.parse(at);
};

/** "T+01:02:03" (or "T+02:03" under an hour) from scenario start: how the console-like history reads. */
export const formatOffset = (ms: number): string => {
  const sign = ms < 0 ? '-' : '+';
  const total = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `T${sign}${pad(h)}:${pad(m)}:${pad(s)}` : `T${sign}${pad(m)}:${pad(s)}`;
};

/** "1h02m", "4m05s", "12.3s", "0ms": a duration for people. */
export const formatDuration = (ms: number): string => {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  // Floored like formatOffset, so that T+ offsets and durations add up on screen.
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  return `${m}m${String(s).padStart(2, '0')}s`;
};
