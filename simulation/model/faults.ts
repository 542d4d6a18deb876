/**
 * The scenario's faults, injected into the calls the simulated account answers: a number of calls
 * (`times`), every call from some point on (`persistent`), or every call during an outage that
 * recovers (`outage`), optionally only inside a window of virtual time (`from`/`until`). Each fault
 * throws the error the service really returns (see SERVICE_ERRORS), the way the SDK throws it; faults
 * in service "lambda" fail the state machine's invocations of its functions as Step Functions sees it.
 */
import type { FaultSpec } from '../scenario';
import { FaultInjector } from '../sdk';
import { durationMs, resolveAt } from '../time';
import { type ErrorShape, resolveError, resolveLambdaError, type ServiceName } from './catalog';
import { sdkError } from './errors';

interface Armed {
  readonly spec: FaultSpec;
  readonly error: { name: string; message: string } & Partial<ErrorShape>;
  readonly from: number;
  readonly until: number;
  readonly outageMs?: number;
  /** Calls of the operation seen inside the window. */
  seen: number;
  /** Calls this fault failed. */
  fired: number;
  /** When the first failure happened (an outage runs from there). */
  firstAt?: number;
  /** When the last failure happened. */
  lastAt?: number;
}

export class ScriptedFaults extends FaultInjector {
  private readonly armed: Armed[];
  /** Invocations of the state machine's Lambda functions that failed. */
  readonly invokes: Array<{ at: number; functionName: string; error: string }> = [];

  constructor(specs: readonly FaultSpec[], startMs: number) {
    super([]);
    this.armed = specs.map((spec) => {
      const error =
        spec.service === 'lambda' ? resolveLambdaError(spec.error) : resolveError(spec.service, spec.error);
      if (!error) throw new Error(`${spec.service} does not return ${spec.error}`);
      return {
        spec,
        error,
        from: spec.from === undefined ? Number.NEGATIVE_INFINITY : resolveAt(spec.from, startMs),
        until: spec.until === undefined ? Number.POSITIVE_INFINITY : resolveAt(spec.until, startMs),
        ...(spec.outage === undefined ? {} : { outageMs: durationMs(spec.outage) }),
        seen: 0,
        fired: 0,
      };
    });
  }

  /** Calls that failed, API calls and Lambda invocations together. */
  get count(): number {
    return this.injected.length + this.invokes.length;
  }

  /**
   * Whether a fault that has fired is still failing calls and will stop on its own (an outage not
   * over yet, a count not used up). The scheduled rules keep firing meanwhile, as EventBridge's do
   * for ever: what the sweep could not do during the fault, it does once the fault is over.
   */
  failingForNow(now = Date.now()): boolean {
    return this.armed.some(
      (f) =>
        f.fired > 0 &&
        now < f.until &&
        !f.spec.persistent &&
        (f.outageMs === undefined
          ? f.fired < f.spec.times
          : f.firstAt !== undefined && now < f.firstAt + f.outageMs),
    );
  }

  /** Whether every fault has stopped failing calls for good (an outage is over, a count used up). */
  cleared(now = Date.now()): boolean {
    return this.armed.every(
      (f) =>
        now >= f.until ||
        (!f.spec.persistent &&
          (f.outageMs === undefined
            ? f.fired >= f.spec.times
            : f.firstAt !== undefined && now >= f.firstAt + f.outageMs)),
    );
  }

  /** When the last fault stopped failing calls (undefined: one never did, or none fired). */
  clearedAt(): number | undefined {
    let at = Number.NEGATIVE_INFINITY;
    for (const f of this.armed) {
      if (f.spec.persistent && f.until === Number.POSITIVE_INFINITY) return undefined;
      const end =
        f.outageMs !== undefined && f.firstAt !== undefined
          ? Math.min(f.firstAt + f.outageMs, f.until)
          : (f.lastAt ?? Number.NEGATIVE_INFINITY);
      at = Math.max(at, end);
    }
    return Number.isFinite(at) ? at : undefined;
  }

  override check(service: ServiceName, operation: string): void {
    const f = this.fire(service, operation);
    if (!f) return;
    this.injected.push({ at: Date.now(), service, operation, error: f.error.name });
    throw sdkError(service, f.error.name, f.error.message, {
      ...(f.error.status === undefined ? {} : { status: f.error.status }),
      ...(f.error.fault === undefined ? {} : { fault: f.error.fault }),
    });
  }

  /** The error Step Functions meets invoking `functionName`, or undefined when the call goes through. */
  checkInvoke(functionName: string): { name: string; message: string } | undefined {
    const f = this.fire('lambda', 'Invoke');
    if (!f) return undefined;
    this.invokes.push({ at: Date.now(), functionName, error: f.error.name });
    return { name: f.error.name, message: f.error.message };
  }

  /** The fault this call trips, counting the call against every fault of the operation. */
  private fire(service: string, operation: string): Armed | undefined {
    const now = Date.now();
    for (const f of this.armed) {
      if (f.spec.service !== service || f.spec.operation !== operation) continue;
      if (now < f.from || now >= f.until) continue;
      f.seen += 1;
      if (f.seen <= f.spec.after) continue;
      let fail: boolean;
      if (f.outageMs !== undefined) {
        f.firstAt ??= now;
        fail = now < f.firstAt + f.outageMs;
      } else fail = f.spec.persistent === true || f.fired < f.spec.times;
      if (!fail) continue;
      f.fired += 1;
      f.lastAt = now;
      return f;
    }
    return undefined;
  }
}
