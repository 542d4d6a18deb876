/**
 * Issue #15: source rebuilds through CodeConnections, registry logins and the ECR pull-through cache,
 * and iam:PassRole narrowed to the roles the targets' task definitions use. Each setting is optional:
 * the stack without them is what it was.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Fn } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { CfnProject } from 'aws-cdk-lib/aws-codebuild';
import { type Architecture, connectedSourceProjectName } from '../../lambdas/workflow/connected-sources';
import { AutopatchChecks } from '../../lib/nag';
import type { AutopatchStack } from '../../lib/stack';
import { PULL_THROUGH_REWRITE } from '../../statemachines/buildspecs/source';
import {
  type FoundStatement,
  policyStatements,
  synthAutopatch,
  unacknowledgedNagFindings,
} from '../support/synth';

const CONNECTION =
  'arn:aws:codeconnections:eu-central-1:123456789012:connection/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9';
const OLD_CONNECTION =
  'arn:aws:codestar-connections:eu-central-1:123456789012:connection/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const DOCKER_HUB_SECRET =
  'arn:aws:secretsmanager:eu-central-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbC123';
const GHCR_SECRET = 'arn:aws:secretsmanager:eu-central-1:123456789012:secret:ghcr-login-XyZ789';

const PROPS = {
  targets: [
    {
      cluster: 'prod',
      service: 'payments-api',
      rebuild: {
        mode: 'source' as const,
        sourceLocation: 'https://github.com/example/payments-api#release',
        connectionArn: CONNECTION,
      },
    },
    {
      cluster: 'prod',
      service: 'ledger',
      rebuild: {
        mode: 'source' as const,
        sourceLocation: 'https://bitbucket.org/example/ledger',
        connectionArn: OLD_CONNECTION,
        dockerfile: 'docker/Dockerfile',
      },
    },
  ],
  registryCredentials: { 'docker.io': DOCKER_HUB_SECRET, 'ghcr.io': GHCR_SECRET },
  pullThroughCache: { 'docker.io': 'docker-hub', 'quay.io': 'quay' },
  createPullThroughCacheRules: true,
  taskRoleArns: ['arn:aws:iam::123456789012:role/payments-task', 'ecs-task-*'],
};

type Json = Record<string, unknown>;
const projectsOf = (template: Template) =>
  Object.entries(template.findResources('AWS::CodeBuild::Project')) as Array<[string, { Properties: Json }]>;
const buildSpecOf = (project: { Properties: Json }) =>
  JSON.stringify((project.Properties.Source as Json).BuildSpec);
const allowed = (statements: FoundStatement[], action: string) =>
  statements.filter((s) => s.effect === 'Allow' && s.kind === 'identity' && s.actions.includes(action));

describe('with every new setting', () => {
  let stack: AutopatchStack;
  let template: Template;
  let statements: FoundStatement[];
  beforeAll(() => {
    ({ stack, template } = synthAutopatch({ props: PROPS }));
    statements = policyStatements(stack, template);
  });

  test('each connected repository gets a project per architecture, checked out through its connection', () => {
    const connected = projectsOf(template).filter(
      ([, p]) => (p.Properties.Source as Json).Auth !== undefined,
    );
    // Two repositories × x86 and arm64 (the stack's Region is not known: arm64 projects are created).
    expect(connected).toHaveLength(4);
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Source: Match.objectLike({
        Type: 'GITHUB',
        Location: 'https://github.com/example/payments-api',
        GitCloneDepth: 1,
        Auth: { Type: 'CODECONNECTIONS', Resource: CONNECTION },
      }),
      SourceVersion: 'release',
      Environment: Match.objectLike({
        EnvironmentVariables: Match.arrayWith([
          { Name: 'AUTOPATCH_SOURCE_CHECKED_OUT', Type: 'PLAINTEXT', Value: 'true' },
        ]),
      }),
    });
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Source: Match.objectLike({
        Type: 'BITBUCKET',
        Location: 'https://bitbucket.org/example/ledger',
        Auth: { Type: 'CODECONNECTIONS', Resource: OLD_CONNECTION },
      }),
    });
  });

  test('plan-builds receives the connected projects’ name prefix, and the names follow it', () => {
    const { workflow } = stack.autopatch;
    const env = (
      template.toJSON().Resources[
        stack.getLogicalId(workflow.planBuildsFunction.node.defaultChild as never)
      ] as { Properties: { Environment: { Variables: Record<string, string> } } }
    ).Properties.Environment.Variables;
    expect(env.CONNECTED_SOURCE_ARCHITECTURES).toBe('x86,arm');
    const prefix = env.CONNECTED_SOURCE_PREFIX as string;
    expect(prefix).toMatch(/^[A-Za-z0-9][A-Za-z0-9-]+$/);
    // The names the routing of "Plan the image builds" computes are the projects' names.
    for (const [sourceLocation, projects] of workflow.connectedSourceProjects)
      for (const [arch, project] of Object.entries(projects))
        expect((project.node.defaultChild as CfnProject).name).toBe(
          connectedSourceProjectName(prefix, sourceLocation, arch as Architecture),
        );
    expect(workflow.connectedSourceProjects.size).toBe(2);
  });

  test('the connections may be used by their projects only, each on its own ARN', () => {
    for (const action of ['codeconnections:UseConnection', 'codeconnections:GetConnectionToken']) {
      const grants = allowed(statements, action);
      expect(grants.flatMap((s) => s.resources).sort()).toEqual(
        [CONNECTION, CONNECTION, OLD_CONNECTION, OLD_CONNECTION].sort(),
      );
      for (const s of grants) expect(s.path).toMatch(/Workflow\/ConnectedSource\w+Project\/Role/);
    }
  });

  test('the state machine may start the connected projects', () => {
    const start = allowed(statements, 'codebuild:StartBuild');
    const resources = JSON.stringify(start.flatMap((s) => s.resources));
    for (const project of [...stack.autopatch.workflow.connectedSourceProjects.values()].flatMap((p) =>
      Object.values(p),
    ))
      expect(resources).toContain(stack.getLogicalId(project.node.defaultChild as never));
  });

  test('source builds log in with the secrets CodeBuild reads, and may read exactly those', () => {
    const sources = projectsOf(template).filter(([, p]) => buildSpecOf(p).includes('docker build --pull'));
    expect(sources).toHaveLength(6);
    for (const [, p] of sources) {
      const spec = buildSpecOf(p);
      expect(spec).toContain(`AUTOPATCH_REGISTRY_1_USERNAME: ${DOCKER_HUB_SECRET}:username`);
      expect(spec).toContain(`AUTOPATCH_REGISTRY_1_TOKEN: ${DOCKER_HUB_SECRET}:accessToken`);
      expect(spec).toContain(`AUTOPATCH_REGISTRY_2_TOKEN: ${GHCR_SECRET}:accessToken`);
      expect(spec).toContain("--password-stdin 'docker.io'");
      // The secret goes to docker on stdin, never as an argument or to the log.
      expect(spec).not.toMatch(/echo[^|\n]*AUTOPATCH_REGISTRY/);
    }
    const read = allowed(statements, 'secretsmanager:GetSecretValue');
    expect(new Set(read.flatMap((s) => s.resources))).toEqual(new Set([DOCKER_HUB_SECRET, GHCR_SECRET]));
    for (const s of read) expect(s.path).toMatch(/Workflow\/(Source|ConnectedSource)\w*Project\/Role/);
  });

  test('patch-os builds pull no base image: no logins, no secrets', () => {
    const patchOs = projectsOf(template).filter(([, p]) => buildSpecOf(p).includes('patch-layer.sh'));
    expect(patchOs.length).toBeGreaterThan(0);
    for (const [, p] of patchOs) expect(buildSpecOf(p)).not.toContain('secrets-manager');
  });

  test('pull-through: the source builds know the cache, and may import and create repositories under its prefixes only', () => {
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Environment: Match.objectLike({
        EnvironmentVariables: Match.arrayWith([
          { Name: 'AUTOPATCH_PULL_THROUGH', Type: 'PLAINTEXT', Value: 'docker.io=docker-hub quay.io=quay' },
        ]),
      }),
    });
    const imports = allowed(statements, 'ecr:BatchImportUpstreamImage');
    expect(imports.length).toBeGreaterThan(0);
    const resources = new Set(imports.flatMap((s) => JSON.stringify(s.resources)));
    expect([...resources].join()).toContain('repository/docker-hub/*');
    expect([...resources].join()).toContain('repository/quay/*');
    for (const s of imports)
      expect(s.actions.sort()).toEqual(['ecr:BatchImportUpstreamImage', 'ecr:CreateRepository']);
  });

  test('the pull-through cache rules, with the credential the registry needs', () => {
    template.resourceCountIs('AWS::ECR::PullThroughCacheRule', 2);
    template.hasResourceProperties('AWS::ECR::PullThroughCacheRule', {
      EcrRepositoryPrefix: 'docker-hub',
      UpstreamRegistryUrl: 'registry-1.docker.io',
      UpstreamRegistry: 'docker-hub',
      CredentialArn: DOCKER_HUB_SECRET,
    });
    template.hasResourceProperties('AWS::ECR::PullThroughCacheRule', {
      EcrRepositoryPrefix: 'quay',
      UpstreamRegistryUrl: 'quay.io',
      CredentialArn: Match.absent(),
    });
  });

  test('iam:PassRole only on the named roles, still only to ECS tasks', () => {
    const pass = allowed(statements, 'iam:PassRole');
    expect(pass).toHaveLength(1);
    const resources = stack.resolve(pass[0]?.resources);
    expect(resources).toEqual([
      'arn:aws:iam::123456789012:role/payments-task',
      {
        'Fn::Join': [
          '',
          ['arn:', { Ref: 'AWS::Partition' }, ':iam::', { Ref: 'AWS::AccountId' }, ':role/ecs-task-*'],
        ],
      },
    ]);
    expect(pass[0]?.condition).toEqual({
      StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' },
    });
  });

  test('cdk-nag: no unacknowledged finding, AwsSolutions or Autopatch', () => {
    expect(unacknowledgedNagFindings(stack)).toEqual([]);
    expect(new AutopatchChecks().validateScope(stack).violations).toEqual([]);
  });
});

describe('without the new settings (existing configurations)', () => {
  let stack: AutopatchStack;
  let template: Template;
  beforeAll(() => {
    ({ stack, template } = synthAutopatch({
      props: {
        targets: [
          {
            cluster: 'prod',
            service: 'api',
            rebuild: { mode: 'source', sourceLocation: 's3://bucket/api.zip' },
          },
        ],
      },
    }));
  });

  test('no connected projects, no logins, no pull-through, PassRole on any role as before', () => {
    expect(projectsOf(template).filter(([, p]) => (p.Properties.Source as Json).Auth !== undefined)).toEqual(
      [],
    );
    for (const [, p] of projectsOf(template)) expect(buildSpecOf(p)).not.toContain('secrets-manager');
    template.resourceCountIs('AWS::ECR::PullThroughCacheRule', 0);
    const statements = policyStatements(stack, template);
    expect(allowed(statements, 'secretsmanager:GetSecretValue')).toEqual([]);
    expect(allowed(statements, 'ecr:BatchImportUpstreamImage')).toEqual([]);
    expect(JSON.stringify(stack.resolve(allowed(statements, 'iam:PassRole')[0]?.resources))).toContain(
      ':role/*',
    );
    const env = JSON.stringify(template.findResources('AWS::Lambda::Function'));
    expect(env).not.toContain('CONNECTED_SOURCE_PREFIX');
  });
});

describe('validation: every bad setting is reported at once, naming its field', () => {
  const errorOf = (props: Record<string, unknown>) => {
    try {
      synthAutopatch({ props: props as never });
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('synth succeeded');
  };

  test('connection ARNs, repository URLs, secrets, prefixes and roles', () => {
    const message = errorOf({
      targets: [
        {
          cluster: 'prod',
          service: 'a',
          rebuild: {
            mode: 'source',
            sourceLocation: 'https://github.com/o/r',
            connectionArn: 'arn:aws:codecommit:eu-central-1:123456789012:repo',
          },
        },
        {
          cluster: 'prod',
          service: 'b',
          rebuild: { mode: 'source', sourceLocation: 's3://bucket/src.zip', connectionArn: CONNECTION },
        },
      ],
      registryCredentials: { 'docker.io': 'my-secret', 'Not A Host': GHCR_SECRET },
      pullThroughCache: { 'docker.io': 'Docker_Hub/', 'ghcr.io': 'github' },
      createPullThroughCacheRules: true,
      taskRoleArns: ['arn:aws:iam::123456789012:user/alice', '*'],
    });
    expect(message).toContain('targets[0].rebuild.connectionArn: must be a connection ARN');
    expect(message).toContain(
      'targets[1].rebuild.sourceLocation: with connectionArn, must be the HTTPS URL of a repository on github.com, gitlab.com, bitbucket.org',
    );
    expect(message).toContain(
      'registryCredentials["docker.io"]: must be the complete ARN of a Secrets Manager secret',
    );
    expect(message).toContain('registryCredentials["Not A Host"]: "Not A Host" is not a registry host');
    expect(message).toContain('pullThroughCache["docker.io"]: must be an ECR repository prefix');
    expect(message).toContain('pullThroughCache["ghcr.io"]: ECR needs credentials for ghcr.io');
    expect(message).toContain(
      'taskRoleArns[0]: "arn:aws:iam::123456789012:user/alice" is neither a role ARN',
    );
    expect(message).toContain('taskRoleArns[1]: "*" is every role; leave taskRoleArns out for that');
  });

  test('a pull-through rule reads only ecr-pullthroughcache/ secrets; an empty taskRoleArns is a mistake', () => {
    const message = errorOf({
      registryCredentials: { 'ghcr.io': GHCR_SECRET },
      pullThroughCache: { 'ghcr.io': 'github' },
      createPullThroughCacheRules: true,
      taskRoleArns: [],
    });
    expect(message).toContain(
      'registryCredentials["ghcr.io"]: a pull-through cache rule reads only secrets whose name starts with ecr-pullthroughcache/',
    );
    expect(message).toContain('taskRoleArns: must list the task and execution roles');
  });

  test('one repository, one connection', () => {
    const rebuild = (connectionArn: string) => ({
      mode: 'source',
      sourceLocation: 'https://gitlab.com/o/r',
      connectionArn,
    });
    expect(
      errorOf({
        targets: [
          { cluster: 'prod', service: 'a', rebuild: rebuild(CONNECTION) },
          { cluster: 'prod', service: 'b', rebuild: rebuild(OLD_CONNECTION) },
        ],
      }),
    ).toContain('https://gitlab.com/o/r is checked out through two connections');
  });

  test('a connection ARN known only at deploy (a token) is not checked at synth, and is used as given', () => {
    const { template } = synthAutopatch({
      props: {
        targets: [
          {
            cluster: 'prod',
            service: 'a',
            rebuild: {
              mode: 'source',
              sourceLocation: 'https://gitlab.com/o/r',
              connectionArn: Fn.importValue('shared-gitlab-connection'),
            },
          },
        ],
      },
    });
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Source: Match.objectLike({
        Type: 'GITLAB',
        Auth: { Type: 'CODECONNECTIONS', Resource: { 'Fn::ImportValue': 'shared-gitlab-connection' } },
      }),
    });
  });

  test('the settings are read from cdk.json context too', () => {
    const { template } = synthAutopatch({
      context: {
        autopatch: { taskRoleArns: ['payments-task'], pullThroughCache: { 'docker.io': 'docker-hub' } },
      },
    });
    template.hasResourceProperties('AWS::CodeBuild::Project', {
      Environment: Match.objectLike({
        EnvironmentVariables: Match.arrayWith([
          { Name: 'AUTOPATCH_PULL_THROUGH', Type: 'PLAINTEXT', Value: 'docker.io=docker-hub' },
        ]),
      }),
    });
  });
});

describe('the pull-through rewrite of the Dockerfile (the buildspec command, run with stub aws and docker)', () => {
  test('Docker Hub, GitHub and Quay references go through the cache; stages, scratch and ARG references stay', () => {
    // Prepare
    const dir = mkdtempSync(path.join(tmpdir(), 'autopatch-ptc-'));
    mkdirSync(path.join(dir, 'bin'));
    mkdirSync(path.join(dir, 'src'));
    writeFileSync(path.join(dir, 'bin', 'aws'), '#!/bin/sh\necho password\n');
    writeFileSync(path.join(dir, 'bin', 'docker'), '#!/bin/sh\ncat >/dev/null\n');
    for (const f of ['aws', 'docker']) chmodSync(path.join(dir, 'bin', f), 0o755);
    writeFileSync(
      path.join(dir, 'src', 'Dockerfile'),
      [
        'ARG BASE=node:20',
        'FROM --platform=$BUILDPLATFORM golang:1.22 AS build',
        'FROM build AS test',
        'FROM ghcr.io/org/tool:1',
        'FROM $BASE',
        'from docker.io/nginx@sha256:abc',
        'FROM public.ecr.aws/docker/library/alpine:3',
        'FROM scratch',
        'FROM bitnami/redis:7',
        'COPY --from=build /x /y',
        '',
      ].join('\n'),
    );
    // Act
    execFileSync('bash', ['-c', PULL_THROUGH_REWRITE], {
      env: {
        PATH: `${path.join(dir, 'bin')}:${process.env.PATH}`,
        AUTOPATCH_WORK: dir,
        AWS_REGION: 'eu-central-1',
        AUTOPATCH_PULL_THROUGH: 'docker.io=docker-hub ghcr.io=github',
        AUTOPATCH_CACHE_REGISTRY: '123456789012.dkr.ecr.eu-central-1.amazonaws.com',
      },
      stdio: 'pipe',
    });
    // Assess
    const cache = '123456789012.dkr.ecr.eu-central-1.amazonaws.com';
    expect(readFileSync(path.join(dir, 'src', 'Dockerfile'), 'utf8').split('\n')).toEqual([
      'ARG BASE=node:20',
      `FROM --platform=$BUILDPLATFORM ${cache}/docker-hub/library/golang:1.22 AS build`,
      'FROM build AS test',
      `FROM ${cache}/github/org/tool:1`,
      'FROM $BASE',
      `from ${cache}/docker-hub/library/nginx@sha256:abc`,
      'FROM public.ecr.aws/docker/library/alpine:3',
      'FROM scratch',
      `FROM ${cache}/docker-hub/bitnami/redis:7`,
      'COPY --from=build /x /y',
      '',
    ]);
  });
});
