import { Stack, Token } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { ArnOf } from './iam';

/**
 * Base images from registries other than ECR, for the source rebuilds (docs/deploy.md, "Base images
 * from other registries"): a `docker login` per registry with credentials from Secrets Manager, and
 * ECR pull-through cache rules that the builds pull the base images through.
 */

/** Registry host (`docker.io`, `ghcr.io`, `registry.example.com:5000`) → Secrets Manager secret ARN. */
export type RegistryCredentials = Readonly<Record<string, string>>;

/** Upstream registry host (`docker.io`, `ghcr.io`, `quay.io`, …) → ECR repository prefix of its pull-through cache rule. */
export type PullThroughCache = Readonly<Record<string, string>>;

export interface BuildRegistriesProps {
  /**
   * Registries the source rebuilds log in to before they pull, each with a Secrets Manager secret
   * (JSON `{"username": "…", "accessToken": "…"}`, the format ECR pull-through cache rules read).
   * @default - none: base images are pulled anonymously (Docker Hub rate-limits anonymous pulls)
   */
  readonly registryCredentials?: RegistryCredentials;
  /**
   * Base images of these upstream registries are pulled through the account's ECR pull-through cache:
   * the source rebuild rewrites the FROM lines of its copy of the Dockerfile to
   * `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<repository>` (`docker.io/node:20` →
   * `<prefix>/library/node:20`).
   * @default - none: base images are pulled from their registries
   */
  readonly pullThroughCache?: PullThroughCache;
  /**
   * Create the ECR pull-through cache rules `pullThroughCache` names (`AWS::ECR::PullThroughCacheRule`),
   * with the credentials `registryCredentials` gives for the registries that need them.
   * @default false - the rules exist already (or are created by whoever owns the registry)
   */
  readonly createPullThroughCacheRules?: boolean;
}

/**
 * The upstream registries ECR pull-through cache supports (CreatePullThroughCacheRule,
 * `upstreamRegistryUrl`), by the host image references name. Docker Hub, GitHub and GitLab need
 * credentials (a secret whose name starts with `ecr-pullthroughcache/`).
 */
export const UPSTREAM_REGISTRIES: Readonly<
  Record<
    string,
    { readonly url: string; readonly upstreamRegistry: string; readonly needsCredentials: boolean }
  >
> = {
  'docker.io': { url: 'registry-1.docker.io', upstreamRegistry: 'docker-hub', needsCredentials: true },
  'ghcr.io': { url: 'ghcr.io', upstreamRegistry: 'github-container-registry', needsCredentials: true },
  'registry.gitlab.com': {
    url: 'registry.gitlab.com',
    upstreamRegistry: 'gitlab-container-registry',
    needsCredentials: true,
  },
  'public.ecr.aws': { url: 'public.ecr.aws', upstreamRegistry: 'ecr-public', needsCredentials: false },
  'quay.io': { url: 'quay.io', upstreamRegistry: 'quay', needsCredentials: false },
  'registry.k8s.io': { url: 'registry.k8s.io', upstreamRegistry: 'k8s', needsCredentials: false },
};

/** A registry host as image references and `docker login` name it (lower case, optional port). */
const REGISTRY_HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
/** A complete secret ARN (name and the six characters Secrets Manager appends). */
const SECRET_ARN =
  /^arn:aws(-[a-z]+)*:secretsmanager:[a-z]{2}(-[a-z]+)+-\d:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$/;
/** CreatePullThroughCacheRule's `ecrRepositoryPrefix` (2-30 characters). */
const ECR_PREFIX = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

/** Every problem with the registry settings, each naming its field (empty when they are fine). */
export const checkBuildRegistries = (props: BuildRegistriesProps): string[] => {
  const problems: string[] = [];
  const record = (value: unknown, field: string): Record<string, unknown> | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      problems.push(`${field}: must be an object of registry host → value`);
      return undefined;
    }
    return value as Record<string, unknown>;
  };
  const credentials = record(props.registryCredentials, 'registryCredentials') ?? {};
  for (const [host, secret] of Object.entries(credentials)) {
    const field = `registryCredentials["${host}"]`;
    if (!REGISTRY_HOST.test(host))
      problems.push(
        `${field}: "${host}" is not a registry host (docker.io, ghcr.io, registry.example.com:5000)`,
      );
    if (Token.isUnresolved(secret)) continue;
    if (typeof secret !== 'string' || !SECRET_ARN.test(secret))
      problems.push(
        `${field}: must be the complete ARN of a Secrets Manager secret (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>), got ${JSON.stringify(secret)}`,
      );
  }
  const cache = record(props.pullThroughCache, 'pullThroughCache') ?? {};
  for (const [host, prefix] of Object.entries(cache)) {
    const field = `pullThroughCache["${host}"]`;
    if (!REGISTRY_HOST.test(host)) problems.push(`${field}: "${host}" is not a registry host`);
    if (typeof prefix !== 'string' || prefix.length < 2 || prefix.length > 30 || !ECR_PREFIX.test(prefix))
      problems.push(
        `${field}: must be an ECR repository prefix (2-30 lower-case letters, digits, . _ - and /), got ${JSON.stringify(prefix)}`,
      );
  }
  if (
    props.createPullThroughCacheRules !== undefined &&
    typeof props.createPullThroughCacheRules !== 'boolean'
  )
    problems.push(
      `createPullThroughCacheRules: must be true or false, got ${JSON.stringify(props.createPullThroughCacheRules)}`,
    );
  if (props.createPullThroughCacheRules === true) {
    if (Object.keys(cache).length === 0)
      problems.push('createPullThroughCacheRules: pullThroughCache names no registry to create a rule for');
    for (const host of Object.keys(cache)) {
      const upstream = UPSTREAM_REGISTRIES[host];
      const field = `pullThroughCache["${host}"]`;
      if (upstream === undefined) {
        problems.push(
          `${field}: createPullThroughCacheRules supports ${Object.keys(UPSTREAM_REGISTRIES).join(', ')}; create the rule for ${host} yourself and leave createPullThroughCacheRules off`,
        );
        continue;
      }
      const secret = credentials[host];
      if (upstream.needsCredentials && secret === undefined)
        problems.push(
          `${field}: ECR needs credentials for ${host}: add registryCredentials["${host}"], a secret whose name starts with ecr-pullthroughcache/`,
        );
      if (
        typeof secret === 'string' &&
        !Token.isUnresolved(secret) &&
        !/:secret:ecr-pullthroughcache\//.test(secret)
      )
        problems.push(
          `registryCredentials["${host}"]: a pull-through cache rule reads only secrets whose name starts with ecr-pullthroughcache/`,
        );
    }
  }
  return problems;
};

/** Environment variable names of one registry's credentials in the buildspec (never printed). */
const credentialVariables = (index: number) => ({
  username: `AUTOPATCH_REGISTRY_${index}_USERNAME`,
  token: `AUTOPATCH_REGISTRY_${index}_TOKEN`,
});

/**
 * The buildspec's `env.secrets-manager` (CodeBuild reads each secret's JSON key into a variable and
 * masks its value in the logs) and the logins that use them. `docker login docker.io` logs in to
 * Docker Hub.
 */
export const registryLogins = (
  credentials: RegistryCredentials,
): { readonly secrets: Record<string, string>; readonly commands: string[] } => {
  const entries = Object.entries(credentials).sort(([a], [b]) => a.localeCompare(b));
  const secrets: Record<string, string> = {};
  const commands: string[] = [];
  entries.forEach(([host, secretArn], index) => {
    const v = credentialVariables(index + 1);
    secrets[v.username] = `${secretArn}:username`;
    secrets[v.token] = `${secretArn}:accessToken`;
    commands.push(
      `printf '%s' "$${v.token}" | docker login --username "$${v.username}" --password-stdin '${host}'`,
    );
  });
  return { secrets, commands };
};

/** AUTOPATCH_PULL_THROUGH: "docker.io=docker-hub ghcr.io=github", what the buildspec's rewrite reads. */
export const pullThroughVariable = (cache: PullThroughCache): string =>
  Object.entries(cache)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([host, prefix]) => `${host}=${prefix}`)
    .join(' ');

/**
 * Pulling an image through a cache rule for the first time imports it from upstream and creates its
 * repository (ECR user guide, "IAM permissions required to sync an upstream registry"): both on the
 * rule's prefix only. The pulls themselves are granted account-wide already (builders.ts).
 */
export const pullThroughStatements = (arn: ArnOf, cache: PullThroughCache): iam.PolicyStatement[] => {
  const prefixes = [...new Set(Object.values(cache))].sort();
  if (prefixes.length === 0) return [];
  return [
    new iam.PolicyStatement({
      actions: ['ecr:BatchImportUpstreamImage', 'ecr:CreateRepository'],
      resources: prefixes.map((p) => arn('ecr', 'repository', `${p}/*`)),
    }),
  ];
};

/** GetSecretValue on exactly the registries' secrets. */
export const registryCredentialStatements = (credentials: RegistryCredentials): iam.PolicyStatement[] => {
  const secrets = [...new Set(Object.values(credentials))].sort();
  return secrets.length === 0
    ? []
    : [new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: secrets })];
};

/** The account's private registry host, which the pull-through cache repositories are in. */
export const cacheRegistryHost = (scope: Construct): string => {
  const stack = Stack.of(scope);
  return `${stack.account}.dkr.ecr.${stack.region}.${stack.urlSuffix}`;
};

/** The pull-through cache rules, when asked for (`createPullThroughCacheRules`). */
export const createPullThroughCacheRules = (
  scope: Construct,
  props: BuildRegistriesProps,
): ecr.CfnPullThroughCacheRule[] => {
  if (props.createPullThroughCacheRules !== true) return [];
  return Object.entries(props.pullThroughCache ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([host, prefix]) => {
      const upstream = UPSTREAM_REGISTRIES[host];
      if (upstream === undefined) return [];
      const credentialArn = props.registryCredentials?.[host];
      return [
        new ecr.CfnPullThroughCacheRule(scope, `PullThroughCache-${host}`, {
          ecrRepositoryPrefix: prefix,
          upstreamRegistryUrl: upstream.url,
          upstreamRegistry: upstream.upstreamRegistry,
          ...(credentialArn !== undefined ? { credentialArn } : {}),
        }),
      ];
    });
};
