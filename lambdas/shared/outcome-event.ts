/**
 * The outcome event's envelope (EventBridge source and detail-type): shared by the finish step and
 * the sweep's late announcements (lambdas/) and by the grant that lets them put it (lib/). No runtime
 * dependencies, so synth does not load any SDK client for it.
 */
export const OUTCOME_EVENT = { source: 'autopatch', detailType: 'Autopatch Remediation Outcome' } as const;

/**
 * The notify digest's envelope: the sweep's one event per service and period gathering triage's
 * `notify` decisions. Same source as the outcome event, so the same PutEvents grant covers it.
 */
export const NOTIFY_DIGEST_EVENT = {
  source: OUTCOME_EVENT.source,
  detailType: 'Autopatch Notify Digest',
} as const;
