/**
 * Who answered an approval, as the rejection's cause carries it: written by resolveApproval (the
 * `npm run approve` command), read back by the finish step for the history record. No SDK imports, so
 * the finish step's code paths stay those of finishing (test/iam/least-privilege.test.ts).
 */

/** "Rejected by <by>[ (<name>)]: <reason>". Pure. */
export const rejectionCause = (
  by: string | undefined,
  name: string | undefined,
  reason: string | undefined,
): string => `Rejected${by ? ` by ${by}` : ''}${name ? ` (${name})` : ''}: ${reason ?? 'no reason given'}`;

/**
 * Who rejected, from a cause rejectionCause wrote. Identity ARNs hold no whitespace. Undefined when
 * the cause names nobody. Pure.
 */
export const rejectedBy = (cause: string | undefined): string | undefined =>
  /^Rejected by (\S+?)(?: \(.*?\))?: /.exec(cause ?? '')?.[1];
