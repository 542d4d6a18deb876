import { createHash } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
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
 *
 * The request is stored as brotli-compressed JSON (a binary `request`): a burst writes one such item
 * per service and batch, and compressed it fits one write unit (about 750 bytes for a one-finding
 * request of 1.4 KB, which cost two). Items written before, with the JSON as a string, are still read.
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

/** Brotli quality: 6 compresses a request as well as 9 at a hundredth of the time (0.1 ms). */
const PACK_QUALITY = 6;

/** A request as a contribution item stores it: its JSON, brotli-compressed. Deterministic. */
export const packRequest = (request: RemediationRequest): Uint8Array => {
  const json = JSON.stringify(request);
  return new Uint8Array(
    brotliCompressSync(json, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: PACK_QUALITY,
        [constants.BROTLI_PARAM_SIZE_HINT]: Buffer.byteLength(json, 'utf8'),
      },
    }),
  );
};

/**
 * The JSON text of a stored contribution's request: decompressed (this layout) or the string written
 * before it. Anything else (bytes that do not decompress) is returned as it is, for requestProblem to
 * reject.
 */
export const requestTextOf = (stored: unknown): unknown => {
  if (!(stored instanceof Uint8Array)) return stored;
  try {
    return brotliDecompressSync(stored).toString('utf8');
  } catch {
    return stored;
  }
};

/** A contribution item as stored. */
export const contributionItem = (
  pk: string,
  sk: string,
  id: string,
  request: RemediationRequest,
  at: Date,
): Record<string, unknown> => ({ pk, sk, id, request: packRequest(request), at: at.toISOString() });

/** A stored contribution, read (its request already checked with requestProblem). */
export const readContribution = (item: Record<string, unknown>): Contribution => {
  const sk = item.sk as string;
  return {
    sk,
    id: typeof item.id === 'string' ? item.id : sk.slice(sk.lastIndexOf('#') + 1),
    request: parseRequest(requestTextOf(item.request) as string),
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
