import { ConfigurationError } from '../../shared/errors';

/** Read required environment variables once, at cold start: a missing one fails loudly and names itself. */
export const requireEnv = <K extends string>(names: readonly K[], env: NodeJS.ProcessEnv = process.env) => {
  const missing = names.filter((n) => !env[n]);
  if (missing.length > 0)
    throw new ConfigurationError(`missing environment variables: ${missing.join(', ')}`);
  return Object.fromEntries(names.map((n) => [n, env[n] as string])) as Record<K, string>;
};
