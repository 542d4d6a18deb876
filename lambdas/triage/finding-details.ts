/**
 * Exploitation facts from Inspector's finding details (BatchGetFindingDetails): CISA KEV membership
 * with its due date, and exploitation observed in the wild. Read only when policy needs them
 * (`policyNeedsExploitation`), ten finding ARNs per call (the API's maximum), and cached per
 * finding ARN for the Lambda's lifetime, so a burst of thousands of findings (and SQS redeliveries)
 * does not multiply the calls.
 *
 * Each ARN gets one of three answers:
 * - the facts (`Exploitation`), cached;
 * - `{ unknown }`: a permanent failure (access denied, invalid input, no details for the ARN): policy
 *   skips rules on exploitation, and the reason says why. Not cached for long: see UNKNOWN_TTL_MS;
 * - `{ retry }`: a transient failure (throttling, a 5xx, Inspector's INTERNAL_ERROR): triage fails the
 *   finding's batch item so that SQS delivers it again.
 */
import { BatchGetFindingDetailsCommand, type Inspector2Client } from '@aws-sdk/client-inspector2';
import { isTransient } from '../shared/errors';
import type { Exploitation, Policy } from './policy';

/** BatchGetFindingDetails takes 1 to 10 finding ARNs. */
export const MAX_FINDING_ARNS_PER_CALL = 10;
/** Cache entries kept (the oldest go first): a burst's worth, a few MB at most. */
export const DEFAULT_CACHE_ENTRIES = 10_000;
/** How long facts are trusted: CISA adds vulnerabilities to KEV as exploitation becomes known. */
export const FACTS_TTL_MS = 6 * 3_600_000;
/** How long a permanent failure is remembered, so a burst does not retry it per finding. */
export const UNKNOWN_TTL_MS = 5 * 60_000;

export type ExploitationAnswer = Exploitation | { readonly unknown: string } | { readonly retry: string };

/** Whether any rule (or `kevDueDate`) needs exploitation facts: if not, triage makes no call. */
export const policyNeedsExploitation = (policy: Policy): boolean =>
  policy.kevDueDate ||
  policy.rules.some((r) => r.match.knownExploited !== undefined || r.match.exploitObserved !== undefined);

const iso = (d: Date | undefined): string | undefined =>
  d === undefined || Number.isNaN(d.getTime()) ? undefined : d.toISOString();

const defined = <T extends Record<string, string | undefined>>(o: T): { [K in keyof T]?: string } =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: string };

export class FindingDetailsReader {
  private readonly cache = new Map<string, { readonly answer: ExploitationAnswer; readonly until: number }>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(
    private readonly inspector: Pick<Inspector2Client, 'send'>,
    options: { readonly maxEntries?: number; readonly now?: () => number } = {},
  ) {
    this.maxEntries = options.maxEntries ?? DEFAULT_CACHE_ENTRIES;
    this.now = options.now ?? Date.now;
  }

  /** The answer for each ARN (duplicates read once); cached answers make no call. */
  async read(findingArns: readonly string[]): Promise<Map<string, ExploitationAnswer>> {
    const out = new Map<string, ExploitationAnswer>();
    const missing: string[] = [];
    const now = this.now();
    for (const arn of new Set(findingArns)) {
      const hit = this.cache.get(arn);
      if (hit && hit.until > now) {
        // Refresh its place: the cache drops the least recently used first.
        this.cache.delete(arn);
        this.cache.set(arn, hit);
        out.set(arn, hit.answer);
      } else missing.push(arn);
    }
    for (let i = 0; i < missing.length; i += MAX_FINDING_ARNS_PER_CALL) {
      const chunk = missing.slice(i, i + MAX_FINDING_ARNS_PER_CALL);
      for (const [arn, answer] of await this.call(chunk)) {
        out.set(arn, answer);
        if (!('retry' in answer)) this.remember(arn, answer);
      }
    }
    return out;
  }

  private async call(arns: readonly string[]): Promise<Map<string, ExploitationAnswer>> {
    const answers = new Map<string, ExploitationAnswer>();
    try {
      const res = await this.inspector.send(new BatchGetFindingDetailsCommand({ findingArns: [...arns] }));
      for (const d of res.findingDetails ?? []) {
        if (d.findingArn === undefined) continue;
        const kev = d.cisaData
          ? defined({
              dateAdded: iso(d.cisaData.dateAdded),
              dateDue: iso(d.cisaData.dateDue),
              action: d.cisaData.action,
            })
          : undefined;
        const observed = d.exploitObserved
          ? defined({
              firstSeen: iso(d.exploitObserved.firstSeen),
              lastSeen: iso(d.exploitObserved.lastSeen),
            })
          : undefined;
        answers.set(d.findingArn, {
          ...(kev === undefined ? {} : { kev }),
          ...(observed === undefined ? {} : { exploitObserved: observed }),
        });
      }
      for (const e of res.errors ?? []) {
        if (e.findingArn === undefined) continue;
        const why = `BatchGetFindingDetails ${e.errorCode ?? 'error'}: ${e.errorMessage ?? 'no message'}`;
        answers.set(e.findingArn, e.errorCode === 'INTERNAL_ERROR' ? { retry: why } : { unknown: why });
      }
    } catch (error) {
      const why = `BatchGetFindingDetails failed: ${(error as Error).name}: ${(error as Error).message}`;
      for (const arn of arns) answers.set(arn, isTransient(error) ? { retry: why } : { unknown: why });
    }
    for (const arn of arns) {
      if (!answers.has(arn))
        answers.set(arn, { unknown: 'BatchGetFindingDetails returned nothing for the finding' });
    }
    return answers;
  }

  private remember(arn: string, answer: ExploitationAnswer): void {
    const ttl = 'unknown' in answer ? UNKNOWN_TTL_MS : FACTS_TTL_MS;
    this.cache.delete(arn);
    this.cache.set(arn, { answer, until: this.now() + ttl });
    while (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.cache.delete(oldest);
    }
  }
}
