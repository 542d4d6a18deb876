import {
  CodeDeployClient,
  CreateDeploymentCommand,
  GetDeploymentCommand,
  GetDeploymentGroupCommand,
  ListDeploymentsCommand,
  StopDeploymentCommand,
} from '@aws-sdk/client-codedeploy';
import {
  DescribeServiceDeploymentsCommand,
  DescribeServicesCommand,
  ECSClient,
  StopServiceDeploymentCommand,
  UpdateServiceCommand,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { restoreLastGoodRevision } from '../../../lambdas/workflow/restore';
import {
  CODEDEPLOY_DEPLOYMENT_ID,
  DEPLOYMENT_ARN,
  PATCHED_TASK_DEFINITION,
  PREVIOUS_TASK_DEFINITION,
  remediationRequest,
} from '../../support/workflow-harness';

const ecs = mockClient(ECSClient);
const client = new ECSClient({});
const RESTORE_DEPLOYMENT =
  'arn:aws:ecs:eu-central-1:123456789012:service-deployment/prod/payments-api/restore';
const input = {
  service: remediationRequest().service,
  previousTaskDefinitionArn: PREVIOUS_TASK_DEFINITION,
  patchedTaskDefinitionArn: PATCHED_TASK_DEFINITION,
};
const failure = (name: string) => Object.assign(new Error(`${name} (persistent)`), { name });

beforeEach(() => {
  ecs.reset();
  ecs.on(DescribeServicesCommand).resolves({
    services: [
      { status: 'ACTIVE', taskDefinition: PATCHED_TASK_DEFINITION, currentServiceDeployment: DEPLOYMENT_ARN },
    ],
  });
  ecs.on(DescribeServiceDeploymentsCommand).resolves({ serviceDeployments: [{ status: 'IN_PROGRESS' }] });
  ecs.on(StopServiceDeploymentCommand).resolves({ serviceDeploymentArn: DEPLOYMENT_ARN });
  ecs.on(UpdateServiceCommand).resolves({ service: { currentServiceDeployment: RESTORE_DEPLOYMENT } });
});

describe('restoreLastGoodRevision: no single read API decides whether the service goes back', () => {
  it('returns the deployment to wait on when it stops the patched deployment', async () => {
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({
      action: 'rollback-requested',
      deploymentArn: DEPLOYMENT_ARN,
    });
  });

  it.each([
    ['DescribeServices', DescribeServicesCommand],
    ['DescribeServiceDeployments', DescribeServiceDeploymentsCommand],
    ['StopServiceDeployment', StopServiceDeploymentCommand],
  ] as const)('redeploys the previous revision when %s keeps failing', async (name, command) => {
    ecs
      .on(command as never)
      .rejects(failure(name === 'StopServiceDeployment' ? 'ConflictException' : 'AccessDeniedException'));

    const out = await restoreLastGoodRevision(input, client);

    expect(out).toMatchObject({ action: 'redeployed-previous', deploymentArn: RESTORE_DEPLOYMENT });
    expect(out.detail).toContain(`${name} failed`);
    expect(ecs.commandCalls(UpdateServiceCommand)[0]?.args[0].input).toEqual({
      cluster: input.service.clusterArn,
      service: 'payments-api',
      taskDefinition: PREVIOUS_TASK_DEFINITION,
    });
  });

  it('leaves alone a service that someone else moved on meanwhile, and a deleted one', async () => {
    ecs.on(DescribeServicesCommand).resolves({
      services: [{ status: 'ACTIVE', taskDefinition: 'arn:aws:ecs:eu-central-1:1:task-definition/owner:9' }],
    });
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({ action: 'nothing-to-do' });
    ecs.on(DescribeServicesCommand).resolves({ services: [{ status: 'INACTIVE' }] });
    await expect(restoreLastGoodRevision(input, client)).resolves.toMatchObject({ action: 'nothing-to-do' });
    expect(ecs.commandCalls(UpdateServiceCommand)).toHaveLength(0);
  });

  it('fails (to be retried, then to page on-call with the command) only when the redeploy itself fails', async () => {
    ecs.on(DescribeServicesCommand).rejects(failure('ServerException'));
    ecs.on(UpdateServiceCommand).rejects(failure('AccessDeniedException'));
    const error = await restoreLastGoodRevision(input, client).catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'PutBackFailedError',
      command: `aws ecs update-service --cluster ${input.service.clusterArn} --service payments-api --task-definition ${PREVIOUS_TASK_DEFINITION}`,
    });
    expect((error as Error).message).toContain('AccessDeniedException');
    expect((error as Error).message).toMatch(/To put it back by hand: aws ecs update-service /);
  });
});

describe('restoreLastGoodRevision, CODE_DEPLOY: no single CodeDeploy read API decides either', () => {
  const codedeploy = mockClient(CodeDeployClient);
  const cdClient = new CodeDeployClient({});
  const OTHER_DEPLOYMENT = 'd-OTHER0001';
  const GROUP = { application: 'AppECS-prod-payments-api', deploymentGroup: 'DgpECS-prod-payments-api' };
  /** The service as DescribeServices reports it: `primary` serves production, a replacement runs beside it. */
  const serviceWith = (primary: string, replacement?: { taskDefinition: string; externalId: string }) => ({
    services: [
      {
        status: 'ACTIVE',
        serviceName: 'payments-api',
        deploymentController: { type: 'CODE_DEPLOY' as const },
        loadBalancers: [{ containerName: 'app', containerPort: 8080 }],
        taskSets: [
          { status: 'PRIMARY', taskDefinition: primary },
          ...(replacement ? [{ status: 'ACTIVE', ...replacement }] : []),
        ],
      },
    ],
  });
  const stopCommand = `aws deploy stop-deployment --deployment-id ${CODEDEPLOY_DEPLOYMENT_ID} --auto-rollback-enabled`;

  beforeEach(() => {
    codedeploy.reset();
    ecs.on(DescribeServicesCommand).resolves(
      serviceWith(PREVIOUS_TASK_DEFINITION, {
        taskDefinition: PATCHED_TASK_DEFINITION,
        externalId: CODEDEPLOY_DEPLOYMENT_ID,
      }),
    );
    codedeploy.on(GetDeploymentGroupCommand).resolves({
      deploymentGroupInfo: {
        computePlatform: 'ECS',
        ecsServices: [{ serviceName: 'payments-api', clusterName: 'prod' }],
      },
    });
    codedeploy.on(ListDeploymentsCommand).resolves({ deployments: [CODEDEPLOY_DEPLOYMENT_ID] });
    codedeploy.on(GetDeploymentCommand).rejects(failure('ThrottlingException'));
    codedeploy.on(StopDeploymentCommand).resolves({ status: 'Pending' });
    codedeploy.on(CreateDeploymentCommand).resolves({ deploymentId: 'd-RESTORE01' });
  });
  afterAll(() => codedeploy.restore());

  it("stops the active deployment when GetDeployment cannot be read but the service's task set running the patched revision names it", async () => {
    const out = await restoreLastGoodRevision(input, client, cdClient);

    expect(out).toMatchObject({
      action: 'rollback-requested',
      deploymentArn: CODEDEPLOY_DEPLOYMENT_ID,
      manualCommand: stopCommand,
    });
    expect(out.detail).toContain('GetDeployment failed');
    expect(codedeploy.commandCalls(StopDeploymentCommand)[0]?.args[0].input).toEqual({
      deploymentId: CODEDEPLOY_DEPLOYMENT_ID,
      autoRollbackEnabled: true,
    });
    expect(codedeploy.commandCalls(CreateDeploymentCommand)).toHaveLength(0);
  });

  it('never stops an active deployment it cannot read and no task set names: it fails, to be retried', async () => {
    codedeploy.on(ListDeploymentsCommand).resolves({ deployments: [OTHER_DEPLOYMENT] });

    await expect(restoreLastGoodRevision(input, client, cdClient)).rejects.toMatchObject({
      name: 'PutBackFailedError',
    });
    expect(codedeploy.commandCalls(StopDeploymentCommand)).toHaveLength(0);
    expect(codedeploy.commandCalls(CreateDeploymentCommand)).toHaveLength(0);
  });

  it('with ListDeployments unreadable too, asks StopDeployment; a completed deployment is put back by a new one', async () => {
    ecs.on(DescribeServicesCommand).resolves(
      serviceWith(PATCHED_TASK_DEFINITION, {
        taskDefinition: PATCHED_TASK_DEFINITION,
        externalId: CODEDEPLOY_DEPLOYMENT_ID,
      }),
    );
    codedeploy.on(ListDeploymentsCommand).rejects(failure('AccessDeniedException'));
    codedeploy.on(StopDeploymentCommand).rejects(failure('DeploymentAlreadyCompletedException'));

    const out = await restoreLastGoodRevision(input, client, cdClient);

    expect(out).toMatchObject({ action: 'redeployed-previous', deploymentArn: 'd-RESTORE01' });
    expect(out.detail).toContain('ListDeployments failed');
    expect(out.manualCommand).toContain('aws deploy create-deployment');
    expect(codedeploy.commandCalls(StopDeploymentCommand)).toHaveLength(1);
    expect(codedeploy.commandCalls(CreateDeploymentCommand)[0]?.args[0].input).toMatchObject({
      applicationName: GROUP.application,
      deploymentGroupName: GROUP.deploymentGroup,
      overrideAlarmConfiguration: { enabled: false },
    });
  });

  it('pages with the exact stop-deployment command when StopDeployment keeps failing', async () => {
    codedeploy.on(StopDeploymentCommand).rejects(failure('AccessDeniedException'));

    const error = await restoreLastGoodRevision(input, client, cdClient).catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'PutBackFailedError', command: stopCommand });
    expect((error as Error).message).toContain(`To put it back by hand: ${stopCommand}`);
  });

  it('pages with the exact create-deployment command, AppSpec included, when CreateDeployment keeps failing', async () => {
    ecs.on(DescribeServicesCommand).resolves(serviceWith(PATCHED_TASK_DEFINITION));
    codedeploy.on(ListDeploymentsCommand).resolves({ deployments: [] });
    codedeploy.on(CreateDeploymentCommand).rejects(failure('ThrottlingException'));

    const error = (await restoreLastGoodRevision(input, client, cdClient).catch(
      (e: unknown) => e,
    )) as Error & {
      command: string;
    };

    expect(error.name).toBe('PutBackFailedError');
    const prefix = `aws deploy create-deployment --application-name ${GROUP.application} --deployment-group-name ${GROUP.deploymentGroup} --revision '`;
    expect(error.command.startsWith(prefix)).toBe(true);
    const revision = JSON.parse(error.command.slice(prefix.length, error.command.indexOf("' --override")));
    expect(revision.revisionType).toBe('AppSpecContent');
    expect(JSON.parse(revision.appSpecContent.content).Resources[0].TargetService.Properties).toEqual({
      TaskDefinition: PREVIOUS_TASK_DEFINITION,
      LoadBalancerInfo: { ContainerName: 'app', ContainerPort: 8080 },
    });
    expect(error.command).toMatch(/--override-alarm-configuration '\{"enabled":false\}'$/);
    expect(error.message).toContain(`To put it back by hand: ${error.command}`);
  });

  it("leaves a readable deployment that is not Autopatch's to its owner", async () => {
    codedeploy.on(ListDeploymentsCommand).resolves({ deployments: [OTHER_DEPLOYMENT] });
    codedeploy.on(GetDeploymentCommand).resolves({
      deploymentInfo: {
        deploymentId: OTHER_DEPLOYMENT,
        revision: { revisionType: 'AppSpecContent', appSpecContent: { content: 'owner:9' } },
      },
    });

    await expect(restoreLastGoodRevision(input, client, cdClient)).resolves.toMatchObject({
      action: 'nothing-to-do',
      manualCommand: '',
    });
    expect(codedeploy.commandCalls(StopDeploymentCommand)).toHaveLength(0);
  });
});
