import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { SNSClient } from '@aws-sdk/client-sns';
import { placeOfServiceKey, type Severity, severityRank } from '../shared/contracts';
import { ConfigurationError } from '../shared/errors';
import { ACCOUNT_SCOPE, type Digest, type Ledger } from '../shared/ledger';
import { NOTIFY_DIGEST_EVENT } from '../shared/outcome-event';
import { inline, publishNotification } from './notify';
import { putOutcomeEvent } from './put-outcome-event';

/** How long notify decisions are gathered before the sweep sends them, when not configured. */
export const DEFAULT_NOTIFY_DIGEST_MINUTES = 60;

/**
 * The period from the sweep's environment (NOTIFY_DIGEST_MINUTES, set from
 * workflowDefaults.notifyDigestMinutes): whole minutes, at least 1. Throws at cold start when it is
 * set to anything else, rather than sending a digest every minute or never.
 */
export const notifyDigestMinutes = (value: string | undefined, fallback: number): number => {
  if (value === undefined || value === '') return fallback;
  const minutes = Number(value);
  if (!Number.isInteger(minutes) || minutes < 1) {
    throw new ConfigurationError(
      `NOTIFY_DIGEST_MINUTES must be a whole number of minutes >= 1, got ${JSON.stringify(value)}`,
    );
  }
  return minutes;
};

export interface DigestDeps {
  readonly ledger: Pick<Ledger, 'pendingDigests' | 'clearDigests'>;
  readonly sns: Pick<SNSClient, 'send'>;
  readonly events: Pick<EventBridgeClient, 'send'>;
  readonly topicArn: string;
  /** @default 'default' */
  readonly eventBusName?: string;
  /** A digest is sent once its oldest notice is this old (workflowDefaults.notifyDigestMinutes). */
  readonly periodMinutes: number;
  /** The hub's account and Region: where a service keyed "<cluster>/<service>" lives. */
  readonly home?: { readonly account?: string; readonly region?: string };
  /** Account id → alias (config accountAliases), shown next to the id. */
  readonly accountAliases?: Readonly<Record<string, string>>;
}

/** Where a digest's service lives: the account (with its alias) and Region. */
export interface DigestPlace {
  readonly account: { readonly id: string; readonly alias?: string };
  readonly region?: string;
}

/**
 * The account and Region of a digest's service: those its key names (a service outside the hub,
 * serviceKeyOf), else the hub's; undefined for the account-wide scope or when the hub's is not known.
 */
export const digestPlace = (
  scope: string,
  deps: Pick<DigestDeps, 'home' | 'accountAliases'>,
): DigestPlace | undefined => {
  if (scope === ACCOUNT_SCOPE) return undefined;
  const place = placeOfServiceKey(scope) ?? deps.home;
  if (!place?.account) return undefined;
  const alias = deps.accountAliases?.[place.account];
  return {
    account: { id: place.account, ...(alias ? { alias } : {}) },
    ...(place.region ? { region: place.region } : {}),
  };
};

export type DigestResult =
  | { readonly scope: string; readonly action: 'sent'; readonly notices: number }
  | { readonly scope: string; readonly action: 'failed'; readonly error: string };

const worst = (digest: Digest): Severity | undefined =>
  [...digest.entries].sort((a, b) => severityRank(a.severity) - severityRank(b.severity))[0]?.severity;

/** Notices a digest stands for (folded ones counted), the omitted included. */
export const noticeCount = (digest: Digest): number =>
  digest.entries.reduce((n, e) => n + e.count, 0) + digest.omitted;

const who = (scope: string): string =>
  scope === ACCOUNT_SCOPE ? 'images no ECS service runs' : inline(scope);

/**
 * The digest people read: one message for a service and period, worst severity first, however many
 * findings it gathered. Values are made single-line with `inline`; publishNotification neutralises
 * the whole text again. Pure.
 */
export const digestMessage = (
  digest: Digest,
  now: Date,
  place?: DigestPlace,
): { subject: string; message: string } => {
  const total = noticeCount(digest);
  const entries = [...digest.entries].sort(
    (a, b) =>
      severityRank(a.severity) - severityRank(b.severity) ||
      a.cve.localeCompare(b.cve) ||
      (a.image ?? '').localeCompare(b.image ?? ''),
  );
  const lines = [
    `Autopatch decided to notify, not to remediate, ${total} finding${total === 1 ? '' : 's'} for ${who(digest.scope)}`,
    `between ${digest.since} and ${now.toISOString()}. Nothing was changed: read them and act if needed.`,
    ...(place
      ? [
          `Account: ${place.account.id}${place.account.alias ? ` (${inline(place.account.alias)})` : ''}${place.region ? `, Region: ${place.region}` : ''}`,
        ]
      : []),
    '',
    ...entries.flatMap((e) => [
      `- ${inline(e.cve)} ${e.severity}${e.image ? ` on ${inline(e.image)}` : ''}${e.count > 1 ? ` (${e.count} times)` : ''}`,
      `  ${inline(e.reason)}`,
    ]),
    ...(digest.omitted > 0 ? ['', `... and ${digest.omitted} more, not listed (see the triage logs).`] : []),
    '',
    'Runbook:   docs/runbook.md#notify-digest',
  ];
  const subject =
    digest.scope === ACCOUNT_SCOPE
      ? `[Autopatch] Notify digest: ${total} finding(s) on images no service runs`
      : `[Autopatch] Notify digest: ${digest.scope} (${total} finding(s))`;
  return { subject, message: lines.join('\n') };
};

/**
 * Send every digest whose period is over: one SNS message and one `Autopatch Notify Digest` event
 * each, then take what was sent out of the ledger, all at once (a part many services share is one
 * write; notices recorded meanwhile wait for the next period). Sent before cleared: a failure in
 * between sends them again next minute rather than losing them. A failed digest does not stop the
 * others; the next sweep retries it.
 */
export const sendDigests = async (deps: DigestDeps, now: Date): Promise<DigestResult[]> => {
  const periodMs = deps.periodMinutes * 60_000;
  const due = (await deps.ledger.pendingDigests()).filter(
    (d) => !(Date.parse(d.since) + periodMs > now.getTime()),
  );
  const results: DigestResult[] = [];
  const sent: Digest[] = [];
  for (const digest of due) {
    try {
      const severity = worst(digest);
      const place = digestPlace(digest.scope, deps);
      await putOutcomeEvent(
        deps.events,
        {
          ...(digest.scope === ACCOUNT_SCOPE ? { account: true } : { service: digest.scope }),
          // The service's account ({ id, alias }, as in the outcome event) and Region.
          ...(place ? { account: place.account, ...(place.region ? { region: place.region } : {}) } : {}),
          since: digest.since,
          until: now.toISOString(),
          findings: noticeCount(digest),
          ...(severity ? { severity } : {}),
          entries: digest.entries,
          omitted: digest.omitted,
        },
        {
          label: 'notify digest',
          detailType: NOTIFY_DIGEST_EVENT.detailType,
          ...(deps.eventBusName ? { eventBusName: deps.eventBusName } : {}),
        },
      );
      await publishNotification(deps.sns, deps.topicArn, {
        ...digestMessage(digest, now, place),
        attributes: {
          kind: 'notify-digest',
          service: digest.scope === ACCOUNT_SCOPE ? undefined : digest.scope,
          severity,
          account: place?.account.id,
          region: place?.region,
        },
      });
      sent.push(digest);
    } catch (error) {
      results.push({
        scope: digest.scope,
        action: 'failed',
        error: describe(error),
      });
    }
  }
  if (sent.length === 0) return results;
  try {
    await deps.ledger.clearDigests(sent);
    results.push(...sent.map((d) => ({ scope: d.scope, action: 'sent' as const, notices: noticeCount(d) })));
  } catch (error) {
    // Sent, but still in the ledger: sent again at the next sweep.
    const reason = `sent, but not cleared (sent again next sweep): ${describe(error)}`;
    results.push(...sent.map((d) => ({ scope: d.scope, action: 'failed' as const, error: reason })));
  }
  return results;
};

const describe = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);
