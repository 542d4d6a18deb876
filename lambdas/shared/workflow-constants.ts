/**
 * Constants of the remediation workflow that the Lambdas (lambdas/) and the construct that deploys
 * them (lib/) both need. No runtime dependencies, so synth loads no SDK client for them.
 */

/**
 * Step Functions execution statuses whose execution may have skipped its finish state (stopped by
 * hand, timed out, or failed where no Catch reaches): the execution-ended rule matches these, and the
 * handler releases the lock such an execution may still hold.
 */
export const ABANDONING_STATUSES = ['ABORTED', 'TIMED_OUT', 'FAILED'] as const;

/**
 * `scan-status` values of an `Inspector2 Scan` event that say Inspector scanned the digest: the
 * InspectorScanRule matches these, and the rescan wait accepts such an event as evidence of the scan.
 */
export const SCAN_COMPLETE_STATUSES: readonly string[] = ['INITIAL_SCAN_COMPLETE'];
