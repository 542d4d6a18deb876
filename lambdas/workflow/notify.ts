import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { awsCall } from './aws';

/*
 * Notification text is read by people (email, chat, ticketing), so nothing in it may be able to
 * forge a line, hide text or reorder it. Values come from events and the account (repository names,
 * CVE ids, alarm names, reasons); triage validates what it can, and this is the last line: whatever
 * is published goes through here.
 */

/** SNS caps a subject at 100 ASCII characters and a message at 256 KiB (UTF-8). */
export const MAX_SUBJECT_LENGTH = 100;
export const MAX_MESSAGE_BYTES = 256 * 1024;
const TRUNCATED = '\n[... truncated: the message exceeded the SNS size limit]';

// C0 and C1 control characters, format characters (bidi overrides and isolates, zero-width ones),
// and the Unicode line and paragraph separators that some clients render as line breaks.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
const visible = (c: string): string => `\\u{${(c.codePointAt(0) as number).toString(16)}}`;

/**
 * One value for a single line of text: every control, format or separator character (a newline
 * included) is shown as an escape (`\u{a}`) instead of acting. Wrap interpolated values with it.
 */
export const inline = (value: string): string => value.replace(UNSAFE, visible);

/**
 * A whole message: its own line breaks stay (`\r\n` and `\r` become `\n`), tabs stay, and every other
 * control, format or separator character is shown as an escape. Longer than SNS accepts, it is cut
 * with a note saying so.
 */
export const messageText = (message: string): string => {
  const text = message
    .replace(/\r\n?/g, '\n')
    .replace(UNSAFE, (c) => (c === '\n' || c === '\t' ? c : visible(c)));
  if (Buffer.byteLength(text, 'utf8') <= MAX_MESSAGE_BYTES) return text;
  const budget = MAX_MESSAGE_BYTES - Buffer.byteLength(TRUNCATED, 'utf8');
  // Cut on a character boundary: decode the first `budget` bytes and drop a partial last character.
  const cut = Buffer.from(text, 'utf8')
    .subarray(0, budget)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${cut}${TRUNCATED}`;
};

/**
 * A subject SNS accepts: printable ASCII on one line (anything else would fail the Publish), starting
 * with a letter, digit or punctuation mark, at most 100 characters.
 */
export const subjectText = (subject: string): string => {
  const ascii = subject
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\s]+/gu, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  const text = ascii === '' ? '[Autopatch]' : ascii;
  return text.length > MAX_SUBJECT_LENGTH ? `${text.slice(0, MAX_SUBJECT_LENGTH - 3)}...` : text;
};

/**
 * Publish one message to the notification topic. `attributes` become String message attributes, so
 * subscriptions can filter on them (kind, outcome, service, severity); undefined ones are left out.
 * Subject, message and attribute values are neutralised (see `subjectText`, `messageText`, `inline`).
 */
export const publishNotification = async (
  sns: Pick<SNSClient, 'send'>,
  topicArn: string,
  notification: {
    readonly subject: string;
    readonly message: string;
    readonly attributes: Readonly<Record<string, string | undefined>>;
  },
): Promise<void> => {
  const MessageAttributes = Object.fromEntries(
    Object.entries(notification.attributes).flatMap(([name, value]) =>
      value === undefined ? [] : [[name, { DataType: 'String', StringValue: inline(value) }]],
    ),
  );
  await awsCall('sns Publish', () =>
    sns.send(
      new PublishCommand({
        TopicArn: topicArn,
        Subject: subjectText(notification.subject),
        Message: messageText(notification.message),
        MessageAttributes,
      }),
    ),
  );
};
