/**
 * The report as one self-contained HTML page: inline CSS and inline SVG charts, no script, no
 * external resource (it opens from a file, offline, and can be attached to a ticket). Pure.
 */
import type { Outcome } from '../lambdas/shared/contracts';
import {
  DEFINITIONS,
  type Figure,
  type Group,
  METRIC_KEYS,
  ORCHESTRATION_ESTIMATE,
  PRICES,
  type Report,
} from './metrics';
import { duration, formatFigure } from './render-terminal';

const esc = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );

const OUTCOME_COLOURS: Readonly<Record<Outcome, string>> = {
  Patched: '#2e7d32',
  RolledBack: '#c62828',
  Failed: '#6a1b9a',
  BuildFailed: '#ef6c00',
  PatchIneffective: '#f9a825',
  RescanTimedOut: '#8d6e63',
  Deferred: '#0277bd',
  ApprovalExpired: '#78909c',
  Rejected: '#455a64',
  Superseded: '#b0bec5',
  AlreadyFixed: '#81c784',
};

const noChart = (figure: Figure | undefined, fallback: string): string =>
  `<p class="none">${esc(figure && figure.status !== 'ok' ? formatFigure(figure) : fallback)}</p>`;

/** Time to remediate per severity: each Patched run a dot on a shared axis, the median a bar. */
const remediateChart = (groups: readonly Group[]): string => {
  const rows = groups.flatMap((g) => {
    const f = g.metrics.timeToRemediate;
    return f.status === 'ok' && f.distribution ? [{ key: g.key, d: f.distribution }] : [];
  });
  if (rows.length === 0)
    return noChart(
      groups.map((g) => g.metrics.timeToRemediate).find((f) => f.status !== 'ok'),
      'no Patched remediation in the period',
    );
  const max = Math.max(...rows.map((r) => r.d.max), 1);
  const left = 130;
  const width = 560;
  const row = 34;
  const height = rows.length * row + 30;
  const x = (s: number) => left + (s / max) * (width - left - 20);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((t) => t * max);
  return `<svg data-chart="time-to-remediate" role="img" aria-label="Time to remediate per severity" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
${ticks
  .map(
    (t) =>
      `<line x1="${x(t)}" y1="0" x2="${x(t)}" y2="${height - 20}" stroke="#ddd"/><text x="${x(t)}" y="${height - 5}" font-size="10" text-anchor="middle">${esc(duration(t))}</text>`,
  )
  .join('\n')}
${rows
  .map((r, i) => {
    const y = i * row + 18;
    return [
      `<text x="${left - 8}" y="${y + 4}" font-size="12" text-anchor="end">${esc(r.key)} (n=${r.d.count})</text>`,
      ...r.d.samples.map(
        (s) =>
          `<circle cx="${x(s)}" cy="${y}" r="4" fill="#1565c0" fill-opacity="0.6"><title>${esc(duration(s))}</title></circle>`,
      ),
      `<rect x="${x(r.d.median) - 1.5}" y="${y - 10}" width="3" height="20" fill="#000"><title>median ${esc(duration(r.d.median))}</title></rect>`,
    ].join('');
  })
  .join('\n')}
</svg>`;
};

/** Every day of the period (a day without a remediation is an empty bar), up to a year of them. */
const everyDay = (report: Report): Report['outcomesByDay'] => {
  const from = Date.parse(report.period.since.slice(0, 10));
  const to = Date.parse(report.period.until.slice(0, 10));
  if (!(to >= from) || (to - from) / 86_400_000 > 366) return report.outcomesByDay;
  const counts = new Map(report.outcomesByDay.map((d) => [d.day, d.outcomes]));
  const days: Array<Report['outcomesByDay'][number]> = [];
  for (let t = from; t <= to; t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    days.push({ day, outcomes: counts.get(day) ?? {} });
  }
  return days;
};

/** Outcomes over time: remediations finished per day, stacked by outcome. */
const outcomesChart = (report: Report): string => {
  if (report.outcomesByDay.length === 0) return noChart(undefined, 'no remediation in the period');
  const days = everyDay(report);
  const max = Math.max(...days.map((d) => Object.values(d.outcomes).reduce((a, b) => a + (b ?? 0), 0)), 1);
  const barWidth = Math.max(8, Math.min(40, Math.floor(520 / days.length) - 4));
  const width = Math.max(300, days.length * (barWidth + 4) + 60);
  const plot = 160;
  const height = plot + 40;
  const used = new Set<Outcome>();
  const bars = days
    .map((d, i) => {
      let y = plot + 10;
      const x = 40 + i * (barWidth + 4);
      const stack = (Object.entries(d.outcomes) as Array<[Outcome, number]>).map(([o, n]) => {
        used.add(o);
        const h = (n / max) * plot;
        y -= h;
        return `<rect x="${x}" y="${y}" width="${barWidth}" height="${h}" fill="${OUTCOME_COLOURS[o]}"><title>${esc(`${d.day}: ${n} ${o}`)}</title></rect>`;
      });
      const label =
        days.length <= 14 || i % Math.ceil(days.length / 14) === 0
          ? `<text x="${x + barWidth / 2}" y="${plot + 24}" font-size="9" text-anchor="middle">${esc(d.day.slice(5))}</text>`
          : '';
      return stack.join('') + label;
    })
    .join('\n');
  const legend = [...used]
    .map(
      (o) =>
        `<span class="key"><span class="swatch" style="background:${OUTCOME_COLOURS[o]}"></span>${esc(o)}</span>`,
    )
    .join(' ');
  return `<svg data-chart="outcomes-over-time" role="img" aria-label="Outcomes over time" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
<line x1="36" y1="${plot + 10}" x2="${width}" y2="${plot + 10}" stroke="#999"/>
<text x="30" y="14" font-size="10" text-anchor="end">${max}</text><text x="30" y="${plot + 10}" font-size="10" text-anchor="end">0</text>
${bars}
</svg><div class="legend">${legend}</div>`;
};

/** Deadlines met: one bar, met against missed. */
const deadlinesChart = (figure: Figure): string => {
  if (figure.status !== 'ok' || !figure.of) return noChart(figure, 'no deadline in the period');
  const { numerator: met, denominator: all } = figure.of;
  const width = 520;
  const w = (met / all) * width;
  return `<svg data-chart="deadlines-met" role="img" aria-label="Deadlines met" viewBox="0 0 ${width} 40" width="${width}" height="40">
<rect x="0" y="5" width="${w}" height="24" fill="#2e7d32"><title>${met} met</title></rect>
<rect x="${w}" y="5" width="${width - w}" height="24" fill="#c62828"><title>${all - met} missed</title></rect>
</svg><p>${esc(formatFigure(figure))}</p>`;
};

const groupTable = (title: string, groups: readonly Group[]): string => {
  if (groups.length === 0) return `<h3>${esc(title)}</h3><p class="none">no remediation in the period</p>`;
  const keys = METRIC_KEYS.filter((k) => k !== 'fleetCoverage');
  return `<h3>${esc(title)}</h3><table><thead><tr><th></th>${groups
    .map((g) => `<th>${esc(g.key)} (${g.remediations})</th>`)
    .join('')}</tr></thead><tbody>${keys
    .map(
      (k) =>
        `<tr><th>${esc(DEFINITIONS[k].title)}</th>${groups
          .map((g) => `<td>${esc(formatFigure(g.metrics[k], true))}</td>`)
          .join('')}</tr>`,
    )
    .join('')}</tbody></table>`;
};

export const renderHtml = (report: Report): string => {
  const title = `Autopatch report ${report.period.since.slice(0, 10)} → ${report.period.until.slice(0, 10)}`;
  const outcomes = Object.entries(report.outcomes)
    .map(([o, n]) => `${o} ${n}`)
    .join(', ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f3f3f3}.none{color:#777;font-style:italic}
.legend{font-size:12px;margin:.3em 0 1em}.key{margin-right:1em;white-space:nowrap}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
dt{font-weight:600;margin-top:.5em}
</style></head><body>
<h1>${esc(title)}</h1>
<p>${esc(`${report.period.since} → ${report.period.until} (${report.period.days} days). ${report.remediations} remediation(s)${outcomes ? `: ${outcomes}` : ''}.`)}</p>
<h2>Metrics</h2>
<table><thead><tr><th>Metric</th><th>Value</th></tr></thead><tbody>
${METRIC_KEYS.map((k) => `<tr><th>${esc(DEFINITIONS[k].title)}</th><td>${esc(formatFigure(report.overall[k]))}</td></tr>`).join('\n')}
</tbody></table>
<h2>Time to remediate per severity</h2>
${remediateChart(report.bySeverity)}
<h2>Outcomes over time</h2>
${outcomesChart(report)}
<h2>Deadlines met</h2>
${deadlinesChart(report.deadlines)}
<h2>Breakdown</h2>
${groupTable('Per severity', report.bySeverity)}
${groupTable('Per account', report.byAccount)}
${groupTable('Per service', report.byService)}
<h2>Definitions</h2>
<dl>
${METRIC_KEYS.map((k) => `<dt>${esc(DEFINITIONS[k].title)}</dt><dd>${esc(DEFINITIONS[k].definition)}</dd>`).join('\n')}
<dt>Prices</dt><dd>${esc(`List prices (${PRICES.source}): CodeBuild $${PRICES.codeBuildPerMinute} per build minute (general1.medium, billed per started minute), Step Functions $${PRICES.stateTransition} per state transition, Lambda $${PRICES.lambdaPerInvocation.toFixed(7)} per invocation (1 s at 256 MB); ${ORCHESTRATION_ESTIMATE.stateTransitions} transitions and ${ORCHESTRATION_ESTIMATE.lambdaInvocations} invocations per remediation where not recorded.`)}</dd>
<dt>Not recorded</dt><dd>${esc('A figure the ledger history cannot give says "not recorded" and names the record fields that would give it.')}</dd>
</dl>
</body></html>
`;
};
