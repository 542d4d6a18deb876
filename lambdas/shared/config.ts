import * as z from 'zod';
import { ConfigurationError } from './errors';

/**
 * Target configuration: which ECS services Autopatch protects and how. Shared by the construct
 * (validated at synth time) and the triage Lambda (which receives it as JSON in AUTOPATCH_CONFIG).
 */

/**
 * An AWS CodeConnections connection ARN; `codestar-connections` is the service's former name, whose
 * ARNs stay valid (Developer Tools console user guide, "AWS CodeConnections").
 */
export const CONNECTION_ARN =
  /^arn:aws(-[a-z]+)*:(codeconnections|codestar-connections):[a-z]{2}(-[a-z]+)+-\d:\d{12}:connection\/[0-9a-f-]{36}$/;

/**
 * The repository hosts a connection-backed source rebuild supports, with the CodeBuild source type
 * of each (a project source of that type with `auth: { type: 'CODECONNECTIONS' }`).
 */
export const CONNECTION_SOURCE_PROVIDERS = {
  'github.com': 'GITHUB',
  'gitlab.com': 'GITLAB',
  'bitbucket.org': 'BITBUCKET',
} as const;
export type ConnectionSourceType =
  (typeof CONNECTION_SOURCE_PROVIDERS)[keyof typeof CONNECTION_SOURCE_PROVIDERS];

/** The CodeBuild source type of a repository URL a connection can check out, if any. */
export const sourceProviderOf = (sourceLocation: string): ConnectionSourceType | undefined => {
  const host = /^https:\/\/([^/@#]+)\/[^/#]+\/[^#]+$/.exec(sourceLocation.split('#')[0] ?? '')?.[1];
  return host !== undefined && Object.hasOwn(CONNECTION_SOURCE_PROVIDERS, host)
    ? CONNECTION_SOURCE_PROVIDERS[host as keyof typeof CONNECTION_SOURCE_PROVIDERS]
    : undefined;
};

const rebuildSchema = z.discriminatedUnion('mode', [
  z.strictObject({
    mode: z.literal('patch-os'),
    /** 'vulnerable' (default): only the packages the findings name, to their fixed version; 'all': every update. */
    packages: z.enum(['vulnerable', 'all']).optional(),
  }),
  z
    .strictObject({
      mode: z.literal('source'),
      sourceLocation: z.string().min(1),
      dockerfile: z.string().min(1).optional(),
      /**
       * An AWS CodeConnections (or CodeStar Connections) connection to GitHub, GitLab or Bitbucket:
       * the build's own project checks the repository out through it (docs/deploy.md, "Source
       * rebuilds from GitHub/GitLab/Bitbucket"). sourceLocation is then the repository's HTTPS URL.
       */
      connectionArn: z
        .string()
        .regex(
          CONNECTION_ARN,
          'must be a connection ARN, arn:aws:codeconnections:<region>:<account>:connection/<id> (or arn:aws:codestar-connections:…)',
        )
        .optional(),
    })
    .superRefine((rebuild, ctx) => {
      if (rebuild.connectionArn === undefined || sourceProviderOf(rebuild.sourceLocation) !== undefined)
        return;
      ctx.addIssue({
        code: 'custom',
        path: ['sourceLocation'],
        message: `with connectionArn, must be the HTTPS URL of a repository on ${Object.keys(CONNECTION_SOURCE_PROVIDERS).join(', ')} (https://<host>/<owner>/<repository>[#<branch-or-tag>]), got ${JSON.stringify(rebuild.sourceLocation)}`,
      });
    }),
  z.strictObject({ mode: z.literal('project'), projectName: z.string().min(1) }),
]);

export const targetSchema = z.strictObject({
  /** Cluster name or ARN. */
  cluster: z.string().min(1),
  /** Service name. */
  service: z.string().min(1),
  /** ECR repositories whose images this target runs (for IAM scoping and reporting); optional. */
  repositories: z.array(z.string().min(1)).default([]),
  /** Extra CloudWatch alarms to watch during the bake (the service's own deployment alarms are always watched). */
  alarmNames: z.array(z.string().min(1)).default([]),
  /** How to rebuild an image of this service for language-package findings. OS findings always use patch-os. */
  rebuild: rebuildSchema.default({ mode: 'patch-os' }),
  /**
   * How long the patched revision must run with every watched alarm OK, after production traffic
   * reached it, before it counts as patched. Absent: workflowDefaults.bakeTimeMinutes (one default,
   * not two that disagree).
   */
  bakeTimeMinutes: z.number().int().min(0).max(1440).optional(),
  /**
   * A service no alarm can judge (no watched alarm at all, or one in INSUFFICIENT_DATA before the
   * deploy): 'approve' (a person approves first) or 'deploy'. Absent: workflowDefaults.withoutAlarms.
   */
  withoutAlarms: z.enum(['approve', 'deploy']).optional(),
  /**
   * A CODE_DEPLOY service: the CodeDeploy application and deployment group that deploy it. Absent:
   * the names the ECS console gives them (AppECS-<cluster>-<service>, DgpECS-<cluster>-<service>),
   * else the group whose ecsServices name the service.
   */
  codeDeploy: z
    .strictObject({ application: z.string().min(1).max(100), deploymentGroup: z.string().min(1).max(100) })
    .optional(),
  /** Service tags, used by policy rules that match on tags. */
  tags: z.record(z.string(), z.string()).default({}),
});
export type TargetConfig = z.infer<typeof targetSchema>;
export type TargetConfigInput = z.input<typeof targetSchema>;

export const workflowDefaultsSchema = z.strictObject({
  bakeTimeMinutes: z.number().int().min(0).max(1440).default(60),
  /** A service no alarm can judge: approval required (safe), unless 'deploy'. */
  withoutAlarms: z.enum(['approve', 'deploy']).default('approve'),
  deploymentTimeoutSeconds: z.number().int().min(300).max(86_400).default(7_200),
  rescanTimeoutSeconds: z.number().int().min(60).max(86_400).default(3_600),
  approvalTimeoutSeconds: z.number().int().min(60).max(31_536_000).default(86_400),
  /**
   * A new CVE reaches many images over minutes: a remediation gathers the service's findings until
   * none arrived for this long (it waits at least this long after it starts). 0 builds at once.
   */
  gatherSeconds: z.number().int().min(0).max(3_600).default(300),
  /** The gathering ends at the latest this long after the remediation started, findings or not. */
  gatherMaxSeconds: z.number().int().min(0).max(86_400).default(1_800),
  /**
   * `notify` decisions are gathered per service and sent as one digest (SNS and the event bus) once
   * the oldest of them is this old: one message per service and period, never one per finding.
   */
  notifyDigestMinutes: z.number().int().min(1).max(10_080).default(60),
});
export type WorkflowDefaults = z.infer<typeof workflowDefaultsSchema>;

export const discoverByTagSchema = z.strictObject({ key: z.string().min(1), value: z.string().min(1) });

/**
 * Account id → alias, for the accounts Autopatch reaches (the hub's and its spokes'): people read
 * "222222222222 (payments-prod)" in notifications and outcomes. Optional; ids only without it.
 */
export const accountAliasesSchema = z.record(
  z.string().regex(/^\d{12}$/, 'an account id (12 digits)'),
  z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-"'),
);
export type AccountAliases = z.infer<typeof accountAliasesSchema>;

/** The environment variable that gives the workflow's Lambdas the alias map (JSON). */
export const ACCOUNT_ALIASES_ENV = 'ACCOUNT_ALIASES';

/**
 * The alias map from a Lambda's environment (ACCOUNT_ALIASES, JSON): empty when unset; a value that
 * is not a valid map fails the cold start with a message naming it.
 */
export const parseAccountAliases = (value: string | undefined): AccountAliases => {
  if (value === undefined || value.trim() === '') return {};
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (error) {
    throw new ConfigurationError(`${ACCOUNT_ALIASES_ENV} is not JSON`, { cause: error });
  }
  const parsed = accountAliasesSchema.safeParse(raw);
  if (!parsed.success)
    throw new ConfigurationError(
      `${ACCOUNT_ALIASES_ENV} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
};

/** What the triage Lambda needs at run time, besides its clients. The policy is validated separately. */
export const triageRuntimeConfigSchema = z.strictObject({
  policy: z.unknown(),
  /** Account id → alias, for human-readable text (see accountAliasesSchema). */
  accountAliases: accountAliasesSchema.optional(),
  targets: z.array(targetSchema).default([]),
  discoverByTag: discoverByTagSchema.optional(),
  defaults: workflowDefaultsSchema.default(workflowDefaultsSchema.parse({})),
  dryRun: z.boolean().default(false),
});
export type TriageRuntimeConfig = z.infer<typeof triageRuntimeConfigSchema>;
