/**
 * A child process of `npm run faults`: runs the cases its parent sends, one at a time, and sends each
 * result back. One process runs many cases, so the stack, the handlers and the SDK load once.
 */
import '../environment';
import { loadScenario, type Scenario } from '../scenario';
import { type FaultCase, runCase } from './matrix';

export interface WorkRequest {
  readonly scenario: string;
  /** Absent: the clean run. */
  readonly case?: FaultCase;
}

const scenarios = new Map<string, Scenario>();

process.on('message', (message: WorkRequest) => {
  void (async () => {
    let base = scenarios.get(message.scenario);
    if (!base) {
      base = loadScenario(message.scenario);
      scenarios.set(message.scenario, base);
    }
    const result = await runCase(base, message.case);
    process.send?.({ ok: true, result });
  })().catch((error: unknown) => {
    process.send?.({ ok: false, error: (error as Error).stack ?? String(error) });
  });
});
process.send?.({ ready: true });
