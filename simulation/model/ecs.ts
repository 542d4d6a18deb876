import type {
  ContainerDefinition,
  Deployment,
  DescribeClustersCommandInput,
  DescribeClustersCommandOutput,
  DescribeServiceDeploymentsCommandInput,
  DescribeServiceDeploymentsCommandOutput,
  DescribeServiceRevisionsCommandInput,
  DescribeServiceRevisionsCommandOutput,
  DescribeServicesCommandInput,
  DescribeServicesCommandOutput,
  DescribeTaskDefinitionCommandInput,
  DescribeTaskDefinitionCommandOutput,
  DescribeTasksCommandInput,
  DescribeTasksCommandOutput,
  ListClustersCommandInput,
  ListClustersCommandOutput,
  ListServiceDeploymentsCommandInput,
  ListServiceDeploymentsCommandOutput,
  ListServicesCommandInput,
  ListServicesCommandOutput,
  ListTagsForResourceCommandInput,
  ListTagsForResourceCommandOutput,
  ListTasksCommandInput,
  ListTasksCommandOutput,
  RegisterTaskDefinitionCommandInput,
  RegisterTaskDefinitionCommandOutput,
  Service,
  ServiceDeployment,
  ServiceDeploymentLifecycleStage,
  ServiceDeploymentStatus,
  StopServiceDeploymentCommandInput,
  StopServiceDeploymentCommandOutput,
  Task,
  TaskDefinition,
  UpdateServiceCommandInput,
  UpdateServiceCommandOutput,
} from '@aws-sdk/client-ecs';
import { clone } from '../clone';
import type { EcrModel } from './ecr';
import { sdkError } from './errors';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

const MINUTE = 60_000;

export interface ServiceSettings {
  readonly strategy: 'BLUE_GREEN' | 'ROLLING';
  readonly bakeTimeMinutes: number;
  readonly alarms: readonly string[];
  readonly tags: Readonly<Record<string, string>>;
  readonly desiredCount: number;
  readonly deployMinutes: number;
  readonly rollbackMinutes: number;
  /** Who deploys the service: ECS itself (the default), CodeDeploy, or an external controller. */
  readonly deploymentController?: 'ECS' | 'CODE_DEPLOY' | 'EXTERNAL';
}

/** How ECS's own machinery misbehaves during one deployment (scripted by a scenario). */
export interface DeploymentTrouble {
  /** The new revision's tasks fail to start this long after the deployment starts: the circuit breaker trips. */
  readonly tasksFailAfterMinutes?: number;
  /** ECS's rollback of this deployment fails (ROLLBACK_FAILED). */
  readonly rollbackFails?: boolean;
}

interface SimTask {
  readonly arn: string;
  readonly taskDefinitionArn: string;
  readonly startedAt: Date;
  readonly startedBy: string;
  readonly containers: ReadonlyArray<{ name: string; image: string; imageDigest?: string; arn: string }>;
  stoppedAt?: Date;
}

interface Revision {
  readonly arn: string;
  readonly taskDefinitionArn: string;
  readonly createdAt: Date;
}

export interface SimDeployment {
  readonly arn: string;
  /** The legacy deployment id ("ecs-svc/…") that ECS Deployment State Change events carry. */
  readonly id: string;
  readonly service: SimService;
  /** 1 for the first deployment after the scenario starts, 2 for the next… (0: the initial one). */
  readonly index: number;
  readonly createdAt: Date;
  startedAt?: Date;
  finishedAt?: Date;
  stoppedAt?: Date;
  updatedAt: Date;
  readonly source?: Revision;
  readonly target: Revision;
  status: ServiceDeploymentStatus;
  statusReason?: string;
  /** undefined: not in a lifecycle stage (cleared when the deployment ends). */
  lifecycleStage?: ServiceDeploymentLifecycleStage | undefined;
  alarmsStatus: 'DISABLED' | 'MONITORING' | 'MONITORING_COMPLETE' | 'TRIGGERED';
  triggeredAlarms: string[];
  rollback?: { reason: string; startedAt: Date; serviceRevisionArn: string; id: string };
  readonly cancels: Array<() => void>;
  readonly greenTasks: SimTask[];
  circuitBreaker: { status: 'MONITORING' | 'MONITORING_COMPLETE' | 'TRIGGERED'; failureCount: number };
  /** Who started it: Autopatch (through the API) or the scenario's owner. */
  trouble?: DeploymentTrouble;
}

export interface SimService {
  readonly arn: string;
  readonly name: string;
  readonly clusterName: string;
  readonly clusterArn: string;
  readonly key: string;
  readonly createdAt: Date;
  settings: ServiceSettings;
  /** ACTIVE, or DRAINING/INACTIVE once deleted (DescribeServices still answers with it). */
  status: 'ACTIVE' | 'DRAINING' | 'INACTIVE';
  taskDefinitionArn: string;
  tasks: SimTask[];
  readonly deployments: SimDeployment[];
  readonly events: Array<{ id: string; createdAt: Date; message: string }>;
  /**
   * CODE_DEPLOY services: their task sets (the PRIMARY one serves production traffic, a replacement
   * is ACTIVE until CodeDeploy shifts traffic to it) and the load balancer CodeDeploy shifts.
   */
  taskSets?: SimTaskSet[];
  readonly loadBalancer?: { containerName: string; containerPort: number; targetGroupArn: string };
}

/** A task set of a CODE_DEPLOY service (CodeDeploy creates, shifts and deletes them). */
export interface SimTaskSet {
  readonly id: string;
  readonly arn: string;
  readonly taskDefinitionArn: string;
  readonly startedBy: string;
  /** A task set CodeDeploy created: its deployment id (what ECS reports as the task set's externalId). */
  readonly externalId?: string;
  readonly createdAt: Date;
  status: 'PRIMARY' | 'ACTIVE';
  tasks: SimTask[];
}

interface Cluster {
  readonly name: string;
  readonly arn: string;
  readonly services: Map<string, SimService>;
}

/** Service deployment statuses ECS never leaves. */
const TERMINAL = new Set<string>(['SUCCESSFUL', 'STOPPED', 'ROLLBACK_SUCCESSFUL', 'ROLLBACK_FAILED']);
/** ECS acts on a stop request within seconds: the *_REQUESTED statuses are visible that long. */
const REQUEST_LATENCY_MINUTES = 5 / 60;
/** The circuit breaker's failure threshold for a small service (ECS: 0.5 × desired, between 3 and 200). */
const CIRCUIT_BREAKER_THRESHOLD = 3;

const last = (arn: string) => arn.slice(arn.lastIndexOf('/') + 1);

/**
 * Amazon ECS: clusters, services, task definitions, running tasks and service deployments.
 *
 * A deployment (UpdateService) moves through ECS's lifecycle stages on the virtual clock. Blue/green:
 * scale up the green revision, shift test then production traffic, bake for `bakeTimeInMinutes`,
 * clean up the blue tasks. Rolling: replace tasks, done. While a deployment is in progress (the bake
 * included), an alarm named in the service's deploymentConfiguration.alarms going to ALARM makes ECS
 * roll back by itself, as it does for real. StopServiceDeployment(ROLLBACK) does the same on request.
 * Every transition emits the `ECS Deployment State Change` event ECS sends.
 */
export class EcsModel {
  private readonly clusters = new Map<string, Cluster>();
  private readonly taskDefinitions = new Map<string, TaskDefinition>();
  private readonly families = new Map<string, number>();
  private readonly revisions = new Map<string, Revision & { serviceArn: string; clusterArn: string }>();
  private readonly deploymentsByArn = new Map<string, SimDeployment>();
  private deploymentCounter = 0;
  /** Alarm states as CloudWatch reports them; kept in step by the CloudWatch model. */
  private readonly alarmStates = new Map<string, string>();
  private readonly startListeners: Array<(d: SimDeployment) => void> = [];
  /** Every rollback, when it was decided (ECS's own, or requested with StopServiceDeployment). */
  readonly rollbacks: Array<{ at: number; service: string; index: number; by: 'ecs' | 'request' }> = [];
  /** Scripted trouble, by "<cluster>/<service>#<deployment index>". */
  private readonly troubles = new Map<string, DeploymentTrouble>();

  constructor(
    private readonly world: World,
    private readonly ecr: EcrModel,
    private readonly bus: EventBus,
  ) {}

  onDeploymentStarted(listener: (d: SimDeployment) => void): void {
    this.startListeners.push(listener);
  }

  addCluster(name: string): void {
    this.clusters.set(name, { name, arn: this.world.arn('ecs', `cluster/${name}`), services: new Map() });
  }

  /** Create a service running a fresh task definition for its containers, with a completed initial deployment. */
  addService(
    clusterName: string,
    name: string,
    containers: ReadonlyArray<{ name: string; image: string }>,
    settings: ServiceSettings,
    at: Date,
  ): SimService {
    const cluster = this.cluster(clusterName);
    const td = this.register({
      family: name,
      containerDefinitions: containers.map((c) => ({
        name: c.name,
        image: c.image,
        essential: true,
        memory: 512,
      })),
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: '512',
      memory: '1024',
    });
    const service: SimService = {
      arn: this.world.arn('ecs', `service/${clusterName}/${name}`),
      name,
      clusterName,
      clusterArn: cluster.arn,
      key: `${clusterName}/${name}`,
      createdAt: at,
      settings,
      status: 'ACTIVE',
      taskDefinitionArn: td.taskDefinitionArn as string,
      tasks: [],
      deployments: [],
      events: [],
      ...(settings.deploymentController === 'CODE_DEPLOY'
        ? {
            loadBalancer: {
              containerName: containers[0]?.name ?? 'app',
              containerPort: 8080,
              targetGroupArn: this.world.arn(
                'elasticloadbalancing',
                `targetgroup/${name.slice(0, 20)}-blue/${this.world.hex(16)}`,
              ),
            },
          }
        : {}),
    };
    cluster.services.set(name, service);
    const revision = this.revision(service, service.taskDefinitionArn, at);
    const initial = this.newDeployment(service, undefined, revision, at, 0);
    initial.status = 'SUCCESSFUL';
    initial.startedAt = at;
    initial.finishedAt = at;
    initial.alarmsStatus = settings.alarms.length > 0 ? 'MONITORING_COMPLETE' : 'DISABLED';
    service.tasks = this.launch(service, service.taskDefinitionArn, initial.id, settings.desiredCount, at);
    if (settings.deploymentController === 'CODE_DEPLOY') {
      service.taskSets = [
        this.newTaskSet(service, service.taskDefinitionArn, 'PRIMARY', at, [...service.tasks]),
      ];
    }
    return service;
  }

  // ----------------------------------------------------------- hooks for CodeDeploy (CODE_DEPLOY services)

  /** Whether a task definition (ARN or family:revision) is registered. */
  isRegistered(taskDefinition: string): boolean {
    try {
      this.taskDefinition(taskDefinition);
      return true;
    } catch {
      return false;
    }
  }

  private newTaskSet(
    service: SimService,
    taskDefinitionArn: string,
    status: SimTaskSet['status'],
    at: Date,
    tasks: SimTask[],
    startedBy = 'ecs-svc',
    externalId?: string,
  ): SimTaskSet {
    const id = `ecs-svc/${BigInt(`0x${this.world.hex(15)}`)
      .toString()
      .padStart(19, '1')}`;
    return {
      id,
      arn: this.world.arn('ecs', `task-set/${service.clusterName}/${service.name}/${id.split('/')[1]}`),
      taskDefinitionArn: this.taskDefinition(taskDefinitionArn).taskDefinitionArn as string,
      startedBy,
      ...(externalId ? { externalId } : {}),
      createdAt: at,
      status,
      tasks,
    };
  }

  /** CodeDeploy creates a replacement task set running `taskDefinitionArn` (not serving traffic yet). */
  createTaskSet(key: string, taskDefinitionArn: string, startedBy: string, externalId?: string): SimTaskSet {
    const service = this.must(key);
    const now = this.world.now();
    const tasks = this.launch(service, taskDefinitionArn, startedBy, service.settings.desiredCount, now);
    const set = this.newTaskSet(service, taskDefinitionArn, 'ACTIVE', now, tasks, startedBy, externalId);
    service.taskSets = [...(service.taskSets ?? []), set];
    service.tasks.push(...tasks);
    this.serviceEvent(service, `registered a task set ${set.id} (${last(set.taskDefinitionArn)}).`);
    return set;
  }

  /**
   * CodeDeploy moves production traffic to a task set: it becomes PRIMARY, and the service's
   * taskDefinition is its task definition from then on.
   */
  shiftTraffic(key: string, taskSetId: string): void {
    const service = this.must(key);
    const target = service.taskSets?.find((t) => t.id === taskSetId);
    if (!target) throw new Error(`${key} has no task set ${taskSetId}`);
    for (const t of service.taskSets ?? []) t.status = t === target ? 'PRIMARY' : 'ACTIVE';
    service.taskDefinitionArn = target.taskDefinitionArn;
    this.serviceEvent(
      service,
      `updated the primary task set to ${target.id} (${last(target.taskDefinitionArn)}).`,
    );
  }

  /** CodeDeploy deletes a task set and its tasks (the original after the wait, a replacement on rollback). */
  deleteTaskSet(key: string, taskSetId: string): void {
    const service = this.must(key);
    const set = service.taskSets?.find((t) => t.id === taskSetId);
    if (!set || set.status === 'PRIMARY') return;
    service.taskSets = (service.taskSets ?? []).filter((t) => t !== set);
    service.tasks = service.tasks.filter((t) => !set.tasks.includes(t));
  }

  /** The task set serving production traffic (CODE_DEPLOY services). */
  primaryTaskSet(key: string): SimTaskSet | undefined {
    return this.find(key)?.taskSets?.find((t) => t.status === 'PRIMARY');
  }

  alarmChanged(name: string, state: string): void {
    this.alarmStates.set(name, state);
    if (state !== 'ALARM') return;
    for (const d of this.deploymentsByArn.values()) {
      const s = d.service.settings;
      if (d.status === 'IN_PROGRESS' && s.alarms.includes(name)) this.autoRollback(d, name);
    }
  }

  services(): SimService[] {
    return [...this.clusters.values()].flatMap((c) => [...c.services.values()]);
  }

  /** A service by "<cluster>/<service>" (undefined when there is none). */
  find(key: string): SimService | undefined {
    const [cluster, name] = key.split('/');
    return this.clusters.get(cluster ?? '')?.services.get(name ?? '');
  }

  private must(key: string): SimService {
    const service = this.find(key);
    if (!service) throw new Error(`service ${key} does not exist`);
    return service;
  }

  /** Script how ECS misbehaves in the `index`th deployment of a service (1 = the first after the start). */
  scriptTrouble(key: string, index: number, trouble: DeploymentTrouble): void {
    this.troubles.set(`${key}#${index}`, trouble);
  }

  // ------------------------------------------------------------- what the service's owner does mid-run

  /**
   * The owner deploys: a new task definition revision with some containers' images replaced (or the
   * current one again when `images` is empty and `force` is set), through UpdateService as a pipeline
   * would. Returns the task definition deployed.
   */
  ownerDeploy(key: string, images: Readonly<Record<string, string>>, force: boolean): string {
    const service = this.must(key);
    let target = service.taskDefinitionArn;
    if (Object.keys(images).length > 0) {
      const current = this.taskDefinition(service.taskDefinitionArn);
      const td = this.register({
        ...(current as RegisterTaskDefinitionCommandInput),
        family: current.family as string,
        containerDefinitions: (current.containerDefinitions ?? []).map((c) =>
          c.name !== undefined && images[c.name] !== undefined ? { ...c, image: images[c.name] } : { ...c },
        ),
      });
      target = td.taskDefinitionArn as string;
      this.world.note('owner', `${key}: registered ${last(target)}`);
    }
    this.world.note(
      'owner',
      `${key}: UpdateService ${last(target)}${force ? ' (force new deployment)' : ''}`,
    );
    this.handlers.UpdateService({
      cluster: service.clusterName,
      service: service.name,
      taskDefinition: target,
      forceNewDeployment: force,
    });
    return target;
  }

  /** The owner scales the service (no new deployment; tasks start or stop at once). */
  ownerScale(key: string, desiredCount: number): void {
    const service = this.must(key);
    service.settings = { ...service.settings, desiredCount };
    this.world.note('owner', `${key}: desired count ${desiredCount}`);
    this.scaleTo(service, desiredCount);
  }

  private scaleTo(service: SimService, desiredCount: number): void {
    const now = this.world.now();
    if (service.tasks.length > desiredCount) {
      service.tasks = service.tasks.slice(0, desiredCount);
    } else if (service.tasks.length < desiredCount) {
      service.tasks.push(
        ...this.launch(
          service,
          service.taskDefinitionArn,
          service.deployments.at(-1)?.id ?? 'ecs-svc',
          desiredCount - service.tasks.length,
          now,
        ),
      );
    }
  }

  /** The owner deletes the service (DeleteService --force): tasks drain, any deployment stops. */
  ownerDelete(key: string): void {
    const service = this.must(key);
    const now = this.world.now();
    for (const d of service.deployments) {
      if (TERMINAL.has(d.status)) continue;
      this.cancelTimers(d);
      d.status = 'STOPPED';
      d.statusReason = 'The service was deleted.';
      d.stoppedAt = now;
      d.updatedAt = now;
    }
    service.status = 'DRAINING';
    service.settings = { ...service.settings, desiredCount: 0 };
    this.world.note('owner', `${key}: service deleted`);
    this.world.schedule(Date.now() + MINUTE, `${key} drained`, () => {
      service.status = 'INACTIVE';
      service.tasks = [];
    });
  }

  /** The owner sets (value given) or removes a tag on the service. */
  ownerTag(key: string, tag: string, value: string | undefined): void {
    const service = this.must(key);
    const tags = { ...service.settings.tags };
    if (value === undefined) delete tags[tag];
    else tags[tag] = value;
    service.settings = { ...service.settings, tags };
    this.world.note('owner', `${key}: tag ${tag}${value === undefined ? ' removed' : `=${value}`}`);
  }

  /** The revision (task definition ARN) and the digests each service runs now, for assertions. */
  state(key: string): { taskDefinitionArn: string; revision: number; digests: string[]; status: string } {
    const service = this.must(key);
    const td = this.taskDefinition(service.taskDefinitionArn);
    return {
      taskDefinitionArn: service.taskDefinitionArn,
      revision: td.revision ?? 0,
      digests: [...new Set([...this.runningDigests(service).values()].flatMap((d) => [...d]))].sort(),
      status: service.status,
    };
  }

  /** The digests a service's running tasks report, by container name. */
  runningDigests(service: SimService): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const task of service.tasks) {
      for (const c of task.containers) {
        const set = out.get(c.name) ?? new Set<string>();
        if (c.imageDigest) set.add(c.imageDigest);
        out.set(c.name, set);
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------

  private cluster(ref: string | undefined): Cluster {
    const name = ref === undefined ? 'default' : ref.startsWith('arn:') ? last(ref) : ref;
    const cluster = this.clusters.get(name);
    if (!cluster) throw sdkError('ecs', 'ClusterNotFoundException', 'Cluster not found.');
    return cluster;
  }

  private service(clusterRef: string | undefined, ref: string): SimService {
    const cluster = this.cluster(
      clusterRef ?? (ref.startsWith('arn:') ? ref.split('/').slice(-2)[0] : undefined),
    );
    const service = cluster.services.get(ref.startsWith('arn:') ? last(ref) : ref);
    if (!service) throw sdkError('ecs', 'ServiceNotFoundException', 'Service not found.');
    return service;
  }

  private register(input: RegisterTaskDefinitionCommandInput): TaskDefinition {
    const family = input.family as string;
    const revision = (this.families.get(family) ?? 0) + 1;
    this.families.set(family, revision);
    const arn = this.world.arn('ecs', `task-definition/${family}:${revision}`);
    const td: TaskDefinition = {
      taskDefinitionArn: arn,
      family,
      revision,
      containerDefinitions: (input.containerDefinitions ?? []).map((c) => ({ ...c })),
      status: 'ACTIVE',
      registeredAt: this.world.now(),
      registeredBy: this.world.arn('iam', 'role/autopatch', ''),
      ...(input.taskRoleArn ? { taskRoleArn: input.taskRoleArn } : {}),
      ...(input.executionRoleArn ? { executionRoleArn: input.executionRoleArn } : {}),
      ...(input.networkMode ? { networkMode: input.networkMode } : {}),
      ...(input.requiresCompatibilities
        ? { requiresCompatibilities: input.requiresCompatibilities, compatibilities: ['EC2', 'FARGATE'] }
        : {}),
      ...(input.cpu ? { cpu: input.cpu } : {}),
      ...(input.memory ? { memory: input.memory } : {}),
      ...(input.runtimePlatform ? { runtimePlatform: input.runtimePlatform } : {}),
      ...(input.volumes ? { volumes: input.volumes } : {}),
    };
    this.taskDefinitions.set(arn, td);
    return td;
  }

  private taskDefinition(ref: string): TaskDefinition {
    let arn = ref;
    if (!ref.startsWith('arn:')) {
      const [family, rev] = ref.split(':');
      const revision = rev ?? String(this.families.get(family as string) ?? 0);
      arn = this.world.arn('ecs', `task-definition/${family}:${revision}`);
    }
    const td = this.taskDefinitions.get(arn);
    if (!td) throw sdkError('ecs', 'ClientException', 'Unable to describe task definition.');
    return td;
  }

  private revision(service: SimService, taskDefinitionArn: string, at: Date): Revision {
    const rev = {
      arn: this.world.arn(
        'ecs',
        `service-revision/${service.clusterName}/${service.name}/${BigInt(`0x${this.world.hex(15)}`).toString()}`,
      ),
      taskDefinitionArn,
      createdAt: at,
      serviceArn: service.arn,
      clusterArn: service.clusterArn,
    };
    this.revisions.set(rev.arn, rev);
    return rev;
  }

  private launch(
    service: SimService,
    taskDefinitionArn: string,
    startedBy: string,
    count: number,
    at: Date,
  ): SimTask[] {
    const td = this.taskDefinition(taskDefinitionArn);
    return Array.from({ length: count }, () => ({
      arn: this.world.arn('ecs', `task/${service.clusterName}/${this.world.hex(32)}`),
      taskDefinitionArn,
      startedAt: at,
      startedBy,
      containers: (td.containerDefinitions ?? []).map((c: ContainerDefinition) => {
        // A task pulls what the image reference points at when it starts: a tag resolves now.
        const image = this.ecr.resolveUri(c.image ?? '');
        return {
          name: c.name as string,
          image: c.image as string,
          ...(image ? { imageDigest: image.digest } : {}),
          arn: this.world.arn(
            'ecs',
            `container/${service.clusterName}/${this.world.hex(32)}/${this.world.uuid()}`,
          ),
        };
      }),
    }));
  }

  private newDeployment(
    service: SimService,
    source: Revision | undefined,
    target: Revision,
    at: Date,
    index: number,
  ): SimDeployment {
    this.deploymentCounter += 1;
    const d: SimDeployment = {
      arn: this.world.arn(
        'ecs',
        `service-deployment/${service.clusterName}/${service.name}/${this.world.hex(20)}`,
      ),
      id: `ecs-svc/${BigInt(`0x${this.world.hex(15)}`)
        .toString()
        .padStart(19, '1')}`,
      service,
      index,
      createdAt: at,
      updatedAt: at,
      ...(source ? { source } : {}),
      target,
      status: 'PENDING',
      alarmsStatus: service.settings.alarms.length > 0 ? 'MONITORING' : 'DISABLED',
      triggeredAlarms: [],
      cancels: [],
      greenTasks: [],
      circuitBreaker: { status: 'MONITORING', failureCount: 0 },
    };
    const trouble = this.troubles.get(`${service.key}#${index}`);
    if (trouble && index > 0) d.trouble = trouble;
    service.deployments.push(d);
    this.deploymentsByArn.set(d.arn, d);
    return d;
  }

  private serviceEvent(service: SimService, message: string): void {
    service.events.unshift({
      id: this.world.uuid(),
      createdAt: this.world.now(),
      message: `(service ${service.name}) ${message}`,
    });
  }

  private emit(
    d: SimDeployment,
    eventName: string,
    eventType: 'INFO' | 'ERROR',
    reason: string,
    deploymentId = d.id,
  ): void {
    this.bus.put(
      this.bus.envelope('aws.ecs', 'ECS Deployment State Change', [d.service.arn], {
        eventType,
        eventName,
        deploymentId,
        updatedAt: this.world.now().toISOString(),
        reason,
      }),
    );
  }

  private at(d: SimDeployment, minutes: number, label: string, work: () => void): void {
    d.cancels.push(
      this.world.schedule(Date.now() + minutes * MINUTE, `${d.service.key} deployment: ${label}`, work),
    );
  }

  private stage(d: SimDeployment, stage: ServiceDeploymentLifecycleStage): void {
    d.lifecycleStage = stage;
    d.updatedAt = this.world.now();
  }

  private cancelTimers(d: SimDeployment): void {
    for (const cancel of d.cancels.splice(0)) cancel();
  }

  private startDeployment(service: SimService, taskDefinitionArn: string): SimDeployment {
    const now = this.world.now();
    for (const running of service.deployments.filter(
      (x) => x.status === 'IN_PROGRESS' || x.status === 'PENDING',
    )) {
      // A newer UpdateService supersedes a deployment still in progress.
      this.cancelTimers(running);
      running.status = 'STOPPED';
      running.statusReason = 'Superseded by a newer deployment.';
      running.stoppedAt = now;
      service.tasks = service.tasks.filter((t) => !running.greenTasks.includes(t));
    }
    const current = service.deployments
      .filter((x) => x.status === 'SUCCESSFUL' || x.status === 'ROLLBACK_SUCCESSFUL')
      .at(-1);
    const source = current
      ? current.status === 'ROLLBACK_SUCCESSFUL' && current.source
        ? current.source
        : current.target
      : undefined;
    const target = this.revision(service, taskDefinitionArn, now);
    const index = service.deployments.filter((x) => x.index > 0).length + 1;
    const d = this.newDeployment(service, source, target, now, index);
    service.taskDefinitionArn = taskDefinitionArn;
    d.status = 'IN_PROGRESS';
    d.startedAt = now;
    this.stage(d, 'RECONCILE_SERVICE');
    this.serviceEvent(
      service,
      `has started a ${service.settings.strategy === 'BLUE_GREEN' ? 'blue/green' : 'rolling'} deployment ${d.id}.`,
    );
    this.world.note(
      'ecs',
      `${service.key}: deployment ${d.index} started (${last(taskDefinitionArn)}, ${service.settings.strategy})`,
    );
    this.emit(d, 'SERVICE_DEPLOYMENT_IN_PROGRESS', 'INFO', `ECS deployment ${d.id} in progress.`);
    for (const listener of this.startListeners) listener(d);

    const s = service.settings;
    const { deployMinutes } = s;
    if (s.strategy === 'BLUE_GREEN') {
      this.at(d, 0, 'scale up', () => this.stage(d, 'SCALE_UP'));
      this.at(d, deployMinutes * 0.4, 'green tasks running', () => {
        d.greenTasks.push(...this.launch(service, taskDefinitionArn, d.id, s.desiredCount, this.world.now()));
        service.tasks.push(...d.greenTasks);
        this.stage(d, 'TEST_TRAFFIC_SHIFT');
      });
      this.at(d, deployMinutes * 0.6, 'production traffic shift', () =>
        this.stage(d, 'PRODUCTION_TRAFFIC_SHIFT'),
      );
      this.at(d, deployMinutes, 'bake time', () => {
        this.stage(d, 'BAKE_TIME');
        this.serviceEvent(
          service,
          `shifted production traffic to the new revision; baking for ${s.bakeTimeMinutes} minutes.`,
        );
      });
      this.at(d, deployMinutes + s.bakeTimeMinutes, 'clean up', () => {
        this.stage(d, 'CLEAN_UP');
        service.tasks = service.tasks.filter((t) => d.greenTasks.includes(t));
      });
      this.at(d, deployMinutes + s.bakeTimeMinutes + 0.5, 'complete', () => this.complete(d));
    } else {
      this.at(d, deployMinutes * 0.5, 'replace tasks', () => {
        d.greenTasks.push(...this.launch(service, taskDefinitionArn, d.id, s.desiredCount, this.world.now()));
        service.tasks = [...d.greenTasks];
      });
      this.at(d, deployMinutes, 'complete', () => this.complete(d));
    }
    // An alarm already firing when the deployment starts trips the rollback at once.
    const firing = s.alarms.find((a) => this.alarmStates.get(a) === 'ALARM');
    if (firing) this.at(d, 0, 'alarm check', () => this.autoRollback(d, firing));
    const failAfter = d.trouble?.tasksFailAfterMinutes;
    if (failAfter !== undefined) this.at(d, failAfter, 'tasks fail', () => this.tripCircuitBreaker(d));
    return d;
  }

  private complete(d: SimDeployment): void {
    if (d.status !== 'IN_PROGRESS') return;
    const now = this.world.now();
    d.status = 'SUCCESSFUL';
    d.finishedAt = now;
    d.updatedAt = now;
    d.lifecycleStage = undefined;
    if (d.alarmsStatus === 'MONITORING') d.alarmsStatus = 'MONITORING_COMPLETE';
    d.service.tasks = [...d.greenTasks];
    this.serviceEvent(d.service, `deployment ${d.id} completed.`);
    this.serviceEvent(d.service, 'has reached a steady state.');
    this.world.note('ecs', `${d.service.key}: deployment ${d.index} completed`);
    this.emit(d, 'SERVICE_DEPLOYMENT_COMPLETED', 'INFO', `ECS deployment ${d.id} completed.`);
  }

  /**
   * The new revision's tasks keep failing to start (a crash loop, a failing health check): the
   * deployment circuit breaker counts them up to its threshold, marks the deployment failed and, with
   * rollback enabled (as Autopatch requires), rolls back by itself.
   */
  private tripCircuitBreaker(d: SimDeployment): void {
    if (d.status !== 'IN_PROGRESS') return;
    d.circuitBreaker = { status: 'TRIGGERED', failureCount: CIRCUIT_BREAKER_THRESHOLD };
    this.rollbacks.push({ at: Date.now(), service: d.service.key, index: d.index, by: 'ecs' });
    d.service.tasks = d.service.tasks.filter((t) => !d.greenTasks.includes(t));
    d.greenTasks.splice(0);
    this.serviceEvent(
      d.service,
      `deployment ${d.id} deployment failed: tasks failed to start. (circuit breaker: ${CIRCUIT_BREAKER_THRESHOLD} failed tasks)`,
    );
    this.world.note(
      'ecs',
      `${d.service.key}: tasks of deployment ${d.index} fail to start: the circuit breaker rolls back`,
    );
    this.emit(
      d,
      'SERVICE_DEPLOYMENT_FAILED',
      'ERROR',
      `ECS deployment circuit breaker: tasks failed to start.`,
    );
    this.rollBack(d, 'Service deployment rolled back because the circuit breaker threshold was exceeded.');
  }

  private autoRollback(d: SimDeployment, alarm: string): void {
    if (d.status !== 'IN_PROGRESS') return;
    d.alarmsStatus = 'TRIGGERED';
    this.rollbacks.push({ at: Date.now(), service: d.service.key, index: d.index, by: 'ecs' });
    d.triggeredAlarms = [...new Set([...d.triggeredAlarms, alarm])];
    const reason = `Service deployment rolled back because the CloudWatch alarm(s) ${alarm} entered ALARM state`;
    this.world.note(
      'ecs',
      `${d.service.key}: alarm ${alarm} in ALARM during deployment ${d.index}: ECS rolls back`,
    );
    this.emit(
      d,
      'SERVICE_DEPLOYMENT_FAILED',
      'ERROR',
      `ECS deployment ${d.id} failed: alarm(s) ${alarm} in ALARM state.`,
    );
    this.rollBack(d, reason);
  }

  private rollBack(d: SimDeployment, reason: string): void {
    this.cancelTimers(d);
    const now = this.world.now();
    const sourceArn = d.source?.arn ?? d.target.arn;
    d.status = 'ROLLBACK_IN_PROGRESS';
    d.statusReason = reason;
    d.updatedAt = now;
    d.rollback = {
      reason,
      startedAt: now,
      serviceRevisionArn: sourceArn,
      id: `ecs-svc/${BigInt(`0x${this.world.hex(15)}`)
        .toString()
        .padStart(19, '1')}`,
    };
    const rollbackId = d.rollback.id;
    this.serviceEvent(d.service, `rolling back deployment ${d.id}: ${reason}`);
    this.emit(
      d,
      'SERVICE_DEPLOYMENT_IN_PROGRESS',
      'INFO',
      `ECS deployment alarms: rolling back to deploymentId ${d.id}.`,
      rollbackId,
    );
    this.at(d, d.service.settings.rollbackMinutes, 'rollback complete', () => {
      const done = this.world.now();
      if (d.trouble?.rollbackFails) {
        // ECS could not put the previous revision back: the service is left as it is, on the new revision.
        d.status = 'ROLLBACK_FAILED';
        d.statusReason = `${reason} The rollback failed: tasks of the previous revision failed to start.`;
        d.finishedAt = done;
        d.updatedAt = done;
        d.lifecycleStage = undefined;
        this.serviceEvent(d.service, `rollback of deployment ${d.id} failed.`);
        this.world.note('ecs', `${d.service.key}: the rollback of deployment ${d.index} FAILED`);
        this.emit(
          d,
          'SERVICE_DEPLOYMENT_FAILED',
          'ERROR',
          `ECS deployment ${rollbackId} failed.`,
          rollbackId,
        );
        return;
      }
      d.status = 'ROLLBACK_SUCCESSFUL';
      d.finishedAt = done;
      d.updatedAt = done;
      d.lifecycleStage = undefined;
      const previous = d.source?.taskDefinitionArn ?? d.target.taskDefinitionArn;
      d.service.taskDefinitionArn = previous;
      // The previous revision's tasks serve again (blue/green kept them through the bake); ECS starts
      // what is missing and stops anything else (tasks an earlier failed rollback left behind).
      const blue = d.service.tasks.filter(
        (t) => !d.greenTasks.includes(t) && t.taskDefinitionArn === previous,
      );
      const missing = Math.max(0, d.service.settings.desiredCount - blue.length);
      d.service.tasks = [
        ...blue.slice(0, d.service.settings.desiredCount),
        ...(missing > 0 ? this.launch(d.service, previous, rollbackId, missing, done) : []),
      ];
      this.serviceEvent(d.service, `rolled back to ${last(previous)}.`);
      this.world.note('ecs', `${d.service.key}: deployment ${d.index} rolled back to ${last(previous)}`);
      this.emit(
        d,
        'SERVICE_DEPLOYMENT_COMPLETED',
        'INFO',
        `ECS deployment ${rollbackId} completed.`,
        rollbackId,
      );
    });
  }

  private legacyDeployments(service: SimService): Deployment[] {
    const toLegacy = (
      d: SimDeployment,
      status: string,
      taskDefinition: string,
      rollout: Deployment['rolloutState'],
    ): Deployment => ({
      id: d.id,
      status,
      taskDefinition,
      desiredCount: service.settings.desiredCount,
      runningCount: service.tasks.filter((t) => t.taskDefinitionArn === taskDefinition).length,
      pendingCount: 0,
      failedTasks: 0,
      createdAt: d.createdAt,
      updatedAt: d.updatedAt,
      launchType: 'FARGATE',
      rolloutState: rollout,
      rolloutStateReason:
        d.statusReason ?? `ECS deployment ${d.id} ${rollout === 'COMPLETED' ? 'completed' : 'in progress'}.`,
    });
    const latest = service.deployments.at(-1);
    if (!latest) return [];
    if (latest.status === 'IN_PROGRESS') {
      const out = [toLegacy(latest, 'PRIMARY', latest.target.taskDefinitionArn, 'IN_PROGRESS')];
      if (latest.source) out.push(toLegacy(latest, 'ACTIVE', latest.source.taskDefinitionArn, 'COMPLETED'));
      return out;
    }
    if (latest.status === 'ROLLBACK_IN_PROGRESS' || latest.status === 'ROLLBACK_REQUESTED') {
      return [
        toLegacy(
          latest,
          'PRIMARY',
          latest.source?.taskDefinitionArn ?? latest.target.taskDefinitionArn,
          'IN_PROGRESS',
        ),
      ];
    }
    const failed = latest.status === 'ROLLBACK_SUCCESSFUL' || latest.status === 'STOPPED';
    return [toLegacy(latest, 'PRIMARY', service.taskDefinitionArn, failed ? 'FAILED' : 'COMPLETED')];
  }

  private describeService(service: SimService, includeTags: boolean): Service {
    const s = service.settings;
    const current = service.deployments.at(-1);
    return {
      serviceArn: service.arn,
      serviceName: service.name,
      clusterArn: service.clusterArn,
      status: service.status,
      desiredCount: s.desiredCount,
      runningCount: service.tasks.length,
      pendingCount: 0,
      launchType: 'FARGATE',
      platformVersion: 'LATEST',
      platformFamily: 'Linux',
      taskDefinition: service.taskDefinitionArn,
      deploymentConfiguration: {
        strategy: s.strategy,
        ...(s.strategy === 'BLUE_GREEN' ? { bakeTimeInMinutes: s.bakeTimeMinutes } : {}),
        maximumPercent: 200,
        minimumHealthyPercent: 100,
        deploymentCircuitBreaker: { enable: true, rollback: true },
        alarms: { alarmNames: [...s.alarms], enable: s.alarms.length > 0, rollback: true },
      },
      deploymentController: { type: s.deploymentController ?? 'ECS' },
      deployments: this.legacyDeployments(service),
      // Service deployments are the ECS controller's: a CODE_DEPLOY service reports task sets instead.
      ...(current && !service.taskSets ? { currentServiceDeployment: current.arn } : {}),
      ...(service.taskSets
        ? {
            taskSets: service.taskSets.map((t) => ({
              id: t.id,
              taskSetArn: t.arn,
              serviceArn: service.arn,
              clusterArn: service.clusterArn,
              startedBy: t.startedBy,
              ...(t.externalId ? { externalId: t.externalId } : {}),
              status: t.status,
              taskDefinition: t.taskDefinitionArn,
              computedDesiredCount: s.desiredCount,
              runningCount: t.tasks.length,
              pendingCount: 0,
              createdAt: t.createdAt,
              updatedAt: t.createdAt,
              launchType: 'FARGATE',
              platformVersion: 'LATEST',
              stabilityStatus: 'STEADY_STATE',
              scale: { value: 100, unit: 'PERCENT' },
              ...(service.loadBalancer ? { loadBalancers: [{ ...service.loadBalancer }] } : {}),
            })),
          }
        : {}),
      ...(service.loadBalancer ? { loadBalancers: [{ ...service.loadBalancer }] } : {}),
      events: service.events
        .slice(0, 20)
        .map((e) => ({ id: e.id, createdAt: e.createdAt, message: e.message })),
      createdAt: service.createdAt,
      schedulingStrategy: 'REPLICA',
      propagateTags: 'NONE',
      enableECSManagedTags: true,
      ...(includeTags ? { tags: Object.entries(s.tags).map(([key, value]) => ({ key, value })) } : {}),
    };
  }

  private describeDeployment(d: SimDeployment): ServiceDeployment {
    const s = d.service.settings;
    const summary = (r: Revision) => ({
      arn: r.arn,
      requestedTaskCount: s.desiredCount,
      runningTaskCount: d.service.tasks.filter((t) => t.taskDefinitionArn === r.taskDefinitionArn).length,
      pendingTaskCount: 0,
    });
    return {
      serviceDeploymentArn: d.arn,
      serviceArn: d.service.arn,
      clusterArn: d.service.clusterArn,
      createdAt: d.createdAt,
      ...(d.startedAt ? { startedAt: d.startedAt } : {}),
      ...(d.finishedAt ? { finishedAt: d.finishedAt } : {}),
      ...(d.stoppedAt ? { stoppedAt: d.stoppedAt } : {}),
      updatedAt: d.updatedAt,
      sourceServiceRevisions: d.source ? [summary(d.source)] : [],
      targetServiceRevision: summary(d.target),
      status: d.status,
      ...(d.statusReason ? { statusReason: d.statusReason } : {}),
      ...(d.lifecycleStage ? { lifecycleStage: d.lifecycleStage } : {}),
      deploymentConfiguration: {
        strategy: s.strategy,
        ...(s.strategy === 'BLUE_GREEN' ? { bakeTimeInMinutes: s.bakeTimeMinutes } : {}),
        alarms: { alarmNames: [...s.alarms], enable: s.alarms.length > 0, rollback: true },
        deploymentCircuitBreaker: { enable: true, rollback: true },
        maximumPercent: 200,
        minimumHealthyPercent: 100,
      },
      ...(d.rollback
        ? {
            rollback: {
              reason: d.rollback.reason,
              startedAt: d.rollback.startedAt,
              serviceRevisionArn: d.rollback.serviceRevisionArn,
            },
          }
        : {}),
      deploymentCircuitBreaker: {
        status:
          d.circuitBreaker.status === 'MONITORING' && TERMINAL.has(d.status)
            ? 'MONITORING_COMPLETE'
            : d.circuitBreaker.status,
        failureCount: d.circuitBreaker.failureCount,
        threshold: CIRCUIT_BREAKER_THRESHOLD,
      },
      alarms: {
        status: d.alarmsStatus,
        alarmNames: [...s.alarms],
        ...(d.triggeredAlarms.length > 0 ? { triggeredAlarmNames: [...d.triggeredAlarms] } : {}),
      },
    };
  }

  private describeTask(service: SimService, t: SimTask): Task {
    return {
      taskArn: t.arn,
      clusterArn: service.clusterArn,
      taskDefinitionArn: t.taskDefinitionArn,
      group: `service:${service.name}`,
      startedBy: t.startedBy,
      lastStatus: t.stoppedAt ? 'STOPPED' : 'RUNNING',
      desiredStatus: t.stoppedAt ? 'STOPPED' : 'RUNNING',
      launchType: 'FARGATE',
      healthStatus: 'HEALTHY',
      createdAt: t.startedAt,
      startedAt: t.startedAt,
      containers: t.containers.map((c) => ({
        containerArn: c.arn,
        taskArn: t.arn,
        name: c.name,
        image: c.image,
        ...(c.imageDigest ? { imageDigest: c.imageDigest } : {}),
        lastStatus: 'RUNNING',
        healthStatus: 'HEALTHY',
      })),
    };
  }

  private page<T>(items: T[], maxResults: number | undefined, nextToken: string | undefined, cap: number) {
    const size = Math.min(maxResults ?? cap, cap);
    const start = nextToken ? Number(nextToken) : 0;
    if (Number.isNaN(start)) throw sdkError('ecs', 'InvalidParameterException', 'Invalid nextToken.');
    const end = start + size;
    return { items: items.slice(start, end), ...(end < items.length ? { nextToken: String(end) } : {}) };
  }

  readonly handlers = {
    ListClusters: (input: ListClustersCommandInput): Out<ListClustersCommandOutput> => {
      const { items, nextToken } = this.page(
        [...this.clusters.values()].map((c) => c.arn),
        input.maxResults,
        input.nextToken,
        100,
      );
      return { clusterArns: items, ...(nextToken ? { nextToken } : {}) };
    },
    DescribeClusters: (input: DescribeClustersCommandInput): Out<DescribeClustersCommandOutput> => {
      const refs = input.clusters ?? ['default'];
      const found = refs.flatMap((r) => {
        const c = this.clusters.get(r.startsWith('arn:') ? last(r) : r);
        return c ? [c] : [];
      });
      return {
        clusters: found.map((c) => ({
          clusterArn: c.arn,
          clusterName: c.name,
          status: 'ACTIVE',
          activeServicesCount: c.services.size,
          runningTasksCount: [...c.services.values()].reduce((n, s) => n + s.tasks.length, 0),
        })),
        failures: refs
          .filter((r) => !found.some((c) => c.arn === r || c.name === r))
          .map((r) => ({ arn: r, reason: 'MISSING' })),
      };
    },
    ListServices: (input: ListServicesCommandInput): Out<ListServicesCommandOutput> => {
      const cluster = this.cluster(input.cluster);
      const { items, nextToken } = this.page(
        [...cluster.services.values()].filter((s) => s.status === 'ACTIVE').map((s) => s.arn),
        input.maxResults,
        input.nextToken,
        10,
      );
      return { serviceArns: items, ...(nextToken ? { nextToken } : {}) };
    },
    DescribeServices: (input: DescribeServicesCommandInput): Out<DescribeServicesCommandOutput> => {
      const refs = input.services ?? [];
      if (refs.length > 10)
        throw sdkError('ecs', 'InvalidParameterException', 'services can have at most 10 items.');
      const cluster = this.cluster(input.cluster);
      const services: Service[] = [];
      const failures: NonNullable<DescribeServicesCommandOutput['failures']> = [];
      for (const ref of refs) {
        const s = cluster.services.get(ref.startsWith('arn:') ? last(ref) : ref);
        if (s) services.push(this.describeService(s, (input.include ?? []).includes('TAGS')));
        else
          failures.push({
            arn: ref.startsWith('arn:') ? ref : this.world.arn('ecs', `service/${cluster.name}/${ref}`),
            reason: 'MISSING',
          });
      }
      return { services, failures };
    },
    ListTagsForResource: (input: ListTagsForResourceCommandInput): Out<ListTagsForResourceCommandOutput> => {
      const service = this.services().find((s) => s.arn === input.resourceArn);
      if (!service)
        throw sdkError('ecs', 'InvalidParameterException', 'The specified resource is not found.');
      return { tags: Object.entries(service.settings.tags).map(([key, value]) => ({ key, value })) };
    },
    DescribeTaskDefinition: (
      input: DescribeTaskDefinitionCommandInput,
    ): Out<DescribeTaskDefinitionCommandOutput> => ({
      taskDefinition: clone(this.taskDefinition(input.taskDefinition as string)),
      ...((input.include ?? []).includes('TAGS') ? { tags: [] } : {}),
    }),
    RegisterTaskDefinition: (
      input: RegisterTaskDefinitionCommandInput,
    ): Out<RegisterTaskDefinitionCommandOutput> => {
      if (!input.family || !input.containerDefinitions?.length) {
        throw sdkError('ecs', 'ClientException', 'Family and container definitions are required.');
      }
      const td = this.register(input);
      this.world.note('ecs', `registered ${last(td.taskDefinitionArn as string)}`);
      return { taskDefinition: clone(td), ...(input.tags ? { tags: input.tags } : {}) };
    },
    ListTasks: (input: ListTasksCommandInput): Out<ListTasksCommandOutput> => {
      const cluster = this.cluster(input.cluster);
      let services = [...cluster.services.values()];
      if (input.serviceName)
        services = services.filter((s) => s.name === input.serviceName || s.arn === input.serviceName);
      let tasks = services.flatMap((s) => s.tasks);
      if (input.family) tasks = tasks.filter((t) => t.taskDefinitionArn.includes(`/${input.family}:`));
      if (input.desiredStatus === 'STOPPED') tasks = [];
      const { items, nextToken } = this.page(
        tasks.map((t) => t.arn),
        input.maxResults,
        input.nextToken,
        100,
      );
      return { taskArns: items, ...(nextToken ? { nextToken } : {}) };
    },
    DescribeTasks: (input: DescribeTasksCommandInput): Out<DescribeTasksCommandOutput> => {
      const refs = input.tasks ?? [];
      if (refs.length > 100)
        throw sdkError('ecs', 'InvalidParameterException', 'tasks can have at most 100 items.');
      const cluster = this.cluster(input.cluster);
      const tasks: Task[] = [];
      const failures: NonNullable<DescribeTasksCommandOutput['failures']> = [];
      for (const ref of refs) {
        let hit: Task | undefined;
        for (const s of cluster.services.values()) {
          const t = s.tasks.find((x) => x.arn === ref || x.arn.endsWith(`/${ref}`));
          if (t) hit = this.describeTask(s, t);
        }
        if (hit) tasks.push(hit);
        else failures.push({ arn: ref, reason: 'MISSING' });
      }
      return { tasks, failures };
    },
    UpdateService: (input: UpdateServiceCommandInput): Out<UpdateServiceCommandOutput> => {
      const service = this.service(input.cluster, input.service as string);
      if (service.status !== 'ACTIVE')
        throw sdkError('ecs', 'ServiceNotActiveException', 'Service was not ACTIVE.');
      const controller = service.settings.deploymentController ?? 'ECS';
      if (
        controller !== 'ECS' &&
        input.taskDefinition !== undefined &&
        this.taskDefinition(input.taskDefinition).taskDefinitionArn !== service.taskDefinitionArn
      ) {
        throw sdkError(
          'ecs',
          'InvalidParameterException',
          controller === 'CODE_DEPLOY'
            ? 'Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment.'
            : 'Unable to update task definition on services with an EXTERNAL deployment controller. Use CreateTaskSet to deploy.',
        );
      }
      const target = input.taskDefinition
        ? (this.taskDefinition(input.taskDefinition).taskDefinitionArn as string)
        : service.taskDefinitionArn;
      if (input.desiredCount !== undefined) {
        service.settings = { ...service.settings, desiredCount: input.desiredCount };
        this.scaleTo(service, input.desiredCount);
      }
      const inFlight = service.deployments.find((d) => d.status === 'IN_PROGRESS');
      const changed = target !== service.taskDefinitionArn || input.forceNewDeployment === true;
      // The same request again (a retried call) must not start a second deployment.
      if (
        changed &&
        !(inFlight && inFlight.target.taskDefinitionArn === target && !input.forceNewDeployment)
      ) {
        this.startDeployment(service, target);
      }
      return { service: this.describeService(service, false) };
    },
    DescribeServiceDeployments: (
      input: DescribeServiceDeploymentsCommandInput,
    ): Out<DescribeServiceDeploymentsCommandOutput> => {
      const out: ServiceDeployment[] = [];
      const failures: NonNullable<DescribeServiceDeploymentsCommandOutput['failures']> = [];
      for (const arn of input.serviceDeploymentArns ?? []) {
        const d = this.deploymentsByArn.get(arn);
        if (d) out.push(this.describeDeployment(d));
        else failures.push({ arn, reason: 'MISSING', detail: 'Service deployment not found.' });
      }
      return { serviceDeployments: out, failures };
    },
    ListServiceDeployments: (
      input: ListServiceDeploymentsCommandInput,
    ): Out<ListServiceDeploymentsCommandOutput> => {
      const service = this.service(input.cluster, input.service as string);
      let list = [...service.deployments].reverse();
      if (input.status?.length) list = list.filter((d) => input.status?.includes(d.status));
      if (input.createdAt?.after) list = list.filter((d) => d.createdAt >= (input.createdAt?.after as Date));
      if (input.createdAt?.before)
        list = list.filter((d) => d.createdAt <= (input.createdAt?.before as Date));
      const { items, nextToken } = this.page(list, input.maxResults, input.nextToken, 20);
      return {
        serviceDeployments: items.map((d) => ({
          serviceDeploymentArn: d.arn,
          serviceArn: service.arn,
          clusterArn: service.clusterArn,
          createdAt: d.createdAt,
          ...(d.startedAt ? { startedAt: d.startedAt } : {}),
          ...(d.finishedAt ? { finishedAt: d.finishedAt } : {}),
          targetServiceRevisionArn: d.target.arn,
          status: d.status,
          ...(d.statusReason ? { statusReason: d.statusReason } : {}),
        })),
        ...(nextToken ? { nextToken } : {}),
      };
    },
    StopServiceDeployment: (
      input: StopServiceDeploymentCommandInput,
    ): Out<StopServiceDeploymentCommandOutput> => {
      const d = this.deploymentsByArn.get(input.serviceDeploymentArn as string);
      if (!d)
        throw sdkError('ecs', 'ServiceDeploymentNotFoundException', 'The service deployment does not exist.');
      if (d.status !== 'IN_PROGRESS' && d.status !== 'PENDING') {
        throw sdkError(
          'ecs',
          'ConflictException',
          `The service deployment is ${d.status} and cannot be stopped.`,
        );
      }
      if ((input.stopType ?? 'ROLLBACK') !== 'ROLLBACK')
        throw sdkError('ecs', 'InvalidParameterException', 'The valid values for stopType are ROLLBACK.');
      this.world.note('ecs', `${d.service.key}: rollback of deployment ${d.index} requested`);
      this.rollbacks.push({ at: Date.now(), service: d.service.key, index: d.index, by: 'request' });
      // Nothing moves on while the request is pending: not the bake, not the alarms.
      this.cancelTimers(d);
      d.status = 'ROLLBACK_REQUESTED';
      d.updatedAt = this.world.now();
      this.at(d, REQUEST_LATENCY_MINUTES, 'rollback starts', () =>
        this.rollBack(d, 'Service deployment rolled back because of a StopServiceDeployment request'),
      );
      return { serviceDeploymentArn: d.arn };
    },
    DescribeServiceRevisions: (
      input: DescribeServiceRevisionsCommandInput,
    ): Out<DescribeServiceRevisionsCommandOutput> => {
      const found = (input.serviceRevisionArns ?? []).flatMap((arn) => {
        const r = this.revisions.get(arn);
        return r ? [r] : [];
      });
      return {
        serviceRevisions: found.map((r) => {
          const td = this.taskDefinitions.get(r.taskDefinitionArn);
          return {
            serviceRevisionArn: r.arn,
            serviceArn: r.serviceArn,
            clusterArn: r.clusterArn,
            taskDefinition: r.taskDefinitionArn,
            createdAt: r.createdAt,
            launchType: 'FARGATE',
            containerImages: (td?.containerDefinitions ?? []).map((c) => ({
              containerName: c.name,
              image: c.image,
              ...(this.ecr.resolveUri(c.image ?? '')
                ? { imageDigest: this.ecr.resolveUri(c.image ?? '')?.digest }
                : {}),
            })),
          };
        }),
        failures: (input.serviceRevisionArns ?? [])
          .filter((a) => !this.revisions.has(a))
          .map((arn) => ({ arn, reason: 'MISSING' })),
      };
    },
  };
}
