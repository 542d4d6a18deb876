/**
 * Schemas for the EventBridge events Autopatch receives from Amazon Inspector, written against the
 * formats Inspector really sends (see test/fixtures/events and the Inspector user guide, "Amazon
 * EventBridge event schema for Amazon Inspector events"), not against an idealised model:
 *
 * - timestamps are not ISO-8601 ("Wed Sep 04 16:55:38.411 UTC 2024", "Dec 3, 2021, 6:02:30 PM");
 * - `inspectorScore`, `epss`, `exploitAvailable` and `fixAvailable` can be absent;
 * - image details come as `awsEcrContainerImage`, as the newer provider-neutral `image`, or both;
 * - events grow new keys over time, so unknown keys are tolerated (and dropped) everywhere.
 *
 * Parse, don't validate: the schemas' output is the normalised `Finding` / `ScanEvent` that the rest
 * of triage works with, and a bad event fails with an `InvalidEventError` naming each bad field.
 *
 * The modules of `schema/`: `timestamps` (the timestamp parser and fields), `issues` (zod issues as
 * problems that name their field: the one formatter), `values` (bounded strings), `envelope` (the
 * EventBridge envelope), `finding` and `scan` (the two event schemas), `events` (the entry points).
 */

export { FINDING_DETAIL_TYPE, INSPECTOR_SOURCE, SCAN_DETAIL_TYPE } from './schema/envelope';
export { type ParsedEvent, parseEvent, parseSqsRecord } from './schema/events';
export {
  ECR_IMAGE_RESOURCE,
  EXPLOIT_AVAILABILITIES,
  type ExploitAvailable,
  FINDING_STATUSES,
  FINDING_TYPES,
  FIX_AVAILABILITIES,
  type Finding,
  type FindingImage,
  type FindingPackage,
  type FindingStatus,
  type FindingType,
  type FixAvailable,
  inspectorFindingEventSchema,
} from './schema/finding';
export {
  describeIssue,
  formatIssues,
  formatPath,
  formatProblems,
  issueProblems,
  type KnownKeys,
  type Problem,
  type ProblemOptions,
  printable,
} from './schema/issues';
export { inspectorScanEventSchema, type ScanEvent } from './schema/scan';
export { MAX_TIMESTAMP_LENGTH, parseInspectorTimestamp } from './schema/timestamps';
export {
  AWS_REGION,
  ECR_REPOSITORY_NAME,
  FINDING_ARN,
  IMAGE_DIGEST,
  IMAGE_TAG,
  imageDigestSchema,
  imageTagSchema,
  LIMITS,
  REGISTRY_ID,
  regionSchema,
  registryIdSchema,
  repositoryNameSchema,
  VULNERABILITY_ID,
  vulnerabilityIdSchema,
} from './schema/values';
