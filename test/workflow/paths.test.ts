import type { RemediationRequest } from '../../lambdas/shared/contracts';
import type { RescanFailure, RescanVerdict } from '../../lambdas/workflow/verify-rescan';
import {
  allStates,
  BUILD_LOG_LINK,
  CODEDEPLOY_DEPLOYMENT_ID,
  DEPLOYMENT_ARN,
  digest,
  FAKE_PROJECTS,
  FakeAccount,
  image,
  type Json,
  lambdaError,
  PATCHED_TASK_DEFINITION,
  PREVIOUS_TASK_DEFINITION,
  plannedBuilds,
  remediationRequest,
  renderWorkflow,
  runWorkflow,
  STATE_MACHINE_ARN,
  serviceError,
  TASK_TOKEN,
  taskStateNames,
  type WorkflowRun,
} from '../support/workflow-harness';

/** The states every remediation goes through before it branches. */
const START = [
  'Acquire the service lock',
  'Another remediation in flight?',
  'Gather the rest of the burst?',
  'Wait for the rest of the burst',
  'Take the findings gathered meanwhile',
  'Still gathering?',
  'Anything left to fix?',
  'Maintenance window?',
  'Start checking the alarms',
  'Check the service can be watched',
  'Can the service be watched?',
  'Approval required?',
];
const BUILD = [
  'Plan the image builds',
  'Rebuild and verify each image',
  'Build the patched image',
  'Verify the patched image by rescan',
];
/** BUILD, then the rescan verdict read: verified. */
const VERIFIED = [...BUILD, 'Did the rescan prove the fix?', 'Keep the proven image'];
/** After the Map: the patched images, one per affected image (image indexes reassembled). */
const ASSEMBLE = ['Assemble the patched image indexes', 'Keep the patched images'];
const DEPLOY = [
  ...ASSEMBLE,
  'Register the patched task definition',
  'Check the alarms before deploying',
  'Still safe to deploy?',
  'Take a deployment slot',
  'Deployment slot taken?',
  'Which tool deploys the service?',
  'Deploy the patched revision',
  'Watch the deployment through the bake time',
  'How did the deployment end?',
];
const FINISH = ['Record the outcome and release the lock', 'Which outcome?'];

const released = (account: FakeAccount, run: WorkflowRun) => {
  expect(account.releases).toEqual([['prod/payments-api', remediationRequest().executionName]]);
  return run;
};

beforeAll(() => {
  renderWorkflow();
});

describe('remediation workflow paths', () => {
  it('patches the service: rebuild, rescan, deploy, bake, record, release', async () => {
    const account = new FakeAccount();
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'The service is patched',
      ...FINISH,
      'Patched',
    ]);
    expect(run.status).toBe('SUCCEEDED');
    const newDigest = account.outcomes[0]?.images[0]?.newDigest;
    expect(run.output).toEqual(
      expect.objectContaining({
        outcome: 'Patched',
        service: 'prod/payments-api',
        cvesClosed: ['CVE-2024-6387'],
        images: [
          { repository: 'payments/api', containers: ['app'], oldDigest: image().imageDigest, newDigest },
        ],
        driftParameters: ['/autopatch/prod/payments-api/app/image'],
        taskDefinition: { previous: PREVIOUS_TASK_DEFINITION, patched: PATCHED_TASK_DEFINITION },
      }),
    );
    expect(run.output?.reason).toMatch(/closed CVE-2024-6387/);
    released(account, run);
    expect(account.outcomes).toEqual([
      expect.objectContaining({ outcome: 'Patched', cvesClosed: ['CVE-2024-6387'] }),
    ]);
    // The arm64 image is patched on the arm64 OS-patch project, pinned to the running digest.
    const [build] = plannedBuilds(run);
    expect(build?.projectName).toBe('PatchOsArmProject');
    expect(run.calls.get('Build the patched image')?.[0]).toEqual({
      ProjectName: 'PatchOsArmProject',
      EnvironmentVariablesOverride: expect.arrayContaining([
        { Name: 'IMAGE_URI', Value: `${image().repositoryUri}@${image().imageDigest}`, Type: 'PLAINTEXT' },
        { Name: 'PACKAGE_MANAGER', Value: 'apt', Type: 'PLAINTEXT' },
      ]),
    });
    expect(run.calls.get('Deploy the patched revision')?.[0]).toEqual({
      Cluster: remediationRequest().service.clusterArn,
      Service: 'payments-api',
      TaskDefinition: PATCHED_TASK_DEFINITION,
    });
    expect(run.calls.get('Watch the deployment through the bake time')?.[0]).toEqual(
      expect.objectContaining({
        taskToken: TASK_TOKEN,
        alarmNames: ['payments-api-5xx'],
        taskDefinitionArn: PATCHED_TASK_DEFINITION,
      }),
    );
  });

  it('waits for approval and goes on when approved', async () => {
    const account = new FakeAccount();
    const request = remediationRequest({
      decision: { action: 'approve', reason: 'HIGH without exploit: ask first' },
    });
    const run = await runWorkflow(request, account);

    expect(run.states).toEqual([
      ...START,
      'Wait for approval',
      'Approved, or pre-empted?',
      ...VERIFIED,
      ...DEPLOY,
      'The service is patched',
      ...FINISH,
      'Patched',
    ]);
    expect(run.calls.get('Wait for approval')?.[0]).toEqual(
      expect.objectContaining({ taskToken: TASK_TOKEN, executionName: request.executionName }),
    );
    released(account, run);
  });

  it('an urgent finding pre-empts the approval wait: Superseded, nothing built, the lock released with its request queued again', async () => {
    const account = new FakeAccount().on('Wait for approval', () => ({
      approved: false,
      preempted: true,
      reason: 'An urgent finding queued behind this remediation: it runs first.',
    }));
    const run = await runWorkflow(
      remediationRequest({ decision: { action: 'approve', reason: 'HIGH without exploit: ask first' } }),
      account,
    );

    expect(run.states.slice(-6)).toEqual([
      'Wait for approval',
      'Approved, or pre-empted?',
      'An urgent finding pre-empted the approval',
      ...FINISH,
      'Superseded',
    ]);
    expect(run.calls.has('Plan the image builds')).toBe(false);
    expect(run.calls.get('Record the outcome and release the lock')?.[0]).toEqual(
      expect.objectContaining({ outcome: 'Superseded' }),
    );
  });

  it('ends Rejected when the approver rejects', async () => {
    const account = new FakeAccount().on('Wait for approval', () => {
      throw serviceError('Autopatch.Rejected', 'Rejected by bob: the service is being decommissioned');
    });
    const run = await runWorkflow(
      remediationRequest({ decision: { action: 'approve', reason: 'HIGH: ask first' } }),
      account,
    );

    expect(run.states).toEqual([
      ...START,
      'Wait for approval',
      'The approver rejected it',
      ...FINISH,
      'Rejected',
    ]);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.output).toEqual(expect.objectContaining({ outcome: 'Rejected', cvesClosed: [] }));
    expect(run.output?.reason).toMatch(/Rejected by bob: the service is being decommissioned/);
    released(account, run);
  });

  it('ends ApprovalExpired when nobody answers in time', async () => {
    const account = new FakeAccount().on('Wait for approval', () => {
      throw serviceError('States.Timeout', 'Task timed out');
    });
    const run = await runWorkflow(
      remediationRequest({ decision: { action: 'approve', reason: 'ask first' } }),
      account,
    );

    expect(run.states).toEqual([
      ...START,
      'Wait for approval',
      'Nobody approved in time',
      ...FINISH,
      'Approval expired',
    ]);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('ApprovalExpired');
    expect(run.cause).toMatch(/Nobody approved .* within 24 hours\. Nothing was changed\./);
    released(account, run);
  });

  it('builds what was gathered during the wait: findings merged meanwhile are planned and reported', async () => {
    // Prepare: while the execution waits, triage merged a second image into its lock.
    const extra = image({
      repository: 'shared/envoy',
      repositoryUri: '123456789012.dkr.ecr.eu-central-1.amazonaws.com/shared/envoy',
      imageDigest: `sha256:${'e'.repeat(64)}`,
      containers: ['envoy'],
      cves: ['CVE-2024-7777'],
    });
    const account = new FakeAccount().on('Take the findings gathered meanwhile', (input) => {
      const { state } = input as unknown as { state: RemediationRequest };
      return { ...state, images: [...state.images, extra], findingsCount: 2, gathering: false };
    });

    // Act
    const run = await runWorkflow(remediationRequest(), account);

    // Assess
    expect(run.states.at(-1)).toBe('Patched');
    const planned = run.calls.get('Plan the image builds')?.[0] as { images: Array<{ repository: string }> };
    expect(planned.images.map((i) => i.repository)).toEqual([image().repository, 'shared/envoy']);
    expect((run.output as { cves: string[] }).cves).toContain('CVE-2024-7777');
  });

  it('keeps gathering while the burst still arrives, then builds everything it gathered', async () => {
    // Prepare: the first take finds the burst still arriving; the second one seals.
    let takes = 0;
    const account = new FakeAccount().on('Take the findings gathered meanwhile', (input) => {
      const { state } = input as unknown as { state: RemediationRequest };
      takes++;
      return { ...state, findingsCount: takes, gathering: takes === 1, gatherWaitSeconds: 42 };
    });

    // Act
    const run = await runWorkflow(remediationRequest(), account);

    // Assess
    expect(run.states.slice(0, 9)).toEqual([
      'Acquire the service lock',
      'Another remediation in flight?',
      'Gather the rest of the burst?',
      'Wait for the rest of the burst',
      'Take the findings gathered meanwhile',
      'Still gathering?',
      'Wait for the burst to go quiet',
      'Take the findings gathered meanwhile',
      'Still gathering?',
    ]);
    expect(run.calls.get('Take the findings gathered meanwhile')?.[1]).toMatchObject({
      step: 'take-findings',
      startedAt: expect.any(String),
    });
    expect(run.states.at(-1)).toBe('Patched');
  });

  it('skips the gathering wait when the target sets none (gatherSeconds 0 or a request from before it existed)', async () => {
    const base = remediationRequest();
    const { gatherSeconds: _omit, ...withoutGather } = base.target;
    for (const target of [{ ...base.target, gatherSeconds: 0 }, withoutGather]) {
      const run = await runWorkflow(remediationRequest({ target }), new FakeAccount());
      expect(run.states.slice(0, 4)).toEqual([
        'Acquire the service lock',
        'Another remediation in flight?',
        'Gather the rest of the burst?',
        'Take the findings gathered meanwhile',
      ]);
      expect(run.states.at(-1)).toBe('Patched');
    }
  });

  it('waits for the maintenance window first when notBefore is set', async () => {
    const account = new FakeAccount();
    const run = await runWorkflow(
      remediationRequest({
        decision: { action: 'remediate', reason: 'in the next window', notBefore: '2024-09-07T02:00:00Z' },
      }),
      account,
    );

    // The alarms are checked after the window, when the deployment is about to happen.
    expect(run.states.slice(0, 15)).toEqual([
      ...START.slice(0, 8),
      'Wait for the maintenance window',
      'Pre-empted by an urgent finding?',
      ...START.slice(8),
      'Plan the image builds',
    ]);
    expect(run.calls.get('Wait for the maintenance window')?.[0]).toEqual(
      expect.objectContaining({ step: 'wait-for-window', notBefore: '2024-09-07T02:00:00Z' }),
    );
    expect(run.states.at(-1)).toBe('Patched');
  });

  it('an urgent finding pre-empts the window wait: the run takes it and deploys now', async () => {
    const account = new FakeAccount()
      .on('Wait for the maintenance window', () => ({ preempted: true, reason: 'an urgent finding queued' }))
      .on('Take the urgent findings', (input) => {
        const state = (input as { state: Record<string, Json> }).state;
        return {
          ...state,
          images: [
            ...(state.images as Json[]),
            image({ imageDigest: digest('c3'), cves: ['CVE-2024-9999'] }),
          ],
          decision: { action: 'remediate', reason: 'CRITICAL with a known exploit: remediate now' },
          preemption: { took: 1, reason: 'Pre-empted its maintenance window' },
        };
      });
    const run = await runWorkflow(
      remediationRequest({
        decision: { action: 'remediate', reason: 'in the next window', notBefore: '2024-09-07T02:00:00Z' },
      }),
      account,
    );

    expect(run.states.slice(8, 12)).toEqual([
      'Wait for the maintenance window',
      'Pre-empted by an urgent finding?',
      'Take the urgent findings',
      'Start checking the alarms',
    ]);
    // The urgent finding's image is built with the rest.
    expect(run.calls.get('Plan the image builds')?.[0]).toEqual(
      expect.objectContaining({
        images: expect.arrayContaining([expect.objectContaining({ cves: ['CVE-2024-9999'] })]),
      }),
    );
    expect(run.states.at(-1)).toBe('Patched');
  });

  it('ends AlreadyFixed, building nothing, when an earlier run already fixed every finding of a follow-up', async () => {
    const account = new FakeAccount().on('Take the findings gathered meanwhile', (input) => ({
      ...(input as { state: Record<string, Json> }).state,
      gathering: false,
      resolution: {
        nothingLeft: true,
        reason: 'CVE-2024-6387 was closed by an earlier remediation (sha256:beef… runs now)',
        alreadyFixed: ['CVE-2024-6387'],
        rebased: [],
      },
    }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([...START.slice(0, 7), 'Nothing left to fix', ...FINISH, 'Already fixed']);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.output).toEqual(expect.objectContaining({ outcome: 'AlreadyFixed' }));
    expect(run.output?.reason).toMatch(/closed by an earlier remediation/);
    expect(run.calls.has('Build the patched image')).toBe(false);
    released(account, run);
  });

  describe('the alarm checks before building and before deploying', () => {
    const gate =
      (verdict: string, extra: Record<string, unknown> = {}) =>
      () => ({
        verdict,
        approvalRequired: false,
        reason: `gate says ${verdict}`,
        stage: 'plan',
        alarmNames: ['payments-api-5xx'],
        controller: 'ECS',
        firingSince: '',
        ...extra,
      });

    it('builds nothing for a service whose watched alarm does not exist, and names it', async () => {
      const account = new FakeAccount().on(
        'Check the service can be watched',
        gate('missing', { reason: 'Watched alarm payments-api-5xxx does not exist' }),
      );
      const run = await runWorkflow(remediationRequest(), account);

      expect(run.states).toContain('A watched alarm does not exist');
      expect(run.states).not.toContain('Plan the image builds');
      expect(run.error).toBe('Failed');
      expect(run.cause).toMatch(/WatchedAlarmMissing: Watched alarm payments-api-5xxx does not exist/);
      expect(run.cause).toMatch(/Nothing was deployed/);
      released(account, run);
    });

    it('builds nothing for a service another deployment controller deploys', async () => {
      const account = new FakeAccount().on(
        'Check the service can be watched',
        gate('unsupported', { controller: 'EXTERNAL', reason: 'uses the EXTERNAL deployment controller' }),
      );
      const run = await runWorkflow(remediationRequest(), account);

      expect(run.states).toContain('Autopatch cannot deploy this service');
      expect(run.states).not.toContain('Plan the image builds');
      expect(run.cause).toMatch(/UnsupportedDeploymentController: uses the EXTERNAL deployment controller/);
    });

    it('asks a person first when no alarm can judge the service', async () => {
      const account = new FakeAccount().on(
        'Check the service can be watched',
        gate('unobserved', { approvalRequired: true, reason: 'No alarm watches prod/payments-api' }),
      );
      const run = await runWorkflow(remediationRequest(), account);

      expect(run.states.slice(0, START.length)).toEqual([...START.slice(0, -1), 'Wait for approval']);
      expect(run.states.at(-1)).toBe('Patched');
    });

    it('waits while an alarm fires before deploying, then deploys once it cleared', async () => {
      let checks = 0;
      const account = new FakeAccount().on('Check the alarms before deploying', () =>
        gate(++checks < 3 ? 'firing' : 'ready', { stage: 'deploy' })(),
      );
      const run = await runWorkflow(remediationRequest(), account);

      const hold = [
        'Wait for the firing alarm to clear before deploying',
        'Check the alarms before deploying',
        'Still safe to deploy?',
      ];
      expect(run.states).toEqual([
        ...START,
        ...VERIFIED,
        ...ASSEMBLE,
        'Register the patched task definition',
        'Check the alarms before deploying',
        'Still safe to deploy?',
        ...hold,
        ...hold,
        'Take a deployment slot',
        'Deployment slot taken?',
        'Which tool deploys the service?',
        'Deploy the patched revision',
        'Watch the deployment through the bake time',
        'How did the deployment end?',
        'The service is patched',
        ...FINISH,
        'Patched',
      ]);
    });

    it("deploys a service of another account or Region with a Lambda in that account (the ECS integration reaches only the hub's)", async () => {
      const account = new FakeAccount();
      const run = await runWorkflow(remediationRequest({ service: SPOKE_SERVICE }), account);

      expect(run.states.at(-1)).toBe('Patched');
      expect(run.states).toContain("Deploy the patched revision in the service's account");
      expect(run.states).not.toContain('Deploy the patched revision');
      expect(run.calls.get("Deploy the patched revision in the service's account")).toEqual([
        expect.objectContaining({
          step: 'deploy',
          service: SPOKE_SERVICE,
          taskDefinitionArn: expect.stringContaining(':task-definition/'),
        }),
      ]);
    });

    it('waits for a deployment slot (paused, or the fleet is at its cap), checks the alarms again, then deploys', async () => {
      let asks = 0;
      const account = new FakeAccount().on('Take a deployment slot', () =>
        ++asks < 3
          ? {
              verdict: 'wait',
              reason:
                'Deployments are paused: the pause switch /autopatch-control/hub/deployments is "paused".',
              stage: 'default',
              waitSeconds: 60,
            }
          : {
              verdict: 'taken',
              reason: 'Took a deployment slot (1 in flight, stage default).',
              stage: 'default',
              waitSeconds: 0,
            },
      );
      const run = await runWorkflow(remediationRequest(), account);

      const wait = [
        'Take a deployment slot',
        'Deployment slot taken?',
        'Wait for a deployment slot',
        'Check the alarms before deploying',
        'Still safe to deploy?',
      ];
      expect(run.states).toEqual([
        ...START,
        ...VERIFIED,
        ...ASSEMBLE,
        'Register the patched task definition',
        'Check the alarms before deploying',
        'Still safe to deploy?',
        ...wait,
        ...wait,
        'Take a deployment slot',
        'Deployment slot taken?',
        'Which tool deploys the service?',
        'Deploy the patched revision',
        'Watch the deployment through the bake time',
        'How did the deployment end?',
        'The service is patched',
        ...FINISH,
        'Patched',
      ]);
      expect(run.calls.get('Take a deployment slot')).toHaveLength(3);
    });

    it('ends Deferred, deploying nothing, when the alarm does not clear in time', async () => {
      const account = new FakeAccount().on(
        'Check the alarms before deploying',
        gate('deferred', {
          stage: 'deploy',
          reason: 'Alarm payments-api-5xx was already in ALARM for 24 hours',
        }),
      );
      const run = await runWorkflow(remediationRequest(), account);

      expect(run.states.slice(-4)).toEqual(['The alarm did not clear in time', ...FINISH, 'Deferred']);
      expect(run.calls.has('Deploy the patched revision')).toBe(false);
      expect(run.error).toBe('Deferred');
      expect(run.cause).toMatch(/already in ALARM for 24 hours.*Nothing was deployed/);
      released(account, run);
    });
  });

  it('ends BuildFailed with the build log link when the build fails', async () => {
    const account = new FakeAccount().on('Build the patched image', () => {
      throw serviceError(
        'States.TaskFailed',
        JSON.stringify({
          Build: {
            Id: 'PatchOsArmProject:build-9',
            BuildStatus: 'FAILED',
            Logs: { DeepLink: BUILD_LOG_LINK },
            Phases: [
              { PhaseType: 'PRE_BUILD', PhaseStatus: 'SUCCEEDED' },
              {
                PhaseType: 'BUILD',
                PhaseStatus: 'FAILED',
                Contexts: [
                  {
                    StatusCode: 'COMMAND_EXECUTION_ERROR',
                    Message: 'Error while executing command: apt-get upgrade. Reason: exit status 100',
                  },
                ],
              },
            ],
          },
        }),
      );
    });
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      'Plan the image builds',
      'Rebuild and verify each image',
      'Build the patched image',
      'Did the build run and fail?',
      'The build failed',
      'The image build failed',
      ...FINISH,
      'Build failed',
    ]);
    expect(run.error).toBe('BuildFailed');
    expect(run.cause).toContain(BUILD_LOG_LINK);
    expect(run.cause).toMatch(/PatchOsArmProject:build-9 ended FAILED in phase BUILD: .*exit status 100/);
    expect(run.cause).toMatch(/Nothing was deployed/);
    expect(run.calls.has('Register the patched task definition')).toBe(false);
    released(account, run);
  });

  /** The wait answered with a failed verdict, as the verify Lambda, the scan event or the sweep sends it. */
  const failedVerdict = (error: RescanFailure, cause: string) => (): RescanVerdict => ({
    verdict: 'failed',
    error,
    cause,
  });

  it('ends PatchIneffective, listing what remains, before any traffic moves', async () => {
    const account = new FakeAccount().on(
      'Verify the patched image by rescan',
      failedVerdict(
        'PatchIneffectiveError',
        "Inspector's rescan of payments/api@sha256:1a1a (rebuilt from sha256:a1a1) still has CVE-2024-6387.",
      ),
    );
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...BUILD,
      'Did the rescan prove the fix?',
      'The rescan still finds the CVEs',
      'The patch did not fix the findings',
      ...FINISH,
      'Patch ineffective',
    ]);
    expect(run.error).toBe('PatchIneffective');
    expect(run.cause).toMatch(/still has CVE-2024-6387/);
    expect(run.calls.has('Deploy the patched revision')).toBe(false);
    released(account, run);
  });

  it('ends RescanTimedOut when the wait is answered past the deadline (the sweep), with the coverage state', async () => {
    const account = new FakeAccount().on(
      'Verify the patched image by rescan',
      failedVerdict(
        'RescanTimedOutError',
        'Inspector had not scanned payments/api:autopatch-1 (sha256:1a1a) 3600 s after the push (limit 3600 s; coverage: ACTIVE/PENDING_INITIAL_SCAN).',
      ),
    );
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...BUILD,
      'Did the rescan prove the fix?',
      'Inspector did not scan the image in time',
      'Inspector did not rescan in time',
      ...FINISH,
      'Rescan timed out',
    ]);
    expect(run.error).toBe('RescanTimedOut');
    // One call: the wait, never a poll.
    expect(run.calls.get('Verify the patched image by rescan')).toHaveLength(1);
    expect(run.retries.get('Verify the patched image by rescan')).toBeUndefined();
    expect(run.cause).toMatch(/RescanTimedOutError: Inspector had not scanned .* 3600 s after the push/);
    released(account, run);
  });

  it('ends RescanTimedOut when nobody answers the wait before its own timeout (no event, no sweep)', async () => {
    const account = new FakeAccount().on('Verify the patched image by rescan', () => {
      throw serviceError('States.Timeout', 'States.Timeout');
    });
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...BUILD,
      'Nobody answered the rescan wait in time',
      'Inspector did not rescan in time',
      ...FINISH,
      'Rescan timed out',
    ]);
    expect(run.error).toBe('RescanTimedOut');
    expect(run.retries.get('Verify the patched image by rescan')).toBeUndefined();
    expect(run.cause).toMatch(/Nobody answered the wait for Inspector's rescan/);
    released(account, run);
  });

  it.each([
    [
      'RescanUnavailableError',
      'Inspector cannot scan the image',
      'Inspector cannot scan payments/api@sha256:1a1a (UNSUPPORTED_OS)',
    ],
    [
      'BuildOutputError',
      'The build did not report its image',
      'The build of payments/api (b-1) succeeded but did not export IMAGE_DIGEST',
    ],
  ] as const)(
    'a %s verdict fails the remediation with that error and its Cause',
    async (error, failState, cause) => {
      const account = new FakeAccount().on('Verify the patched image by rescan', failedVerdict(error, cause));
      const run = await runWorkflow(remediationRequest(), account);

      expect(run.states).toEqual([
        ...START,
        ...BUILD,
        'Did the rescan prove the fix?',
        failState,
        'The remediation failed',
        ...FINISH,
        'Failed',
      ]);
      expect(run.error).toBe('Failed');
      expect(run.cause).toContain(`${error}: ${cause}`);
      released(account, run);
    },
  );

  it('fails with the original error when reading Inspector failed in a way no retry cures', async () => {
    const account = new FakeAccount().on(
      'Verify the patched image by rescan',
      (): RescanVerdict => ({
        verdict: 'error',
        error: 'AccessDeniedException',
        cause: 'User is not authorized to perform: inspector2:ListCoverage',
      }),
    );
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...BUILD,
      'Did the rescan prove the fix?',
      'Autopatch could not assess the rescan',
      'The remediation failed',
      ...FINISH,
      'Failed',
    ]);
    expect(run.cause).toContain(
      'AccessDeniedException: User is not authorized to perform: inspector2:ListCoverage',
    );
    released(account, run);
  });

  it('fails closed when the wait is answered with something that is no verdict', async () => {
    const account = new FakeAccount().on('Verify the patched image by rescan', () => ({ hello: 'world' }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...BUILD,
      'Did the rescan prove the fix?',
      'The rescan verdict is not one Autopatch knows',
      'The remediation failed',
      ...FINISH,
      'Failed',
    ]);
    expect(run.calls.has('Deploy the patched revision')).toBe(false);
    released(account, run);
  });

  it('rolls back when an alarm fires during the deployment, waits for ECS, and names the alarm', async () => {
    const account = new FakeAccount().on('Watch the deployment through the bake time', () => ({
      status: 'ALARM',
      alarmName: 'payments-api-5xx',
      deploymentArn: DEPLOYMENT_ARN,
      ecsCompleted: false,
      reason: 'Alarm payments-api-5xx went into ALARM 3 minutes after the deploy, during the deployment.',
    }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'Roll back the deployment',
      'Wait for the rollback',
      'Rolled back yet?',
      'An alarm fired and the deployment was rolled back',
      ...FINISH,
      'Rolled back',
    ]);
    expect(run.calls.get('Roll back the deployment')?.[0]).toEqual({
      ServiceDeploymentArn: DEPLOYMENT_ARN,
      StopType: 'ROLLBACK',
    });
    // The rollback is waited for as an event-driven watch on the same deployment, back to the last good revision.
    expect(run.calls.get('Wait for the rollback')?.[0]).toEqual(
      expect.objectContaining({
        mode: 'rollback',
        deploymentArn: DEPLOYMENT_ARN,
        taskDefinitionArn: PREVIOUS_TASK_DEFINITION,
      }),
    );
    expect(run.error).toBe('RolledBack');
    expect(run.cause).toMatch(/Alarm payments-api-5xx went into ALARM 3 minutes after the deploy/);
    released(account, run);
  });

  it('redeploys the last good revision when an alarm fires after ECS completed, and waits until it runs', async () => {
    const account = new FakeAccount()
      .on('Watch the deployment through the bake time', () => ({
        status: 'ALARM',
        alarmName: 'payments-api-5xx',
        deploymentArn: DEPLOYMENT_ARN,
        ecsCompleted: true,
        reason: 'Alarm payments-api-5xx went into ALARM 40 minutes after the deploy, during the bake.',
      }))
      .on('Put the service back on its last good revision', () => ({
        action: 'redeployed-previous',
        detail: 'Started a deployment of the previous task definition.',
        deploymentArn: 'arn:aws:ecs:eu-central-1:123456789012:service-deployment/prod/payments-api/restore',
        manualCommand: 'aws ecs update-service …',
      }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'An alarm fired after ECS completed the deployment',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
      'Back on the last good revision?',
      'Why was it put back?',
      'An alarm fired and the deployment was rolled back',
      ...FINISH,
      'Rolled back',
    ]);
    expect(run.calls.get('Wait until the last good revision runs')?.[0]).toEqual(
      expect.objectContaining({
        mode: 'rollback',
        deploymentArn: 'arn:aws:ecs:eu-central-1:123456789012:service-deployment/prod/payments-api/restore',
      }),
    );
    expect(run.calls.has('Roll back the deployment')).toBe(false);
    expect(run.error).toBe('RolledBack');
    expect(run.cause).toMatch(/40 minutes after the deploy.*redeployed prod\/payments-api back/);
    released(account, run);
  });

  it('fails closed: when the watch cannot tell whether the service is healthy, the last good revision goes back', async () => {
    const account = new FakeAccount().on('Watch the deployment through the bake time', () => ({
      status: 'UNKNOWN',
      deploymentArn: DEPLOYMENT_ARN,
      reason: 'Watched alarm payments-api-5xx does not exist.',
    }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'Autopatch cannot tell whether the service is healthy',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
      'Back on the last good revision?',
      'Why was it put back?',
      'The remediation failed',
      ...FINISH,
      'Failed',
    ]);
    expect(run.error).toBe('Failed');
    expect(run.cause).toMatch(/HealthUnknown: Watched alarm payments-api-5xx does not exist/);
    expect(run.cause).toMatch(/runs its last good revision/);
    released(account, run);
  });

  it('pages with the command to run when the last good revision cannot be put back', async () => {
    const account = new FakeAccount()
      .on('Watch the deployment through the bake time', () => ({
        status: 'FAILED',
        deploymentArn: DEPLOYMENT_ARN,
      }))
      .on('Wait until the last good revision runs', () => ({
        status: 'FAILED',
        deploymentArn: DEPLOYMENT_ARN,
        reason: 'Putting payments-api back did not work: ROLLBACK_FAILED.',
      }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states.slice(-7)).toEqual([
      'Wait until the last good revision runs',
      'Back on the last good revision?',
      'The service could not be put back',
      'The remediation failed',
      ...FINISH,
      'Failed',
    ]);
    expect(run.cause).toMatch(/could NOT confirm the service is back/);
    expect(run.cause).toContain(
      `aws ecs update-service --cluster ${remediationRequest().service.clusterArn} --service payments-api --task-definition ${PREVIOUS_TASK_DEFINITION}`,
    );
  });

  it('ends RolledBack when ECS rolled the deployment back by itself', async () => {
    const account = new FakeAccount().on('Watch the deployment through the bake time', () => ({
      status: 'ROLLED_BACK',
      deploymentArn: DEPLOYMENT_ARN,
      reason: 'circuit breaker: tasks failed to start',
    }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'ECS rolled the deployment back',
      ...FINISH,
      'Rolled back',
    ]);
    expect(run.error).toBe('RolledBack');
    expect(run.cause).toMatch(
      /ECS rolled the deployment of the patched revision back by itself \(circuit breaker/,
    );
    expect(run.calls.has('Roll back the deployment')).toBe(false);
    released(account, run);
  });

  it('retries a throttled ECS call and carries on', async () => {
    let calls = 0;
    const account = new FakeAccount().on('Deploy the patched revision', () => {
      calls += 1;
      if (calls === 1)
        throw serviceError('Ecs.ThrottlingException', 'Rate exceeded (Service: Ecs, Status Code: 400)');
      return {
        Service: { TaskDefinition: PATCHED_TASK_DEFINITION, CurrentServiceDeployment: DEPLOYMENT_ARN },
      };
    });
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.retries.get('Deploy the patched revision')).toBe(1);
    expect(run.states).toEqual([
      ...START,
      ...VERIFIED,
      ...DEPLOY,
      'The service is patched',
      ...FINISH,
      'Patched',
    ]);
    expect(run.status).toBe('SUCCEEDED');
  });

  it('steps aside as Superseded when another remediation holds the lock, without releasing it', async () => {
    const account = new FakeAccount().on('Acquire the service lock', () => ({
      status: 'superseded',
      reason: 'Remediation payments-api-2cves-b2b2b2b2 is in flight for prod/payments-api: queued behind it.',
    }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).toEqual([
      ...START.slice(0, 2),
      'Leave the service to the remediation in flight',
      ...FINISH,
      'Superseded',
    ]);
    expect(run.status).toBe('SUCCEEDED');
    expect(run.output).toEqual(expect.objectContaining({ outcome: 'Superseded', cvesClosed: [] }));
    expect(run.output?.reason).toMatch(/is in flight for prod\/payments-api/);
    expect(account.releases).toEqual([]);
    expect(account.snsMock.calls()).toHaveLength(0);
  });

  it('starts the remediation queued behind this one when it releases the lock', async () => {
    const account = new FakeAccount();
    const next = remediationRequest({
      executionName: 'payments-api-CVE-2024-9999-a1a1a1a1-4d5e6f-20240905T080000Z',
      remediationId: 'fedcba9876543210',
    });
    account.queued = next;
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states.at(-1)).toBe('Patched');
    expect(run.output?.next).toBe(next.executionName);
    expect(account.startedExecutions()).toEqual([
      { stateMachineArn: STATE_MACHINE_ARN, name: next.executionName, input: JSON.stringify(next) },
    ]);
    released(account, run);
  });
});

/**
 * One unexpected failure per Task state, discovered from the definition: each must end in the one
 * failure path with the lock released. `setup` brings the execution to the Task.
 */
const unexpected = (task = 'Acquire the service lock'): Error =>
  allStates(renderWorkflow().definition).get(task)?.Resource?.startsWith('arn:aws:states:::lambda:')
    ? lambdaError('UnexpectedError', 'something nobody planned for')
    : serviceError('UnexpectedError', 'something nobody planned for');
/** The gate's answer for a service whose deployment controller is CODE_DEPLOY. */
const codeDeployGate = () => ({
  verdict: 'ready',
  approvalRequired: false,
  reason: 'Every watched alarm exists and none is in ALARM.',
  stage: 'deploy',
  alarmNames: ['payments-api-5xx'],
  controller: 'CODE_DEPLOY',
  firingSince: '',
});

describe('CODE_DEPLOY services: deployed, watched and put back through CodeDeploy', () => {
  it('deploys through CodeDeploy and watches that deployment through the bake', async () => {
    const account = new FakeAccount().on('Check the alarms before deploying', codeDeployGate);
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.status).toBe('SUCCEEDED');
    expect(run.states).toContain('Deploy the patched revision with CodeDeploy');
    expect(run.states).not.toContain('Deploy the patched revision');
    expect(run.calls.get('Deploy the patched revision with CodeDeploy')?.[0]).toEqual(
      expect.objectContaining({ taskDefinitionArn: PATCHED_TASK_DEFINITION }),
    );
    expect(run.calls.get('Watch the deployment through the bake time')?.[0]).toEqual(
      expect.objectContaining({ deploymentArn: CODEDEPLOY_DEPLOYMENT_ID, mode: 'bake' }),
    );
    expect(account.outcomes).toEqual([expect.objectContaining({ outcome: 'Patched' })]);
  });

  it('an alarm during the CodeDeploy deployment puts the service back through the restore step, never StopServiceDeployment', async () => {
    const account = new FakeAccount()
      .on('Check the alarms before deploying', codeDeployGate)
      .on('Watch the deployment through the bake time', () => ({
        status: 'ALARM',
        alarmName: 'payments-api-5xx',
        deploymentArn: CODEDEPLOY_DEPLOYMENT_ID,
        ecsCompleted: false,
        controller: 'CODE_DEPLOY',
      }));
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states).not.toContain('Roll back the deployment');
    expect(run.states).toContain('Put the service back on its last good revision');
    expect(run.calls.get('Put the service back on its last good revision')?.[0]).toEqual(
      expect.objectContaining({
        controller: 'CODE_DEPLOY',
        patchedTaskDefinitionArn: PATCHED_TASK_DEFINITION,
      }),
    );
    expect(run.error).toBe('RolledBack');
  });
});

/** A service in another account and Region than the hub's: its key says so (contracts.ts serviceKeyOf). */
const SPOKE_SERVICE = {
  clusterArn: 'arn:aws:ecs:us-east-1:222222222222:cluster/prod',
  serviceName: 'payments-api',
  key: '222222222222/us-east-1/prod/payments-api',
};

const REACH: Record<
  string,
  {
    approve?: boolean;
    /** The request waits for a maintenance window. */
    window?: boolean;
    /** The service is in another account and Region than the hub's (a spoke). */
    spoke?: boolean;
    setup?: (a: FakeAccount) => void;
    path: readonly string[];
    /** The outcome when not Failed (an alarm fired and the service is back: RolledBack). */
    outcome?: 'RolledBack' | 'Patched';
  }
> = {
  'Acquire the service lock': { path: ['Acquire the service lock', 'The remediation failed'] },
  'Take the findings gathered meanwhile': {
    path: ['Take the findings gathered meanwhile', 'The remediation failed'],
  },
  'Wait for the maintenance window': {
    window: true,
    path: ['Wait for the maintenance window', 'The remediation failed'],
  },
  'Take the urgent findings': {
    window: true,
    setup: (a) =>
      a.on('Wait for the maintenance window', () => ({ preempted: true, reason: 'an urgent finding' })),
    path: ['Take the urgent findings', 'The remediation failed'],
  },
  'Wait for approval': { approve: true, path: ['Wait for approval', 'The remediation failed'] },
  'Plan the image builds': { path: ['Plan the image builds', 'The remediation failed'] },
  'Build the patched image': {
    path: [
      'Build the patched image',
      'Did the build run and fail?',
      'Describe why the build could not run',
      'The build could not run',
      'The remediation failed',
    ],
  },
  'Verify the patched image by rescan': {
    path: ['Verify the patched image by rescan', 'The remediation failed'],
  },
  'Assemble the patched image indexes': {
    path: ['Assemble the patched image indexes', 'The remediation failed'],
  },
  'Register the patched task definition': {
    path: ['Register the patched task definition', 'The remediation failed'],
  },
  'Check the service can be watched': {
    path: ['Check the service can be watched', 'The remediation failed'],
  },
  'Check the alarms before deploying': {
    path: ['Check the alarms before deploying', 'The remediation failed'],
  },
  'Take a deployment slot': {
    path: ['Take a deployment slot', 'The remediation failed'],
  },
  'Wait for a deployment slot': {
    setup: (a) =>
      a.on('Take a deployment slot', () => ({ verdict: 'wait', reason: 'paused', stage: 'default' })),
    path: ['Wait for a deployment slot', 'The remediation failed'],
  },
  'Deploy the patched revision': {
    path: [
      'Deploy the patched revision',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  'Deploy the patched revision with CodeDeploy': {
    setup: (a) => a.on('Check the alarms before deploying', codeDeployGate),
    path: [
      'Deploy the patched revision with CodeDeploy',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  'Watch the deployment through the bake time': {
    path: [
      'Watch the deployment through the bake time',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  // An alarm fired: whatever fails on the way back, once the service is back the outcome is RolledBack.
  "Deploy the patched revision in the service's account": {
    spoke: true,
    path: [
      "Deploy the patched revision in the service's account",
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  "Roll back the deployment in the service's account": {
    spoke: true,
    setup: (a) =>
      a.on('Watch the deployment through the bake time', () => ({
        status: 'ALARM',
        alarmName: 'x',
        deploymentArn: DEPLOYMENT_ARN,
      })),
    outcome: 'RolledBack',
    path: [
      "Roll back the deployment in the service's account",
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  'Roll back the deployment': {
    setup: (a) =>
      a.on('Watch the deployment through the bake time', () => ({
        status: 'ALARM',
        alarmName: 'x',
        deploymentArn: DEPLOYMENT_ARN,
      })),
    outcome: 'RolledBack',
    path: [
      'Roll back the deployment',
      'Put the service back on its last good revision',
      'Is the last good revision on its way?',
      'Wait until the last good revision runs',
    ],
  },
  'Wait for the rollback': {
    setup: (a) =>
      a.on('Watch the deployment through the bake time', () => ({
        status: 'ALARM',
        alarmName: 'x',
        deploymentArn: DEPLOYMENT_ARN,
      })),
    outcome: 'RolledBack',
    path: ['Wait for the rollback', 'Put the service back on its last good revision'],
  },
  'Put the service back on its last good revision': {
    setup: (a) =>
      a.on('Watch the deployment through the bake time', () => ({
        status: 'FAILED',
        deploymentArn: DEPLOYMENT_ARN,
      })),
    path: [
      'The deployment failed',
      'Put the service back on its last good revision',
      'The remediation failed',
    ],
  },
  'Wait until the last good revision runs': {
    setup: (a) =>
      a.on('Watch the deployment through the bake time', () => ({
        status: 'FAILED',
        deploymentArn: DEPLOYMENT_ARN,
      })),
    path: ['Wait until the last good revision runs', 'The remediation failed'],
  },
  // The happy path reaches it with outcome Patched: that stays true, and the execution fails.
  'Record the outcome and release the lock': {
    outcome: 'Patched',
    path: [
      'Record the outcome and release the lock',
      'Release the lock anyway',
      'Was the service patched?',
      'Patched, but the outcome was not announced',
    ],
  },
};

describe('every Task: an unexpected error ends in the failure path with the lock released', () => {
  const tasks = taskStateNames(renderWorkflow().definition);

  it('covers every Task of the definition', () => {
    expect([...Object.keys(REACH), 'Release the lock anyway'].sort()).toEqual([...tasks].sort());
  });

  it.each(Object.keys(REACH))('%s', async (task) => {
    const reach = REACH[task] as (typeof REACH)[string];
    const account = new FakeAccount();
    reach.setup?.(account);
    account.on(task, () => {
      throw unexpected(task);
    });
    const request = reach.approve
      ? remediationRequest({ decision: { action: 'approve', reason: 'ask first' } })
      : reach.window
        ? remediationRequest({
            decision: {
              action: 'remediate',
              reason: 'in the next window',
              notBefore: '2024-09-07T02:00:00Z',
            },
          })
        : reach.spoke
          ? remediationRequest({ service: SPOKE_SERVICE })
          : remediationRequest();
    const run = await runWorkflow(request, account);

    expect(run.status).toBe('FAILED');
    expect(run.error).toBe(reach.outcome ?? 'Failed');
    const from = run.states.indexOf(reach.path[0] as string);
    expect(from).toBeGreaterThanOrEqual(0);
    expect(run.states.slice(from, from + reach.path.length)).toEqual(reach.path);
    expect(account.releases).toEqual([[request.service.key, request.executionName]]);
    if (task !== 'Record the outcome and release the lock') {
      expect(run.states.slice(-3)).toEqual([
        'Record the outcome and release the lock',
        'Which outcome?',
        reach.outcome === 'RolledBack' ? 'Rolled back' : 'Failed',
      ]);
      if (!reach.outcome) expect(run.cause).toMatch(/UnexpectedError: something nobody planned for/);
      expect(account.outcomes).toEqual([expect.objectContaining({ outcome: reach.outcome ?? 'Failed' })]);
    }
  });

  it('a failure after UpdateService puts the service back before failing, and says so', async () => {
    const account = new FakeAccount().on('Watch the deployment through the bake time', () => {
      throw unexpected();
    });
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.calls.get('Put the service back on its last good revision')?.[0]).toEqual({
      service: remediationRequest().service,
      previousTaskDefinitionArn: PREVIOUS_TASK_DEFINITION,
      patchedTaskDefinitionArn: PATCHED_TASK_DEFINITION,
      controller: 'ECS',
      target: remediationRequest().target,
    });
    expect(run.cause).toMatch(/failed while deploying the patched revision/);
    expect(run.cause).toMatch(/Requested a rollback of deployment .* runs its last good revision/);
  });

  it('when even the lock release fails, ends saying the lock is still held', async () => {
    const account = new FakeAccount()
      .on('Record the outcome and release the lock', () => {
        throw unexpected();
      })
      .on('Release the lock anyway', () => {
        throw unexpected();
      });
    const run = await runWorkflow(remediationRequest(), account);

    // The service baked on the patched revision: the outcome stays Patched, and the execution fails.
    expect(run.states.slice(-4)).toEqual([
      'Record the outcome and release the lock',
      'Release the lock anyway',
      'Was the service patched anyway?',
      'Patched, with the lock still held',
    ]);
    expect(run.error).toBe('Patched');
    expect(run.cause).toMatch(/could neither record or announce that nor release the service lock/);
  });

  it('a run that did not patch, whose outcome cannot be recorded, fails saying so and releases the lock', async () => {
    const account = new FakeAccount()
      .on('Watch the deployment through the bake time', () => ({
        status: 'FAILED',
        deploymentArn: DEPLOYMENT_ARN,
      }))
      .on('Record the outcome and release the lock', () => {
        throw unexpected();
      });
    const run = await runWorkflow(remediationRequest(), account);

    expect(run.states.slice(-3)).toEqual([
      'Release the lock anyway',
      'Was the service patched?',
      'Failed without recording the outcome',
    ]);
    expect(run.error).toBe('Failed');
  });
});

describe('multi-architecture images (an image index)', () => {
  const INDEX = digest('d4');
  const AMD64 = digest('b2');
  const ARM64 = digest('c3');
  const NEW_INDEX = digest('e5');
  const indexImage = (extra: Array<{ digest: string; architecture: string; os: string }> = []) =>
    image({
      imageDigest: INDEX,
      index: {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        platforms: [
          {
            digest: AMD64,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            architecture: 'amd64',
            os: 'linux',
          },
          {
            digest: ARM64,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            architecture: 'arm64',
            os: 'linux',
            variant: 'v8',
          },
          ...extra.map((p) => ({ ...p, mediaType: 'application/vnd.oci.image.manifest.v1+json' })),
        ],
      },
    });

  it('builds and verifies every platform, deploys the new index', async () => {
    // Prepare
    const account = new FakeAccount().on('Assemble the patched image indexes', (input) => {
      const { patched } = input as { patched: Array<Record<string, Json>> };
      const first = patched[0] as Record<string, Json>;
      return { patched: [{ ...first, oldDigest: INDEX, newDigest: NEW_INDEX, platforms: patched.length }] };
    });

    // Act
    const run = await runWorkflow(remediationRequest({ images: [indexImage()] }), account);

    // Assess
    expect(run.output?.outcome).toBe('Patched');
    const builds = (run.calls.get('Build the patched image') ?? []) as Array<{
      ProjectName: string;
      EnvironmentVariablesOverride: Array<{ Name: string; Value: string }>;
    }>;
    expect(builds.map((b) => b.ProjectName).sort()).toEqual(
      [FAKE_PROJECTS.patchOs.arm, FAKE_PROJECTS.patchOs.x86].sort(),
    );
    const sources = builds.map(
      (b) => b.EnvironmentVariablesOverride.find((v) => v.Name === 'IMAGE_URI')?.Value,
    );
    expect(sources.map((s) => s?.split('@')[1]).sort()).toEqual([AMD64, ARM64].sort());
    expect(run.calls.get('Verify the patched image by rescan')).toHaveLength(2);
    const assembled = run.calls.get('Assemble the patched image indexes')?.[0] as {
      builds: Json[];
      patched: Array<{ oldDigest: string }>;
    };
    expect(assembled.builds).toHaveLength(2);
    expect(assembled.patched.map((p) => p.oldDigest)).toEqual([AMD64, ARM64]);
    const registered = run.calls.get('Register the patched task definition')?.[0] as {
      images: Array<{ oldDigest: string; newDigest: string }>;
    };
    expect(registered.images).toEqual([expect.objectContaining({ oldDigest: INDEX, newDigest: NEW_INDEX })]);
  });

  it('ends BuildFailed before any build when the index holds a platform no project patches', async () => {
    const account = new FakeAccount();
    const run = await runWorkflow(
      remediationRequest({
        images: [indexImage([{ digest: digest('f6'), architecture: 's390x', os: 'linux' }])],
      }),
      account,
    );

    expect(run.states).toEqual([
      ...START,
      'Plan the image builds',
      'The image build failed',
      ...FINISH,
      'Build failed',
    ]);
    expect(run.error).toBe('BuildFailed');
    expect(run.cause).toMatch(/linux\/s390x/);
    expect(run.calls.has('Build the patched image')).toBe(false);
    released(account, run);
  });
});
