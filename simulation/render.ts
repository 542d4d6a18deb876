/**
 * The human-readable report: each execution the way the Step Functions console's execution event
 * history reads (steps in order, when each was entered on the virtual clock, how long it took, how it
 * ended), then a summary.
 */
import type { ExecutionReport, SimulationReport, StateRecord } from './report';
import { formatDuration, formatOffset } from './time';

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const padStart = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

/** One line, at most `max` characters: causes can be long JSON. */
const oneLine = (text: string, max = 160): string => {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};

const MARK: Record<StateRecord['status'], string> = {
  succeeded: '✓',
  failed: '✗',
  caught: '↪',
  running: '…',
};

const stateLine = (s: StateRecord, i: number): string => {
  const indent = s.iteration === undefined ? '' : `  [${s.iteration}] `;
  const notes: string[] = [];
  if (s.retries > 0) {
    const why = Object.entries(s.retriedErrors ?? {})
      .map(([error, n]) => `${error} ×${n}`)
      .join(', ');
    notes.push(`retried ${why || `${s.retries}×`}`);
  }
  if (s.status === 'caught' && s.error) notes.push(`caught ${s.error}`);
  if (s.status === 'failed' && s.error) notes.push(`failed ${s.error}`);
  if (s.status === 'running') notes.push('still running');
  return [
    padStart(String(i + 1), 4),
    ' ',
    pad(formatOffset(s.offsetMs), 11),
    padStart(formatDuration(s.durationMs), 8),
    '  ',
    MARK[s.status],
    ' ',
    pad(s.type, 8),
    indent,
    s.name,
    notes.length > 0 ? `   (${notes.join('; ')})` : '',
  ].join('');
};

export const renderExecution = (e: ExecutionReport): string => {
  const lines: string[] = [];
  const span =
    e.durationMs === undefined
      ? `${formatOffset(e.startOffsetMs)} → still running`
      : `${formatOffset(e.startOffsetMs)} → ${formatOffset(e.startOffsetMs + e.durationMs)} (${formatDuration(e.durationMs)})`;
  lines.push(`Execution ${e.name}`);
  lines.push(
    `  ${[e.service ? `service ${e.service}` : undefined, e.status, e.outcome ? `outcome ${e.outcome}` : undefined, span].filter(Boolean).join(' · ')}`,
  );
  lines.push(
    `  ${padStart('#', 4)} ${pad('Entered', 11)}${padStart('Duration', 8)}     ${pad('Type', 8)}Step`,
  );
  e.states.forEach((s, i) => {
    lines.push(`  ${stateLine(s, i)}`);
  });
  if (e.error) {
    lines.push(`  Error: ${e.error}`);
    if (e.cause) lines.push(`  Cause: ${oneLine(e.cause, 400)}`);
  }
  if (e.output !== undefined) lines.push(`  Output: ${oneLine(JSON.stringify(e.output), 400)}`);
  return lines.join('\n');
};

const countBy = (values: readonly string[]): Array<[string, number]> => {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m.entries()].sort(([a], [b]) => a.localeCompare(b));
};

const joinCounts = (pairs: ReadonlyArray<[string, number]>) => pairs.map(([k, n]) => `${k} ${n}`).join(' · ');

export const renderSummary = (r: SimulationReport): string => {
  const lines: string[] = [];
  const row = (label: string, value: string) => lines.push(`  ${pad(label, 19)}${value}`);
  lines.push('Summary');
  const outcomes = countBy(r.executions.map((e) => e.outcome ?? e.status));
  row('Executions', r.executions.length === 0 ? '0' : `${r.executions.length} · ${joinCounts(outcomes)}`);
  const findingTotal = Object.values(r.findings).reduce((a, b) => a + b, 0);
  row(
    'Findings by action',
    findingTotal === 0
      ? '0'
      : `${findingTotal} · ${joinCounts(Object.entries(r.findings).sort(([a], [b]) => a.localeCompare(b)))}`,
  );
  row(
    'Intake',
    `${r.intake.sent} message(s) · ${r.intake.invocations} triage invocation(s), ${r.intake.coldStarts} cold start(s) · ${r.intake.itemFailures} item failure(s) · ${r.intake.deadLetters} dead-lettered`,
  );
  const patched = Object.entries(r.findingToPatchedMs).sort(([a], [b]) => a.localeCompare(b));
  row(
    'Finding → patched',
    patched.length === 0 ? '-' : patched.map(([s, ms]) => `${s} ${formatDuration(ms)}`).join(' · '),
  );
  row(
    'Notifications',
    `${r.notifications.length} SNS message(s) · ${r.outcomeEvents.length} outcome event(s)`,
  );
  if (r.world) {
    const services = Object.entries(r.world.services).sort(([a], [b]) => a.localeCompare(b));
    row(
      'Services',
      services
        .map(
          ([key, s]) =>
            `${key} revision ${s.revision}${s.status === 'ACTIVE' ? '' : ` ${s.status}`} (${s.digests.length === 0 ? 'no tasks' : s.patched ? 'patched' : s.digests.join(',') === s.originalDigests.join(',') ? 'original image' : 'another image'})`,
        )
        .join(' · ') || '-',
    );
    row(
      'Ledger, builds',
      `${r.world.locks ?? '?'} lock(s) left · ${r.world.builds} build(s) · ${r.world.faultsInjected} failed call(s) injected${r.world.deliveriesTampered > 0 ? ` · ${r.world.deliveriesTampered} event deliveries lost or late` : ''}`,
    );
  }
  const byService = countBy(
    Object.entries(r.apiCalls).flatMap(([k, n]) =>
      Array.from({ length: n }, () => k.split(':')[0] as string),
    ),
  );
  const total = Object.values(r.apiCalls).reduce((a, b) => a + b, 0);
  row('API calls', `${total} · ${joinCounts(byService)}`);
  row(
    'Clock',
    `${formatDuration(r.virtual.durationMs)} of virtual time (T+00:00 → ${formatOffset(r.virtual.durationMs)}) in ${r.virtual.steps} steps, stopped: ${r.virtual.stoppedBy} · wall ${formatDuration(r.wallMs)}`,
  );
  if (r.errors.length > 0) {
    lines.push(`  Errors in the simulated world (${r.errors.length}):`);
    for (const e of r.errors.slice(0, 20)) lines.push(`    - ${oneLine(e, 300)}`);
  }
  if (r.mismatches.length > 0) {
    lines.push(`  Expectations: ${r.mismatches.length} not met`);
    for (const m of r.mismatches) lines.push(`    ✗ ${m}`);
  }
  return lines.join('\n');
};

export const renderTimeline = (r: SimulationReport): string =>
  [
    'Timeline',
    ...r.timeline.map((t) => `  ${pad(formatOffset(t.offsetMs), 11)} ${pad(t.source, 11)} ${t.text}`),
  ].join('\n');

export const renderReport = (r: SimulationReport, options: { timeline?: boolean } = {}): string => {
  const header = [
    `▶ ${r.scenario.name} (${r.scenario.source})`,
    `  ${r.scenario.description}`,
    `  Starts ${r.scenario.startTime}; times are T+ from then, on the virtual clock.`,
  ];
  const parts = [header.join('\n'), ...r.executions.map(renderExecution)];
  if (r.executions.length === 0) parts.push('No remediation executions were started.');
  if (options.timeline) parts.push(renderTimeline(r));
  parts.push(renderSummary(r));
  return `${parts.join('\n\n')}\n`;
};

/** One line per scenario, for --all. */
export const renderOverview = (reports: readonly SimulationReport[]): string => {
  const lines = [
    'Scenarios',
    `  ${pad('scenario', 28)}${pad('result', 10)}${pad('executions', 12)}${pad('virtual', 10)}${pad('wall', 8)}outcomes`,
  ];
  for (const r of reports) {
    const ok = r.mismatches.length === 0 && r.errors.length === 0;
    const outcomes = joinCounts(countBy(r.executions.map((e) => e.outcome ?? e.status)));
    lines.push(
      `  ${pad(r.scenario.name, 28)}${pad(ok ? 'ok' : 'FAILED', 10)}${pad(String(r.executions.length), 12)}${pad(formatDuration(r.virtual.durationMs), 10)}${pad(formatDuration(r.wallMs), 8)}${outcomes || '-'}`,
    );
  }
  return `${lines.join('\n')}\n`;
};
