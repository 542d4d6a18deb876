import type { PutEventsCommandInput, PutEventsCommandOutput } from '@aws-sdk/client-eventbridge';
import type { PublishCommandInput, PublishCommandOutput } from '@aws-sdk/client-sns';
import type {
  GetParameterCommandInput,
  GetParameterCommandOutput,
  PutParameterCommandInput,
  PutParameterCommandOutput,
} from '@aws-sdk/client-ssm';
import { sdkError } from './errors';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

export interface SnsMessage {
  readonly at: number;
  readonly topicArn: string;
  readonly subject?: string;
  readonly message: string;
  readonly attributes: Record<string, string>;
}

export interface SsmParameter {
  readonly name: string;
  value: string;
  type: string;
  version: number;
  lastModified: Date;
}

/** SNS publishes: recorded, since they are what people receive. */
export class SnsModel {
  readonly messages: SnsMessage[] = [];

  constructor(private readonly world: World) {}

  readonly handlers = {
    Publish: (input: PublishCommandInput): Out<PublishCommandOutput> => {
      if (!input.Message)
        throw sdkError('sns', 'InvalidParameterException', 'Invalid parameter: Empty message');
      const topicArn = input.TopicArn ?? input.TargetArn ?? '';
      const attributes: Record<string, string> = {};
      for (const [k, v] of Object.entries(input.MessageAttributes ?? {})) attributes[k] = v.StringValue ?? '';
      this.messages.push({
        at: Date.now(),
        topicArn,
        ...(input.Subject ? { subject: input.Subject } : {}),
        message: input.Message,
        attributes,
      });
      this.world.note(
        'sns',
        `published${input.Subject ? ` "${input.Subject}"` : ''} to ${topicArn.split(':').pop()}`,
      );
      return { MessageId: this.world.uuid() };
    },
  };
}

/** EventBridge PutEvents: the events go on the simulated default bus (recorded, matched against rules). */
export class EventBridgeModel {
  constructor(
    private readonly world: World,
    private readonly bus: EventBus,
  ) {}

  readonly handlers = {
    PutEvents: (input: PutEventsCommandInput): Out<PutEventsCommandOutput> => {
      const entries = input.Entries ?? [];
      if (entries.length === 0 || entries.length > 10) {
        throw sdkError('eventbridge', 'ValidationException', 'PutEvents takes 1 to 10 entries.');
      }
      const out: NonNullable<PutEventsCommandOutput['Entries']> = [];
      for (const entry of entries) {
        let detail: unknown;
        try {
          detail = JSON.parse(entry.Detail ?? '');
        } catch {
          out.push({ ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' });
          continue;
        }
        if (!entry.Source || !entry.DetailType) {
          out.push({ ErrorCode: 'InvalidArgument', ErrorMessage: 'Source and DetailType are required.' });
          continue;
        }
        const event = this.bus.envelope(entry.Source, entry.DetailType, entry.Resources ?? [], detail);
        this.bus.put(event);
        this.world.note('eventbridge', `${entry.Source} "${entry.DetailType}" put on the bus`);
        out.push({ EventId: event.id });
      }
      return { Entries: out, FailedEntryCount: out.filter((e) => e.ErrorCode).length };
    },
  };
}

/** SSM Parameter Store (String parameters): where Autopatch publishes patched digests for IaC to read. */
export class SsmModel {
  readonly parameters = new Map<string, SsmParameter>();

  constructor(private readonly world: World) {}

  readonly handlers = {
    PutParameter: (input: PutParameterCommandInput): Out<PutParameterCommandOutput> => {
      const name = input.Name as string;
      const existing = this.parameters.get(name);
      if (existing && !input.Overwrite) {
        throw sdkError(
          'ssm',
          'ParameterAlreadyExists',
          'The parameter already exists. To overwrite this value, set the overwrite option in the request to true.',
        );
      }
      const version = (existing?.version ?? 0) + 1;
      this.parameters.set(name, {
        name,
        value: input.Value as string,
        type: input.Type ?? existing?.type ?? 'String',
        version,
        lastModified: this.world.now(),
      });
      this.world.note('ssm', `${name} = ${input.Value}`);
      return { Version: version, Tier: 'Standard' };
    },
    GetParameter: (input: GetParameterCommandInput): Out<GetParameterCommandOutput> => {
      const p = this.parameters.get(input.Name as string);
      if (!p) throw sdkError('ssm', 'ParameterNotFound', `Parameter ${input.Name} not found.`);
      return {
        Parameter: {
          Name: p.name,
          Type: p.type as 'String',
          Value: p.value,
          Version: p.version,
          LastModifiedDate: p.lastModified,
          ARN: this.world.arn('ssm', `parameter${p.name.startsWith('/') ? '' : '/'}${p.name}`),
          DataType: 'text',
        },
      };
    },
  };
}
