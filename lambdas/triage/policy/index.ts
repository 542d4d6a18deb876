/** Policy-as-code: the document (what people write), the engine (evaluate) and maintenance windows. */
export {
  checkPolicy,
  DEFAULT_DEADLINES,
  DEFAULT_POLICY,
  DEFAULT_POLICY_PARSED,
  deadlinesSchema,
  durationSchema,
  exceptionSchema,
  expiryInstant,
  FIX_MATCH_VALUES,
  InvalidPolicyError,
  maintenanceWindowSchema,
  matchSchema,
  PACKAGE_MANAGERS,
  type Policy,
  type PolicyDocument,
  type PolicyException,
  type PolicyMatch,
  type PolicyRule,
  parsePolicy,
  policyJsonSchema,
  policySchema,
  ruleSchema,
} from './document';
export { durationMs, MAX_DURATION_MS } from './durations';
export {
  type Decision,
  type EvaluationContext,
  type ExpiredException,
  type Exploitation,
  evaluate,
} from './evaluate';
export { compileGlobs, globSource, REPOSITORY_PATTERN } from './glob';
export {
  type MaintenanceWindow,
  nextWindow,
  WEEKDAYS,
  type Weekday,
  type WindowOccurrence,
  type WindowState,
} from './windows';
