import type {
  BatchGetDeploymentGroupsCommandInput,
  BatchGetDeploymentGroupsCommandOutput,
  CreateDeploymentCommandInput,
  CreateDeploymentCommandOutput,
  DeploymentGroupInfo,
  DeploymentInfo,
  DeploymentStatus,
  GetDeploymentCommandInput,
  GetDeploymentCommandOutput,
  GetDeploymentGroupCommandInput,
  GetDeploymentGroupCommandOutput,
  ListApplicationsCommandInput,
  ListApplicationsCommandOutput,
  ListDeploymentGroupsCommandInput,
  ListDeploymentGroupsCommandOutput,
  ListDeploymentsCommandInput,
  ListDeploymentsCommandOutput,
  StopDeploymentCommandInput,
  StopDeploymentCommandOutput,
} from '@aws-sdk/client-codedeploy';
import type { EcsModel, SimService } from './ecs';
import { sdkError } from './errors';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

const MINUTE = 60_000;
/** CodeDeploy picks a deployment up within seconds (Created → InProgress), and acts on a stop as fast. */
const PICKUP_MINUTES = 5 / 60;
/** Statuses of a deployment that still runs (CodeDeploy allows one per deployment group). */
const ACTIVE: ReadonlySet<DeploymentStatus> = new Set(['Created', 'Queued', 'InProgress', 'Baking', 'Ready']);
const DEPLOYMENT_ID = /^d-[A-Z0-9]{9}$/;

export interface SimDeploymentGroup {
  readonly application: string;
  readonly name: string;
  readonly id: string;
  readonly service: SimService;
  readonly alarms: readonly string[];
  /** Minutes the original task set is kept after traffic moved (blueGreenDeploymentConfiguration). */
  readonly terminationWaitMinutes: number;
  readonly deploymentConfigName: string;
}

/** One CodeDeploy deployment of an ECS service (a user's, or a rollback CodeDeploy creates). */
export interface SimCodeDeployment {
  readonly id: string;
  readonly group: SimDeploymentGroup;
  /** 1 for the first deployment a user creates after the scenario starts (rollbacks are not counted: 0). */
  readonly index: number;
  readonly creator: 'user' | 'codeDeployRollback';
  readonly description?: string;
  readonly appSpec: string;
  readonly taskDefinitionArn: string;
  readonly createdAt: Date;
  startedAt?: Date;
  completedAt?: Date;
  status: DeploymentStatus;
  errorInformation?: { code: string; message: string };
  rollbackInfo?: {
    rollbackDeploymentId?: string;
    rollbackTriggeringDeploymentId?: string;
    rollbackMessage?: string;
  };
  /** The task set serving traffic when it started (undefined: none did), and the one it creates. */
  originalTaskSet?: string | undefined;
  replacementTaskSet?: string;
  trafficShifted: boolean;
  terminationWaitStarted: boolean;
  /** The group's alarms stop it (false: overrideAlarmConfiguration turned polling off). */
  readonly watchesAlarms: boolean;
  /** A stop was requested or decided: nothing else moves on. */
  stopping: boolean;
  readonly cancels: Array<() => void>;
}

/** What the AppSpec of a CreateDeployment names, or why CodeDeploy would reject it. */
const parseAppSpec = (
  content: string | undefined,
): { taskDefinition: string; containerName?: string; containerPort?: number } | string => {
  if (!content) return 'The AppSpec content is empty.';
  let spec: unknown;
  try {
    spec = JSON.parse(content);
  } catch {
    return 'The AppSpec content is not valid JSON or YAML.';
  }
  const resources = (spec as { Resources?: unknown }).Resources;
  const target = Array.isArray(resources)
    ? (resources[0] as { TargetService?: { Type?: string; Properties?: Record<string, unknown> } })
        ?.TargetService
    : undefined;
  if (target?.Type !== 'AWS::ECS::Service')
    return 'The AppSpec names no TargetService of type AWS::ECS::Service.';
  const p = target.Properties ?? {};
  if (typeof p.TaskDefinition !== 'string') return 'The AppSpec TargetService names no TaskDefinition.';
  const lb = p.LoadBalancerInfo as { ContainerName?: unknown; ContainerPort?: unknown } | undefined;
  return {
    taskDefinition: p.TaskDefinition,
    ...(typeof lb?.ContainerName === 'string' ? { containerName: lb.ContainerName } : {}),
    ...(typeof lb?.ContainerPort === 'number' ? { containerPort: lb.ContainerPort } : {}),
  };
};

/**
 * AWS CodeDeploy for Amazon ECS blue/green (API reference 2014-10-06; "What happens during an Amazon
 * ECS deployment" in the user guide): applications and ECS deployment groups, and deployments on the
 * virtual clock, one active deployment per group.
 *
 * A deployment: Created, InProgress within seconds (START event); the replacement task set runs at
 * ~40% of the service's deployMinutes; production traffic moves to it at deployMinutes (it becomes
 * PRIMARY, the service's taskDefinition changes); the original task set is kept for the group's
 * terminationWaitTimeInMinutes, then deleted and the deployment Succeeded (SUCCESS). A group alarm in
 * ALARM before then stops it (Stopped, ALARM_ACTIVE, STOP) and, as DEPLOYMENT_STOP_ON_ALARM is set,
 * CodeDeploy rolls back with a deployment of its own (creator codeDeployRollback, its id in
 * rollbackInfo.rollbackDeploymentId) that moves traffic back to the original task set.
 * StopDeployment(autoRollbackEnabled) does the same on request. An AppSpec naming an unregistered task
 * definition or another load balancer container/port fails the deployment (ECS_UPDATE_ERROR, FAILURE).
 * Every change emits the "CodeDeploy Deployment State-change Notification" EventBridge event.
 */
export class CodeDeployModel {
  private readonly applications = new Map<
    string,
    { id: string; createdAt: Date; groups: Map<string, SimDeploymentGroup> }
  >();
  private readonly deployments = new Map<string, SimCodeDeployment>();
  private readonly startListeners: Array<(d: SimCodeDeployment) => void> = [];
  /** Every rollback CodeDeploy started, when (by its own alarm watch, or on a StopDeployment request). */
  readonly rollbacks: Array<{ at: number; service: string; index: number; by: 'codedeploy' | 'request' }> =
    [];

  constructor(
    private readonly world: World,
    private readonly ecs: EcsModel,
    private readonly bus: EventBus,
    /** An alarm's state as CloudWatch reports it now (undefined: no such alarm). */
    private readonly alarmState: (name: string) => string | undefined,
  ) {}

  onDeploymentStarted(listener: (d: SimCodeDeployment) => void): void {
    this.startListeners.push(listener);
  }

  /**
   * The application and deployment group the ECS console creates for a CODE_DEPLOY service
   * (`AppECS-<cluster>-<service>`, `DgpECS-<cluster>-<service>`), or the names given.
   */
  addGroup(
    service: SimService,
    at: Date,
    names?: { application: string; deploymentGroup: string },
  ): SimDeploymentGroup {
    const application = names?.application ?? `AppECS-${service.clusterName}-${service.name}`;
    const name = names?.deploymentGroup ?? `DgpECS-${service.clusterName}-${service.name}`;
    const app = this.applications.get(application) ?? {
      id: this.world.uuid(),
      createdAt: at,
      groups: new Map(),
    };
    this.applications.set(application, app);
    const group: SimDeploymentGroup = {
      application,
      name,
      id: this.world.uuid(),
      service,
      alarms: [...service.settings.alarms],
      terminationWaitMinutes: service.settings.bakeTimeMinutes,
      deploymentConfigName: 'CodeDeployDefault.ECSAllAtOnce',
    };
    app.groups.set(name, group);
    return group;
  }

  /** CodeDeploy polls the group's alarms during a deployment: one going to ALARM stops it. */
  alarmChanged(name: string, state: string): void {
    if (state !== 'ALARM') return;
    for (const d of this.deployments.values()) {
      if (ACTIVE.has(d.status) && !d.stopping && d.watchesAlarms && d.group.alarms.includes(name))
        this.stop(
          d,
          {
            code: 'ALARM_ACTIVE',
            message: `One or more alarms have been activated according to the Amazon CloudWatch metrics you selected, and the affected deployments have been stopped. Activated alarms: <${name}>`,
          },
          true,
          'codedeploy',
        );
    }
  }

  /** Every deployment of a service, oldest first. */
  deploymentsOf(key: string): SimCodeDeployment[] {
    return [...this.deployments.values()].filter((d) => d.group.service.key === key);
  }

  // -------------------------------------------------------------------------------------------------

  private app(name: string | undefined) {
    const app = this.applications.get(name ?? '');
    if (!app)
      throw sdkError(
        'codedeploy',
        'ApplicationDoesNotExistException',
        `No application found for name: ${name}`,
      );
    return app;
  }

  private group(application: string | undefined, name: string | undefined): SimDeploymentGroup {
    const group = this.app(application).groups.get(name ?? '');
    if (!group)
      throw sdkError(
        'codedeploy',
        'DeploymentGroupDoesNotExistException',
        `No Deployment Group found for name: ${name}`,
      );
    return group;
  }

  private deployment(id: string | undefined): SimCodeDeployment {
    if (!id || !DEPLOYMENT_ID.test(id))
      throw sdkError(
        'codedeploy',
        'InvalidDeploymentIdException',
        `Deployment id ${id} is not in a valid format.`,
      );
    const d = this.deployments.get(id);
    if (!d)
      throw sdkError('codedeploy', 'DeploymentDoesNotExistException', `Deployment ${id} does not exist.`);
    return d;
  }

  private newId(): string {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    let id: string;
    do {
      const h = this.world.hex(18);
      id = `d-${Array.from({ length: 9 }, (_, i) => alphabet[Number.parseInt(h.slice(i * 2, i * 2 + 2), 16) % 36]).join('')}`;
    } while (this.deployments.has(id));
    return id;
  }

  private at(d: SimCodeDeployment, minutes: number, label: string, work: () => void): void {
    d.cancels.push(
      this.world.schedule(
        Date.now() + minutes * MINUTE,
        `CodeDeploy ${d.id} (${d.group.service.key}): ${label}`,
        work,
      ),
    );
  }

  private cancelTimers(d: SimCodeDeployment): void {
    for (const cancel of d.cancels.splice(0)) cancel();
  }

  /** The EventBridge event CodeDeploy sends on a deployment's state change. */
  private emit(d: SimCodeDeployment, state: 'START' | 'SUCCESS' | 'FAILURE' | 'STOP' | 'READY'): void {
    const g = d.group;
    this.bus.put(
      this.bus.envelope(
        'aws.codedeploy',
        'CodeDeploy Deployment State-change Notification',
        [
          this.world.arn('codedeploy', `application:${g.application}`),
          this.world.arn('codedeploy', `deploymentgroup:${g.application}/${g.name}`),
        ],
        {
          region: this.world.region,
          application: g.application,
          deploymentId: d.id,
          instanceGroupId: g.id,
          deploymentGroup: g.name,
          state,
        },
      ),
    );
  }

  private create(
    group: SimDeploymentGroup,
    appSpec: string,
    taskDefinitionArn: string,
    creator: SimCodeDeployment['creator'],
    description?: string,
    watchesAlarms = creator === 'user',
  ): SimCodeDeployment {
    const index =
      creator === 'user' ? this.deploymentsOf(group.service.key).filter((x) => x.index > 0).length + 1 : 0;
    const d: SimCodeDeployment = {
      id: this.newId(),
      group,
      index,
      creator,
      ...(description ? { description } : {}),
      appSpec,
      taskDefinitionArn,
      createdAt: this.world.now(),
      status: 'Created',
      trafficShifted: false,
      terminationWaitStarted: false,
      watchesAlarms,
      stopping: false,
      cancels: [],
    };
    this.deployments.set(d.id, d);
    return d;
  }

  private fail(d: SimCodeDeployment, message: string): void {
    const now = this.world.now();
    d.status = 'Failed';
    d.completedAt = now;
    d.errorInformation = { code: 'ECS_UPDATE_ERROR', message };
    this.world.note('codedeploy', `${d.group.service.key}: deployment ${d.id} FAILED: ${message}`);
    this.emit(d, 'FAILURE');
  }

  /** Run a user's deployment through the ECS blue/green steps. */
  private run(d: SimCodeDeployment, valid: string | undefined): void {
    const service = d.group.service;
    const s = service.settings;
    this.at(d, PICKUP_MINUTES, 'in progress', () => {
      d.status = 'InProgress';
      d.startedAt = this.world.now();
      this.world.note(
        'codedeploy',
        `${service.key}: deployment ${d.id} in progress (${d.taskDefinitionArn.split('/').pop()})`,
      );
      this.emit(d, 'START');
      if (valid) {
        this.at(d, PICKUP_MINUTES, 'ECS update fails', () => this.fail(d, valid));
        return;
      }
      // CodeDeploy checks the group's alarms while it deploys: one already firing stops it at once.
      const firing = d.watchesAlarms ? d.group.alarms.find((a) => this.alarmState(a) === 'ALARM') : undefined;
      if (firing) {
        this.alarmChanged(firing, 'ALARM');
        return;
      }
      d.originalTaskSet = this.ecs.primaryTaskSet(service.key)?.id;
      this.at(d, s.deployMinutes * 0.4 - PICKUP_MINUTES, 'replacement task set', () => {
        d.replacementTaskSet = this.ecs.createTaskSet(
          service.key,
          d.taskDefinitionArn,
          `ecs-svc/codedeploy/${d.id}`,
          d.id,
        ).id;
      });
      this.at(d, s.deployMinutes - PICKUP_MINUTES, 'production traffic shift', () => {
        if (!d.replacementTaskSet) return;
        this.ecs.shiftTraffic(service.key, d.replacementTaskSet);
        d.trafficShifted = true;
        d.terminationWaitStarted = true;
        this.world.note(
          'codedeploy',
          `${service.key}: deployment ${d.id} moved production traffic to the replacement task set; original kept ${d.group.terminationWaitMinutes} min`,
        );
      });
      this.at(
        d,
        s.deployMinutes - PICKUP_MINUTES + d.group.terminationWaitMinutes,
        'original task set terminated',
        () => {
          if (d.originalTaskSet) this.ecs.deleteTaskSet(service.key, d.originalTaskSet);
          d.status = 'Succeeded';
          d.completedAt = this.world.now();
          this.world.note('codedeploy', `${service.key}: deployment ${d.id} Succeeded`);
          this.emit(d, 'SUCCESS');
        },
      );
    });
  }

  /**
   * Stop a deployment (an alarm, or StopDeployment): Stopped, STOP, and with rollback a deployment
   * of CodeDeploy's own that moves traffic back to the original task set and deletes the replacement.
   */
  private stop(
    d: SimCodeDeployment,
    error: { code: string; message: string },
    rollback: boolean,
    by: 'codedeploy' | 'request',
  ): void {
    this.cancelTimers(d);
    d.stopping = true;
    const service = d.group.service;
    const now = this.world.now();
    d.status = 'Stopped';
    d.completedAt = now;
    d.errorInformation = error;
    this.world.note(
      'codedeploy',
      `${service.key}: deployment ${d.id} stopped (${error.code})${rollback ? ': CodeDeploy rolls back' : ''}`,
    );
    if (!rollback) {
      // Stopped without rollback: traffic stays where it is; a replacement not serving traffic goes.
      if (!d.trafficShifted && d.replacementTaskSet)
        this.ecs.deleteTaskSet(service.key, d.replacementTaskSet);
      this.emit(d, 'STOP');
      return;
    }
    this.rollbacks.push({ at: Date.now(), service: service.key, index: d.index, by });
    const original = d.originalTaskSet
      ? service.taskSets?.find((t) => t.id === d.originalTaskSet)
      : undefined;
    const previous =
      original?.taskDefinitionArn ??
      this.ecs.primaryTaskSet(service.key)?.taskDefinitionArn ??
      service.taskDefinitionArn;
    const r = this.create(
      d.group,
      d.appSpec.replace(d.taskDefinitionArn, previous),
      previous,
      'codeDeployRollback',
    );
    r.rollbackInfo = { rollbackTriggeringDeploymentId: d.id };
    d.rollbackInfo = {
      rollbackDeploymentId: r.id,
      rollbackMessage: `Deployment rolled back by deployment ${r.id} (${error.code === 'ALARM_ACTIVE' ? 'an alarm was activated' : 'the deployment was stopped'}).`,
    };
    this.emit(d, 'STOP');
    this.at(r, PICKUP_MINUTES, 'rollback in progress', () => {
      r.status = 'InProgress';
      r.startedAt = this.world.now();
      this.emit(r, 'START');
      this.at(r, service.settings.rollbackMinutes, 'rollback complete', () => {
        if (d.trafficShifted && d.originalTaskSet) this.ecs.shiftTraffic(service.key, d.originalTaskSet);
        if (d.replacementTaskSet) this.ecs.deleteTaskSet(service.key, d.replacementTaskSet);
        r.status = 'Succeeded';
        r.completedAt = this.world.now();
        r.rollbackInfo = { ...r.rollbackInfo, rollbackMessage: 'The rollback succeeded.' };
        this.world.note(
          'codedeploy',
          `${service.key}: rollback ${r.id} of ${d.id} Succeeded (${previous.split('/').pop()})`,
        );
        this.emit(r, 'SUCCESS');
      });
    });
  }

  private describe(d: SimCodeDeployment): DeploymentInfo {
    const g = d.group;
    return {
      applicationName: g.application,
      deploymentGroupName: g.name,
      deploymentConfigName: g.deploymentConfigName,
      deploymentId: d.id,
      revision: { revisionType: 'AppSpecContent', appSpecContent: { content: d.appSpec } },
      status: d.status,
      ...(d.errorInformation
        ? { errorInformation: { ...d.errorInformation } as DeploymentInfo['errorInformation'] }
        : {}),
      createTime: d.createdAt,
      ...(d.startedAt ? { startTime: d.startedAt } : {}),
      ...(d.completedAt ? { completeTime: d.completedAt } : {}),
      ...(d.description ? { description: d.description } : {}),
      creator: d.creator,
      ignoreApplicationStopFailures: false,
      autoRollbackConfiguration: {
        enabled: true,
        events: ['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_ALARM'],
      },
      updateOutdatedInstancesOnly: false,
      ...(d.rollbackInfo ? { rollbackInfo: { ...d.rollbackInfo } } : {}),
      deploymentStyle: { deploymentType: 'BLUE_GREEN', deploymentOption: 'WITH_TRAFFIC_CONTROL' },
      instanceTerminationWaitTimeStarted: d.terminationWaitStarted,
      blueGreenDeploymentConfiguration: this.blueGreen(g),
      computePlatform: 'ECS',
    };
  }

  private blueGreen(g: SimDeploymentGroup): DeploymentGroupInfo['blueGreenDeploymentConfiguration'] {
    return {
      terminateBlueInstancesOnDeploymentSuccess: {
        action: 'TERMINATE',
        terminationWaitTimeInMinutes: g.terminationWaitMinutes,
      },
      deploymentReadyOption: { actionOnTimeout: 'CONTINUE_DEPLOYMENT', waitTimeInMinutes: 0 },
    };
  }

  private describeGroup(g: SimDeploymentGroup): DeploymentGroupInfo {
    const lb = g.service.loadBalancer;
    const last = this.deploymentsOf(g.service.key)
      .filter((d) => d.group === g)
      .at(-1);
    return {
      applicationName: g.application,
      deploymentGroupId: g.id,
      deploymentGroupName: g.name,
      deploymentConfigName: g.deploymentConfigName,
      serviceRoleArn: this.world.arn('iam', 'role/ecsCodeDeployRole', ''),
      alarmConfiguration: {
        enabled: g.alarms.length > 0,
        ignorePollAlarmFailure: false,
        alarms: g.alarms.map((name) => ({ name })),
      },
      autoRollbackConfiguration: {
        enabled: true,
        events: ['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_ALARM'],
      },
      deploymentStyle: { deploymentType: 'BLUE_GREEN', deploymentOption: 'WITH_TRAFFIC_CONTROL' },
      blueGreenDeploymentConfiguration: this.blueGreen(g),
      ...(lb
        ? {
            loadBalancerInfo: {
              targetGroupPairInfoList: [
                {
                  targetGroups: [
                    { name: `${g.service.name.slice(0, 20)}-blue` },
                    { name: `${g.service.name.slice(0, 20)}-green` },
                  ],
                  prodTrafficRoute: {
                    listenerArns: [
                      this.world.arn('elasticloadbalancing', `listener/app/${g.service.clusterName}/prod/80`),
                    ],
                  },
                },
              ],
            },
          }
        : {}),
      ecsServices: [{ serviceName: g.service.name, clusterName: g.service.clusterName }],
      computePlatform: 'ECS',
      ...(last
        ? {
            lastAttemptedDeployment: {
              deploymentId: last.id,
              status: last.status,
              ...(last.completedAt ? { endTime: last.completedAt } : {}),
              createTime: last.createdAt,
            },
          }
        : {}),
    };
  }

  private page<T>(items: T[], nextToken: string | undefined, size = 100) {
    const start = nextToken ? Number(nextToken) : 0;
    if (Number.isNaN(start))
      throw sdkError(
        'codedeploy',
        'InvalidNextTokenException',
        'The next token was specified in an invalid format.',
      );
    const end = start + size;
    return { items: items.slice(start, end), ...(end < items.length ? { nextToken: String(end) } : {}) };
  }

  readonly handlers = {
    ListApplications: (input: ListApplicationsCommandInput): Out<ListApplicationsCommandOutput> => {
      const { items, nextToken } = this.page([...this.applications.keys()].sort(), input.nextToken);
      return { applications: items, ...(nextToken ? { nextToken } : {}) };
    },
    ListDeploymentGroups: (
      input: ListDeploymentGroupsCommandInput,
    ): Out<ListDeploymentGroupsCommandOutput> => {
      const app = this.app(input.applicationName);
      const { items, nextToken } = this.page([...app.groups.keys()].sort(), input.nextToken);
      return {
        applicationName: input.applicationName,
        deploymentGroups: items,
        ...(nextToken ? { nextToken } : {}),
      };
    },
    BatchGetDeploymentGroups: (
      input: BatchGetDeploymentGroupsCommandInput,
    ): Out<BatchGetDeploymentGroupsCommandOutput> => {
      const names = input.deploymentGroupNames ?? [];
      if (names.length > 100)
        throw sdkError(
          'codedeploy',
          'BatchLimitExceededException',
          'The maximum number of names or IDs allowed for this request (100) was exceeded.',
        );
      const app = this.app(input.applicationName);
      const found = names.flatMap((n) => {
        const g = app.groups.get(n);
        return g ? [this.describeGroup(g)] : [];
      });
      const missing = names.filter((n) => !app.groups.has(n));
      return {
        deploymentGroupsInfo: found,
        ...(missing.length > 0 ? { errorMessage: `Deployment groups not found: ${missing.join(', ')}` } : {}),
      };
    },
    GetDeploymentGroup: (input: GetDeploymentGroupCommandInput): Out<GetDeploymentGroupCommandOutput> => ({
      deploymentGroupInfo: this.describeGroup(this.group(input.applicationName, input.deploymentGroupName)),
    }),
    CreateDeployment: (input: CreateDeploymentCommandInput): Out<CreateDeploymentCommandOutput> => {
      const group = this.group(input.applicationName, input.deploymentGroupName);
      const active = this.deploymentsOf(group.service.key).find(
        (d) => d.group === group && ACTIVE.has(d.status),
      );
      if (active) {
        throw sdkError(
          'codedeploy',
          'DeploymentLimitExceededException',
          `The Deployment Group '${group.name}' already has an active Deployment '${active.id}'`,
        );
      }
      if (input.description && input.description.length > 1000)
        throw sdkError('codedeploy', 'DescriptionTooLongException', 'The description is too long.');
      const revision = input.revision;
      if (!revision)
        throw sdkError('codedeploy', 'RevisionRequiredException', 'The revision ID was not specified.');
      const content = revision.appSpecContent?.content ?? revision.string?.content;
      if (revision.revisionType !== 'AppSpecContent' && revision.revisionType !== 'String')
        throw sdkError(
          'codedeploy',
          'InvalidRevisionException',
          'An ECS deployment needs an AppSpecContent or String revision.',
        );
      const spec = parseAppSpec(content);
      if (typeof spec === 'string') throw sdkError('codedeploy', 'InvalidRevisionException', spec);
      // What ECS refuses when CodeDeploy creates the replacement task set: the deployment fails.
      const lb = group.service.loadBalancer;
      const problem = !this.ecs.isRegistered(spec.taskDefinition)
        ? `The ECS service cannot be updated: the task definition ${spec.taskDefinition} is not registered (ClientException: Unable to describe task definition).`
        : lb && (spec.containerName !== lb.containerName || spec.containerPort !== lb.containerPort)
          ? `The ECS service cannot be updated: the AppSpec's LoadBalancerInfo (${spec.containerName ?? 'none'}:${spec.containerPort ?? 'none'}) does not match the container and port of the service's load balancer (${lb.containerName}:${lb.containerPort}).`
          : undefined;
      // overrideAlarmConfiguration replaces the group's alarm configuration for this deployment.
      const override = input.overrideAlarmConfiguration;
      const watchesAlarms =
        override === undefined
          ? group.alarms.length > 0
          : override.enabled === true && (override.alarms ?? []).length > 0;
      const d = this.create(
        group,
        content as string,
        spec.taskDefinition,
        'user',
        input.description,
        watchesAlarms,
      );
      this.world.note(
        'codedeploy',
        `${group.service.key}: CreateDeployment ${d.id} (${spec.taskDefinition.split('/').pop()})`,
      );
      for (const listener of this.startListeners) listener(d);
      this.run(d, problem);
      return { deploymentId: d.id };
    },
    GetDeployment: (input: GetDeploymentCommandInput): Out<GetDeploymentCommandOutput> => ({
      deploymentInfo: this.describe(this.deployment(input.deploymentId)),
    }),
    ListDeployments: (input: ListDeploymentsCommandInput): Out<ListDeploymentsCommandOutput> => {
      let list = [...this.deployments.values()].reverse();
      if (input.applicationName !== undefined || input.deploymentGroupName !== undefined) {
        if (input.deploymentGroupName === undefined)
          throw sdkError(
            'codedeploy',
            'DeploymentGroupNameRequiredException',
            'The deployment group name was not specified.',
          );
        const group = this.group(input.applicationName, input.deploymentGroupName);
        list = list.filter((d) => d.group === group);
      }
      const statuses = input.includeOnlyStatuses ?? [];
      if (statuses.length > 0) list = list.filter((d) => statuses.includes(d.status));
      const after = input.createTimeRange?.start;
      const before = input.createTimeRange?.end;
      if (after) list = list.filter((d) => d.createdAt >= after);
      if (before) list = list.filter((d) => d.createdAt <= before);
      const { items, nextToken } = this.page(
        list.map((d) => d.id),
        input.nextToken,
      );
      return { deployments: items, ...(nextToken ? { nextToken } : {}) };
    },
    StopDeployment: (input: StopDeploymentCommandInput): Out<StopDeploymentCommandOutput> => {
      const d = this.deployment(input.deploymentId);
      if (!ACTIVE.has(d.status) || d.stopping)
        throw sdkError(
          'codedeploy',
          'DeploymentAlreadyCompletedException',
          `Deployment ${d.id} has already completed.`,
        );
      const rollback = input.autoRollbackEnabled === true;
      this.world.note(
        'codedeploy',
        `${d.group.service.key}: StopDeployment ${d.id}${rollback ? ' with rollback' : ''}`,
      );
      d.stopping = true;
      this.cancelTimers(d);
      this.world.schedule(Date.now() + PICKUP_MINUTES * MINUTE, `CodeDeploy ${d.id}: stop`, () =>
        this.stop(
          d,
          { code: 'MANUAL_STOP', message: 'The deployment was stopped by a user.' },
          rollback,
          'request',
        ),
      );
      return { status: 'Pending', statusMessage: `Stopping deployment ${d.id}.` };
    },
  };
}
