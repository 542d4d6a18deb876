import { createHash } from 'node:crypto';
import type {
  BatchGetBuildsCommandInput,
  BatchGetBuildsCommandOutput,
  Build,
  BuildPhase,
  EnvironmentVariable,
  StartBuildCommandInput,
  StartBuildCommandOutput,
  StopBuildCommandInput,
  StopBuildCommandOutput,
} from '@aws-sdk/client-codebuild';
import type { BuildSpec, FindingSpec } from '../scenario';
import { type EcrModel, type Image, manifestDigest, OCI_MANIFEST } from './ecr';
import { sdkError } from './errors';
import type { InspectorModel } from './inspector';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;
const MINUTE = 60_000;

/** What the scenario says a build does; the model picks it per build. */
export type BuildPlan = Pick<
  BuildSpec,
  'outcome' | 'durationMinutes' | 'fixes' | 'introduces' | 'failedPhase'
>;

export interface SimBuild {
  readonly id: string;
  readonly arn: string;
  readonly projectName: string;
  readonly number: number;
  readonly startTime: Date;
  endTime?: Date;
  status: 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'STOPPED';
  currentPhase: string;
  readonly env: readonly EnvironmentVariable[];
  readonly source?: Image;
  readonly targetTag?: string;
  readonly plan: BuildPlan;
  pushed?: Image;
  readonly waiters: Array<(b: SimBuild) => void>;
  readonly logStream: string;
  cancel?: () => void;
}

const PHASES = [
  'SUBMITTED',
  'QUEUED',
  'PROVISIONING',
  'DOWNLOAD_SOURCE',
  'INSTALL',
  'PRE_BUILD',
  'BUILD',
  'POST_BUILD',
  'UPLOAD_ARTIFACTS',
  'FINALIZING',
  'COMPLETED',
] as const;

/**
 * CodeBuild: a build runs for the scenario's duration on the virtual clock, then succeeds (pushing a
 * rebuilt image to ECR, which Inspector scans after its delay) or fails in a phase. The image being
 * patched is recognised from the build's environment variables (a digest or image URI the account
 * knows); the target tag from a variable whose name ends in TAG.
 */
export class CodeBuildModel {
  readonly builds: SimBuild[] = [];
  private readonly numbers = new Map<string, number>();

  constructor(
    private readonly world: World,
    private readonly ecr: EcrModel,
    private readonly inspector: InspectorModel,
    private readonly planFor: (build: { projectName: string; source?: Image }) => BuildPlan,
    /** Minutes Inspector takes to scan a pushed image; undefined: never. */
    private readonly scanDelayMinutes: number | undefined,
    /**
     * Every registry of an organization (accounts and Regions with their own ECR and Inspector): a
     * build rebuilds an image of whichever holds it and pushes there.
     * @default - this account's only
     */
    private readonly registries?: () => ReadonlyArray<{ ecr: EcrModel; inspector: InspectorModel }>,
  ) {}

  /** The registries builds can read and push, this account's first. */
  private all(): ReadonlyArray<{ ecr: EcrModel; inspector: InspectorModel }> {
    return this.registries?.() ?? [{ ecr: this.ecr, inspector: this.inspector }];
  }

  /** The registry that holds an image (this account's if none does). */
  private registryOf(image: Image | undefined): { ecr: EcrModel; inspector: InspectorModel } {
    const all = this.all();
    return (
      (image &&
        all.find((r) => r.ecr.repositories.get(image.repository)?.images.has(image.digest) === true)) ?? {
        ecr: this.ecr,
        inspector: this.inspector,
      }
    );
  }

  /** Resolves when the build finishes: what a `.sync` integration waits for. */
  waitFor(id: string): Promise<SimBuild> {
    const build = this.builds.find((b) => b.id === id);
    if (!build) return Promise.reject(new Error(`no build ${id}`));
    if (build.status !== 'IN_PROGRESS') return Promise.resolve(build);
    return new Promise((resolve) => build.waiters.push(resolve));
  }

  stop(id: string): void {
    const build = this.builds.find((b) => b.id === id);
    if (build?.status !== 'IN_PROGRESS') return;
    build.cancel?.();
    this.finish(build, 'STOPPED');
  }

  private sourceImage(env: readonly EnvironmentVariable[]): Image | undefined {
    const values = env.map((e) => e.value ?? '');
    for (const value of values) {
      const digest = /sha256:[a-f0-9]{64}/.exec(value)?.[0];
      if (!digest) continue;
      for (const { ecr } of this.all())
        for (const repo of ecr.repositories.values()) {
          const image = repo.images.get(digest);
          if (image) return image;
        }
    }
    for (const value of values) {
      for (const { ecr } of this.all()) {
        const image = ecr.resolveUri(value);
        if (image) return image;
      }
    }
    return undefined;
  }

  private targetRepository(
    env: readonly EnvironmentVariable[],
    source: Image | undefined,
  ): string | undefined {
    const { ecr } = this.registryOf(source);
    for (const e of env) {
      const v = e.value ?? '';
      if (/REPO/i.test(e.name ?? '')) {
        const ref = ecr.parseUri(v) ?? (ecr.repositories.has(v) ? { repository: v } : undefined);
        if (ref) return ref.repository;
      }
    }
    return source?.repository;
  }

  private finish(build: SimBuild, status: SimBuild['status']): void {
    build.status = status;
    build.endTime = this.world.now();
    build.currentPhase = 'COMPLETED';
    for (const wake of build.waiters.splice(0)) wake(build);
  }

  private complete(build: SimBuild): void {
    if (build.status !== 'IN_PROGRESS') return;
    if (build.plan.outcome === 'FAILED') {
      this.world.note('codebuild', `build ${build.id} FAILED in ${build.plan.failedPhase}`);
      this.finish(build, 'FAILED');
      return;
    }
    const source = build.source;
    const repository = this.targetRepository(build.env, source);
    if (!source || !repository) {
      // Nothing recognisable to rebuild: the build "succeeds" without pushing, which verification must notice.
      this.world.note(
        'codebuild',
        `build ${build.id} SUCCEEDED but the simulation found no known image in its environment to rebuild`,
      );
      this.finish(build, 'SUCCEEDED');
      return;
    }
    // A manifest of its own whose sha256 is the digest, as a registry computes it: the image-index
    // assembly checks the bytes ECR returns against the digest.
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${createHash('sha256').update(`${source.digest}\n${build.id}`).digest('hex')}`,
        size: 1469,
      },
      layers: [],
    });
    const digest = manifestDigest(manifest);
    const tag = build.targetTag ?? `autopatch-${build.id.split(':')[1]?.slice(0, 8) ?? build.number}`;
    const { ecr, inspector } = this.registryOf(source);
    const pushed = ecr.push({
      repository,
      digest,
      tags: [tag],
      pushedAt: this.world.now(),
      platform: source.platform,
      architecture: source.architecture,
      sizeInBytes: source.sizeInBytes + 1_048_576,
      builtFrom: source.digest,
      manifest,
    });
    build.pushed = pushed;
    const kept: FindingSpec[] = inspector
      .findings(source.digest)
      .filter((f) => f.status === 'ACTIVE')
      .map((f) => f.spec)
      .filter((spec) => build.plan.fixes !== 'all' && build.plan.fixes.includes(spec.cve) === false);
    const findings = [...kept, ...build.plan.introduces];
    this.world.note(
      'codebuild',
      `build ${build.id} SUCCEEDED: pushed ${repository}:${tag} (${digest.slice(7, 19)})`,
    );
    inspector.scanLater(
      pushed,
      findings,
      this.scanDelayMinutes === undefined ? undefined : this.scanDelayMinutes * MINUTE,
    );
    this.finish(build, 'SUCCEEDED');
  }

  private phases(build: SimBuild): BuildPhase[] {
    const start = build.startTime.getTime();
    const end = (build.endTime ?? this.world.now()).getTime();
    const failedAt = build.status === 'FAILED' ? build.plan.failedPhase : undefined;
    const out: BuildPhase[] = [];
    const span = Math.max(1, end - start);
    const names =
      build.status === 'IN_PROGRESS'
        ? PHASES.slice(0, 7)
        : failedAt
          ? [...PHASES.slice(0, PHASES.indexOf(failedAt) + 1), 'FINALIZING', 'COMPLETED']
          : [...PHASES];
    names.forEach((phase, i) => {
      const t0 = new Date(start + (span * i) / names.length);
      const t1 = new Date(start + (span * (i + 1)) / names.length);
      const failed = phase === failedAt;
      out.push({
        phaseType: phase as BuildPhase['phaseType'],
        phaseStatus: failed ? 'FAILED' : 'SUCCEEDED',
        startTime: t0,
        ...(phase === 'COMPLETED'
          ? {}
          : { endTime: t1, durationInSeconds: Math.round((t1.getTime() - t0.getTime()) / 1000) }),
        ...(failed
          ? {
              contexts: [
                {
                  statusCode: 'COMMAND_EXECUTION_ERROR',
                  message: 'Error while executing command: apt-get upgrade -y. Reason: exit status 100',
                },
              ],
            }
          : {}),
      });
    });
    return out;
  }

  describe(build: SimBuild): Build {
    const group = `/aws/codebuild/${build.projectName}`;
    const exported = build.pushed
      ? [
          { name: 'IMAGE_DIGEST', value: build.pushed.digest },
          {
            name: 'IMAGE_URI',
            value: `${this.registryOf(build.pushed).ecr.registry()}/${build.pushed.repository}@${build.pushed.digest}`,
          },
          { name: 'IMAGE_TAG', value: build.pushed.tags[0] ?? '' },
          { name: 'REPOSITORY_NAME', value: build.pushed.repository },
        ]
      : [];
    return {
      id: build.id,
      arn: build.arn,
      buildNumber: build.number,
      startTime: build.startTime,
      ...(build.endTime ? { endTime: build.endTime } : {}),
      currentPhase: build.currentPhase,
      buildStatus: build.status,
      projectName: build.projectName,
      phases: this.phases(build),
      source: { type: 'NO_SOURCE', buildspec: 'statemachines/buildspecs' },
      environment: {
        type: 'ARM_CONTAINER',
        image: 'aws/codebuild/amazonlinux-aarch64-standard:3.0',
        computeType: 'BUILD_GENERAL1_SMALL',
        privilegedMode: true,
        environmentVariables: build.env.map((e) => ({ ...e })),
      },
      logs: {
        groupName: group,
        streamName: build.logStream,
        deepLink: `https://console.aws.amazon.com/cloudwatch/home?region=${this.world.region}#logEvent:group=${encodeURIComponent(group)};stream=${build.logStream}`,
        cloudWatchLogsArn: this.world.arn('logs', `log-group:${group}:log-stream:${build.logStream}`),
      },
      timeoutInMinutes: 60,
      queuedTimeoutInMinutes: 480,
      buildComplete: build.status !== 'IN_PROGRESS',
      initiator: 'states.amazonaws.com',
      exportedEnvironmentVariables: exported,
    };
  }

  readonly handlers = {
    StartBuild: (input: StartBuildCommandInput): Out<StartBuildCommandOutput> => {
      const projectName = input.projectName;
      if (!projectName) throw sdkError('codebuild', 'InvalidInputException', 'projectName is required');
      const n = (this.numbers.get(projectName) ?? 0) + 1;
      this.numbers.set(projectName, n);
      const uuid = this.world.uuid();
      const env = input.environmentVariablesOverride ?? [];
      const source = this.sourceImage(env);
      const targetTag = env.find(
        (e) => /TAG$/i.test(e.name ?? '') && /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(e.value ?? ''),
      )?.value;
      const plan = this.planFor({ projectName, ...(source ? { source } : {}) });
      const build: SimBuild = {
        id: `${projectName}:${uuid}`,
        arn: this.world.arn('codebuild', `build/${projectName}:${uuid}`),
        projectName,
        number: n,
        startTime: this.world.now(),
        status: 'IN_PROGRESS',
        currentPhase: 'BUILD',
        env,
        ...(source ? { source } : {}),
        ...(targetTag ? { targetTag } : {}),
        plan,
        waiters: [],
        logStream: uuid,
      };
      this.builds.push(build);
      this.world.note(
        'codebuild',
        `build ${build.id} started${source ? ` for ${source.repository}@${source.digest.slice(7, 19)}` : ''} (${plan.outcome === 'FAILED' ? 'will fail' : 'will succeed'} after ${plan.durationMinutes} min)`,
      );
      build.cancel = this.world.schedule(
        Date.now() + plan.durationMinutes * MINUTE,
        `build ${build.id}`,
        () => this.complete(build),
      );
      return { build: this.describe(build) };
    },
    BatchGetBuilds: (input: BatchGetBuildsCommandInput): Out<BatchGetBuildsCommandOutput> => {
      const ids = input.ids ?? [];
      const found = this.builds.filter((b) => ids.includes(b.id));
      return {
        builds: found.map((b) => this.describe(b)),
        buildsNotFound: ids.filter((id) => !found.some((b) => b.id === id)),
      };
    },
    StopBuild: (input: StopBuildCommandInput): Out<StopBuildCommandOutput> => {
      const build = this.builds.find((b) => b.id === input.id);
      if (!build) throw sdkError('codebuild', 'ResourceNotFoundException', `Build ${input.id} not found`);
      this.stop(build.id);
      return { build: this.describe(build) };
    },
  };
}
