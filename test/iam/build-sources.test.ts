/**
 * Issue #15, measured with the policy evaluator over the synthesized policies: a connection is usable
 * by its repository's build projects only, the registry secrets are readable by the source builds
 * only, and iam:PassRole covers the roles taskRoleArns names and no other once it is set.
 */
import { IamEvaluator } from '../../simulation/iam/evaluate';
import { iamModel } from '../../simulation/iam/policies';
import { resolveTemplate } from '../../simulation/stack';

const ACCOUNT = '123456789012';
const REGION = 'eu-central-1';
const CONNECTION = `arn:aws:codeconnections:${REGION}:${ACCOUNT}:connection/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9`;
const OTHER_CONNECTION = `arn:aws:codeconnections:${REGION}:${ACCOUNT}:connection/99999999-8888-7777-6666-555555555555`;
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:docker-hub-login-AbC123`;
const OTHER_SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:prod-database-XyZ789`;
const TARGET = {
  cluster: 'prod',
  service: 'payments-api',
  rebuild: {
    mode: 'source',
    sourceLocation: 'https://github.com/example/payments-api',
    connectionArn: CONNECTION,
  },
};
const role = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`;
const passRole = (name: string, service = 'ecs-tasks.amazonaws.com') => ({
  action: 'iam:PassRole',
  resource: role(name),
  context: { 'iam:PassedToService': service },
});

const setup = async (settings: Record<string, unknown>, targets: unknown[] = [TARGET]) => {
  const model = iamModel(await resolveTemplate(ACCOUNT, REGION, { targets, settings }), ACCOUNT, REGION);
  const evaluator = new IamEvaluator(model);
  const projects = [...model.projectPrincipals];
  const connected = projects.filter(([name]) => /-[0-9a-f]{12}-(x86|arm)$/.test(name)).map(([, p]) => p);
  const others = projects.filter(([name]) => !/-[0-9a-f]{12}-(x86|arm)$/.test(name)).map(([, p]) => p);
  const allowed = async (principal: string, request: Parameters<IamEvaluator['decide']>[1]) =>
    (await evaluator.decide(principal, request)).allowed;
  return { connected, others, allowed };
};

describe('source rebuilds through a CodeConnections connection', () => {
  test('its projects may use the named connection, and no other; no other project may use it', async () => {
    // Prepare
    const { connected, others, allowed } = await setup({ registryCredentials: { 'docker.io': SECRET } });
    expect(connected).toHaveLength(2);
    const use = (resource: string, action = 'codeconnections:UseConnection') => ({
      action,
      resource,
      context: {},
    });
    // Act / Assess
    for (const p of connected) {
      for (const action of [
        'codeconnections:UseConnection',
        'codeconnections:GetConnectionToken',
        'codeconnections:GetConnection',
      ])
        expect(await allowed(p, use(CONNECTION, action))).toBe(true);
      expect(await allowed(p, use(OTHER_CONNECTION))).toBe(false);
    }
    for (const p of others) expect(await allowed(p, use(CONNECTION))).toBe(false);
    for (const fn of ['planBuilds', 'registerTaskDefinition', 'stateMachine'])
      expect(await allowed(fn, use(CONNECTION))).toBe(false);
  }, 120_000);

  test('the registry secret is readable by the source builds, the other secrets of the account are not', async () => {
    const { connected, others, allowed } = await setup({ registryCredentials: { 'docker.io': SECRET } });
    const read = (resource: string) => ({ action: 'secretsmanager:GetSecretValue', resource, context: {} });
    for (const p of connected) {
      expect(await allowed(p, read(SECRET))).toBe(true);
      expect(await allowed(p, read(OTHER_SECRET))).toBe(false);
    }
    // The generic source projects read it too; the patch-os ones never do.
    const decisions = await Promise.all(others.map((p) => allowed(p, read(SECRET))));
    expect(decisions.filter(Boolean).length).toBeGreaterThan(0);
    expect(decisions.filter((d) => !d).length).toBeGreaterThan(0);
    for (const p of others) expect(await allowed(p, read(OTHER_SECRET))).toBe(false);
  }, 120_000);
});

describe('iam:PassRole of the register step', () => {
  test('with taskRoleArns: the named roles and the pattern, only to ECS tasks; no other role', async () => {
    const { allowed } = await setup(
      { taskRoleArns: [role('payments-task'), 'payments-execution', 'ecs-task-*'] },
      [],
    );
    expect(await allowed('registerTaskDefinition', passRole('payments-task'))).toBe(true);
    expect(await allowed('registerTaskDefinition', passRole('payments-execution'))).toBe(true);
    expect(await allowed('registerTaskDefinition', passRole('ecs-task-checkout'))).toBe(true);
    expect(await allowed('registerTaskDefinition', passRole('admin'))).toBe(false);
    expect(await allowed('registerTaskDefinition', passRole('payments-task', 'lambda.amazonaws.com'))).toBe(
      false,
    );
  }, 120_000);

  test('without it (as before the setting existed): any role of the account, only to ECS tasks', async () => {
    const { allowed } = await setup({}, []);
    expect(await allowed('registerTaskDefinition', passRole('admin'))).toBe(true);
    expect(await allowed('registerTaskDefinition', passRole('admin', 'lambda.amazonaws.com'))).toBe(false);
  }, 120_000);
});
