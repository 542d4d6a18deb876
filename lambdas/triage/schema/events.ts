import { InvalidEventError } from '../../shared/errors';
import { FINDING_DETAIL_TYPE, INSPECTOR_SOURCE, SCAN_DETAIL_TYPE } from './envelope';
import { type Finding, inspectorFindingEventSchema } from './finding';
import { formatIssues, type Issue, printable, quote, show } from './issues';
import { inspectorScanEventSchema, type ScanEvent } from './scan';

export type ParsedEvent =
  | { readonly kind: 'finding'; readonly finding: Finding }
  | { readonly kind: 'scan'; readonly scan: ScanEvent };

const describeValue = (v: unknown): string => (typeof v === 'string' ? quote(v) : show(v));

/** Issues shown in a rejection reason: a hostile event can fail thousands of checks at once. */
const MAX_ISSUES_SHOWN = 10;

const someIssues = (issues: readonly Issue[]): string =>
  issues.length <= MAX_ISSUES_SHOWN
    ? formatIssues(issues)
    : `${formatIssues(issues.slice(0, MAX_ISSUES_SHOWN))}; and ${issues.length - MAX_ISSUES_SHOWN} more issues`;

/**
 * Parse one EventBridge event (already JSON-decoded) into a finding or a scan.
 * @throws InvalidEventError naming every offending field path, or saying the event is not one of
 * Inspector's (another source or detail-type on the same bus or queue).
 */
export const parseEvent = (raw: unknown): ParsedEvent => {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidEventError(`event is not a JSON object (received ${show(raw)})`);
  }
  const source = (raw as Record<string, unknown>).source;
  const detailType = (raw as Record<string, unknown>)['detail-type'];
  if (
    source !== INSPECTOR_SOURCE ||
    (detailType !== FINDING_DETAIL_TYPE && detailType !== SCAN_DETAIL_TYPE)
  ) {
    throw new InvalidEventError(
      `not an Amazon Inspector finding or scan event: source ${describeValue(source)}, detail-type ${describeValue(detailType)} ` +
        `(expected source "${INSPECTOR_SOURCE}" with detail-type "${FINDING_DETAIL_TYPE}" or "${SCAN_DETAIL_TYPE}")`,
    );
  }
  if (detailType === FINDING_DETAIL_TYPE) {
    const result = inspectorFindingEventSchema.safeParse(raw, { reportInput: true });
    if (!result.success) {
      throw new InvalidEventError(
        `invalid ${FINDING_DETAIL_TYPE} event: ${someIssues(result.error.issues)}`,
        {
          cause: result.error,
        },
      );
    }
    return { kind: 'finding', finding: result.data };
  }
  const result = inspectorScanEventSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw new InvalidEventError(`invalid ${SCAN_DETAIL_TYPE} event: ${someIssues(result.error.issues)}`, {
      cause: result.error,
    });
  }
  return { kind: 'scan', scan: result.data };
};

/**
 * Parse an SQS record whose body is the EventBridge event as JSON (an EventBridge rule targeting
 * the intake queue delivers exactly that).
 * @throws InvalidEventError when the record has no body, the body is not JSON, or the event is invalid.
 */
export const parseSqsRecord = (record: unknown): ParsedEvent => {
  const body =
    typeof record === 'object' && record !== null ? (record as { body?: unknown }).body : undefined;
  if (typeof body !== 'string') {
    throw new InvalidEventError(`record.body: expected string, received ${show(body)}`);
  }
  let event: unknown;
  try {
    event = JSON.parse(body);
  } catch (error) {
    throw new InvalidEventError(`body is not JSON: ${printable((error as Error).message)}`, { cause: error });
  }
  return parseEvent(event);
};
