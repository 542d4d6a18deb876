import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { AutopatchError, isTransient, TransientError } from './errors';

/**
 * Where a resource lives (its account and Region), and the credentials Autopatch's hub uses there.
 *
 * One account and one Region needs nothing here: the hub's own credentials, in its own Region. A
 * service in another account (a spoke) is reached by assuming the spoke's role, the one the
 * `AutopatchSpoke` construct creates, named the same in every account (`SPOKE_ROLE_NAME`, under the
 * `/autopatch/` path). A service in another Region of the hub's account is reached with the hub's
 * own credentials and a client for that Region.
 *
 * Credentials are cached per role and refreshed five minutes before they expire; clients are cached
 * per (service, account, Region), so a warm Lambda assumes each spoke role about once an hour.
 */

/** The account and Region of a resource. */
export interface Place {
  readonly account: string;
  readonly region: string;
}

/** The spoke role's default name and path: the same in every workload account. */
export const SPOKE_ROLE_PATH = '/autopatch/';
export const SPOKE_ROLE_NAME = 'AutopatchSpoke';
/** Environment: the hub's account id (the Lambda cannot read it otherwise without a call). */
export const HOME_ACCOUNT_ENV = 'AUTOPATCH_HOME_ACCOUNT';
/** Environment: the spoke role's name (without path) when not the default. */
export const SPOKE_ROLE_ENV = 'AUTOPATCH_SPOKE_ROLE_NAME';

const ARN = /^arn:aws[a-z-]*:[a-z0-9-]+:([a-z0-9-]*):(\d{12}|):/;

/** The account and Region an ARN names; the fallback for the parts it leaves empty (S3-style ARNs). */
export const placeOfArn = (arn: string, fallback: Place): Place => {
  const match = ARN.exec(arn);
  return { region: match?.[1] || fallback.region, account: match?.[2] || fallback.account };
};

/** The role ARN of the spoke in an account. */
export const spokeRoleArn = (account: string, roleName = SPOKE_ROLE_NAME, partition = 'aws'): string =>
  `arn:${partition}:iam::${account}:role${SPOKE_ROLE_PATH}${roleName}`;

/**
 * The hub could not assume a spoke's role: the spoke is not deployed in that account, its role's
 * trust does not name this hub, or an SCP denies it. Never retried: an operator has to act.
 */
export class SpokeAccessError extends AutopatchError {
  constructor(
    readonly account: string,
    readonly roleArn: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SpokeAccessError';
  }
}

/** Temporary credentials, as the SDK's credential providers return them. */
export interface AwsCredentialIdentity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}
export type AwsCredentialIdentityProvider = () => Promise<AwsCredentialIdentity>;

/** Milliseconds before expiry at which cached credentials are renewed. */
const REFRESH_BEFORE_MS = 5 * 60_000;

export interface AccountClientsOptions {
  /** The hub's account. @default process.env.AUTOPATCH_HOME_ACCOUNT */
  readonly homeAccount?: string;
  /** The hub's Region. @default process.env.AWS_REGION */
  readonly homeRegion?: string;
  /** @default process.env.AUTOPATCH_SPOKE_ROLE_NAME ?? SPOKE_ROLE_NAME */
  readonly spokeRoleName?: string;
  /** @default a client in the hub's Region */
  readonly sts?: Pick<STSClient, 'send'>;
  /** Session name CloudTrail shows in the spoke. @default autopatch-<function name> */
  readonly sessionName?: string;
  readonly now?: () => number;
}

type Constructor<C> = new (config: { region?: string; credentials?: AwsCredentialIdentityProvider }) => C;

/**
 * SDK clients per account and Region. `clientFor(ECSClient, place)` returns the hub's own kind of
 * client for the hub's account, and one with the spoke role's credentials for any other.
 */
export class AccountClients {
  private readonly home: Partial<Place>;
  private readonly roleName: string;
  private readonly sessionName: string;
  private readonly now: () => number;
  private sts?: Pick<STSClient, 'send'>;
  private readonly credentials = new Map<string, Promise<AwsCredentialIdentity>>();
  private readonly clients = new Map<string, unknown>();

  constructor(private readonly options: AccountClientsOptions = {}) {
    const account = options.homeAccount ?? process.env[HOME_ACCOUNT_ENV];
    const region = options.homeRegion ?? process.env.AWS_REGION;
    this.home = { ...(account ? { account } : {}), ...(region ? { region } : {}) };
    this.roleName = options.spokeRoleName ?? process.env[SPOKE_ROLE_ENV] ?? SPOKE_ROLE_NAME;
    this.sessionName = (options.sessionName ?? `autopatch-${process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'hub'}`)
      .replace(/[^\w+=,.@-]/g, '-')
      .slice(0, 64);
    this.now = options.now ?? Date.now;
  }

  /** True when the place is the hub's own account (or the hub's account is not known: single account). */
  isHome(place: Partial<Place>): boolean {
    return (
      this.home.account === undefined || place.account === undefined || place.account === this.home.account
    );
  }

  /** The spoke role Autopatch assumes in an account. */
  roleArnFor(account: string): string {
    return spokeRoleArn(account, this.roleName);
  }

  /** A client of the given kind for the place: cached, with the spoke role's credentials when not home. */
  clientFor<C>(kind: Constructor<C>, place: Partial<Place>): C {
    const region = place.region ?? this.home.region;
    const home = this.isHome(place);
    const key = `${kind.name}|${home ? 'home' : place.account}|${region ?? ''}`;
    const cached = this.clients.get(key);
    if (cached !== undefined) return cached as C;
    const client = new kind({
      ...(region !== undefined ? { region } : {}),
      ...(home || place.account === undefined ? {} : { credentials: this.credentialsFor(place.account) }),
    });
    this.clients.set(key, client);
    return client;
  }

  /** A credential provider for the spoke role in an account, cached until five minutes before expiry. */
  credentialsFor(account: string): AwsCredentialIdentityProvider {
    return async () => {
      const cached = this.credentials.get(account);
      if (cached !== undefined) {
        try {
          const identity = await cached;
          if (
            identity.expiration === undefined ||
            identity.expiration.getTime() - REFRESH_BEFORE_MS > this.now()
          )
            return identity;
        } catch {
          // A failed assume is not cached: the next call tries again.
        }
      }
      const fresh = this.assume(account);
      this.credentials.set(account, fresh);
      fresh.catch(() => {
        if (this.credentials.get(account) === fresh) this.credentials.delete(account);
      });
      return fresh;
    };
  }

  private async assume(account: string): Promise<AwsCredentialIdentity> {
    const roleArn = this.roleArnFor(account);
    this.sts ??= this.options.sts ?? new STSClient(this.home.region ? { region: this.home.region } : {});
    try {
      const { Credentials } = await this.sts.send(
        new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: this.sessionName, DurationSeconds: 3600 }),
      );
      if (!Credentials?.AccessKeyId || !Credentials.SecretAccessKey)
        throw new SpokeAccessError(account, roleArn, `AssumeRole ${roleArn} returned no credentials`);
      return {
        accessKeyId: Credentials.AccessKeyId,
        secretAccessKey: Credentials.SecretAccessKey,
        ...(Credentials.SessionToken ? { sessionToken: Credentials.SessionToken } : {}),
        ...(Credentials.Expiration ? { expiration: Credentials.Expiration } : {}),
      };
    } catch (error) {
      if (error instanceof SpokeAccessError) throw error;
      if (isTransient(error))
        throw new TransientError(`AssumeRole ${roleArn}: ${(error as Error).message}`, { cause: error });
      throw new SpokeAccessError(
        account,
        roleArn,
        `Autopatch cannot assume ${roleArn} (${(error as Error).name}: ${(error as Error).message}). ` +
          `Deploy the Autopatch spoke in account ${account} with this hub's account as its hub ` +
          "(docs/organizations.md), or remove the account from the hub's organization settings.",
        { cause: error },
      );
    }
  }
}

let shared: AccountClients | undefined;
/** The Lambda's one AccountClients (module scope: credentials and clients live as long as the sandbox). */
export const accountClients = (): AccountClients => {
  shared ??= new AccountClients();
  return shared;
};
