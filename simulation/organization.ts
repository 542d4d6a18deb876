/**
 * Several accounts and Regions in one simulation: an AWS Organizations estate with the Autopatch hub
 * in one account and Region, spokes (lib/spoke.ts) in workload accounts, each account and Region with
 * its own ECS, ECR, CloudWatch, CodeDeploy and Inspector, and IAM evaluated per account.
 *
 * - **Where a call goes.** An SDK client's calls go to the models of the client's account (from its
 *   credentials: the simulation's own for the hub, the credentials STS issued for an assumed spoke
 *   role) and the client's Region.
 * - **Who is asking.** A call with the hub's credentials is evaluated against the calling hub role's
 *   policies (synthesized with the scenario's `organization`), in whatever Region; a call with a
 *   spoke session's credentials against the spoke role's inline policies, as lib/spoke.ts synthesizes
 *   them for that account.
 * - **sts:AssumeRole** is one real IAM decision across accounts: the hub role's identity policy must
 *   allow it on the role's ARN (with aws:ResourceOrgID), and the role's trust policy must allow the
 *   caller (aws:PrincipalArn, aws:PrincipalOrgID). A role that does not exist (no spoke, or a spoke
 *   without its role) is refused as STS refuses it: AccessDenied, "User: arn:aws:sts::… is not
 *   authorized to perform: sts:AssumeRole on resource: …".
 * - **Events.** A spoke account and Region has its own bus with the spoke stack's forwarding rules:
 *   what they match reaches the hub's bus, keeping the spoke's `account` and `region`.
 */
import { STSServiceException } from '@aws-sdk/client-sts';
import { IamEvaluator } from './iam/evaluate';
import { type IamModel, type IamPrincipal, iamModel, type PolicyDocument } from './iam/policies';
import { authorizationRequests, type ResourceLookups } from './iam/requests';
import { type SpokeTemplate, spokeTemplate } from './iam/spoke';
import type { ServiceName } from './model/catalog';
import { CloudWatchModel } from './model/cloudwatch';
import { CodeDeployModel } from './model/codedeploy';
import { EcrModel, type Image } from './model/ecr';
import { EcsModel } from './model/ecs';
import { sdkError } from './model/errors';
import { EventBus } from './model/eventbus';
import { InspectorModel } from './model/inspector';
import type { World } from './model/world';
import { type IamStackOptions, type ResolvedTemplate, resolveTemplate } from './stack';

export interface Place {
  readonly account: string;
  readonly region: string;
}
export const placeId = (p: Place): string => `${p.account}/${p.region}`;

/** A view of the run's World for another account and Region: the same clock, ids and records. */
export const worldAt = (world: World, place: Place): World => {
  const view = Object.create(world) as World;
  Object.defineProperty(view, 'accountId', { value: place.account, enumerable: true });
  Object.defineProperty(view, 'region', { value: place.region, enumerable: true });
  Object.defineProperty(view, 'hex', { value: (length?: number) => world.hex(length) });
  // The timeline says where: the models name a service "<cluster>/<service>" in every account.
  Object.defineProperty(view, 'note', {
    value: (source: string, text: string) => world.note(source, `${place.account}/${place.region} ${text}`),
  });
  return view;
};

/** One account and Region's own services. */
export interface PlaceModels {
  readonly place: Place;
  readonly world: World;
  readonly bus: EventBus;
  readonly ecr: EcrModel;
  readonly ecs: EcsModel;
  readonly cloudwatch: CloudWatchModel;
  readonly codedeploy: CodeDeployModel;
  readonly inspector: InspectorModel;
  readonly handlers: Partial<Record<ServiceName, Readonly<Record<string, (input: never) => unknown>>>>;
}

/**
 * One account and Region's models, wired as the services are (alarms reach ECS's and CodeDeploy's
 * deployments), with the SDK operation handlers of each service. `registries`: where its tasks pull
 * images from (default: its own ECR; in an estate, whichever registry holds the image).
 */
export const placeModels = (
  place: Place,
  world: World,
  bus: EventBus,
  registries?: EcrModel,
): PlaceModels => {
  const ecr = new EcrModel(world);
  const inspector = new InspectorModel(world, ecr, bus);
  const ecs = new EcsModel(world, registries ?? ecr, bus);
  const cloudwatch = new CloudWatchModel(world, bus);
  const codedeploy = new CodeDeployModel(world, ecs, bus, (name) => cloudwatch.state(name));
  cloudwatch.onChange((name, state) => {
    ecs.alarmChanged(name, state);
    codedeploy.alarmChanged(name, state);
  });
  return {
    place,
    world,
    bus,
    ecr,
    ecs,
    cloudwatch,
    codedeploy,
    inspector,
    handlers: {
      ecs: ecs.handlers,
      ecr: ecr.handlers,
      cloudwatch: cloudwatch.handlers,
      codedeploy: codedeploy.handlers,
      inspector2: inspector.handlers,
    },
  };
};

/** Where a spoke is deployed and what it holds. */
export interface SpokeSpec {
  readonly account: string;
  /** The Regions with the spoke stack (the role in the first only, IAM being global). */
  readonly regions: readonly string[];
  /** The role exists (false: the stack without its role, or a role deleted since). */
  readonly role: boolean;
  /** The role may read and push images (a registry account). */
  readonly registry: boolean;
}

export interface OrganizationOptions {
  readonly hub: Place;
  readonly organizationId?: string;
  readonly spokeRoleName?: string;
  readonly spokes: readonly SpokeSpec[];
  /** The accounts in the organization (aws:PrincipalOrgID / aws:ResourceOrgID): default every declared one. */
  readonly members?: readonly string[];
  /** The hub stack's options (organization and other settings, explicit targets). */
  readonly stack: IamStackOptions;
}

/** An STS session the simulation issued. */
export interface Session {
  readonly accessKeyId: string;
  readonly account: string;
  readonly roleArn: string;
  readonly sessionName: string;
  /** The hub principal that assumed it. */
  readonly caller: string;
  readonly expiration: number;
}

/** The synthesized stacks an Organization is built from. */
export interface LoadedStacks {
  readonly hubTemplate: ResolvedTemplate;
  readonly spokes: ReadonlyMap<string, SpokeTemplate>;
}

const TOKEN_PREFIX = 'SIMULATED-SESSION:';
const stsError = (name: string, message: string, status: number, requestId: string): Error => {
  const e = new STSServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId, attempts: 1, totalRetryDelay: 0 },
    message,
  });
  return e;
};

export class Organization {
  private readonly places = new Map<string, PlaceModels>();
  private readonly sessions = new Map<string, Session>();
  private readonly hubModels = new Map<string, IamEvaluator>();
  private readonly spokeEvaluators = new Map<string, IamEvaluator>();
  readonly denials: Array<{ at: number; caller: string; action: string; resource: string; message: string }> =
    [];
  /** ECR repository policies by repository ARN (a central registry's grants to the organization). */
  readonly repositoryPolicies = new Map<string, PolicyDocument>();
  /** Events each spoke bus forwarded to the hub's. */
  forwarded = 0;

  private constructor(
    readonly world: World,
    readonly options: OrganizationOptions,
    private readonly hubTemplate: ResolvedTemplate,
    /** By account: the spoke stack of the role's Region (with the role, unless `role: false`). */
    private readonly spokeStacks: ReadonlyMap<string, SpokeTemplate>,
    private readonly hubBus: EventBus,
  ) {}

  /**
   * Synthesize (or read from the cache) the hub's and every spoke's stack: real I/O, to do before the
   * virtual clock is installed.
   */
  static async load(options: OrganizationOptions): Promise<LoadedStacks> {
    const hubTemplate = await resolveTemplate(options.hub.account, options.hub.region, options.stack);
    const spokes = new Map<string, SpokeTemplate>();
    for (const s of options.spokes) {
      const region = s.regions[0] ?? options.hub.region;
      spokes.set(
        s.account,
        await spokeTemplate({
          account: s.account,
          region,
          hubAccount: options.hub.account,
          hubRegion: options.hub.region,
          ...(options.organizationId !== undefined ? { organizationId: options.organizationId } : {}),
          ...(options.spokeRoleName !== undefined ? { roleName: options.spokeRoleName } : {}),
          createRole: s.account !== options.hub.account && s.role,
          forwardEvents: true,
          registry: s.registry,
        }),
      );
    }
    return { hubTemplate, spokes };
  }

  static async create(
    world: World,
    hubBus: EventBus,
    options: OrganizationOptions,
    loaded?: LoadedStacks,
  ): Promise<Organization> {
    const { hubTemplate, spokes } = loaded ?? (await Organization.load(options));
    return new Organization(world, options, hubTemplate, spokes, hubBus);
  }

  get hub(): Place {
    return this.options.hub;
  }

  isHome(place: Place): boolean {
    return place.account === this.hub.account && place.region === this.hub.region;
  }

  /** Register the hub's own models (the run builds them as for one account). */
  addHome(models: Omit<PlaceModels, 'place'>): PlaceModels {
    const m = { ...models, place: this.hub };
    this.places.set(placeId(this.hub), m);
    return m;
  }

  /** The models of an account and Region, created on first use. */
  at(place: Place): PlaceModels {
    const id = placeId(place);
    const existing = this.places.get(id);
    if (existing) return existing;
    if (this.isHome(place)) throw new Error('the hub place is registered by the run (addHome)');
    const world = worldAt(this.world, place);
    const bus = new EventBus(world);
    this.forwardFrom(place, bus);
    // Tasks pull from any registry of the estate (a central registry account).
    const registries = {
      resolveUri: (uri: string): Image | undefined => this.resolveImage(uri),
    } as unknown as EcrModel;
    const models = placeModels(place, world, bus, registries);
    this.places.set(id, models);
    return models;
  }

  /** Every account and Region with models, the hub's first. */
  all(): PlaceModels[] {
    return [...this.places.values()];
  }

  /** The image a URI names in whichever registry of the estate holds it. */
  resolveImage(uri: string): Image | undefined {
    const host = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com\//.exec(uri);
    if (!host) return undefined;
    return this.places.get(`${host[1]}/${host[2]}`)?.ecr.resolveUri(uri);
  }

  /** The spoke stack's forwarding rules in that account and Region (none: no spoke deployed there). */
  private forwardFrom(place: Place, bus: EventBus): void {
    const spoke = this.options.spokes.find((s) => s.account === place.account);
    if (!spoke?.regions.includes(place.region)) return;
    const stack = this.spokeStacks.get(place.account);
    for (const rule of stack?.rules ?? [])
      bus.addRule({
        name: `spoke:${rule.name}`,
        pattern: rule.pattern,
        targets: [
          {
            id: `hub bus ${placeId(this.hub)}`,
            deliver: (event) => {
              this.forwarded += 1;
              this.hubBus.put(event);
            },
          },
        ],
      });
  }

  private orgOf(account: string): string | undefined {
    if (this.options.organizationId === undefined) return undefined;
    const members = this.options.members;
    return members === undefined || members.includes(account) || account === this.hub.account
      ? this.options.organizationId
      : undefined;
  }

  /** The hub's roles, as IAM sees them in one of the hub account's Regions. */
  hubEvaluator(region: string): IamEvaluator {
    let evaluator = this.hubModels.get(region);
    if (!evaluator) {
      evaluator = new IamEvaluator(iamModel(this.hubTemplate, this.hub.account, region, { inventory: true }));
      this.hubModels.set(region, evaluator);
    }
    return evaluator;
  }

  /** The spoke role of an account as IAM sees it in one Region (a principal per session name). */
  private spokeEvaluator(session: Session, region: string): IamEvaluator {
    const id = `${session.account}/${region}/${session.sessionName}`;
    let evaluator = this.spokeEvaluators.get(id);
    if (!evaluator) {
      const role = this.deleted.has(session.account)
        ? undefined
        : this.spokeStacks.get(session.account)?.role;
      const principal: IamPrincipal = {
        name: session.sessionName,
        roleArn: session.roleArn,
        roleId: 'AutopatchSpoke',
        identityPolicies: role?.policies ?? [],
        managedPolicyArns: [],
      };
      const model: IamModel = {
        accountId: session.account,
        region,
        partition: 'aws',
        principals: new Map([[principal.name, principal]]),
        resourcePolicies: new Map(),
        keys: new Map(),
        projectPrincipals: new Map(),
        functionPrincipals: new Map(),
      };
      evaluator = new IamEvaluator(model);
      this.spokeEvaluators.set(id, evaluator);
    }
    return evaluator;
  }

  private readonly deleted = new Set<string>();

  /** The spoke role of an account is deleted: no new session, and its sessions lose every permission. */
  deleteRole(account: string): void {
    this.deleted.add(account);
    for (const key of [...this.spokeEvaluators.keys()])
      if (key.startsWith(`${account}/`)) this.spokeEvaluators.delete(key);
    this.hubModels.clear();
    this.world.note('iam', `the spoke role of account ${account} was deleted`);
  }

  /** The role a spoke account has, if any (the spoke stack with its role is deployed there). */
  roleOf(roleArn: string): { account: string; trust: SpokeTemplate['role'] } | undefined {
    const account = /^arn:aws:iam::(\d{12}):role\//.exec(roleArn)?.[1];
    if (!account) return undefined;
    const spoke = this.options.spokes.find((s) => s.account === account);
    const role = spoke?.role && !this.deleted.has(account) ? this.spokeStacks.get(account)?.role : undefined;
    return role && role.arn === roleArn ? { account, trust: role } : { account, trust: undefined };
  }

  /** sts:AssumeRole by a hub principal: both the caller's identity policy and the role's trust decide. */
  async assumeRole(
    caller: string | undefined,
    input: { RoleArn?: string; RoleSessionName?: string; DurationSeconds?: number },
    region: string,
  ): Promise<{ Credentials: Record<string, unknown>; AssumedRoleUser: Record<string, unknown> }> {
    const roleArn = input.RoleArn ?? '';
    const sessionName = input.RoleSessionName ?? '';
    const requestId = this.world.uuid();
    if (!/^arn:aws:iam::\d{12}:role\/.+/.test(roleArn) || !/^[\w+=,.@-]{2,64}$/.test(sessionName))
      throw stsError('ValidationError', 'Invalid RoleArn or RoleSessionName', 400, requestId);
    if (caller === undefined) {
      this.world.note('iam', `sts:AssumeRole of ${roleArn} has no known caller`);
      throw stsError('AccessDenied', `the simulation cannot tell who assumes ${roleArn}`, 403, requestId);
    }
    const decision = await this.decideAssume(caller, roleArn, region);
    if (!decision.allowed) {
      this.denials.push({
        at: Date.now(),
        caller,
        action: 'sts:AssumeRole',
        resource: roleArn,
        message: decision.message,
      });
      this.world.note('iam', `DENIED ${caller} sts:AssumeRole on ${roleArn}`);
      throw stsError('AccessDenied', decision.message, 403, requestId);
    }
    const found = this.roleOf(roleArn);
    const max = found?.trust?.maxSessionSeconds ?? 3600;
    const duration = input.DurationSeconds ?? 3600;
    if (duration < 900 || duration > max)
      throw stsError(
        'ValidationError',
        `The requested DurationSeconds exceeds the MaxSessionDuration set for this role.`,
        400,
        requestId,
      );
    const accessKeyId = `ASIA${this.world.hex(16).toUpperCase()}`;
    const session: Session = {
      accessKeyId,
      account: found?.account ?? '',
      roleArn,
      sessionName,
      caller,
      expiration: Date.now() + duration * 1000,
    };
    this.sessions.set(accessKeyId, session);
    this.world.note('sts', `${caller} assumed ${roleArn} (session ${sessionName})`);
    const roleName = roleArn.split('/').pop() ?? '';
    return {
      Credentials: {
        AccessKeyId: accessKeyId,
        SecretAccessKey: this.world.hex(40),
        SessionToken: `${TOKEN_PREFIX}${Buffer.from(JSON.stringify({ a: accessKeyId, r: roleArn, s: sessionName, c: caller })).toString('base64')}`,
        Expiration: new Date(session.expiration),
      },
      AssumedRoleUser: {
        AssumedRoleId: `AROA${this.world.hex(16).toUpperCase()}:${sessionName}`,
        Arn: `arn:aws:sts::${session.account}:assumed-role/${roleName}/${sessionName}`,
      },
    };
  }

  /** The decision alone (tests ask it directly). */
  decideAssume(caller: string, roleArn: string, region: string) {
    const evaluator = this.hubEvaluator(region);
    const account = /^arn:aws:iam::(\d{12}):/.exec(roleArn)?.[1] ?? '';
    const role = this.roleOf(roleArn)?.trust;
    const principal = evaluator.principal(caller);
    const callerOrg = this.orgOf(this.hub.account);
    const resourceOrg = this.orgOf(account);
    return evaluator.decide(
      caller,
      {
        action: 'sts:AssumeRole',
        resource: roleArn,
        context: {
          ...(principal ? { 'aws:PrincipalArn': principal.roleArn } : {}),
          ...(callerOrg ? { 'aws:PrincipalOrgID': callerOrg } : {}),
          ...(resourceOrg ? { 'aws:ResourceOrgID': resourceOrg } : {}),
          'aws:ResourceAccount': account,
        },
      },
      (work) => this.world.clock.io(work),
      role ? { account, policy: role.trust } : { account },
    );
  }

  /**
   * The session credentials belong to, by access key. A session another run issued (a warm Lambda's
   * cached credentials outliving its simulated world) is assumed again by the same caller, so it is
   * only as good as the roles and trusts of this run.
   */
  async sessionOf(credentials: {
    accessKeyId?: string;
    sessionToken?: string;
  }): Promise<Session | undefined> {
    const key = credentials.accessKeyId ?? '';
    const known = this.sessions.get(key);
    if (known) return known;
    const token = credentials.sessionToken ?? '';
    if (!token.startsWith(TOKEN_PREFIX)) return undefined;
    const { r, s, c } = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64').toString()) as {
      r: string;
      s: string;
      c: string;
    };
    const decision = await this.decideAssume(c, r, this.hub.region);
    if (!decision.allowed)
      return { accessKeyId: key, account: '', roleArn: r, sessionName: s, caller: c, expiration: 0 };
    const session: Session = {
      accessKeyId: key,
      account: this.roleOf(r)?.account ?? '',
      roleArn: r,
      sessionName: s,
      caller: c,
      expiration: Number.POSITIVE_INFINITY,
    };
    this.sessions.set(key, session);
    return session;
  }

  /**
   * Authorize a call made in `place` by a hub principal (no session) or a spoke session; throws the
   * service's own access-denied error.
   */
  async authorize(
    place: Place,
    session: Session | undefined,
    principal: string | undefined,
    service: ServiceName,
    operation: string,
    input: unknown,
    denied: { name: string; status: number },
  ): Promise<void> {
    const models = this.places.get(placeId(place));
    if (session && (session.expiration <= Date.now() || session.account === ''))
      throw sdkError(
        service,
        'ExpiredTokenException',
        'The security token included in the request is expired',
        {
          status: 400,
          requestId: this.world.uuid(),
        },
      );
    // Lambda functions do not share credentials: the simulation's hub Lambdas run in one process and
    // share one AccountClients, so a session another function assumed counts only if this one could
    // assume the role itself.
    if (session && principal !== undefined && principal !== session.caller) {
      const own = await this.decideAssume(principal, session.roleArn, this.hub.region);
      if (!own.allowed) {
        this.world.note('iam', `DENIED ${principal} sts:AssumeRole on ${session.roleArn}`);
        throw stsError('AccessDenied', own.message, 403, this.world.uuid());
      }
    }
    const evaluator = session ? this.spokeEvaluator(session, place.region) : this.hubEvaluator(place.region);
    const name = session ? session.sessionName : principal;
    if (name === undefined) {
      this.world.note(
        'iam',
        `${service}:${operation} in ${placeId(place)} has no known caller: not evaluated`,
      );
      return;
    }
    const requests = authorizationRequests(
      evaluator.model,
      lookupsOfHandlers(models?.handlers ?? {}),
      service,
      operation,
      (input ?? {}) as Record<string, unknown>,
    );
    for (const request of requests) {
      // A resource of another account than the caller's (a spoke's cluster named by ARN with the
      // hub's credentials): no resource-based policy admits it.
      // An ECR repository of another account admits what its repository policy allows.
      const resourceAccount = /^arn:[^:]+:[^:]+:[^:]*:(\d{12}):/.exec(request.resource)?.[1];
      const policy = this.repositoryPolicies.get(request.resource);
      const org = this.orgOf(evaluator.model.accountId);
      const decision = await evaluator.decide(
        name,
        org ? { ...request, context: { 'aws:PrincipalOrgID': org, ...request.context } } : request,
        (work) => this.world.clock.io(work),
        resourceAccount !== undefined && resourceAccount !== evaluator.model.accountId
          ? { account: resourceAccount, ...(policy ? { policy } : {}) }
          : {},
      );
      if (!decision.allowed) {
        this.denials.push({
          at: Date.now(),
          caller: evaluator.callerArn(name),
          action: request.action,
          resource: request.resource,
          message: decision.message,
        });
        this.world.note(
          'iam',
          `DENIED ${evaluator.callerArn(name)} ${request.action} on ${request.resource}`,
        );
        throw sdkError(service, denied.name, decision.message, {
          status: denied.status,
          requestId: this.world.uuid(),
        });
      }
    }
  }
}

/** What IAM conditions need to know about an account's resources, asked of its models. */
export const lookupsOfHandlers = (
  handlers: Partial<Record<ServiceName, Readonly<Record<string, (input: never) => unknown>>>>,
): ResourceLookups => ({
  serviceTags: (serviceArn) => {
    const list = handlers.ecs?.ListTagsForResource as
      | ((input: { resourceArn: string }) => { tags?: Array<{ key?: string; value?: string }> })
      | undefined;
    try {
      const tags = list?.({ resourceArn: serviceArn }).tags ?? [];
      return Object.fromEntries(tags.map((t) => [t.key ?? '', t.value ?? '']));
    } catch {
      return undefined;
    }
  },
  codeDeployGroupOf: (deploymentId) => {
    const get = handlers.codedeploy?.GetDeployment as
      | ((input: { deploymentId: string }) => {
          deploymentInfo?: { applicationName?: string; deploymentGroupName?: string };
        })
      | undefined;
    try {
      const info = get?.({ deploymentId }).deploymentInfo;
      return info?.applicationName && info.deploymentGroupName
        ? { application: info.applicationName, deploymentGroup: info.deploymentGroupName }
        : undefined;
    } catch {
      return undefined;
    }
  },
  codeDeployConfigOf: (application, deploymentGroup) => {
    const get = handlers.codedeploy?.GetDeploymentGroup as
      | ((input: { applicationName: string; deploymentGroupName: string }) => {
          deploymentGroupInfo?: { deploymentConfigName?: string };
        })
      | undefined;
    try {
      return get?.({ applicationName: application, deploymentGroupName: deploymentGroup }).deploymentGroupInfo
        ?.deploymentConfigName;
    } catch {
      return undefined;
    }
  },
});
