import type { SimulationReport } from './report';
import type { Expectations } from './scenario';
import { durationMs, formatDuration } from './time';

const list = (values: readonly string[]) => (values.length === 0 ? 'none' : values.join(', '));

/** How reality differs from a scenario's `expect`, one sentence per difference (empty: it does not). */
export const checkExpectations = (
  expect: Expectations | undefined,
  report: Pick<SimulationReport, 'executions' | 'findings' | 'intake' | 'world'> &
    Partial<Pick<SimulationReport, 'notifications'>>,
): string[] => {
  if (!expect) return [];
  const out: string[] = [];
  if (expect.executions !== undefined && report.executions.length !== expect.executions) {
    out.push(`executions: expected ${expect.executions}, got ${report.executions.length}`);
  }
  for (const [service, wanted] of Object.entries(expect.outcomes ?? {})) {
    const actual = report.executions.filter((e) => e.service === service).map((e) => e.outcome ?? e.status);
    if (Array.isArray(wanted)) {
      if (actual.join(',') !== wanted.join(',')) {
        out.push(`outcomes.${service}: expected [${list(wanted)}], got [${list(actual)}]`);
      }
    } else if (actual.at(-1) !== wanted) {
      out.push(
        `outcomes.${service}: expected ${wanted}, got ${actual.length === 0 ? 'no execution' : `${actual.at(-1)}${actual.length > 1 ? ` (last of ${list(actual)})` : ''}`}`,
      );
    }
  }
  for (const [action, count] of Object.entries(expect.findings ?? {})) {
    const actual = report.findings[action] ?? 0;
    if (actual !== count) out.push(`findings.${action}: expected ${count}, got ${actual}`);
  }
  if (expect.deadLetters !== undefined && report.intake.deadLetters !== expect.deadLetters) {
    out.push(`deadLetters: expected ${expect.deadLetters}, got ${report.intake.deadLetters}`);
  }
  const world = report.world;
  for (const [key, wanted] of Object.entries(expect.services ?? {})) {
    const actual = world?.services[key];
    if (!actual) {
      out.push(`services.${key}: the run did not report it`);
      continue;
    }
    if (wanted.revision !== undefined && actual.revision !== wanted.revision)
      out.push(`services.${key}.revision: expected ${wanted.revision}, got ${actual.revision}`);
    if (wanted.status !== undefined && actual.status !== wanted.status)
      out.push(`services.${key}.status: expected ${wanted.status}, got ${actual.status}`);
    if (wanted.platforms !== undefined) {
      const got = actual.platforms ?? {};
      const show = (p: Readonly<Record<string, string>>) =>
        Object.entries(p)
          .sort()
          .map(([a, v]) => `${a}=${v}`)
          .join(', ') || 'no image index';
      if (show(got) !== show(wanted.platforms))
        out.push(`services.${key}.platforms: expected ${show(wanted.platforms)}, got ${show(got)}`);
    }
    if (wanted.runs !== undefined) {
      const runs = list(actual.digests.map((d) => d.slice(0, 19)));
      const ok =
        wanted.runs === 'original'
          ? actual.digests.join(',') === actual.originalDigests.join(',')
          : wanted.runs === 'patched'
            ? actual.patched
            : wanted.runs.startsWith('sha256:')
              ? actual.digests.length > 0 && actual.digests.every((d) => d === wanted.runs)
              : (report.world?.imageRefs?.[wanted.runs] ?? []).length > 0 &&
                actual.digests.every((d) => report.world?.imageRefs?.[wanted.runs as string]?.includes(d));
      if (!ok) out.push(`services.${key}.runs: expected ${wanted.runs}, got ${runs}`);
    }
  }
  if (expect.locks !== undefined && world?.locks !== expect.locks)
    out.push(`locks: expected ${expect.locks} left in the ledger, got ${world?.locks ?? 'unknown'}`);
  if (expect.builds !== undefined && world?.builds !== expect.builds)
    out.push(`builds: expected ${expect.builds}, got ${world?.builds ?? 'unknown'}`);
  const lastOf = (service: string) => report.executions.filter((e) => e.service === service).at(-1);
  for (const [service, text] of Object.entries(expect.cause ?? {})) {
    const e = lastOf(service);
    const said = e ? (e.cause ?? (e.output === undefined ? '' : JSON.stringify(e.output))) : undefined;
    if (said === undefined) out.push(`cause.${service}: expected "${text}", got no execution`);
    else if (!said.includes(text))
      out.push(`cause.${service}: expected it to contain "${text}", got "${said.slice(0, 300)}"`);
  }
  const within = (
    label: string,
    ms: number | undefined,
    b: { atLeast?: string | number | undefined; atMost?: string | number | undefined },
  ) => {
    if (ms === undefined) {
      out.push(`${label}: expected a time, got none`);
      return;
    }
    if (b.atLeast !== undefined && ms < durationMs(b.atLeast))
      out.push(
        `${label}: expected at least ${formatDuration(durationMs(b.atLeast))}, got ${formatDuration(ms)}`,
      );
    if (b.atMost !== undefined && ms > durationMs(b.atMost))
      out.push(
        `${label}: expected at most ${formatDuration(durationMs(b.atMost))}, got ${formatDuration(ms)}`,
      );
  };
  for (const [service, b] of Object.entries(expect.duration ?? {})) {
    const e = lastOf(service);
    within(`duration.${service}`, e?.durationMs, b);
  }
  for (const [service, b] of Object.entries(expect.alarmToRollback ?? {})) {
    within(`alarmToRollback.${service}`, world?.services[service]?.alarmToRollbackMs, b);
  }
  if (expect.notifyDigests !== undefined) {
    const sent = new Map<string, number>();
    for (const n of report.notifications ?? []) {
      if (n.kind !== 'notify-digest') continue;
      const scope = n.service ?? 'account';
      sent.set(scope, (sent.get(scope) ?? 0) + 1);
    }
    for (const scope of new Set([...Object.keys(expect.notifyDigests), ...sent.keys()])) {
      const wanted = expect.notifyDigests[scope] ?? 0;
      const actual = sent.get(scope) ?? 0;
      if (actual !== wanted) out.push(`notifyDigests.${scope}: expected ${wanted}, got ${actual}`);
    }
  }
  if (expect.inFlight !== undefined) {
    const most = maxInFlight(report);
    for (const scope of ['total', 'perAccount', 'perRegion'] as const) {
      const cap = expect.inFlight[scope];
      if (cap !== undefined && most[scope].count > cap)
        out.push(
          `inFlight.${scope}: expected at most ${cap} at once, got ${most[scope].count}${most[scope].where ? ` (${most[scope].where})` : ''}`,
        );
    }
  }
  if (expect.running !== undefined) {
    const running = report.executions.filter((e) => e.status === 'RUNNING').length;
    if (running !== expect.running) out.push(`running: expected ${expect.running}, got ${running}`);
  }
  return out;
};

/**
 * The most deployments in flight at once, started after the first execution (owners' earlier ones do
 * not count): in total, in one account, in one Region. A hub service ("<cluster>/<service>") counts
 * as account and Region "hub".
 */
export const maxInFlight = (
  report: Pick<SimulationReport, 'executions' | 'world'>,
): Record<'total' | 'perAccount' | 'perRegion', { count: number; where?: string }> => {
  const from = Math.min(...report.executions.map((e) => e.startOffsetMs));
  const spans: Array<{ account: string; region: string; start: number; end: number }> = [];
  for (const [key, s] of Object.entries(report.world?.services ?? {})) {
    const place = /^(\d{12})\/([a-z0-9-]+)\//.exec(key);
    for (const d of s.deployments)
      if (d.startOffsetMs >= from)
        spans.push({
          account: place?.[1] ?? 'hub',
          region: place?.[2] ?? 'hub',
          start: d.startOffsetMs,
          end: d.endOffsetMs ?? Number.POSITIVE_INFINITY,
        });
  }
  const most = (group: (x: (typeof spans)[number]) => string) => {
    let best = { count: 0, where: '' };
    for (const x of spans) {
      const count = spans.filter(
        (y) => group(y) === group(x) && y.start <= x.start && y.end > x.start,
      ).length;
      if (count > best.count) best = { count, where: group(x) };
    }
    return best;
  };
  const total = most(() => 'all');
  return {
    total: { count: total.count },
    perAccount: most((x) => x.account),
    perRegion: most((x) => x.region),
  };
};
