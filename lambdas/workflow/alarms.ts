import { type CloudWatchClient, DescribeAlarmsCommand, type StateValue } from '@aws-sdk/client-cloudwatch';
import type { Service } from '@aws-sdk/client-ecs';
import { awsCall } from './aws';

/**
 * Reading the watched alarms, shared by the checks before deploying (gate.ts) and the watch
 * (deployment.ts). A module of its own: what a Lambda imports is what its role is granted.
 */

/** The state of every watched alarm, read in one pass. Missing: no such alarm (misspelt or deleted). */
export interface AlarmStates {
  readonly ok: readonly string[];
  readonly firing: ReadonlyArray<{ readonly name: string; readonly since?: Date }>;
  readonly insufficient: readonly string[];
  readonly missing: readonly string[];
}

/** Every watched alarm's state (DescribeAlarms takes at most 100 names per call). Throws when unreadable. */
export const readAlarms = async (
  cloudwatch: Pick<CloudWatchClient, 'send'>,
  names: readonly string[],
): Promise<AlarmStates> => {
  const seen = new Map<string, { state: StateValue | undefined; since?: Date }>();
  for (let i = 0; i < names.length; i += 100) {
    let nextToken: string | undefined;
    do {
      const out = await awsCall('cloudwatch DescribeAlarms', () =>
        cloudwatch.send(
          new DescribeAlarmsCommand({
            AlarmNames: names.slice(i, i + 100),
            AlarmTypes: ['MetricAlarm', 'CompositeAlarm'],
            ...(nextToken ? { NextToken: nextToken } : {}),
          }),
        ),
      );
      for (const a of [...(out.MetricAlarms ?? []), ...(out.CompositeAlarms ?? [])]) {
        if (a.AlarmName === undefined) continue;
        seen.set(a.AlarmName, {
          state: a.StateValue,
          ...(a.StateUpdatedTimestamp ? { since: a.StateUpdatedTimestamp } : {}),
        });
      }
      nextToken = out.NextToken;
    } while (nextToken);
  }
  const ok: string[] = [];
  const firing: Array<{ name: string; since?: Date }> = [];
  const insufficient: string[] = [];
  const missing: string[] = [];
  for (const name of [...names].sort()) {
    const alarm = seen.get(name);
    if (!alarm) missing.push(name);
    else if (alarm.state === 'ALARM') firing.push({ name, ...(alarm.since ? { since: alarm.since } : {}) });
    else if (alarm.state === 'OK') ok.push(name);
    else insufficient.push(name);
  }
  return { ok, firing, insufficient, missing };
};

/** The alarms the bake is judged by: the target's plus the service's own deployment alarms. */
export const watchedAlarms = (service: Service, alarmNames: readonly string[]): string[] => {
  const own = service.deploymentConfiguration?.alarms;
  return [...new Set([...alarmNames, ...(own?.enable ? (own.alarmNames ?? []) : [])])].sort();
};
