import {
  type ConnectedSources,
  connectedSourceProjectName,
  routeConnectedSources,
} from '../../../lambdas/workflow/connected-sources';
import { planBuilds } from '../../../lambdas/workflow/plan-builds';
import { FAKE_PROJECTS, image } from '../../support/workflow-harness';

const CONNECTION =
  'arn:aws:codeconnections:eu-central-1:123456789012:connection/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9';
const REPOSITORY = 'https://github.com/example/payments-api#release';
const connected = (architectures: ConnectedSources['architectures']): ConnectedSources => ({
  prefix: 'AutopatchStack-Autopatch-Workflow-1A2B3C4D',
  architectures,
  sourceProjects: FAKE_PROJECTS.source,
});
const planned = (images: Parameters<typeof planBuilds>[0]['images']) =>
  planBuilds({ images, executionName: 'exec-1', startedAt: '2024-09-04T16:55:38.411Z' }, FAKE_PROJECTS)
    .builds;

describe('routeConnectedSources', () => {
  it('runs a source build whose target names a connection on its repository’s project, by architecture', () => {
    // Prepare
    const rebuild = { mode: 'source' as const, sourceLocation: REPOSITORY, connectionArn: CONNECTION };
    const builds = planned([
      image({ architecture: 'arm64', rebuild }),
      image({ architecture: 'amd64', imageDigest: `sha256:${'b'.repeat(64)}`, rebuild }),
    ]);
    // Act
    const routed = routeConnectedSources(builds, connected(['x86', 'arm']));
    // Assess
    const prefix = connected([]).prefix;
    expect(routed.map((b) => b.projectName)).toEqual([
      connectedSourceProjectName(prefix, REPOSITORY, 'arm'),
      connectedSourceProjectName(prefix, REPOSITORY, 'x86'),
    ]);
    expect(routed[0]?.projectName).toMatch(/^AutopatchStack-Autopatch-Workflow-1A2B3C4D-[0-9a-f]{12}-arm$/);
    // Everything else of the plan is unchanged (environment, tag).
    expect(routed.map(({ projectName: _, ...rest }) => rest)).toEqual(
      builds.map(({ projectName: _, ...rest }) => rest),
    );
  });

  it('leaves builds without a connection, and arm64 builds where no arm64 project exists, as planned', () => {
    const builds = planned([
      image({
        architecture: 'arm64',
        rebuild: { mode: 'source', sourceLocation: REPOSITORY, connectionArn: CONNECTION },
      }),
      image({ rebuild: { mode: 'source', sourceLocation: 's3://bucket/api.zip' } }),
      image({ rebuild: { mode: 'patch-os' } }),
      image({ rebuild: { mode: 'project', projectName: 'payments-build' } }),
    ]);
    expect(routeConnectedSources(builds, connected(['x86']))).toEqual(builds);
  });

  it('different repositories (or branches) get different projects', () => {
    const prefix = 'p';
    expect(connectedSourceProjectName(prefix, 'https://github.com/o/r', 'x86')).not.toBe(
      connectedSourceProjectName(prefix, 'https://github.com/o/r#main', 'x86'),
    );
  });
});
