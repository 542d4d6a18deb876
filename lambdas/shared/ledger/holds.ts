import { DeleteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { coveredFindings, LEDGER, type Outcome, type RemediationRequest } from '../contracts';
import { BATCH_CONCURRENCY, type LedgerTable, mapLimit } from './table';

/**
 * Churn holds. Items: `SERVICE#<cluster>/<service>` / `HOLD#<cve>`, until lifted.
 */

/**
 * A churn hold: after a remediation of (service, CVE) ended RolledBack, PatchIneffective or
 * BuildFailed, later findings of that CVE on the same image digests (and, when known, the same fixed
 * version) are not remediated again until a new image or a new fix appears, or someone releases it
 * (`npm run release-hold`).
 */
export interface Hold {
  readonly serviceKey: string;
  readonly cve: string;
  /** Image digests the failed remediation(s) worked on: findings on other digests pass. */
  readonly digests: readonly string[];
  /** The fixed version the failed fix targeted, when known: a finding with another one passes. */
  readonly fixedInVersion?: string;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly executionName: string;
  readonly heldAt: string;
}

/** What a hold was placed for: one CVE on some digests. */
export interface HoldRequest {
  readonly cve: string;
  readonly digests: readonly string[];
  readonly fixedInVersion?: string;
}

/**
 * The request without its held (digest, CVE) pairs, and the pairs that were held. Pure. `request`
 * is undefined when nothing is left; its identity (name, id) is kept otherwise.
 */
export const withoutHeld = (
  request: RemediationRequest,
  holds: readonly Hold[],
): {
  readonly request?: RemediationRequest;
  readonly held: ReadonlyArray<{ readonly digest: string; readonly cve: string; readonly hold: Hold }>;
} => {
  if (holds.length === 0) return { request, held: [] };
  const byCve = new Map(holds.map((h) => [h.cve, h]));
  const held: Array<{ digest: string; cve: string; hold: Hold }> = [];
  const images = request.images.flatMap((image) => {
    const cves = image.cves.filter((cve) => {
      const hold = byCve.get(cve);
      if (!hold?.digests.includes(image.imageDigest)) return true;
      const fixedIn = image.fixedInVersions?.[cve];
      if (hold.fixedInVersion !== undefined && fixedIn !== undefined && fixedIn !== hold.fixedInVersion)
        return true; // a newer fix than the one that failed
      held.push({ digest: image.imageDigest, cve, hold });
      return false;
    });
    return cves.length === 0 ? [] : [{ ...image, cves }];
  });
  if (held.length === 0) return { request, held: [] };
  if (images.length === 0) return { held };
  return {
    request: { ...request, images, findingsCount: new Set(coveredFindings(images)).size },
    held,
  };
};

const HOLD_PREFIX = 'HOLD#';
/** Digests one hold remembers: beyond, a new failure on yet another digest is not held (it is rare). */
const MAX_HOLD_DIGESTS = 50;

const holdKey = (serviceKey: string, cve: string) => ({
  pk: LEDGER.serviceKey(serviceKey).pk,
  sk: `${HOLD_PREFIX}${cve}`,
});

export class Holds {
  private readonly cache = new Map<string, { at: number; holds: Hold[] }>();

  constructor(
    private readonly table: LedgerTable,
    /** See LedgerOptions.holdsCacheMs. */
    private readonly cacheMs: number,
  ) {}

  /**
   * The service's churn holds (one Query; none is the usual case). Claims reuse what this instance
   * read within `cacheMs` (a warm triage Lambda in a burst asks once, not once per batch);
   * `fresh` reads anyway. hold() and clearHolds() on this instance forget the cached copy.
   */
  async holds(serviceKey: string, options: { readonly fresh?: boolean } = {}): Promise<Hold[]> {
    const cached = this.cache.get(serviceKey);
    if (!options.fresh && cached && Date.now() - cached.at < this.cacheMs) return cached.holds;
    const holds = await this.read(serviceKey);
    if (this.cacheMs > 0) this.cache.set(serviceKey, { at: Date.now(), holds });
    return holds;
  }

  private async read(serviceKey: string): Promise<Hold[]> {
    const items = await this.table.query('holds', LEDGER.serviceKey(serviceKey).pk, { prefix: HOLD_PREFIX });
    return items.map((item) => {
      const { pk: _pk, sk: _sk, digests, ...hold } = item;
      return {
        ...(hold as Omit<Hold, 'digests'>),
        digests: [...((digests as Set<string>) ?? [])].sort(),
      };
    });
  }

  /**
   * Hold (service, CVE) pairs after a remediation failed to fix them for good. A CVE held already
   * gains the new digests (at most MAX_HOLD_DIGESTS) and the latest reason. Idempotent.
   */
  async hold(
    serviceKey: string,
    requests: readonly HoldRequest[],
    why: { readonly outcome: Outcome; readonly reason: string; readonly executionName: string },
  ): Promise<void> {
    const heldAt = this.table.now().toISOString();
    this.cache.delete(serviceKey);
    await mapLimit(requests, BATCH_CONCURRENCY, async (h) => {
      const digests = h.digests.slice(0, MAX_HOLD_DIGESTS);
      if (digests.length === 0) return;
      await this.table.send('hold', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: holdKey(serviceKey, h.cve),
            UpdateExpression: `SET #serviceKey = :serviceKey, #cve = :cve, #outcome = :outcome, #reason = :reason, #executionName = :executionName, #heldAt = :heldAt${h.fixedInVersion === undefined ? ' REMOVE #fixedIn' : ', #fixedIn = :fixedIn'} ADD #digests :digests`,
            ExpressionAttributeNames: {
              '#serviceKey': 'serviceKey',
              '#cve': 'cve',
              '#outcome': 'outcome',
              '#reason': 'reason',
              '#executionName': 'executionName',
              '#heldAt': 'heldAt',
              '#fixedIn': 'fixedInVersion',
              '#digests': 'digests',
            },
            ExpressionAttributeValues: {
              ':serviceKey': serviceKey,
              ':cve': h.cve,
              ':outcome': why.outcome,
              ':reason': why.reason.slice(0, 2_000),
              ':executionName': why.executionName,
              ':heldAt': heldAt,
              ':digests': new Set(digests),
              ...(h.fixedInVersion === undefined ? {} : { ':fixedIn': h.fixedInVersion }),
            },
          }),
        ),
      );
    });
  }

  /** Lift the service's holds (all, or those of the given CVEs). Returns the holds lifted. */
  async clearHolds(serviceKey: string, cves?: readonly string[]): Promise<Hold[]> {
    this.cache.delete(serviceKey);
    const holds = (await this.holds(serviceKey, { fresh: true })).filter(
      (h) => cves === undefined || cves.includes(h.cve),
    );
    this.cache.delete(serviceKey);
    await mapLimit(holds, BATCH_CONCURRENCY, (h) =>
      this.table.send('clearHolds', () =>
        this.table.doc.send(
          new DeleteCommand({ TableName: this.table.tableName, Key: holdKey(serviceKey, h.cve) }),
        ),
      ),
    );
    return holds;
  }
}
