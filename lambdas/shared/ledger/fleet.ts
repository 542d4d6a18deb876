import { PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { TransientError } from '../errors';
import { type Key, type LedgerTable, sleep } from './table';

/**
 * Deployment slots: the deployments in flight across the fleet, and the runs waiting for one.
 *
 * Item `FLEET` / `SLOTS`: `slots` (execution name → the deployment holding a slot) and `waiting`
 * (execution name → a run waiting for one, with when it started waiting and when it last asked),
 * and a `version` every write checks, so two runs never both take the last slot. The item stays
 * small: it holds only what is in flight (bounded by the caps) and what waits (a few hundred bytes
 * each); the sweep removes the entries of runs that ended without giving theirs back.
 *
 * A run may take a slot when, in each scope with a cap (the organization, its account, its Region),
 * the slots in use plus the waiting runs ahead of it stay under the cap. Ahead means: an earlier
 * stage, then an earlier deadline, then waiting longer. A run also waits while a run of an earlier
 * stage deploys, or waits to deploy, an image of one of its repositories.
 */

const SLOTS_KEY: Key = { pk: 'FLEET', sk: 'SLOTS' };
/** Rounds of read + conditional write before a contended take gives up for this poll. */
const ROUNDS = 8;

/** One run's claim: what it deploys, where, and how urgent it is. */
export interface SlotClaim {
  readonly executionName: string;
  readonly executionArn?: string;
  readonly serviceKey: string;
  readonly account: string;
  readonly region: string;
  /** Stage index: lower deploys first. */
  readonly stage: number;
  readonly stageName: string;
  /** The repositories of the images it deploys ("<registry>/<repository>"). */
  readonly repositories: readonly string[];
  /** ISO-8601 deadline of its findings, if policy set one. */
  readonly deadline?: string;
}

export interface FleetCaps {
  readonly maxInFlight?: number | undefined;
  readonly maxInFlightPerAccount?: number | undefined;
  readonly maxInFlightPerRegion?: number | undefined;
}

interface SlotEntry extends SlotClaim {
  readonly takenAt: string;
}
interface WaitingEntry extends SlotClaim {
  readonly since: string;
  readonly seenAt: string;
  readonly reason: string;
}

export type { SlotEntry, WaitingEntry };

export interface FleetState {
  readonly slots: readonly SlotEntry[];
  readonly waiting: readonly WaitingEntry[];
}

export type SlotDecision =
  | { readonly kind: 'taken'; readonly inFlight: number }
  | {
      readonly kind: 'wait';
      /** Why, in words: "paused", "3 of 3 deployments in flight in account 1111…", "stage staging first …". */
      readonly reason: string;
      /** ISO-8601 time it started waiting. */
      readonly since: string;
    };

const priority = (e: SlotClaim & { since?: string }): string =>
  `${String(e.stage).padStart(3, '0')}|${e.deadline ?? '9999'}|${e.since ?? '9999'}|${e.executionName}`;

const sharedRepository = (a: SlotClaim, b: SlotClaim): string | undefined =>
  a.repositories.find((r) => b.repositories.includes(r));

export class FleetSlots {
  constructor(private readonly table: LedgerTable) {}

  /** The slots and waiting runs as stored (waiting runs that stopped asking included). */
  async state(): Promise<FleetState> {
    const item = await this.table.get(SLOTS_KEY, 'fleetState');
    return {
      slots: Object.values((item?.slots ?? {}) as Record<string, SlotEntry>),
      waiting: Object.values((item?.waiting ?? {}) as Record<string, WaitingEntry>),
    };
  }

  /**
   * Take a deployment slot for the claim, or record that it waits and why. Idempotent: a run that
   * holds a slot gets `taken` again. `paused` records the wait without looking at the caps.
   */
  async take(
    claim: SlotClaim,
    caps: FleetCaps,
    options: { readonly paused: boolean },
  ): Promise<SlotDecision> {
    for (let round = 1; round <= ROUNDS; round++) {
      const item = await this.table.get(SLOTS_KEY, 'takeSlot');
      if (item === undefined) {
        await this.create();
        continue;
      }
      const version = Number(item.version ?? 0);
      const slots = (item.slots ?? {}) as Record<string, SlotEntry>;
      const waitingAll = (item.waiting ?? {}) as Record<string, WaitingEntry>;
      const held = slots[claim.executionName];
      if (held !== undefined) return { kind: 'taken', inFlight: Object.keys(slots).length };

      const now = this.table.now();
      const waiting = Object.values(waitingAll).filter((w) => w.executionName !== claim.executionName);
      const since = waitingAll[claim.executionName]?.since ?? now.toISOString();
      const reason = options.paused
        ? 'deployments are paused (the pause switch is on)'
        : blocker(claim, since, caps, Object.values(slots), waiting);

      const names: Record<string, string> = { '#self': claim.executionName };
      const update =
        reason === undefined
          ? {
              UpdateExpression: 'SET slots.#self = :entry, version = :next REMOVE waiting.#self',
              values: { ':entry': { ...claim, takenAt: now.toISOString() } satisfies SlotEntry },
            }
          : {
              UpdateExpression: 'SET waiting.#self = :entry, version = :next',
              values: {
                ':entry': { ...claim, since, seenAt: now.toISOString(), reason } satisfies WaitingEntry,
              },
            };
      const written = await this.table.conditional('takeSlot', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: SLOTS_KEY,
            UpdateExpression: update.UpdateExpression,
            ConditionExpression: 'version = :version',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: { ...update.values, ':version': version, ':next': version + 1 },
          }),
        ),
      );
      if (written) {
        return reason === undefined
          ? { kind: 'taken', inFlight: Object.keys(slots).length + 1 }
          : { kind: 'wait', reason, since };
      }
      await sleep(Math.random() * 20 * 2 ** round);
    }
    throw new TransientError(
      'ledger takeSlot: the deployment slots changed under every attempt; asking again',
    );
  }

  /** Give the run's slot (or its place in the wait) back. Idempotent. */
  async release(executionName: string): Promise<boolean> {
    let released = false;
    for (let round = 1; round <= ROUNDS; round++) {
      const item = await this.table.get(SLOTS_KEY, 'releaseSlot');
      const inSlots = Object.hasOwn((item?.slots ?? {}) as object, executionName);
      const inWaiting = Object.hasOwn((item?.waiting ?? {}) as object, executionName);
      if (item === undefined || (!inSlots && !inWaiting)) return released;
      const version = Number(item.version ?? 0);
      const written = await this.table.conditional('releaseSlot', () =>
        this.table.doc.send(
          new UpdateCommand({
            TableName: this.table.tableName,
            Key: SLOTS_KEY,
            UpdateExpression: 'SET version = :next REMOVE slots.#self, waiting.#self',
            ConditionExpression: 'version = :version',
            ExpressionAttributeNames: { '#self': executionName },
            ExpressionAttributeValues: { ':version': version, ':next': version + 1 },
          }),
        ),
      );
      if (written) {
        released = inSlots;
        return released;
      }
      await sleep(Math.random() * 20 * 2 ** round);
    }
    throw new TransientError(
      `ledger releaseSlot: the deployment slots changed under every attempt (${executionName})`,
    );
  }

  private async create(): Promise<void> {
    await this.table.conditional('createSlots', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: { ...SLOTS_KEY, slots: {}, waiting: {}, version: 0 },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      ),
    );
  }

  /**
   * The waiting runs that may take a slot now, in the order they would: each counted as in flight
   * for the ones after it. The sweep wakes these (their token waits end; each then takes its slot
   * with a conditional write, so a wrong guess only makes a run wait again).
   */
  async wakeable(caps: FleetCaps): Promise<WaitingEntry[]> {
    const { slots, waiting } = await this.state();
    const inFlight: SlotEntry[] = [...slots];
    const queue = [...waiting].sort((a, b) => (priority(a) < priority(b) ? -1 : 1));
    const woken: WaitingEntry[] = [];
    for (const w of queue) {
      const rest = queue.filter((o) => o !== w && !woken.includes(o));
      if (blocker(w, w.since, caps, inFlight, rest) !== undefined) continue;
      woken.push(w);
      inFlight.push({ ...w, takenAt: w.seenAt });
    }
    return woken;
  }
}

/** Why the claim cannot take a slot now, or undefined when it can. */
const blocker = (
  claim: SlotClaim,
  since: string,
  caps: FleetCaps,
  slots: readonly SlotEntry[],
  waiting: readonly WaitingEntry[],
): string | undefined => {
  for (const other of [...slots, ...waiting]) {
    if (other.stage >= claim.stage) continue;
    const repository = sharedRepository(claim, other);
    if (repository === undefined) continue;
    const doing = slots.includes(other as SlotEntry) ? 'is deploying' : 'waits to deploy';
    return `stage ${other.stageName} goes first: ${other.serviceKey} ${doing} ${repository}`;
  }
  const self = priority({ ...claim, since });
  const scopes: ReadonlyArray<
    readonly [number | undefined, (a: SlotClaim, b: SlotClaim) => boolean, string]
  > = [
    [caps.maxInFlight, () => true, ''],
    [caps.maxInFlightPerAccount, (a, b) => a.account === b.account, ` in account ${claim.account}`],
    [caps.maxInFlightPerRegion, (a, b) => a.region === b.region, ` in ${claim.region}`],
  ];
  // A waiting run counts as ahead only where it could take a slot itself (none of its scopes full).
  const roomFor = (w: SlotClaim): boolean =>
    scopes.every(([cap, same]) => cap === undefined || slots.filter((s) => same(s, w)).length < cap);
  for (const [cap, same, where] of scopes) {
    if (cap === undefined) continue;
    const inFlight = slots.filter((s) => same(s, claim)).length;
    const ahead = waiting.filter((w) => same(w, claim) && priority(w) < self && roomFor(w)).length;
    if (inFlight + ahead >= cap) {
      return ahead > 0
        ? `${inFlight} of ${cap} deployments in flight${where}, and ${ahead} waiting ahead of this one`
        : `${inFlight} of ${cap} deployments in flight${where}`;
    }
  }
  return undefined;
};
