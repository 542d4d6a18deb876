import type { RemediationRequest } from '../../../lambdas/shared/contracts';
import { takeGatheredFindings } from '../../../lambdas/workflow/lock';
import { image, remediationRequest } from '../../support/workflow-harness';

const STARTED = '2024-09-04T16:00:00.000Z';
const at = (seconds: number) => new Date(Date.parse(STARTED) + seconds * 1000);

/** A ledger whose seal answers as told and records what it was asked. */
const fakeLedger = (
  gathered: RemediationRequest,
  answer: { sealed: boolean; mergedAt?: Date } = { sealed: true },
) => {
  const calls: Array<{ quietSince?: Date }> = [];
  return {
    calls,
    seal: async (_serviceKey: string, _executionName: string, quietSince?: Date) => {
      calls.push(quietSince ? { quietSince } : {});
      return {
        sealed: answer.sealed,
        request: gathered,
        ...(answer.mergedAt ? { mergedAt: answer.mergedAt.toISOString() } : {}),
      };
    },
  };
};

const target = { ...remediationRequest().target, gatherSeconds: 300, gatherMaxSeconds: 1800 };
const take = <S extends RemediationRequest>(ledger: ReturnType<typeof fakeLedger>, state: S, now: Date) =>
  takeGatheredFindings(
    ledger,
    {
      step: 'take-findings',
      serviceKey: state.service.key,
      executionName: state.executionName,
      startedAt: STARTED,
      state,
    },
    now,
  );

describe('takeGatheredFindings', () => {
  it('continues with the merged images, keeping the rest of the execution state', async () => {
    // Prepare: the lock holds a request that gathered a second image.
    const state = { ...remediationRequest({ target }), lock: { status: 'acquired', reason: 'held' } };
    const extra = image({ imageDigest: `sha256:${'e'.repeat(64)}`, cves: ['CVE-2024-7777'] });
    const decision = { action: 'approve' as const, reason: 'a merged finding needs approval' };
    const ledger = fakeLedger({
      ...state,
      images: [...state.images, extra],
      findingsCount: 7,
      requestedAt: STARTED,
      decision,
    });

    // Act
    const out = await take(ledger, state, at(300));

    // Assess: asked to seal only if nothing merged in the last gatherSeconds.
    expect(ledger.calls).toEqual([{ quietSince: at(0) }]);
    expect(out.gathering).toBe(false);
    expect(out.gatherWaitSeconds).toBeUndefined();
    expect(out.images).toEqual([...state.images, extra]);
    expect(out.findingsCount).toBe(7);
    expect(out.requestedAt).toBe(STARTED);
    expect(out.decision).toEqual(decision);
    expect(out.lock).toEqual(state.lock);
    expect(out.executionName).toBe(state.executionName);
  });

  it('while the burst still arrives, waits until gatherSeconds after the last merge', async () => {
    const state = remediationRequest({ target });
    const out = await take(fakeLedger(state, { sealed: false, mergedAt: at(250) }), state, at(300));
    expect(out.gathering).toBe(true);
    expect(out.gatherWaitSeconds).toBe(250);
  });

  it('never waits past gatherMaxSeconds from the start', async () => {
    const state = remediationRequest({ target });
    const out = await take(fakeLedger(state, { sealed: false, mergedAt: at(1700) }), state, at(1750));
    expect(out.gatherWaitSeconds).toBe(50);
  });

  it('seals unconditionally once gatherMaxSeconds has passed, or when the request sets no gathering', async () => {
    const withGather = remediationRequest({ target });
    const { gatherSeconds: _a, gatherMaxSeconds: _b, ...legacyTarget } = withGather.target;
    const legacy = remediationRequest({ target: legacyTarget });
    for (const [state, now] of [
      [withGather, at(1800)],
      [legacy, at(10)],
    ] as const) {
      const ledger = fakeLedger(state);
      await take(ledger, state, now);
      expect(ledger.calls).toEqual([{}]);
    }
  });
});
