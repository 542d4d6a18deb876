/** The report as text tables for a terminal. Pure. */
import {
  DEFINITIONS,
  type Figure,
  type Group,
  METRIC_KEYS,
  ORCHESTRATION_ESTIMATE,
  PRICES,
  type Report,
} from './metrics';

export const duration = (seconds: number): string => {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
};

const fields = (needs: readonly string[]): string => needs.map((f) => `\`${f}\``).join(', ');

/** A figure in one line; `short` leaves out the details (for the per-group tables). */
export const formatFigure = (figure: Figure, short = false): string => {
  switch (figure.status) {
    case 'not-recorded':
      return short
        ? 'not recorded'
        : `not recorded (needs ${fields(figure.needs)})${figure.note ? `; ${figure.note}` : ''}`;
    case 'not-measured':
      return short ? 'not measured' : `not measured (${figure.why})`;
    case 'none':
      return short ? '—' : `— (${figure.why})`;
    case 'ok': {
      let main: string;
      switch (figure.unit) {
        case 'ratio':
          main = `${(figure.value * 100).toFixed(1)} %${figure.of ? ` (${figure.of.numerator}/${figure.of.denominator})` : ''}`;
          break;
        case 'seconds': {
          const d = figure.distribution;
          main =
            short || !d
              ? duration(figure.value)
              : `${duration(d.median)} median, p90 ${duration(d.p90)}, max ${duration(d.max)} (n=${d.count})`;
          break;
        }
        case 'per-30-days':
          main = short ? figure.value.toFixed(2) : `${figure.value.toFixed(2)} per service per 30 days`;
          break;
        case 'usd':
          main = `$${figure.value.toFixed(4)}`;
          break;
        default:
          main = String(figure.value);
      }
      return !short && figure.note ? `${main}; ${figure.note}` : main;
    }
  }
};

const table = (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
};

const groupTable = (title: string, groups: readonly Group[]): string => {
  if (groups.length === 0) return `${title}: no remediation in the period`;
  const keys = METRIC_KEYS.filter((k) => k !== 'fleetCoverage');
  return `${title}\n${table(
    ['', ...groups.map((g) => `${g.key} (${g.remediations})`)],
    keys.map((k) => [DEFINITIONS[k].title, ...groups.map((g) => formatFigure(g.metrics[k], true))]),
  )}`;
};

export const renderTerminal = (report: Report): string => {
  const outcomes = Object.entries(report.outcomes)
    .map(([o, n]) => `${o} ${n}`)
    .join(', ');
  const notRecorded = METRIC_KEYS.flatMap((k) => {
    const f = report.overall[k];
    return f.status === 'not-recorded' ? [`  ${DEFINITIONS[k].title}: needs ${fields(f.needs)}`] : [];
  });
  return [
    `Autopatch report, ${report.period.since} → ${report.period.until} (${report.period.days} days)`,
    `${report.remediations} remediation(s)${outcomes ? `: ${outcomes}` : ''}`,
    '',
    table(
      ['Metric', 'Value'],
      METRIC_KEYS.map((k) => [DEFINITIONS[k].title, formatFigure(report.overall[k])]),
    ),
    `Deadlines met: ${formatFigure(report.deadlines)}`,
    '',
    groupTable('Per severity (remediations)', report.bySeverity),
    '',
    groupTable('Per account (remediations)', report.byAccount),
    '',
    groupTable('Per service (remediations)', report.byService),
    '',
    'Definitions',
    ...METRIC_KEYS.map((k) => `  ${DEFINITIONS[k].title}: ${DEFINITIONS[k].definition}`),
    `  Prices (list prices, ${PRICES.source}): CodeBuild $${PRICES.codeBuildPerMinute}/build minute (general1.medium, billed per started minute), Step Functions $${PRICES.stateTransition}/state transition, Lambda $${PRICES.lambdaPerInvocation.toFixed(7)}/invocation (1 s at 256 MB); ${ORCHESTRATION_ESTIMATE.stateTransitions} transitions and ${ORCHESTRATION_ESTIMATE.lambdaInvocations} invocations per remediation where not recorded.`,
    ...(notRecorded.length > 0
      ? ['', 'Not recorded in the ledger history (the fields that would give them):', ...notRecorded]
      : []),
    '',
  ].join('\n');
};
