import { createHash } from 'node:crypto';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { World } from './world';

export interface QueueSettings {
  readonly batchSize: number;
  readonly batchingWindowSeconds: number;
  readonly visibilityTimeoutSeconds: number;
  readonly maxReceiveCount: number;
  /** Concurrent consumer invocations the event source mapping may run. */
  readonly maxConcurrency: number;
}

interface Message {
  readonly id: string;
  readonly body: string;
  readonly sentAt: number;
  receiveCount: number;
  firstReceiveAt?: number;
  visibleAt: number;
}

export interface DeadLetter {
  readonly id: string;
  readonly body: string;
  readonly receiveCount: number;
  readonly at: number;
}

export interface Invocation {
  readonly at: number;
  readonly size: number;
  readonly failed: number;
  readonly error?: string;
}

export type SqsConsumer = (event: SQSEvent) => Promise<SQSBatchResponse | undefined>;

/**
 * The intake queue and Lambda's SQS event source mapping, on the virtual clock. Messages become
 * batches of up to `batchSize` once the batching window has passed since the first visible message;
 * each batch is invoked on a consumer (at most `maxConcurrency` at once). Items the consumer reports
 * in batchItemFailures (or the whole batch, if it throws) stay invisible until their visibility
 * timeout ends and are received again; a message received more than `maxReceiveCount` times moves
 * to the dead-letter queue instead.
 */
export class SqsModel {
  readonly deadLetters: DeadLetter[] = [];
  readonly invocations: Invocation[] = [];
  private readonly messages: Message[] = [];
  private running = 0;
  private pollAt: number | undefined;
  private cancelPoll: (() => void) | undefined;
  private sent = 0;

  constructor(
    private readonly world: World,
    readonly arn: string,
    private readonly settings: QueueSettings,
    private readonly consumer: SqsConsumer,
  ) {}

  get depth(): number {
    return this.messages.length;
  }

  get totalSent(): number {
    return this.sent;
  }

  send(body: string): string {
    const id = this.world.uuid();
    const now = Date.now();
    this.messages.push({ id, body, sentAt: now, receiveCount: 0, visibleAt: now });
    this.sent += 1;
    // A full batch does not wait for the batching window.
    const waiting = this.messages.filter((m) => m.visibleAt <= now).length;
    this.schedulePoll(
      waiting >= this.settings.batchSize ? now : now + this.settings.batchingWindowSeconds * 1000,
    );
    return id;
  }

  private schedulePoll(at: number): void {
    if (this.pollAt !== undefined && this.pollAt <= at) return;
    this.cancelPoll?.();
    this.pollAt = at;
    this.cancelPoll = this.world.schedule(at, 'SQS event source poll', () => this.poll());
  }

  private poll(): void {
    this.pollAt = undefined;
    this.cancelPoll = undefined;
    const now = Date.now();
    while (this.running < this.settings.maxConcurrency) {
      const visible = this.messages.filter((m) => m.visibleAt <= now);
      if (visible.length === 0) break;
      const batch: Message[] = [];
      for (const m of visible) {
        if (batch.length >= this.settings.batchSize) break;
        if (m.receiveCount >= this.settings.maxReceiveCount) {
          // SQS moves a message to the DLQ when a receive would exceed maxReceiveCount.
          this.messages.splice(this.messages.indexOf(m), 1);
          this.deadLetters.push({ id: m.id, body: m.body, receiveCount: m.receiveCount, at: now });
          this.world.note(
            'sqs',
            `message ${m.id.slice(0, 8)} moved to the dead-letter queue after ${m.receiveCount} receives`,
          );
          continue;
        }
        m.receiveCount += 1;
        m.firstReceiveAt ??= now;
        m.visibleAt = now + this.settings.visibilityTimeoutSeconds * 1000;
        batch.push(m);
      }
      if (batch.length === 0) continue;
      this.running += 1;
      this.world.spawn('triage invocation', () => this.invoke(batch));
    }
    this.rescheduleForNextVisible();
  }

  /**
   * With nothing visible, the only reason to poll is a hidden message reappearing: poll then, and not
   * at all when the queue is empty (a poll left for a message deleted meanwhile would keep the clock
   * running for nothing). Visible messages are taken when an invocation ends or the window closes.
   */
  private rescheduleForNextVisible(): void {
    const now = Date.now();
    const hidden = this.messages.filter((m) => m.visibleAt > now);
    if (hidden.length < this.messages.length) return;
    this.cancelPoll?.();
    this.pollAt = undefined;
    this.cancelPoll = undefined;
    if (hidden.length > 0) this.schedulePoll(Math.min(...hidden.map((m) => m.visibleAt)));
  }

  private record(m: Message): SQSRecord {
    return {
      messageId: m.id,
      receiptHandle: createHash('sha256').update(`${m.id}:${m.receiveCount}`).digest('base64'),
      body: m.body,
      attributes: {
        ApproximateReceiveCount: String(m.receiveCount),
        SentTimestamp: String(m.sentAt),
        SenderId: 'AIDAIENQZJOLO23YVJ4VO',
        ApproximateFirstReceiveTimestamp: String(m.firstReceiveAt ?? m.sentAt),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5').update(m.body).digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: this.arn,
      awsRegion: this.world.region,
    };
  }

  private async invoke(batch: Message[]): Promise<void> {
    const at = Date.now();
    let failedIds: Set<string>;
    let error: string | undefined;
    try {
      const response = await this.consumer({ Records: batch.map((m) => this.record(m)) });
      failedIds = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch (e) {
      // A thrown error fails the whole batch: every message is retried after its visibility timeout.
      error = `${(e as Error).name}: ${(e as Error).message}`;
      failedIds = new Set(batch.map((m) => m.id));
      this.world.note('sqs', `triage failed a whole batch of ${batch.length}: ${error}`);
    } finally {
      this.running -= 1;
    }
    for (const m of batch) {
      if (!failedIds.has(m.id)) {
        const i = this.messages.indexOf(m);
        if (i >= 0) this.messages.splice(i, 1);
      }
    }
    this.invocations.push({ at, size: batch.length, failed: failedIds.size, ...(error ? { error } : {}) });
    if (failedIds.size > 0 && !error)
      this.world.note(
        'sqs',
        `triage reported ${failedIds.size} of ${batch.length} messages failed: they will be received again`,
      );
    // A slot is free: take what is visible now (the event source keeps polling while there is work).
    if (this.messages.some((m) => m.visibleAt <= Date.now())) this.schedulePoll(Date.now());
    else this.rescheduleForNextVisible();
  }
}
