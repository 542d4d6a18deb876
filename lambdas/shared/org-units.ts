import { isTransient, TransientError } from './errors';
import type { AccountOUs } from './fleet';

/**
 * Which organizational units an account is in, for fleet stages that name OUs
 * (lambdas/shared/fleet.ts `organizationalUnits`): from the configuration (`fleet.accountOUs`), else
 * from AWS Organizations, walking ListParents up from the account to the root, so that a stage naming
 * a parent OU matches the accounts of the OUs nested in it. Answers are kept in memory for the
 * Lambda container's life, an hour each (accounts move between OUs rarely; a move is seen within
 * the hour), a refusal five minutes (so a fixed permission is picked up soon, and a refused hub does
 * not call Organizations on every run).
 */

/** One parent of an account or OU, as ListParents returns it. */
export interface OrganizationParent {
  readonly id: string;
  readonly type: 'ROOT' | 'ORGANIZATIONAL_UNIT';
}

/** organizations:ListParents, the one call made (./organizations-api.ts, or a fake in tests). */
export interface OrganizationParentsApi {
  listParents(childId: string): Promise<readonly OrganizationParent[]>;
}

export interface OrganizationalUnitResolverOptions {
  /** `fleet.accountOUs`: accounts whose OUs are given, never looked up. */
  readonly configured?: Readonly<Record<string, readonly string[]>>;
  /** Absent: only configured accounts are known. */
  readonly api?: OrganizationParentsApi;
  /** @default 1 hour */
  readonly ttlMs?: number;
  /** @default 5 minutes */
  readonly refusalTtlMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

/** Organizations nests OUs at most five deep below the root; anything deeper is a loop or a fake. */
const MAX_DEPTH = 5;

/**
 * Errors of ListParents that no retry fixes: the hub may not ask, or the account is not a member.
 * Other errors are retried when transient (throttling, 5xx), else treated as these.
 */
const REFUSALS = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'AWSOrganizationsNotInUseException',
  'ChildNotFoundException',
  'InvalidInputException',
]);

export class OrganizationalUnitResolver {
  private readonly cache = new Map<string, { readonly answer: AccountOUs; readonly until: number }>();
  private readonly now: () => number;

  constructor(private readonly options: OrganizationalUnitResolverOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  /**
   * The account's OUs (its own first, then each one above it), or why they are unknown. Throws
   * TransientError for throttling and outages (the step retries), never for a refusal.
   */
  async ousOf(account: string): Promise<AccountOUs> {
    const configured = this.options.configured?.[account];
    if (configured !== undefined) return { known: true, ous: [...configured] };
    const cached = this.cache.get(account);
    if (cached !== undefined && cached.until > this.now()) return cached.answer;
    const { api } = this.options;
    if (api === undefined)
      return { known: false, reason: 'it is not in fleet.accountOUs and AWS Organizations is not asked' };
    const answer = await this.walk(api, account);
    const ttl = answer.known
      ? (this.options.ttlMs ?? 60 * 60_000)
      : (this.options.refusalTtlMs ?? 5 * 60_000);
    this.cache.set(account, { answer, until: this.now() + ttl });
    return answer;
  }

  private async walk(api: OrganizationParentsApi, account: string): Promise<AccountOUs> {
    const ous: string[] = [];
    let child = account;
    for (let depth = 0; depth <= MAX_DEPTH; depth++) {
      let parents: readonly OrganizationParent[];
      try {
        parents = await api.listParents(child);
      } catch (error) {
        const name = (error as Error).name;
        if (!REFUSALS.has(name) && isTransient(error))
          throw new TransientError(`organizations ListParents ${child}: ${(error as Error).message}`, {
            cause: error,
          });
        return {
          known: false,
          reason: `organizations:ListParents of ${child} failed (${name}: ${(error as Error).message})`,
        };
      }
      const [parent] = parents;
      if (parent === undefined)
        return { known: false, reason: `organizations:ListParents of ${child} returned no parent` };
      if (parent.type === 'ROOT') return { known: true, ous };
      ous.push(parent.id);
      child = parent.id;
    }
    return {
      known: false,
      reason: `account ${account} is nested deeper than Organizations allows (${ous.join(' < ')})`,
    };
  }
}
