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

/**
 * A request that must not wait: remediate now (no approval, no maintenance window: the CRITICAL
 * known-exploit override) with a CRITICAL image.
 */
export const isUrgent = (request: RemediationRequest): boolean =>
  request.decision.action === 'remediate' &&
  request.decision.notBefore === undefined &&
  request.images.some((i) => i.severity === 'CRITICAL');

/** Urgent requests first (each group keeps its order): the next run is built around them. */
export const urgentFirst = (requests: readonly RemediationRequest[]): RemediationRequest[] => [
  ...requests.filter(isUrgent),
  ...requests.filter((r) => !isUrgent(r)),
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
