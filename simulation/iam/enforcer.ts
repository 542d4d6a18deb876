/**
 * IAM enforced on every simulated call: who makes it (the principal), what IAM checks for it
 * (requests.ts), the decision of a real evaluator over the synthesized policies (evaluate.ts), and a
 * record of every denial for the run's report and timeline.
 *
 * Who makes a call: clients created for one principal carry it (the triage fleet's, Step Functions'
 * own integration clients, see sdk.ts `simulatedClients`); the workflow Lambdas' module-scope clients
 * are shared between handlers, so their calls take the principal of the handler invocation they run
 * in (`runAs`, an AsyncLocalStorage set around each invocation, see simulation/lambdas.ts).
 *
 * On by default; `AUTOPATCH_SIMULATION_IAM=off npm run simulate` turns it off.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { World } from '../model/world';
import { type IamStackOptions, resolveTemplate } from '../stack';
import { type AuthorizationRequest, type Decision, IamEvaluator } from './evaluate';
import { iamModel } from './policies';
import { authorizationRequests, type ResourceLookups } from './requests';

/** Principals the stack does not define: a person running `npm run approve` with their own credentials. */
export const OPERATOR = 'operator';

const principalContext = new AsyncLocalStorage<string>();

/** Run `work` (a Lambda invocation) as `principal`: the calls its SDK clients make are that role's. */
export const runAs = <T>(principal: string, work: () => T): T => principalContext.run(principal, work);

/** The principal of the invocation the caller runs in, if any. */
export const currentPrincipal = (): string | undefined => principalContext.getStore();

export const iamEnforced = (): boolean => process.env.AUTOPATCH_SIMULATION_IAM !== 'off';

export interface IamDenial {
  readonly at: number;
  readonly principal: string;
  readonly call: string;
  readonly action: string;
  readonly resource: string;
  readonly message: string;
}

export interface IamSummary {
  /** Calls evaluated (each may need several authorizations). */
  readonly callsEvaluated: number;
  readonly authorizationsEvaluated: number;
  /** Calls made by someone outside the stack (the approver), not evaluated. */
  readonly operatorCalls: number;
  /** Calls whose principal the simulation could not tell: allowed, and a bug in the simulation. */
  readonly unattributed: readonly string[];
  readonly denials: readonly IamDenial[];
}

export class IamEnforcer {
  private calls = 0;
  private authorizations = 0;
  private operator = 0;
  private readonly unattributed: string[] = [];
  readonly denials: IamDenial[] = [];

  constructor(
    private readonly world: World,
    readonly evaluator: IamEvaluator,
    private readonly lookups: ResourceLookups,
  ) {}

  /** The first denial among the authorizations the call needs, or undefined when all are allowed. */
  async authorize(
    principal: string | undefined,
    service: string,
    operation: string,
    input: unknown,
  ): Promise<(Decision & { request: AuthorizationRequest }) | undefined> {
    if (principal === OPERATOR) {
      this.operator += 1;
      return undefined;
    }
    if (principal === undefined) {
      this.unattributed.push(`${service}:${operation}`);
      this.world.note('iam', `${service}:${operation} has no known caller: not evaluated`);
      return undefined;
    }
    this.calls += 1;
    const requests = authorizationRequests(
      this.evaluator.model,
      this.lookups,
      service,
      operation,
      (input ?? {}) as Record<string, unknown>,
    );
    for (const request of requests) {
      this.authorizations += 1;
      const decision = await this.evaluator.decide(principal, request, (work) => this.world.clock.io(work));
      if (!decision.allowed) {
        this.denials.push({
          at: Date.now(),
          principal,
          call: `${service}:${operation}`,
          action: request.action,
          resource: request.resource,
          message: decision.message,
        });
        this.world.note(
          'iam',
          `DENIED ${principal} ${request.action} on ${request.resource} (${decision.result})`,
        );
        return { ...decision, request };
      }
    }
    return undefined;
  }

  summary(): IamSummary {
    return {
      callsEvaluated: this.calls,
      authorizationsEvaluated: this.authorizations,
      operatorCalls: this.operator,
      unattributed: [...this.unattributed],
      denials: [...this.denials],
    };
  }
}

const enforcers = new WeakMap<World, Promise<IamEnforcer>>();
const summaries = new WeakMap<World, IamEnforcer>();

/** The IAM record of a run (undefined when IAM was off or nothing was called). */
export const iamSummaryOf = (world: World): IamSummary | undefined => summaries.get(world)?.summary();

let warmed: Promise<void> | undefined;

/**
 * Load the IAM reference data every granted action needs, once per process, before the first
 * decision: the evaluator reads it from files, and real I/O in the middle of one run but not the next
 * would let concurrent calls be answered in a different order.
 */
const warmUp = (evaluator: IamEvaluator): Promise<void> => {
  warmed ??= (async () => {
    const throwaway = new IamEvaluator(evaluator.model);
    for (const p of evaluator.model.principals.values()) {
      const actions = new Set(
        p.identityPolicies.flatMap((i) =>
          (i.policy.Statement as Array<{ Action?: string | string[] }>).flatMap((s) =>
            [s.Action ?? []].flat(),
          ),
        ),
      );
      for (const action of actions) await throwaway.decide(p.name, { action, resource: '*', context: {} });
    }
  })();
  return warmed;
};

/**
 * The enforcer of a run, built from the synthesized stack the first time the run makes a call. Every
 * caller awaits the same promise, so calls made meanwhile go on in the order they were made.
 */
/** The enforcer of a run once it is built (no waiting), else undefined. */
export const builtEnforcer = (world: World): IamEnforcer | undefined => summaries.get(world);

export const enforcerFor = (
  world: World,
  lookups: ResourceLookups,
  options: IamStackOptions = {},
): Promise<IamEnforcer> => {
  let enforcer = enforcers.get(world);
  if (!enforcer) {
    enforcer = (async () => {
      const template = await resolveTemplate(world.accountId, world.region, options);
      // The inventory index's functions too: organization runs run them.
      const evaluator = new IamEvaluator(
        iamModel(template, world.accountId, world.region, { inventory: true }),
      );
      await warmUp(evaluator);
      const built = new IamEnforcer(world, evaluator, lookups);
      summaries.set(world, built);
      return built;
    })();
    enforcers.set(world, enforcer);
  }
  return enforcer;
};
