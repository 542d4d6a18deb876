import type { RemediationRequest } from './contracts';
import { URGENT_DEADLINE_MS } from './ledger/requests';

/**
 * What makes a queued request urgent, in words for the pre-emption messages (triage, the sweep, the
 * workflow's window and approval waits). Dependency-free: the workflow's lock Lambda reads it
 * without taking in any AWS client.
 */

/**
 * Why a request is urgent (what `isUrgent` in ledger/requests.ts tests, said for people): in CISA's
 * KEV catalog, a CRITICAL finding, a deadline within 48 hours. Empty when it is not urgent. Pure.
 */
export const urgencyReasons = (request: RemediationRequest, now: Date): string[] => {
  const d = request.decision;
  if (d.action !== 'remediate' || d.notBefore !== undefined) return [];
  const reasons: string[] = [];
  if (d.knownExploited === true) reasons.push('known exploited, in CISA KEV');
  if (request.images.some((i) => i.severity === 'CRITICAL')) reasons.push('CRITICAL');
  const due = d.deadline === undefined ? Number.NaN : Date.parse(d.deadline);
  if (!Number.isNaN(due) && due - now.getTime() <= URGENT_DEADLINE_MS)
    reasons.push(
      due <= now.getTime()
        ? `deadline ${d.deadline} passed`
        : `deadline ${d.deadline}, ${Math.max(1, Math.round((due - now.getTime()) / 3_600_000))} h away`,
    );
  return reasons;
};

/**
 * "An urgent finding (<why>)" for the requests that pre-empt a run: the reasons of every urgent one,
 * each said once. "An urgent finding" alone when none of them says why (e.g. it was read before its
 * deadline came close). Pure.
 */
export const urgentFindingText = (requests: readonly RemediationRequest[], now: Date): string => {
  const reasons = [...new Set(requests.flatMap((r) => urgencyReasons(r, now)))];
  return reasons.length > 0 ? `An urgent finding (${reasons.join('; ')})` : 'An urgent finding';
};
