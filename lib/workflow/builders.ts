import { ArnFormat, Duration, Names, Stack, Token } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import type * as ecr from 'aws-cdk-lib/aws-ecr';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { sourceProviderOf, type TargetConfig } from '../../lambdas/shared/config';
import {
  type Architecture,
  connectedSourceKey,
  connectedSourceProjectName,
} from '../../lambdas/workflow/connected-sources';
import { patchOsBuildSpec } from '../../statemachines/buildspecs/patch-os';
import { sourceBuildSpecFor } from '../../statemachines/buildspecs/source';
import { BUILD_KEY_ACTIONS } from '../grants';
import { type ArnOf, ECR_PULL_ACTIONS, ECR_PUSH_ACTIONS, ecrPushScope, repositoryArns } from './iam';
import {
  type BuildRegistriesProps,
  cacheRegistryHost,
  createPullThroughCacheRules,
  pullThroughStatements,
  pullThroughVariable,
  registryCredentialStatements,
  registryLogins,
} from './registries';

/**
 * Regions where CodeBuild offers the ARM_CONTAINER environment type, as the CodeBuild API reference
 * (ProjectEnvironment/Fleet `environmentType`, in @aws-sdk/client-codebuild's model) lists them.
 * Not checked against every Region's console: pass `armBuilds: true` where CodeBuild offers it and
 * this list does not say so yet.
 */
export const CODEBUILD_ARM_REGIONS: readonly string[] = [
  'us-east-1',
  'us-east-2',
  'us-west-2',
  'eu-west-1',
  'eu-central-1',
  'ap-south-1',
  'ap-northeast-1',
  'ap-southeast-1',
  'ap-southeast-2',
  'sa-east-1',
];

/**
 * Whether the arm64 build projects are created: as asked, else by the stack's Region. A Region that is
 * a token (environment-agnostic stack, the default `cdk deploy`) keeps them: a CfnCondition on the
 * Region would turn every reference to the arm64 projects (the state machine's StartBuild statement,
 * plan-builds' environment) into an Fn::If that the simulation and its IAM evaluator do not read. A
 * wrong guess is loud either way: in a Region without ARM_CONTAINER the deploy fails at the arm64
 * project (expected from the CodeBuild API reference, not verified), and the fix is
 * `armBuilds: false` or a stack with an explicit Region; docs/deploy.md says so.
 */
export const createsArmBuilds = (region: string, armBuilds?: boolean): boolean =>
  armBuilds ?? (Token.isUnresolved(region) || CODEBUILD_ARM_REGIONS.includes(region));

/**
 * What plan-builds receives as the arm64 project name when there is none: a name no project has,
 * so an arm64 image's build fails at StartBuild (BuildCouldNotRun) with a Cause that names the reason.
 */
export const NO_ARM_BUILDER = 'Autopatch-no-arm64-CodeBuild-in-this-Region';

/** A project per CPU architecture; no arm64 project where CodeBuild offers no ARM (see armBuilds). */
export interface ArchitectureProjects {
  readonly x86: codebuild.Project;
  readonly arm?: codebuild.Project;
}

export interface BuildProjectsProps extends BuildRegistriesProps {
  readonly encryptionKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly targets: readonly TargetConfig[];
  readonly serviceTag: { readonly key: string; readonly value: string };
  readonly armBuilds?: boolean;
  readonly pushToTaggedRepositoriesOnly?: boolean;
  /** Other Regions of the hub account's registries the builds pull from and push to. @default - none */
  readonly registryRegions?: readonly string[];
  readonly arn: ArnOf;
}

export interface BuildProjects {
  readonly buildLogGroup: logs.LogGroup;
  readonly patchOsProjects: ArchitectureProjects;
  readonly sourceProjects: ArchitectureProjects;
  /** Autopatch's own projects, which the state machine starts. */
  readonly ownProjects: readonly codebuild.Project[];
  /** The targets' own projects (`rebuild.mode: project`), by ARN, which the state machine starts too. */
  readonly targetProjectArns: readonly string[];
  /** The S3 buckets of the targets' source rebuilds (for the cdk-nag acknowledgement of their objects). */
  readonly sourceBuckets: readonly string[];
  /**
   * The projects that check a target's repository out through its CodeConnections connection, by
   * sourceLocation (one per CPU architecture); their names start with `connectedSourcePrefix`.
   */
  readonly connectedSourceProjects: ReadonlyMap<string, ArchitectureProjects>;
  readonly connectedSourcePrefix: string;
  /** The ECR repository prefixes of the pull-through cache rules the source builds pull through. */
  readonly pullThroughPrefixes: readonly string[];
  /** The pull-through cache rules created here (`createPullThroughCacheRules`). */
  readonly pullThroughCacheRules: readonly ecr.CfnPullThroughCacheRule[];
}

/** The connection-related actions a project role needs to check a repository out through a connection. */
const CONNECTION_ACTIONS = ['GetConnectionToken', 'GetConnection', 'UseConnection'] as const;

/**
 * The CodeBuild projects that patch and rebuild images (statemachines/buildspecs), created in `scope`
 * (the workflow), and what their roles may do: pull and push images, read the targets' sources.
 */
export const createBuildProjects = (scope: Construct, props: BuildProjectsProps): BuildProjects => {
  const stack = Stack.of(scope);
  const { arn, encryptionKey: key } = props;
  const buildLogGroup = new logs.LogGroup(scope, 'BuildLogs', {
    encryptionKey: key,
    retention: props.logRetention,
  });
  const project = (
    projectId: string,
    buildSpec: object,
    arm: boolean,
    what: string,
    extra: Pick<codebuild.ProjectProps, 'projectName' | 'environmentVariables'> = {},
  ): codebuild.Project => {
    const p = new codebuild.Project(scope, projectId, {
      description: `Autopatch: ${what} (${arm ? 'arm64' : 'x86_64'})`.slice(0, 255),
      buildSpec: codebuild.BuildSpec.fromObjectToYaml(buildSpec as Record<string, unknown>),
      environment: {
        buildImage: arm
          ? codebuild.LinuxArmBuildImage.AMAZON_LINUX_2_STANDARD_3_0
          : codebuild.LinuxBuildImage.STANDARD_7_0,
        computeType: arm ? codebuild.ComputeType.LARGE : codebuild.ComputeType.MEDIUM,
        // docker build needs the Docker daemon, which needs privileged mode.
        privileged: true,
      },
      timeout: Duration.minutes(60),
      queuedTimeout: Duration.hours(2),
      logging: { cloudWatch: { logGroup: buildLogGroup } },
      ...extra,
    });
    // Set on the L1 resource: the L2 encryptionKey prop grants kms:ReEncrypt* and kms:GenerateDataKey*.
    (p.node.defaultChild as codebuild.CfnProject).encryptionKey = key.keyArn;
    key.grant(p, ...BUILD_KEY_ACTIONS);
    return p;
  };
  const arm = createsArmBuilds(stack.region, props.armBuilds);
  const patchOsProjects = {
    x86: project('PatchOsX86Project', patchOsBuildSpec, false, 'OS patch layer'),
    ...(arm ? { arm: project('PatchOsArmProject', patchOsBuildSpec, true, 'OS patch layer') } : {}),
  };

  // Source rebuilds: registry logins (secrets read by CodeBuild itself, masked in the logs) and base
  // images through the pull-through cache; both only when configured, so the projects of a
  // deployment without them stay as they were.
  const logins = registryLogins(props.registryCredentials ?? {});
  const sourceSpec = sourceBuildSpecFor({ secrets: logins.secrets, registryLogins: logins.commands });
  const pullThrough = pullThroughVariable(props.pullThroughCache ?? {});
  const sourceVariables: Record<string, codebuild.BuildEnvironmentVariable> =
    pullThrough === ''
      ? {}
      : {
          AUTOPATCH_PULL_THROUGH: { value: pullThrough },
          AUTOPATCH_CACHE_REGISTRY: { value: cacheRegistryHost(scope) },
        };
  const sourceExtra =
    Object.keys(sourceVariables).length > 0 ? { environmentVariables: sourceVariables } : {};
  const sourceProjects = {
    x86: project('SourceX86Project', sourceSpec, false, 'rebuild from source', sourceExtra),
    ...(arm
      ? { arm: project('SourceArmProject', sourceSpec, true, 'rebuild from source', sourceExtra) }
      : {}),
  };

  // Source rebuilds through a CodeConnections connection: CodeBuild checks a repository out through
  // a connection only as a project's source (Source.Auth CODECONNECTIONS), so each repository gets
  // its projects, named so that "Plan the image builds" finds them (lambdas/workflow/connected-sources.ts).
  const connectedSourcePrefix = Names.uniqueResourceName(scope, { maxLength: 60, separator: '-' });
  const connected = new Map<string, string>();
  for (const t of props.targets)
    if (t.rebuild.mode === 'source' && t.rebuild.connectionArn !== undefined)
      connected.set(t.rebuild.sourceLocation, t.rebuild.connectionArn);
  const connectedSourceProjects = new Map<string, ArchitectureProjects>();
  for (const [sourceLocation, connectionArn] of [...connected].sort(([a], [b]) => a.localeCompare(b))) {
    const [repository = sourceLocation, ref] = sourceLocation.split('#');
    const connectedProject = (architecture: Architecture): codebuild.Project => {
      const isArm = architecture === 'arm';
      const p = project(
        `ConnectedSource${connectedSourceKey(sourceLocation)}${isArm ? 'Arm' : 'X86'}Project`,
        sourceSpec,
        isArm,
        `rebuild ${repository} from source`,
        {
          projectName: connectedSourceProjectName(connectedSourcePrefix, sourceLocation, architecture),
          environmentVariables: { ...sourceVariables, AUTOPATCH_SOURCE_CHECKED_OUT: { value: 'true' } },
        },
      );
      const cfn = p.node.defaultChild as codebuild.CfnProject;
      cfn.addPropertyOverride('Source.Type', sourceProviderOf(sourceLocation));
      cfn.addPropertyOverride('Source.Location', repository);
      cfn.addPropertyOverride('Source.GitCloneDepth', 1);
      cfn.addPropertyOverride('Source.Auth', { Type: 'CODECONNECTIONS', Resource: connectionArn });
      if (ref) cfn.sourceVersion = ref;
      // CodeBuild user guide, "GitHub App connections": the project role gets the connection's
      // tokens. Both service prefixes: the connection may carry either (CodeStar Connections was renamed).
      p.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['codeconnections', 'codestar-connections'].flatMap((service) =>
            CONNECTION_ACTIONS.map((a) => `${service}:${a}`),
          ),
          resources: [connectionArn],
        }),
      );
      return p;
    };
    connectedSourceProjects.set(sourceLocation, {
      x86: connectedProject('x86'),
      ...(arm ? { arm: connectedProject('arm') } : {}),
    });
  }
  const allSourceProjects = [
    ...Object.values(sourceProjects),
    ...[...connectedSourceProjects.values()].flatMap((p) => Object.values(p)),
  ];
  const ownProjects = [...Object.values(patchOsProjects), ...allSourceProjects];

  // Pull the running image from any repository of the account (services are also discovered by tag);
  // push the patched one only where docs/deploy.md ("IAM") says. In the hub's Region, and in each
  // Region an organization lists (the registry an image came from, pushed next to it: ECR_LOGIN
  // logs in to that Region); another account's registry only through its spoke role.
  const repositories = repositoryArns(scope, props.registryRegions);
  const push = ecrPushScope(arn, props);
  const pushStatements = push.anyRepository
    ? [new iam.PolicyStatement({ actions: [...ECR_PUSH_ACTIONS], resources: [...repositories] })]
    : [
        new iam.PolicyStatement({
          actions: [...ECR_PUSH_ACTIONS],
          resources: [...repositories],
          conditions: {
            StringEquals: { [`aws:ResourceTag/${props.serviceTag.key}`]: props.serviceTag.value },
          },
        }),
        ...(push.named.length > 0
          ? [new iam.PolicyStatement({ actions: [...ECR_PUSH_ACTIONS], resources: [...push.named] })]
          : []),
      ];
  for (const p of ownProjects) {
    p.addToRolePolicy(new iam.PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
    p.addToRolePolicy(
      new iam.PolicyStatement({ actions: [...ECR_PULL_ACTIONS], resources: [...repositories] }),
    );
    for (const s of pushStatements) p.addToRolePolicy(s);
  }

  const sources = props.targets.flatMap((t) =>
    t.rebuild.mode === 'source' ? [t.rebuild.sourceLocation] : [],
  );
  const sourceBuckets = [...new Set(sources.flatMap((s) => /^s3:\/\/([^/]+)\//.exec(s)?.[1] ?? []))];
  const codecommit = [
    ...new Set(
      sources.flatMap((s) => /^https:\/\/git-codecommit\.[^/]+\/v1\/repos\/([^/#]+)/.exec(s)?.[1] ?? []),
    ),
  ];
  const sourceStatements = [
    ...pullThroughStatements(arn, props.pullThroughCache ?? {}),
    ...registryCredentialStatements(props.registryCredentials ?? {}),
  ];
  for (const p of allSourceProjects) for (const statement of sourceStatements) p.addToRolePolicy(statement);
  for (const p of Object.values(sourceProjects)) {
    if (sourceBuckets.length > 0) {
      p.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['s3:GetObject'],
          resources: sourceBuckets.map((b) => `arn:${stack.partition}:s3:::${b}/*`),
        }),
      );
    }
    if (codecommit.length > 0) {
      p.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['codecommit:GitPull'],
          resources: codecommit.map((r) => arn('codecommit', r, undefined, ArnFormat.NO_RESOURCE_NAME)),
        }),
      );
    }
  }
  const targetProjectArns = [
    ...new Set(props.targets.flatMap((t) => (t.rebuild.mode === 'project' ? [t.rebuild.projectName] : []))),
  ].map((name) => arn('codebuild', 'project', name));

  return {
    buildLogGroup,
    patchOsProjects,
    sourceProjects,
    ownProjects,
    targetProjectArns,
    sourceBuckets,
    connectedSourceProjects,
    connectedSourcePrefix,
    pullThroughPrefixes: [...new Set(Object.values(props.pullThroughCache ?? {}))].sort(),
    pullThroughCacheRules: createPullThroughCacheRules(scope, props),
  };
};

/** plan-builds chooses the project per image: it receives their names (or {@link NO_ARM_BUILDER}). */
export const namePlannedProjects = (
  planBuilds: lambda.Function,
  projects: Pick<BuildProjects, 'patchOsProjects' | 'sourceProjects'> &
    Partial<Pick<BuildProjects, 'connectedSourceProjects' | 'connectedSourcePrefix'>>,
): void => {
  planBuilds.addEnvironment('PATCH_OS_PROJECT_X86', projects.patchOsProjects.x86.projectName);
  planBuilds.addEnvironment(
    'PATCH_OS_PROJECT_ARM',
    projects.patchOsProjects.arm?.projectName ?? NO_ARM_BUILDER,
  );
  planBuilds.addEnvironment('SOURCE_PROJECT_X86', projects.sourceProjects.x86.projectName);
  planBuilds.addEnvironment('SOURCE_PROJECT_ARM', projects.sourceProjects.arm?.projectName ?? NO_ARM_BUILDER);
  const connected = [...(projects.connectedSourceProjects?.values() ?? [])];
  if (connected.length > 0 && projects.connectedSourcePrefix !== undefined) {
    planBuilds.addEnvironment('CONNECTED_SOURCE_PREFIX', projects.connectedSourcePrefix);
    planBuilds.addEnvironment('CONNECTED_SOURCE_ARCHITECTURES', connected[0]?.arm ? 'x86,arm' : 'x86');
  }
};
