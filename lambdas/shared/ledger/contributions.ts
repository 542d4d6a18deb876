import { createHash } from 'node:crypto';
import type { RemediationRequest } from '../contracts';
import { coverage, parseRequest } from './requests';

/**
 * Contributions: the requests that join a service's run in flight, each its own small item in the
 * service's partition instead of an entry of the LOCK item (which would make every merge rewrite,
 * and pay for, the whole growing lock):
 *
 * - `SERVICE#<key>` / `MERGE#<execution>#<id>`: merged into the run `<execution>` before it seals.
 * - `SERVICE#<key>` / `QUEUE#<id>`: queued behind whichever run holds the service.
 *
 * `<id>` is derived from what the request remediates (its (digest, CVE) pairs and decision), so an
 * SQS redelivery or a repeated claim writes the same item again, never a second one.
 */

export const MERGE_PREFIX = 'MERGE#';
export const QUEUE_PREFIX = 'QUEUE#';

/** The sort-key prefix of the merges into one run. */
export const mergePrefix = (executionName: string): string => `${MERGE_PREFIX}${executionName}#`;

/** A deterministic id for what a request remediates (see above). */
export const contributionId = (request: RemediationRequest): string =>
  createHash('sha256')
    .update(
      JSON.stringify({
        findings: [...new Set(coverage(request))].sort(),
        action: request.decision.action,
        notBefore: request.decision.notBefore ?? '',
      }),
    )
    .digest('hex')
    .slice(0, 24);

/** A contribution as read. */
export interface Contribution {
  readonly sk: string;
  readonly id: string;
  readonly request: RemediationRequest;
  /** When it was written (the ledger's clock). */
  readonly at: string;
}

/** A contribution item as stored. */
export const contributionItem = (
  pk: string,
  sk: string,
  id: string,
  request: RemediationRequest,
  at: Date,
): Record<string, unknown> => ({ pk, sk, id, request: JSON.stringify(request), at: at.toISOString() });

/** A stored contribution, read (its request already checked with requestProblem). */
export const readContribution = (item: Record<string, unknown>): Contribution => {
  const sk = item.sk as string;
  return {
    sk,
    id: typeof item.id === 'string' ? item.id : sk.slice(sk.lastIndexOf('#') + 1),
    request: parseRequest(item.request as string),
    at: typeof item.at === 'string' ? item.at : '',
  };
};

/** Oldest request first (then by name): the order the fold takes them in. */
export const byRequestedAt = (a: Contribution, b: Contribution): number =>
  a.request.requestedAt.localeCompare(b.request.requestedAt) ||
  a.request.executionName.localeCompare(b.request.executionName) ||
  a.sk.localeCompare(b.sk);

/**
 * The request without the (digest, CVE) pairs `carried` holds already: a finding the run has is not
 * written again. Undefined when nothing is left.
 */
export const withoutCarried = (
  request: RemediationRequest,
  carried: ReadonlySet<string>,
): RemediationRequest | undefined => {
  if (carried.size === 0) return request;
  let changed = false;
  const images = request.images.flatMap((image) => {
    const cves = image.cves.filter((cve) => !carried.has(`${image.imageDigest}\n${cve}`));
    if (cves.length === image.cves.length) return [image];
    changed = true;
    return cves.length === 0 ? [] : [{ ...image, cves }];
  });
  if (!changed) return request;
  if (images.length === 0) return undefined;
  return { ...request, images, findingsCount: new Set(coverage({ ...request, images })).size };
};
