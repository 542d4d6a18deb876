import { createHash } from 'node:crypto';
import type { RebuildMode } from '../shared/contracts';
import type { PlannedBuild } from './state';

/**
 * Source rebuilds through an AWS CodeConnections connection (GitHub, GitLab, Bitbucket). CodeBuild
 * checks a repository out through a connection only as a project's source (`auth: CODECONNECTIONS`),
 * so the construct creates one project per repository and CPU architecture, named
 * `<prefix>-<hash of the sourceLocation>-<arch>`; this module gives "Plan the image builds" the same
 * names, so the StartBuild call of the definition stays as it is.
 */

export type Architecture = 'x86' | 'arm';

/** The part of a connected project's name that stands for its repository (and branch or tag). */
export const connectedSourceKey = (sourceLocation: string): string =>
  createHash('sha256').update(sourceLocation).digest('hex').slice(0, 12);

/** The name of the project that rebuilds `sourceLocation` through its connection, on `arch`. */
export const connectedSourceProjectName = (
  prefix: string,
  sourceLocation: string,
  arch: Architecture,
): string => `${prefix}-${connectedSourceKey(sourceLocation)}-${arch}`;

export interface ConnectedSources {
  /** The project-name prefix the construct gave the connected projects. */
  readonly prefix: string;
  /** The architectures that have connected projects (no arm64 where CodeBuild offers none). */
  readonly architectures: readonly Architecture[];
  /** The construct's generic source projects: a build planned on one of them is re-routed. */
  readonly sourceProjects: { readonly x86: string; readonly arm: string };
}

const connectionOf = (rebuild: RebuildMode): { sourceLocation: string } | undefined =>
  rebuild.mode === 'source' && rebuild.connectionArn !== undefined ? rebuild : undefined;

/**
 * A planned source build whose target names a connection runs on that repository's connected
 * project of the same architecture. Where that architecture has no connected project (no arm64
 * CodeBuild), the plan keeps what plan-builds chose (the "no arm64" name fails at StartBuild, naming why).
 */
export const routeConnectedSources = (
  builds: readonly PlannedBuild[],
  connected: ConnectedSources,
): PlannedBuild[] =>
  builds.map((build) => {
    const source = connectionOf(build.image.rebuild);
    if (source === undefined) return build;
    const arch: Architecture | undefined =
      build.projectName === connected.sourceProjects.x86
        ? 'x86'
        : build.projectName === connected.sourceProjects.arm
          ? 'arm'
          : undefined;
    if (arch === undefined || !connected.architectures.includes(arch)) return build;
    return {
      ...build,
      projectName: connectedSourceProjectName(connected.prefix, source.sourceLocation, arch),
    };
  });
