import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { SCENARIO_DIR } from '../../simulation/cli';
import type { SimulationReport } from '../../simulation/report';
import { runScenario } from '../../simulation/runner';
import { loadScenario, parseScenario } from '../../simulation/scenario';

/**
 * The rescan is events first, the sweep as the safety net (issue #15): measured in virtual time, from
 * Inspector's scan of the rebuilt digest to the verdict that resumes the workflow.
 */
const VERIFY = 'Verify the patched image by rescan';

/** When Inspector scanned the rebuilt image, and when the wait for it was answered (ms from the start). */
const rescanTimes = (report: SimulationReport) => {
  const scans = report.timeline.filter((t) => t.source === 'inspector' && t.text.startsWith('scanned '));
  const [execution] = report.executions;
  const verify = execution?.states.find((s) => s.name === VERIFY);
  if (scans.length !== 1 || !verify || verify.durationMs === undefined)
    throw new Error(`expected one scan and a finished "${VERIFY}", got ${scans.length} scans`);
  return {
    pushedAt: verify.offsetMs,
    scannedAt: (scans[0] as { offsetMs: number }).offsetMs,
    verdictAt: verify.offsetMs + verify.durationMs,
    retries: verify.retries,
  };
};

describe('rescan verdicts in simulation virtual time', () => {
  it('the Inspector2 Scan event answers the wait within EventBridge delivery of the scan (no poll)', async () => {
    const happy = JSON.parse(readFileSync(path.join(SCENARIO_DIR, 'happy-path.json'), 'utf8')) as object;
    // A scan between two sweeps, so only the event can answer this fast.
    const scenario = parseScenario({ ...happy, name: 'rescan-event', scans: { delayMinutes: 4.5 } });

    const report = await runScenario(scenario);

    expect({ mismatches: report.mismatches, errors: report.errors }).toEqual({ mismatches: [], errors: [] });
    const t = rescanTimes(report);
    expect(t.scannedAt - t.pushedAt).toBe(270_000);
    // EventBridge delivers in about a second (the model's latency); the poll took up to 300 s more.
    expect(t.verdictAt - t.scannedAt).toBeLessThanOrEqual(2_000);
    expect(t.retries).toBe(0);
    expect(report.timeline.some((e) => e.text.startsWith('Inspector2 Scan → deploymentEvents'))).toBe(true);
  });

  it('lost-scan-event: the sweep answers within one sweep of the scan, and the run ends Patched', async () => {
    const report = await runScenario(loadScenario(path.join(SCENARIO_DIR, 'safety', 'lost-scan-event.json')));

    expect({ mismatches: report.mismatches, errors: report.errors }).toEqual({ mismatches: [], errors: [] });
    expect(report.world?.deliveriesTampered).toBe(1);
    const t = rescanTimes(report);
    // Answered by the sweep (not an event: it was lost), at most one sweep (a minute) after the scan.
    expect(t.verdictAt - t.scannedAt).toBeGreaterThan(2_000);
    expect(t.verdictAt - t.scannedAt).toBeLessThanOrEqual(60_000);
    expect(t.retries).toBe(0);
  });
});
