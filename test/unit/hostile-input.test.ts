/**
 * Hostile input, strictly bounded: a generated corpus of bad inputs (test/support/hostile-corpus.ts,
 * mutations of the real Inspector fixtures) goes through the real triage handler, with the ledger on
 * dynalite and ECS / Step Functions mocked, behind a model of the SQS queue's redelivery and
 * dead-letter queue. Every input must end processed, rejected with a reason, or retried then
 * dead-lettered; no batch may crash; the valid findings in the same batches are always processed;
 * nothing that reaches StartExecution may carry a hostile value.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import type { LogItemExtraInput, LogItemMessage } from '@aws-lambda-powertools/logger/types';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { ECSClient } from '@aws-sdk/client-ecs';
import { SFNClient, StartExecutionCommand, ValidationException } from '@aws-sdk/client-sfn';
import type { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { triageRuntimeConfigSchema, workflowDefaultsSchema } from '../../lambdas/shared/config';
import type { RemediationRequest } from '../../lambdas/shared/contracts';
import { Ledger, MAX_REQUEST_BYTES } from '../../lambdas/shared/ledger';
import { executionName, remediationId } from '../../lambdas/shared/remediation';
import { createHandler, type TriageEnvironment } from '../../lambdas/triage/handler';
import { InventoryResolver } from '../../lambdas/triage/inventory';
import { DEFAULT_POLICY, parsePolicy } from '../../lambdas/triage/policy';
import { ECR_REPOSITORY_NAME, IMAGE_DIGEST, IMAGE_TAG, VULNERABILITY_ID } from '../../lambdas/triage/schema';
import { MAX_TAGS_PER_IMAGE, type PlanDeps, planBatch, requestProblem } from '../../lambdas/triage/triage';
import {
  inline,
  MAX_MESSAGE_BYTES,
  messageText,
  publishNotification,
  subjectText,
} from '../../lambdas/workflow/notify';
import { startDynalite } from '../../local/dynalite';
import { installFakeEcs, taskDefArn } from '../support/fake-ecs';
import {
  ACCOUNT,
  type HostileCase,
  hostileCorpus,
  NPM_DIGEST,
  REGION,
  UBUNTU_DIGEST,
  validFinding,
  withValue,
} from '../support/hostile-corpus';

const REGISTRY = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`;
const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:Autopatch-Remediation`;
const POISONED_DIGEST = `sha256:${'b'.repeat(64)}`;
const THROTTLED_DIGEST = `sha256:${'c'.repeat(64)}`;
/** Step Functions refuses any request carrying this CVE (ValidationException): a permanent refusal. */
const REFUSED_CVE = 'CVE-2099-0001';
/** Step Functions throttles any request carrying this CVE, every time: retried, then dead-lettered. */
const THROTTLED_CVE = 'CVE-2099-0002';
/** The queue's redrive policy: a message received this many times goes to the dead-letter queue. */
const MAX_RECEIVES = 3;
const BATCH_SIZE = 10;
const ACTIONS = new Set(['remediate', 'approve', 'notify', 'ignore']);
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

type Attributes = Record<string, unknown>;

/** Keeps what triage reports for each message: its decisions and the requests it dropped. */
class RecordingLogger extends Logger {
  readonly lines: Array<{ message: string; attributes: Attributes }> = [];
  constructor() {
    super({ serviceName: 'autopatch-triage', logLevel: 'SILENT' });
  }
  private keep(input: LogItemMessage, extra: LogItemExtraInput): void {
    const { message, ...attributes } =
      typeof input === 'string' ? { message: input } : (input as { message: string } & Attributes);
    for (const e of extra) if (typeof e === 'object' && e !== null) Object.assign(attributes, e);
    this.lines.push({ message, attributes });
  }
  override info(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.keep(input, extra);
  }
  override warn(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.keep(input, extra);
  }
  override error(input: LogItemMessage, ...extra: LogItemExtraInput): void {
    this.keep(input, extra);
  }
}

interface Message {
  readonly id: string;
  readonly body: string;
  /** What the test expects of it. */
  readonly expect: 'decided' | 'rejected' | 'dead-lettered';
  readonly hostile?: HostileCase;
  /** Asserted on the final reason, when set. */
  readonly reason?: RegExp;
}

const record = (m: Message): SQSRecord =>
  ({
    messageId: m.id,
    receiptHandle: `rh-${m.id}`,
    body: m.body,
    attributes: {},
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:autopatch-intake`,
    awsRegion: REGION,
  }) as unknown as SQSRecord;

const ecs = mockClient(ECSClient);
const sfn = mockClient(SFNClient);
let dynamo: Awaited<ReturnType<typeof startDynalite>>;
let table = 0;

beforeAll(async () => {
  dynamo = await startDynalite();
});
afterAll(async () => {
  await dynamo.stop();
});
afterEach(() => {
  ecs.reset();
  sfn.reset();
});

const environment = async () => {
  const tableName = `hostile-${++table}`;
  await dynamo.createTable(tableName);
  const run = (name: string, repository: string, digest: string) => ({
    service: {
      cluster: 'prod',
      name,
      taskDefinition: taskDefArn(name, 1),
      tags: { 'autopatch:enabled': 'true' },
    },
    taskDefinition: [{ name: 'app', image: `${REGISTRY}/${repository}@${digest}` }],
  });
  const fleet = [
    run('ubuntu-app', 'inspector2', UBUNTU_DIGEST),
    run('payments', 'payments/api', NPM_DIGEST),
    run('poisoned', 'hostile/poisoned', POISONED_DIGEST),
    run('throttled', 'hostile/throttled', THROTTLED_DIGEST),
  ];
  installFakeEcs(ecs, {
    clusters: ['prod'],
    services: fleet.map((f) => f.service),
    taskDefinitions: Object.fromEntries(fleet.map((f) => [f.service.taskDefinition, f.taskDefinition])),
  });
  sfn.on(StartExecutionCommand).callsFake((input: { name: string; input: string }) => {
    if (input.input.includes(REFUSED_CVE)) {
      throw new ValidationException({ message: 'Input exceeds a limit', $metadata: {} });
    }
    if (input.input.includes(THROTTLED_CVE)) {
      throw Object.assign(new Error('Rate exceeded'), {
        name: 'ThrottlingException',
        $metadata: { httpStatusCode: 400 },
      });
    }
    return { executionArn: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}` };
  });
  const env: TriageEnvironment = {
    config: triageRuntimeConfigSchema.parse({
      policy: DEFAULT_POLICY,
      discoverByTag: { key: 'autopatch:enabled', value: 'true' },
    }),
    policy: parsePolicy(DEFAULT_POLICY),
    tableName,
    stateMachineArn: STATE_MACHINE_ARN,
  };
  const logger = new RecordingLogger();
  const now = new Date('2024-09-04T17:00:00Z');
  const handler = createHandler(
    env,
    {
      ecs: new ECSClient({ region: REGION }),
      sfn: new SFNClient({ region: REGION }),
      dynamodb: dynamo.client,
    },
    { logger, metrics: new Metrics({ namespace: 'Autopatch' }), now: () => now },
  );
  const ledger = new Ledger({ client: dynamo.client, tableName, now: () => now });
  return { handler, logger, ledger, now };
};

type Outcome = 'processed' | 'rejected' | 'dead-lettered' | 'lost';

/**
 * The intake queue as the SQS event source drives it: batches of ten, failed items redelivered at the
 * end of the queue, moved to the dead-letter queue on their MAX_RECEIVES-th failure.
 */
const drain = async (
  handler: (event: SQSEvent) => Promise<{ batchItemFailures: Array<{ itemIdentifier: string }> }>,
  batches: Message[][],
) => {
  const receives = new Map<string, number>();
  const deadLetters = new Set<string>();
  const crashes: unknown[] = [];
  const queue = batches.map((b) => [...b]);
  while (queue.length > 0) {
    const messages = queue.shift() as Message[];
    for (const m of messages) receives.set(m.id, (receives.get(m.id) ?? 0) + 1);
    let failures: string[];
    try {
      const response = await handler({ Records: messages.map(record) });
      failures = response.batchItemFailures.map((f) => f.itemIdentifier);
    } catch (error) {
      // A crash fails the whole batch: every message comes back.
      crashes.push(error);
      failures = messages.map((m) => m.id);
    }
    const retry = messages.filter((m) => failures.includes(m.id));
    const again = retry.filter((m) => (receives.get(m.id) ?? 0) < MAX_RECEIVES);
    for (const m of retry) if (!again.includes(m)) deadLetters.add(m.id);
    if (again.length > 0) queue.push(again);
  }
  return { receives, deadLetters, crashes };
};

/** What became of each message, from triage's own reports. */
const outcomes = (
  logger: RecordingLogger,
  messages: readonly Message[],
  deadLetters: ReadonlySet<string>,
) => {
  const last = new Map<string, { outcome: Outcome; reason: string }>();
  for (const { message, attributes } of logger.lines) {
    const id = typeof attributes.messageId === 'string' ? attributes.messageId : undefined;
    const reason = String(attributes.reason ?? '');
    if (message === 'Decision' && id) {
      const action = String(attributes.action);
      last.set(id, { outcome: ACTIONS.has(action) ? 'processed' : 'lost', reason });
    } else if (message === 'Rejected a malformed event' && id) {
      last.set(id, { outcome: 'rejected', reason });
    } else if (message === 'Dropped a remediation that can never start') {
      for (const dropped of attributes.messageIds as string[])
        last.set(dropped, { outcome: 'rejected', reason });
    }
  }
  return new Map(
    messages.map((m) => {
      if (deadLetters.has(m.id))
        return [m.id, { outcome: 'dead-lettered' as Outcome, reason: 'dead-lettered' }];
      return [m.id, last.get(m.id) ?? { outcome: 'lost' as Outcome, reason: '' }];
    }),
  );
};

const started = () =>
  sfn.commandCalls(StartExecutionCommand).map((c) => ({
    name: c.args[0].input.name as string,
    input: c.args[0].input.input as string,
  }));

/** The corpus, eight hostile inputs a batch, with valid findings and the special cases mixed in. */
const composeBatches = (corpus: readonly HostileCase[]): Message[][] => {
  const batches: Message[][] = [];
  let valid = 0;
  for (let i = 0; i < corpus.length; i += 8) {
    const batch: Message[] = corpus.slice(i, i + 8).map((c, j) => ({
      id: `h${i + j}`,
      body: c.body,
      expect: c.expect,
      hostile: c,
    }));
    batch.push({
      id: `v${valid}`,
      body: JSON.stringify(validFinding(valid++)),
      expect: 'decided',
      reason: /^(?!.*duplicate)/,
    });
    batches.push(batch);
  }
  // A request Step Functions refuses for good (ValidationException), then a valid finding of the same
  // service in a later batch: the refusal must not block the service.
  batches.splice(3, 0, [
    {
      id: 'refused',
      body: JSON.stringify(
        validFinding(900, { digest: POISONED_DIGEST, repository: 'hostile/poisoned', cve: REFUSED_CVE }),
      ),
      expect: 'rejected',
      reason: /Step Functions refused to start it: ValidationException/,
    },
    { id: 'v-ubuntu-beside-refused', body: JSON.stringify(validFinding(901)), expect: 'decided' },
  ]);
  batches.splice(6, 0, [
    {
      id: 'after-refused',
      body: JSON.stringify(validFinding(902, { digest: POISONED_DIGEST, repository: 'hostile/poisoned' })),
      expect: 'decided',
    },
  ]);
  // Step Functions throttles this one every time: retried, then dead-lettered (and alarmed).
  batches.splice(8, 0, [
    {
      id: 'throttled',
      body: JSON.stringify(
        validFinding(903, { digest: THROTTLED_DIGEST, repository: 'hostile/throttled', cve: THROTTLED_CVE }),
      ),
      expect: 'dead-lettered',
    },
  ]);
  // Out-of-order updates in one batch: the older ACTIVE update after the CLOSED one is ignored.
  const ordered: Message[] = [];
  for (let k = 0; k < 4; k++) {
    const finding = validFinding(910 + k);
    const older = withValue(finding, ['detail', 'updatedAt'], `Wed Sep 04 1${k}:00:00.000 UTC 2024`);
    const closed = withValue(
      withValue(finding, ['detail', 'updatedAt'], `Wed Sep 04 1${k}:30:00.000 UTC 2024`),
      ['detail', 'status'],
      'CLOSED',
    );
    ordered.push(
      { id: `closed-${k}`, body: JSON.stringify(closed), expect: 'decided', reason: /CLOSED|status/i },
      { id: `older-${k}`, body: JSON.stringify(older), expect: 'decided', reason: /out-of-order update/ },
    );
  }
  batches.push(ordered);
  // Duplicates: twice in one batch, then once more in a later batch.
  const duplicate = JSON.stringify(validFinding(920));
  batches.push([
    { id: 'dup-a', body: duplicate, expect: 'decided' },
    { id: 'dup-b', body: duplicate, expect: 'decided', reason: /duplicate delivery .* in this batch/ },
  ]);
  batches.push([{ id: 'dup-c', body: duplicate, expect: 'decided', reason: /already triaged/ }]);
  return batches.map((b) => b.slice(0, BATCH_SIZE));
};

describe('hostile input corpus through the triage handler', () => {
  const corpus = hostileCorpus();

  it('holds at least 300 generated inputs over every category', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    expect(new Set(corpus.map((c) => c.category))).toEqual(
      new Set([
        'oversize',
        'wrong type',
        'control characters',
        'unicode',
        'invalid digest',
        'injection',
        'missing field',
        'extra resources',
        'body',
        'timestamp',
      ]),
    );
  });

  it('ends every input processed, rejected with a reason, or dead-lettered; never crashes a batch', async () => {
    // Prepare
    const { handler, logger, ledger } = await environment();
    const batches = composeBatches(corpus);
    const messages = batches.flat();

    // Act
    const { deadLetters, crashes } = await drain(handler, batches);

    // Assess: no crash, no silent loss, each as expected, each with its reason.
    const result = outcomes(logger, messages, deadLetters);
    const wrong = messages.flatMap((m) => {
      const { outcome, reason } = result.get(m.id) as { outcome: Outcome; reason: string };
      const wanted = m.expect === 'decided' ? 'processed' : m.expect;
      const ok =
        outcome === wanted &&
        (outcome === 'dead-lettered' || reason.length > 0) &&
        (!m.reason || m.reason.test(reason));
      return ok
        ? []
        : [
            `${m.id} ${m.hostile ? `(${m.hostile.category}: ${m.hostile.name}) ` : ''}expected ${wanted}, got ${outcome}: ${reason}`,
          ];
    });
    if (process.env.HOSTILE_REPORT) {
      const counts = new Map<string, number>();
      for (const m of messages) {
        const key = `${m.hostile?.category ?? 'special/valid'} -> ${result.get(m.id)?.outcome}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      process.stdout.write(
        `${JSON.stringify({ messages: messages.length, corpus: corpus.length, crashedBatches: crashes.length, unexpected: wrong.length, outcomes: Object.fromEntries([...counts].sort()) }, null, 2)}\n`,
      );
    }

    expect(crashes).toEqual([]);
    expect(wrong).toEqual([]);
    expect([...result.values()].filter((r) => r.outcome === 'lost')).toEqual([]);
    // No reason carries a hostile value's control characters into a log line.
    expect([...result.values()].filter((r) => UNSAFE.test(r.reason))).toEqual([]);
    // Assess: rejections name the offending field or say why the body is not an event.
    for (const m of messages.filter((m) => m.hostile?.expect === 'rejected')) {
      const { reason } = result.get(m.id) as { reason: string };
      expect(reason).toMatch(
        /^(invalid Inspector2 (Finding|Scan) event: |not an Amazon Inspector|event is not a JSON object|body is)/,
      );
      expect(reason).not.toMatch(UNSAFE);
      expect(reason.length).toBeLessThan(4_000);
    }

    // Assess: everything that reached Step Functions is safe to name, key, build and announce.
    const runs = started();
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) {
      expect(run.name).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
      expect(Buffer.byteLength(run.input)).toBeLessThanOrEqual(256 * 1024);
      const request = JSON.parse(run.input) as RemediationRequest;
      for (const image of request.images) {
        expect(image.imageDigest).toMatch(IMAGE_DIGEST);
        expect(image.repository).toMatch(ECR_REPOSITORY_NAME);
        expect(image.repositoryUri).toBe(`${REGISTRY}/${image.repository}`);
        for (const tag of image.imageTags) expect(tag).toMatch(IMAGE_TAG);
        for (const cve of image.cves) expect(cve).toMatch(VULNERABILITY_ID);
      }
      expect(JSON.stringify(request)).not.toMatch(/\\u00|\\n|\\r|\\t/);
    }

    // Assess: the refused request left the lock; the later finding of that service was started.
    expect(runs.some((r) => r.input.includes(REFUSED_CVE))).toBe(true);
    const poisoned = await ledger.getInFlight('prod/poisoned');
    expect(poisoned?.status).toBe('STARTED');
    expect(poisoned?.request.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-10902']);
    // ...and the out-of-order ACTIVE updates started nothing of their own.
    const ubuntu = await ledger.getInFlight('prod/ubuntu-app');
    const cves = new Set(ubuntu?.request.images.flatMap((i) => i.cves));
    for (let k = 0; k < 4; k++) expect(cves.has(`CVE-2024-${10_910 + k}`)).toBe(false);
  });
});

describe('a lock left claimed with a request that can never start', () => {
  /** What an older version (or a crash between claim and StartExecution) leaves in the ledger. */
  const storedRequest = (
    now: Date,
    image: Partial<RemediationRequest['images'][number]>,
  ): RemediationRequest => {
    const images = [
      {
        repository: 'hostile/poisoned',
        registry: ACCOUNT,
        repositoryUri: `${REGISTRY}/hostile/poisoned`,
        imageDigest: POISONED_DIGEST,
        imageTags: [],
        containers: ['app'],
        packageManagers: ['OS'],
        cves: ['CVE-2024-0001'],
        severity: 'HIGH' as const,
        findingArns: [],
        rebuild: { mode: 'patch-os' as const },
        ...image,
      },
    ];
    const service = {
      clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/prod`,
      serviceName: 'poisoned',
      key: 'prod/poisoned',
    };
    const name = executionName(service, images, now);
    return {
      remediationId: remediationId(service.key, name),
      executionName: name,
      service,
      images,
      decision: { action: 'remediate', reason: 'stored' },
      target: {
        alarmNames: [],
        bakeTimeMinutes: 60,
        deploymentTimeoutSeconds: 7200,
        rescanTimeoutSeconds: 3600,
        approvalTimeoutSeconds: 86400,
      },
      findingsCount: 1,
      requestedAt: now.toISOString(),
    };
  };

  it.each([
    [
      'an invalid digest (stored before triage checked digests)',
      { imageDigest: 'md5:0123456789abcdef' },
      /invalid request: images\[0\]\.imageDigest/,
    ],
    [
      'a repository name with a newline',
      { repository: 'hostile/poisoned\nRUN id' },
      /invalid request: images\[0\]\.repository/,
    ],
    ['a request Step Functions refuses', { cves: [REFUSED_CVE] }, /ValidationException/],
  ])('drops %s, leaves the lock, and starts the next finding of the service', async (_, image, reason) => {
    // Prepare: the lock of prod/poisoned is STARTING with the bad request.
    const { handler, logger, ledger, now } = await environment();
    const stored = storedRequest(new Date(now.getTime() - 60_000), image);
    expect(await ledger.claim(stored)).toEqual({ kind: 'claimed' });

    // Act: a valid finding of the same service arrives.
    const response = await handler({
      Records: [
        record({
          id: 'm1',
          body: JSON.stringify(validFinding(1, { digest: POISONED_DIGEST, repository: 'hostile/poisoned' })),
          expect: 'decided',
        }),
      ],
    });

    // Assess: nothing retried; the stored request dropped with its reason; the new finding started.
    expect(response.batchItemFailures).toEqual([]);
    const dropped = logger.lines.find((l) => l.message === 'Dropped a remediation that can never start');
    expect(dropped?.attributes).toMatchObject({
      service: 'prod/poisoned',
      resumed: true,
      executionName: stored.executionName,
    });
    expect(String(dropped?.attributes.reason)).toMatch(reason);
    const inFlight = await ledger.getInFlight('prod/poisoned');
    expect(inFlight?.status).toBe('STARTED');
    expect(inFlight?.request.images.flatMap((i) => i.cves)).toEqual(['CVE-2024-10001']);
    expect(started().map((r) => r.name)).toContain(inFlight?.executionName);
  });
});

describe('a batch whose ledger cannot be read', () => {
  it('retries every message instead of crashing', async () => {
    // Prepare: a table that does not exist.
    const { logger } = await environment();
    const handler = createHandler(
      {
        config: triageRuntimeConfigSchema.parse({ policy: DEFAULT_POLICY }),
        policy: parsePolicy(DEFAULT_POLICY),
        tableName: 'no-such-table',
        stateMachineArn: STATE_MACHINE_ARN,
      },
      {
        ecs: new ECSClient({ region: REGION }),
        sfn: new SFNClient({ region: REGION }),
        dynamodb: dynamo.client,
      },
      { logger, metrics: new Metrics({ namespace: 'Autopatch' }) },
    );

    // Act
    const response = await handler({
      Records: [record({ id: 'm1', body: JSON.stringify(validFinding(1)), expect: 'decided' })],
    });

    // Assess
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'm1' }]);
    expect(logger.lines.map((l) => l.message)).toContain(
      'Could not triage the batch; every message will be retried',
    );
  });
});

describe('planBatch bounds and ordering', () => {
  const resolver = () =>
    InventoryResolver.fromSnapshot({
      services: [
        {
          clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/prod`,
          serviceName: 'ubuntu-app',
          taskDefinitionArn: taskDefArn('ubuntu-app', 1),
          containers: [{ name: 'app', image: `${REGISTRY}/inspector2@${UBUNTU_DIGEST}` }],
        },
      ],
    });
  const deps = (ledger?: PlanDeps['ledger']): PlanDeps => ({
    policy: parsePolicy(DEFAULT_POLICY),
    resolver: resolver(),
    targets: [],
    defaults: workflowDefaultsSchema.parse({}),
    now: () => new Date('2024-09-04T17:00:00Z'),
    ...(ledger ? { ledger } : {}),
  });

  it('splits one service’s findings into requests an execution can carry, losing none', async () => {
    // Prepare: 420 findings of one image, each with a 120-character vendor id and 30 long tags.
    const tags = Array.from({ length: 30 }, (_, i) => `t${i}-${'x'.repeat(120)}`);
    const inputs = Array.from({ length: 420 }, (_, i) => {
      const cve = `VENDOR-${String(i).padStart(4, '0')}-${'a'.repeat(110)}`;
      let event = validFinding(i, { cve });
      for (const shape of ['awsEcrContainerImage', 'image'])
        event = withValue(event, ['detail', 'resources', 0, 'details', shape, 'imageTags'], tags);
      return { id: `m${i}`, event };
    });

    // Act
    const plan = await planBatch(inputs, deps());

    // Assess
    expect(plan.findings.filter((f) => f.action !== 'remediate')).toEqual([]);
    expect(plan.remediations.length).toBeGreaterThan(1);
    for (const { request } of plan.remediations) {
      expect(Buffer.byteLength(JSON.stringify(request))).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
      expect(requestProblem(request)).toBeUndefined();
      for (const image of request.images)
        expect(image.imageTags.length).toBeLessThanOrEqual(MAX_TAGS_PER_IMAGE);
    }
    const cves = plan.remediations.flatMap((r) => r.request.images.flatMap((i) => i.cves));
    expect(new Set(cves).size).toBe(420);
    expect(new Set(plan.remediations.map((r) => r.request.executionName)).size).toBe(
      plan.remediations.length,
    );
    expect(new Set(plan.remediations.flatMap((r) => r.itemIds)).size).toBe(420);
  });

  it('ignores an update older than the newest the ledger has seen for that finding, when the ledger knows', async () => {
    // Prepare: the finding was CLOSED at 18:00; its ACTIVE update of 16:55 arrives now.
    const finding = validFinding(1);
    const arn = (finding.detail as { findingArn: string }).findingArn;
    const ledger: PlanDeps['ledger'] = {
      unseen: async (keys) => [...keys],
      unseenAndNewest: async (keys) => ({
        unseen: [...keys],
        newest: new Map(
          keys.filter((k) => k.findingArn === arn).map((k) => [k.findingArn, '2024-09-04T18:00:00.000Z']),
        ),
      }),
    };

    // Act
    const plan = await planBatch(
      [
        { id: 'old', event: finding },
        { id: 'other', event: validFinding(2) },
      ],
      deps(ledger),
    );

    // Assess
    expect(plan.findings.find((f) => f.id === 'old')).toMatchObject({
      action: 'ignore',
      reason: expect.stringMatching(
        /out-of-order update: .* older than its update of 2024-09-04T18:00:00.000Z already triaged/,
      ),
    });
    expect(plan.findings.find((f) => f.id === 'other')?.action).toBe('remediate');
    expect(plan.seenKeys.map((k) => k.findingArn)).toContain(arn);
  });

  it('retries an event that fails for a reason that is not the event’s, instead of failing the batch', async () => {
    // Prepare: a getter that throws while the schema reads the event (a stand-in for a bug).
    const booby = structuredClone(validFinding(1));
    Object.defineProperty(booby, 'detail', {
      enumerable: true,
      get: () => {
        throw new TypeError('boom');
      },
    });

    // Act
    const plan = await planBatch(
      [
        { id: 'bug', event: booby },
        { id: 'fine', event: validFinding(2) },
      ],
      deps(),
    );

    // Assess
    expect(plan.failedIds).toEqual(['bug']);
    expect(plan.findings.find((f) => f.id === 'bug')).toMatchObject({
      action: 'retry',
      reason: expect.stringContaining('TypeError: boom'),
    });
    expect(plan.findings.find((f) => f.id === 'fine')?.action).toBe('remediate');
  });
});

describe('notification text', () => {
  it('shows control, format and separator characters as escapes; keeps the message’s own lines', () => {
    // Prepare: a CVE id that tries to forge a line, a bidi override, an ANSI escape, U+2028.
    const cve = 'CVE-1\n\nApproved by: security-team';
    const message = `Remediation of ${cve}\r\nService: a\u202eb \u001b[31mred\u2028next\u0000`;

    // Act
    const text = messageText(message);
    const value = inline(cve);

    // Assess
    expect(text.split('\n')).toEqual([
      'Remediation of CVE-1',
      '',
      'Approved by: security-team',
      'Service: a\\u{202e}b \\u{1b}[31mred\\u{2028}next\\u{0}',
    ]);
    expect(value).toBe('CVE-1\\u{a}\\u{a}Approved by: security-team');
    expect(`Remediation of ${value}`.split('\n')).toHaveLength(1);
  });

  it('makes a subject SNS accepts: one line of printable ASCII, at most 100 characters', () => {
    expect(subjectText('[Autopatch] Patched: prod/ünï\ncheckout\u202e')).toBe(
      '[Autopatch] Patched: prod/?n? checkout',
    );
    expect(subjectText('x'.repeat(300))).toHaveLength(100);
    expect(subjectText('\n\t')).toBe('[Autopatch]');
  });

  it('cuts a message larger than SNS accepts, and says so', () => {
    const text = messageText(`${'ü'.repeat(200_000)}`);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(text).toMatch(/truncated: the message exceeded the SNS size limit\]$/);
    expect(text).not.toContain('\uFFFD');
  });

  it('publishes neutralised text and attribute values', async () => {
    // Prepare
    const sns = { send: jest.fn(async (_: PublishCommand) => ({})) };

    // Act
    await publishNotification(
      sns as unknown as Pick<SNSClient, 'send'>,
      'arn:aws:sns:eu-central-1:123456789012:t',
      {
        subject: 'Approval needed:\nCVE',
        message: 'line 1\nline 2\u2028forged',
        attributes: { service: 'prod/a\nb', none: undefined },
      },
    );

    // Assess
    const input = sns.send.mock.calls[0]?.[0].input;
    expect(input?.Subject).toBe('Approval needed: CVE');
    expect(input?.Message).toBe('line 1\nline 2\\u{2028}forged');
    expect(input?.MessageAttributes).toEqual({
      service: { DataType: 'String', StringValue: 'prod/a\\u{a}b' },
    });
  });
});

describe('planBatch: exploitation details', () => {
  const deps = (read: NonNullable<PlanDeps['findingDetails']>['read'], policy: object): PlanDeps => ({
    policy: parsePolicy(policy),
    resolver: InventoryResolver.fromSnapshot({
      services: [
        {
          clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/prod`,
          serviceName: 'ubuntu-app',
          taskDefinitionArn: taskDefArn('ubuntu-app', 1),
          containers: [{ name: 'app', image: `${REGISTRY}/inspector2@${UBUNTU_DIGEST}` }],
        },
      ],
    }),
    targets: [],
    defaults: workflowDefaultsSchema.parse({}),
    now: () => new Date('2024-09-04T17:00:00Z'),
    findingDetails: { read },
  });
  const KEV_RULES = {
    rules: [
      { name: 'kev', match: { knownExploited: true }, action: 'remediate', deadline: '1d' },
      { name: 'rest', match: {}, action: 'notify' },
    ],
    kevDueDate: true,
  };

  it('reads them once per batch, and a KEV due date becomes the request deadline', async () => {
    // Prepare
    const read = jest.fn(
      async (arns: readonly string[]) =>
        new Map(arns.map((a) => [a, { kev: { dateDue: '2024-09-05T00:00:00.000Z' } }])),
    );

    // Act
    const plan = await planBatch(
      [0, 1].map((i) => ({ id: `m${i}`, event: validFinding(i) })),
      deps(read, KEV_RULES),
    );

    // Assess
    expect(read).toHaveBeenCalledTimes(1);
    expect(read.mock.calls[0]?.[0]).toHaveLength(2);
    expect(plan.remediations).toHaveLength(1);
    expect(plan.remediations[0]?.request.decision).toMatchObject({
      deadline: '2024-09-05T00:00:00.000Z',
      knownExploited: true,
    });
  });

  it('retries a finding whose details failed transiently: never treated as not exploited', async () => {
    // Prepare
    const read = async (arns: readonly string[]) =>
      new Map(arns.map((a) => [a, { retry: 'ThrottlingException' }]));

    // Act
    const plan = await planBatch([{ id: 'm0', event: validFinding(0) }], deps(read, KEV_RULES));

    // Assess
    expect(plan.failedIds).toEqual(['m0']);
    expect(plan.findings[0]).toMatchObject({ action: 'retry' });
    expect(plan.remediations).toEqual([]);
  });

  it('skips the rule when the details are unknown, and the reason says why', async () => {
    // Prepare
    const read = async (arns: readonly string[]) =>
      new Map(arns.map((a) => [a, { unknown: 'ACCESS_DENIED' }]));

    // Act
    const plan = await planBatch([{ id: 'm0', event: validFinding(0) }], deps(read, KEV_RULES));

    // Assess
    expect(plan.findings[0]?.action).toBe('notify');
    expect(plan.findings[0]?.reason).toContain('rule "kev" skipped: exploitation unknown (ACCESS_DENIED)');
  });

  it('makes no call when policy needs no exploitation facts', async () => {
    // Prepare
    const read = jest.fn(async () => new Map());

    // Act
    await planBatch([{ id: 'm0', event: validFinding(0) }], deps(read, DEFAULT_POLICY));

    // Assess
    expect(read).not.toHaveBeenCalled();
  });
});
