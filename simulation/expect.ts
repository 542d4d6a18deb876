import type { SimulationReport } from './report';
import type { Expectations } from './scenario';

const list = (values: readonly string[]) => (values.length === 0 ? 'none' : values.join(', '));

/** How reality differs from a scenario's `expect`, one sentence per difference (empty: it does not). */
export const checkExpectations = (
  expect: Expectations | undefined,
  report: Pick<SimulationReport, 'executions' | 'findings' | 'intake'>,
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
  return out;
};
