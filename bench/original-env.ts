/**
 * The process environment as the bench was started with it, captured before simulation/environment
 * fills in the simulation's defaults (fake credentials, silent Powertools): the developer-loop
 * commands run with what the developer has, not with those. Import this before anything else.
 */
export const ORIGINAL_ENV: Readonly<NodeJS.ProcessEnv> = { ...process.env };
