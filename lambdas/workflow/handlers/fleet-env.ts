import { ConfigurationError } from '../../shared/errors';
import { FLEET_ENV, type FleetSettings, fleetSchema, PAUSE_PARAMETER_ENV } from '../../shared/fleet';
import { formatProblems, issueProblems } from '../../triage/schema/issues';

/** The fleet guardrails the stack configured (AUTOPATCH_FLEET) and the pause switch's name, read at cold start. */
export const fleetEnv = (
  env: NodeJS.ProcessEnv = process.env,
): { readonly settings: FleetSettings; readonly pauseParameter?: string } => {
  let raw: unknown;
  try {
    raw = JSON.parse(env[FLEET_ENV] ?? '{}');
  } catch (error) {
    throw new ConfigurationError(`${FLEET_ENV} is not JSON: ${(error as Error).message}`);
  }
  const parsed = fleetSchema.safeParse(raw);
  if (!parsed.success)
    throw new ConfigurationError(`${FLEET_ENV}: ${formatProblems(issueProblems(parsed.error.issues))}`);
  const pauseParameter = env[PAUSE_PARAMETER_ENV];
  return { settings: parsed.data, ...(pauseParameter ? { pauseParameter } : {}) };
};
