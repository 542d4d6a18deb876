import { coveredFindings, type RemediationRequest } from '../contracts';
import { mergeRequests } from '../remediation';

/** Pure rules for folding the requests of one service together. */

/**
 * Largest request one execution carries, as JSON. It is the execution's input, and its state holds
 * the images about three times over by the end of the builds (the request, the build plan, the
 * patched images); Step Functions caps both at 256 KiB. Beyond this, requests queue (or stay
 * queued) for the next run instead of merging into this one.
 */
export const MAX_REQUEST_BYTES = 48 * 1024;

/** A deadline closer than this makes a request urgent. */
export const URGENT_DEADLINE_MS = 48 * 3_600_000;

/**
 * A request that must not wait: remediate now (no approval, no maintenance window: the CRITICAL
 * known-exploit override, or a window that opens after the deadline) with a CRITICAL image, a
 * vulnerability in CISA's KEV catalog, or a deadline within 48 hours (or past) as of now.
 */
export const isUrgent = (request: RemediationRequest): boolean => {
  const d = request.decision;
  if (d.action !== 'remediate' || d.notBefore !== undefined) return false;
  if (d.knownExploited === true || request.images.some((i) => i.severity === 'CRITICAL')) return true;
  return d.deadline !== undefined && Date.parse(d.deadline) - Date.now() <= URGENT_DEADLINE_MS;
};

/** Earliest deadline first; a request without one after every request with one. */
const byDeadline = (a: RemediationRequest, b: RemediationRequest): number => {
  const x = a.decision.deadline;
  const y = b.decision.deadline;
  if (x === undefined || y === undefined) return x === y ? 0 : x === undefined ? 1 : -1;
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Urgent requests first, then the rest, each group by deadline (earliest first; ties and requests
 * without one keep their order): the next run is built around the most pressing.
 */
export const urgentFirst = (requests: readonly RemediationRequest[]): RemediationRequest[] => [
  ...requests.filter(isUrgent).sort(byDeadline),
  ...requests.filter((r) => !isUrgent(r)).sort(byDeadline),
];

export const parseRequest = (json: string): RemediationRequest => JSON.parse(json) as RemediationRequest;

/** Entries of a merges/queue map, oldest request first (map order is DynamoDB's, not time's). */
export const entriesOf = (map: Readonly<Record<string, string>> | undefined): RemediationRequest[] =>
  Object.values(map ?? {})
    .map(parseRequest)
    .sort(
      (a, b) => a.requestedAt.localeCompare(b.requestedAt) || a.executionName.localeCompare(b.executionName),
    );

/**
 * Fold `more` into `base` (which keeps its identity) while the result stays within
 * MAX_REQUEST_BYTES; what does not fit is returned as `left`, in order.
 */
export const foldWithin = (
  base: RemediationRequest,
  more: readonly RemediationRequest[],
): { folded: RemediationRequest; left: RemediationRequest[] } => {
  let folded = base;
  let taken = 0;
  for (const request of more) {
    const candidate = mergeRequests(folded, request);
    if (JSON.stringify(candidate).length > MAX_REQUEST_BYTES) break;
    folded = candidate;
    taken++;
  }
  return { folded, left: more.slice(taken) };
};

/** (digest, CVE) pairs a request carries: two requests with the same pairs remediate the same thing. */
export const coverage = (request: RemediationRequest): string[] => coveredFindings(request.images);
