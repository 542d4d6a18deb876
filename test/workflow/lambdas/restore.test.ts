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

  it('fails (to be retried, then to page on-call) only when the redeploy itself fails', async () => {
    ecs.on(DescribeServicesCommand).rejects(failure('ServerException'));
    ecs.on(UpdateServiceCommand).rejects(failure('AccessDeniedException'));
    await expect(restoreLastGoodRevision(input, client)).rejects.toMatchObject({
      name: 'AccessDeniedException',
    });
  });
});
