/**
 * A deep copy made in the caller's realm. Not structuredClone: under Jest the code runs in a vm
 * context, and structuredClone builds its copy from the host's Object and Date, which fail the
 * "plain object" checks (Object.getPrototypeOf(v) === Object.prototype) that aws-local-stepfunctions
 * and the AWS SDK make. Handles what the models pass around: JSON values, Dates, undefined, Uint8Array.
 */
export const clone = <T>(value: T): T => {
  if (value instanceof Date) return new Date(value.getTime()) as T;
  if (value instanceof Uint8Array) return new Uint8Array(value) as T;
  if (Array.isArray(value)) return value.map((v) => clone(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = clone(v);
    return out as T;
  }
  return value;
};
