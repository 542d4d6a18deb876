/**
 * The workflow's real Lambda handlers (lambdas/workflow/handlers/*), by the role the CDK construct
 * gives them (RemediationWorkflow.functions). The handlers read their configuration from the
 * environment and create their SDK clients at module scope, so they are imported only after the
 * simulation has set the environment the synthesized stack gives them; their clients are answered by
 * the simulated account through `activate` (see sdk.ts).
 */
import type { Context } from 'aws-lambda';
import { runAs } from './iam/enforcer';

type Handler = (event: never, context: never) => Promise<unknown>;

const MODULES: Record<string, () => Promise<{ handler: Handler }>> = {
  acquireLock: () => import('../lambdas/workflow/handlers/acquire-lock'),
  planBuilds: () => import('../lambdas/workflow/handlers/plan-builds'),
  requestApproval: () => import('../lambdas/workflow/handlers/request-approval'),
  verifyRescan: () => import('../lambdas/workflow/handlers/verify-rescan'),
  assembleIndexes: () => import('../lambdas/workflow/handlers/assemble-indexes'),
  registerTaskDefinition: () => import('../lambdas/workflow/handlers/register-task-definition'),
  watchDeployment: () => import('../lambdas/workflow/handlers/watch-deployment'),
  restore: () => import('../lambdas/workflow/handlers/restore'),
  deployWithCodeDeploy: () => import('../lambdas/workflow/handlers/deploy-with-code-deploy'),
  finish: () => import('../lambdas/workflow/handlers/finish'),
  deploymentEvents: () => import('../lambdas/workflow/handlers/deployment-events'),
  sweep: () => import('../lambdas/workflow/handlers/sweep'),
  gate: () => import('../lambdas/workflow/handlers/gate'),
  takeDeploySlot: () => import('../lambdas/workflow/handlers/take-deploy-slot'),
  deployWithEcs: () => import('../lambdas/workflow/handlers/deploy-with-ecs'),
  // The inventory index (lambdas/inventory/handler.ts): the indexer consumes its queue, the
  // reconciler runs on its schedule.
  inventoryIndexer: () =>
    import('../lambdas/inventory/handler').then((m) => ({ handler: m.handler as Handler })),
  inventoryReconciler: () =>
    import('../lambdas/inventory/handler').then((m) => ({ handler: m.reconcileHandler as Handler })),
};

/** The inventory index's functions: run only where the scenario has other accounts (see runner.ts). */
export const INVENTORY_ROLES: ReadonlySet<string> = new Set(['inventoryIndexer', 'inventoryReconciler']);

export type LambdaHandler = (event: unknown, context: Context) => Promise<unknown>;

/** Load the handler of each role; fails with the role's name if the stack has one the simulation does not know. */
export const loadHandlers = async (roles: readonly string[]): Promise<Map<string, LambdaHandler>> => {
  const out = new Map<string, LambdaHandler>();
  for (const role of roles) {
    const load = MODULES[role];
    if (!load) {
      throw new Error(
        `the stack has a workflow function "${role}" that the simulation does not know: add it to simulation/lambdas.ts`,
      );
    }
    const { handler } = await load();
    // Its SDK calls are made with its own role: IAM evaluates them against that role's policies.
    out.set(role, (event, context) =>
      runAs(role, () => (handler as unknown as LambdaHandler)(event, context)),
    );
  }
  return out;
};
