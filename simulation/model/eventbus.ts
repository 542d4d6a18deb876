import type { World } from './world';

/** An event on the bus, in the envelope EventBridge delivers. */
export interface BusEvent {
  readonly version: string;
  readonly id: string;
  readonly 'detail-type': string;
  readonly source: string;
  readonly account: string;
  readonly time: string;
  readonly region: string;
  readonly resources: readonly string[];
  readonly detail: unknown;
  readonly [extra: string]: unknown;
}

export interface BusTarget {
  /** For the timeline: "sqs:intake", "lambda:resume". */
  readonly id: string;
  deliver(event: BusEvent): Promise<void> | void;
}

export interface BusRule {
  readonly name: string;
  readonly pattern: Record<string, unknown>;
  readonly targets: readonly BusTarget[];
}

export interface PublishedEvent {
  readonly at: number;
  readonly event: BusEvent;
  /** Names of the rules that matched. */
  readonly matched: readonly string[];
}

/** What becomes of one event's delivery to one rule's targets: lost, late, or (undefined) on time. */
export type DeliveryFate = { readonly lose: true } | { readonly delayMs: number } | undefined;

type Json = unknown;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** One pattern leaf value (a literal or a content filter) against one event value. */
const matchLeaf = (pattern: Json, value: Json, present: boolean): boolean => {
  if (!isObject(pattern)) return present && value === pattern;
  const [op, arg] = Object.entries(pattern)[0] ?? [];
  switch (op) {
    case 'exists':
      return present === arg;
    case 'prefix':
      return present && typeof value === 'string' && typeof arg === 'string' && value.startsWith(arg);
    case 'suffix':
      return present && typeof value === 'string' && typeof arg === 'string' && value.endsWith(arg);
    case 'equals-ignore-case':
      return (
        present &&
        typeof value === 'string' &&
        typeof arg === 'string' &&
        value.toLowerCase() === arg.toLowerCase()
      );
    case 'wildcard': {
      if (!present || typeof value !== 'string' || typeof arg !== 'string') return false;
      const re = new RegExp(
        `^${arg
          .split('*')
          .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*')}$`,
      );
      return re.test(value);
    }
    case 'anything-but': {
      if (!present) return false;
      if (isObject(arg)) return !matchLeaf(arg, value, present);
      const excluded = Array.isArray(arg) ? arg : [arg];
      return !excluded.includes(value);
    }
    case 'numeric': {
      if (!present || typeof value !== 'number' || !Array.isArray(arg)) return false;
      for (let i = 0; i + 1 < arg.length; i += 2) {
        const [cmp, n] = [arg[i] as string, arg[i + 1] as number];
        const ok =
          (cmp === '=' && value === n) ||
          (cmp === '<' && value < n) ||
          (cmp === '<=' && value <= n) ||
          (cmp === '>' && value > n) ||
          (cmp === '>=' && value >= n);
        if (!ok) return false;
      }
      return true;
    }
    default:
      throw new Error(
        `the simulated EventBridge does not support the pattern operator ${JSON.stringify(pattern)}`,
      );
  }
};

/**
 * EventBridge content matching, for the operators Autopatch's rules use: literal values, prefix,
 * suffix, anything-but, exists, numeric, equals-ignore-case, wildcard and $or. Arrays in the event
 * match when any element matches.
 */
export const matchesPattern = (pattern: Record<string, unknown>, event: unknown): boolean => {
  // A nested pattern applied to an array of objects holds when it holds for one of them.
  if (Array.isArray(event)) return event.some((item) => matchesPattern(pattern, item));
  for (const [key, sub] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!Array.isArray(sub) || !sub.some((alt) => isObject(alt) && matchesPattern(alt, event)))
        return false;
      continue;
    }
    const present = isObject(event) && key in event;
    const value = present ? (event as Record<string, unknown>)[key] : undefined;
    if (isObject(sub)) {
      if (!present || !matchesPattern(sub, value)) {
        // A nested pattern on a missing key can still match through { exists: false } leaves.
        if (
          present ||
          !Object.values(sub).every(
            (v) => Array.isArray(v) && v.some((l) => isObject(l) && l.exists === false),
          )
        ) {
          return false;
        }
      }
      continue;
    }
    if (!Array.isArray(sub)) throw new Error(`event pattern field ${key} must be an array or an object`);
    const values = Array.isArray(value) ? value : [value];
    if (!sub.some((leaf) => values.some((v) => matchLeaf(leaf, v, present)))) return false;
  }
  return true;
};

/**
 * The default event bus. Every event put on it is recorded; events that match a rule are delivered to
 * its targets after a short delay, as EventBridge does asynchronously (never inside the caller's call).
 */
export class EventBus {
  readonly rules: BusRule[] = [];
  readonly published: PublishedEvent[] = [];
  /** Deliveries a scenario's event faults lost or delayed. */
  readonly tampered: Array<{ at: number; detailType: string; rule: string; fate: 'lost' | 'delayed' }> = [];
  private fate: (event: BusEvent, rule: string) => DeliveryFate = () => undefined;

  constructor(
    private readonly world: World,
    /** Delivery latency: EventBridge is asynchronous; a second is typical. */
    private readonly deliveryDelayMs = 1_000,
  ) {}

  /** Decide, per event and matching rule, whether EventBridge loses or delays the delivery. */
  setDeliveryFate(fate: (event: BusEvent, rule: string) => DeliveryFate): void {
    this.fate = fate;
  }

  addRule(rule: BusRule): void {
    this.rules.push(rule);
  }

  /** Build an envelope for an AWS service event. */
  envelope(source: string, detailType: string, resources: readonly string[], detail: unknown): BusEvent {
    return {
      version: '0',
      id: this.world.uuid(),
      'detail-type': detailType,
      source,
      account: this.world.accountId,
      time: new Date(Date.now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      region: this.world.region,
      resources: [...resources],
      detail,
    };
  }

  put(event: BusEvent, delayMs = this.deliveryDelayMs): void {
    const matched = this.rules.filter((r) => {
      try {
        return matchesPattern(r.pattern, event);
      } catch (error) {
        this.world.fail(`rule ${r.name}`, error);
        return false;
      }
    });
    this.published.push({ at: Date.now(), event, matched: matched.map((r) => r.name) });
    for (const rule of matched) {
      const fate = this.fate(event, rule.name);
      if (fate && 'lose' in fate) {
        this.tampered.push({
          at: Date.now(),
          detailType: event['detail-type'],
          rule: rule.name,
          fate: 'lost',
        });
        this.world.note('eventbridge', `${event['detail-type']} to rule ${rule.name}: delivery LOST`);
        continue;
      }
      const late = fate?.delayMs ?? 0;
      if (late > 0) {
        this.tampered.push({
          at: Date.now(),
          detailType: event['detail-type'],
          rule: rule.name,
          fate: 'delayed',
        });
        this.world.note(
          'eventbridge',
          `${event['detail-type']} to rule ${rule.name}: delivered ${Math.round(late / 1000)}s late`,
        );
      }
      for (const target of rule.targets) {
        this.world.schedule(
          Date.now() + delayMs + late,
          `delivery of ${event['detail-type']} to ${target.id}`,
          () => target.deliver(event),
        );
      }
    }
  }
}
