import type {
  DescribeAlarmHistoryCommandInput,
  DescribeAlarmHistoryCommandOutput,
  DescribeAlarmsCommandInput,
  DescribeAlarmsCommandOutput,
  MetricAlarm,
  StateValue,
} from '@aws-sdk/client-cloudwatch';
import type { EventBus } from './eventbus';
import type { World } from './world';

type Out<T> = Omit<T, '$metadata'>;

interface Alarm {
  readonly name: string;
  readonly arn: string;
  readonly description?: string;
  state: StateValue;
  reason: string;
  updatedAt: Date;
  readonly history: Array<{ at: Date; summary: string; data: string }>;
}

/** CloudWatch's alarm event timestamp format: "2019-10-02T17:20:48.551+0000". */
const alarmTime = (d: Date) => d.toISOString().replace('Z', '+0000');

/**
 * CloudWatch alarms: states that change at scripted times, DescribeAlarms, and the
 * `CloudWatch Alarm State Change` event on each change. ECS is told too, since it watches the alarms
 * in a service's deploymentConfiguration.
 */
export class CloudWatchModel {
  private readonly alarms = new Map<string, Alarm>();
  private readonly listeners: Array<(name: string, state: StateValue) => void> = [];
  /** Every state change, in order (for timing assertions). */
  readonly transitions: Array<{ at: number; name: string; state: StateValue }> = [];

  constructor(
    private readonly world: World,
    private readonly bus: EventBus,
  ) {}

  onChange(listener: (name: string, state: StateValue) => void): void {
    this.listeners.push(listener);
  }

  addAlarm(name: string, state: StateValue, at: Date, description?: string): void {
    this.alarms.set(name, {
      name,
      arn: this.world.arn('cloudwatch', `alarm:${name}`),
      ...(description ? { description } : {}),
      state,
      reason: 'Initial state set by the scenario.',
      updatedAt: at,
      history: [],
    });
    for (const l of this.listeners) l(name, state);
  }

  /** The alarm is deleted (DeleteAlarms): DescribeAlarms no longer returns it; no event is sent. */
  deleteAlarm(name: string): void {
    if (!this.alarms.delete(name)) throw new Error(`alarm ${name} does not exist`);
    this.world.note('cloudwatch', `alarm ${name} deleted`);
  }

  state(name: string): StateValue | undefined {
    return this.alarms.get(name)?.state;
  }

  setState(name: string, state: StateValue, reason?: string): void {
    const alarm = this.alarms.get(name);
    if (!alarm) throw new Error(`alarm ${name} does not exist`);
    if (alarm.state === state) return;
    const previous = { value: alarm.state, reason: alarm.reason, timestamp: alarmTime(alarm.updatedAt) };
    const now = this.world.now();
    alarm.state = state;
    alarm.reason =
      reason ??
      (state === 'ALARM'
        ? 'Threshold Crossed: 1 out of the last 1 datapoints was greater than the threshold (5.0).'
        : 'Threshold Crossed: 1 out of the last 1 datapoints was not greater than the threshold (5.0).');
    alarm.updatedAt = now;
    this.transitions.push({ at: now.getTime(), name, state });
    alarm.history.push({
      at: now,
      summary: `Alarm updated from ${previous.value} to ${state}`,
      data: alarm.reason,
    });
    this.world.note('cloudwatch', `alarm ${name}: ${previous.value} -> ${state}`);
    // The event goes out first: services that react to the alarm (ECS) do so after it.
    this.bus.put(
      this.bus.envelope('aws.cloudwatch', 'CloudWatch Alarm State Change', [alarm.arn], {
        alarmName: name,
        state: { value: state, reason: alarm.reason, timestamp: alarmTime(now) },
        previousState: previous,
        configuration: {
          ...(alarm.description ? { description: alarm.description } : {}),
          metrics: [
            {
              id: 'm1',
              metricStat: {
                metric: {
                  namespace: 'AWS/ApplicationELB',
                  name: 'HTTPCode_Target_5XX_Count',
                  dimensions: {},
                },
                period: 60,
                stat: 'Sum',
              },
              returnData: true,
            },
          ],
        },
      }),
    );
    for (const l of this.listeners) l(name, state);
  }

  private describe(a: Alarm): MetricAlarm {
    return {
      AlarmName: a.name,
      AlarmArn: a.arn,
      ...(a.description ? { AlarmDescription: a.description } : {}),
      ActionsEnabled: true,
      StateValue: a.state,
      StateReason: a.reason,
      StateUpdatedTimestamp: a.updatedAt,
      StateTransitionedTimestamp: a.updatedAt,
      MetricName: 'HTTPCode_Target_5XX_Count',
      Namespace: 'AWS/ApplicationELB',
      Statistic: 'Sum',
      Period: 60,
      EvaluationPeriods: 1,
      Threshold: 5,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    };
  }

  readonly handlers = {
    DescribeAlarms: (input: DescribeAlarmsCommandInput): Out<DescribeAlarmsCommandOutput> => {
      let list = [...this.alarms.values()];
      if (input.AlarmNames?.length) list = list.filter((a) => input.AlarmNames?.includes(a.name));
      if (input.AlarmNamePrefix)
        list = list.filter((a) => a.name.startsWith(input.AlarmNamePrefix as string));
      if (input.StateValue) list = list.filter((a) => a.state === input.StateValue);
      const metric = !input.AlarmTypes || input.AlarmTypes.includes('MetricAlarm');
      return { MetricAlarms: metric ? list.map((a) => this.describe(a)) : [], CompositeAlarms: [] };
    },
    DescribeAlarmHistory: (
      input: DescribeAlarmHistoryCommandInput,
    ): Out<DescribeAlarmHistoryCommandOutput> => {
      const alarms = input.AlarmName
        ? [this.alarms.get(input.AlarmName)].filter((a): a is Alarm => !!a)
        : [...this.alarms.values()];
      // As CloudWatch does: only items inside [StartDate, EndDate], newest first.
      const from = input.StartDate ? new Date(input.StartDate).getTime() : Number.NEGATIVE_INFINITY;
      const to = input.EndDate ? new Date(input.EndDate).getTime() : Number.POSITIVE_INFINITY;
      const type = input.HistoryItemType;
      return {
        AlarmHistoryItems: alarms.flatMap((a) =>
          a.history
            .filter(
              (h) => h.at.getTime() >= from && h.at.getTime() <= to && (!type || type === 'StateUpdate'),
            )
            .sort((x, y) => y.at.getTime() - x.at.getTime())
            .map((h) => ({
              AlarmName: a.name,
              AlarmType: 'MetricAlarm',
              Timestamp: h.at,
              HistoryItemType: 'StateUpdate',
              HistorySummary: h.summary,
              HistoryData: h.data,
            })),
        ),
      };
    },
  };
}
