import { takeGatheredFindings } from '../../../lambdas/workflow/lock';
import { image, remediationRequest } from '../../support/workflow-harness';

describe('takeGatheredFindings', () => {
  it('seals the lock and continues with the merged images, keeping the rest of the execution state', async () => {
    // Prepare: the lock holds a request that gathered a second image.
    const state = { ...remediationRequest(), lock: { status: 'acquired', reason: 'held' } };
    const extra = image({ imageDigest: `sha256:${'e'.repeat(64)}`, cves: ['CVE-2024-7777'] });
    const sealed: string[] = [];
    const ledger = {
      seal: async (serviceKey: string, executionName: string) => {
        sealed.push(`${serviceKey} ${executionName}`);
        return {
          ...state,
          images: [...state.images, extra],
          findingsCount: 7,
          requestedAt: '2024-09-04T16:00:00Z',
        };
      },
    };

    // Act
    const out = await takeGatheredFindings(ledger, {
      step: 'take-findings',
      serviceKey: state.service.key,
      executionName: state.executionName,
      state,
    });

    // Assess
    expect(sealed).toEqual([`${state.service.key} ${state.executionName}`]);
    expect(out.images).toEqual([...state.images, extra]);
    expect(out.findingsCount).toBe(7);
    expect(out.requestedAt).toBe('2024-09-04T16:00:00Z');
    expect(out.lock).toEqual(state.lock);
    expect(out.executionName).toBe(state.executionName);
  });
});
