import { createHash } from 'node:crypto';
import type { Context } from 'aws-lambda';
import type { VirtualClock } from '../clock';
import type { ServiceName } from './catalog';

/** Something the model did or saw, for the run's timeline. */
export interface TimelineEntry {
  readonly at: number;
  readonly source: string;
  readonly text: string;
}

/** An exception inside the simulated world (a model callback, an event delivery): reported, not thrown. */
export interface WorldError {
  readonly at: number;
  readonly where: string;
  readonly error: Error;
}

/**
 * What every part of the model shares: the account's identity, the virtual clock, deterministic ids,
 * a scheduler on virtual time, and the run's records (API calls, timeline, errors).
 */
export class World {
  readonly partition = 'aws';
  readonly apiCalls = new Map<string, number>();
  readonly timeline: TimelineEntry[] = [];
  readonly errors: WorldError[] = [];
  private counter = 0;

  constructor(
    readonly accountId: string,
    readonly region: string,
    readonly clock: VirtualClock,
    private readonly seed = 'autopatch-simulation',
  ) {}

  arn(service: string, resource: string, region = this.region): string {
    return `arn:${this.partition}:${service}:${region}:${this.accountId}:${resource}`;
  }

  now(): Date {
    return new Date(Date.now());
  }

  /** Milliseconds since the scenario started. */
  offset(at = Date.now()): number {
    return at - this.clock.startMs;
  }

  /** A deterministic hex id (same scenario, same ids). */
  hex(length = 32): string {
    this.counter += 1;
    return createHash('sha256').update(`${this.seed}:${this.counter}`).digest('hex').slice(0, length);
  }

  /** A deterministic UUID-shaped id. */
  uuid(): string {
    const h = this.hex(32);
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
  }

  recordCall(service: ServiceName | 'lambda', operation: string): void {
    const key = `${service}:${operation}`;
    this.apiCalls.set(key, (this.apiCalls.get(key) ?? 0) + 1);
  }

  note(source: string, text: string): void {
    this.timeline.push({ at: Date.now(), source, text });
  }

  fail(where: string, error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    this.errors.push({ at: Date.now(), where, error: e });
    this.note('simulation', `error in ${where}: ${e.name}: ${e.message}`);
  }

  /**
   * Run `work` at the virtual instant `at` (or now, if that is past). Its failure is recorded as a
   * world error with `label`, never thrown into the clock driver.
   */
  schedule(at: number, label: string, work: () => void | Promise<void>): () => void {
    const id = setTimeout(() => this.spawn(label, work), Math.max(0, at - Date.now()));
    return () => clearTimeout(id);
  }

  /** Start asynchronous work now; its failure is recorded as a world error, never thrown. */
  spawn(label: string, work: () => void | Promise<void>): void {
    let promise: Promise<void>;
    try {
      promise = Promise.resolve(work());
    } catch (error) {
      this.fail(label, error);
      return;
    }
    void promise.catch((error: unknown) => this.fail(label, error));
  }

  /** The context object Lambda hands a function (`nameOrArn`: its name or ARN), on the virtual clock. */
  lambdaContext(nameOrArn: string, timeoutMs = 60_000): Context {
    const name = nameOrArn.split(':').pop() ?? nameOrArn;
    const started = Date.now();
    return {
      callbackWaitsForEmptyEventLoop: true,
      functionName: name,
      functionVersion: '$LATEST',
      invokedFunctionArn: nameOrArn.startsWith('arn:') ? nameOrArn : this.arn('lambda', `function:${name}`),
      memoryLimitInMB: '256',
      awsRequestId: this.uuid(),
      logGroupName: `/aws/lambda/${name}`,
      logStreamName: `${new Date(started).toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]${this.hex(32)}`,
      getRemainingTimeInMillis: () => Math.max(0, timeoutMs - (Date.now() - started)),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
  }
}
