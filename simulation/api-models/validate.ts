/**
 * Requests checked against the AWS API models: the Smithy schemas each SDK v3 client ships
 * (`UpdateServiceRequest$` and friends, exported by @aws-sdk/client-*). A member the model does not
 * have (a misspelling the SDK would silently drop), a required member missing, or a value of the wrong
 * type fails the call as the service rejects a bad request (ECS InvalidParameterException, DynamoDB
 * ValidationException, ...), instead of a model answering a request AWS would refuse.
 *
 * Length, range, pattern and enum constraints are not in the shipped schemas and are not checked.
 */
import * as cloudwatch from '@aws-sdk/client-cloudwatch';
import * as codebuild from '@aws-sdk/client-codebuild';
import * as codedeploy from '@aws-sdk/client-codedeploy';
import * as dynamodb from '@aws-sdk/client-dynamodb';
import * as ecr from '@aws-sdk/client-ecr';
import * as ecs from '@aws-sdk/client-ecs';
import * as eventbridge from '@aws-sdk/client-eventbridge';
import * as inspector2 from '@aws-sdk/client-inspector2';
import * as sfn from '@aws-sdk/client-sfn';
import * as sns from '@aws-sdk/client-sns';
import * as ssm from '@aws-sdk/client-ssm';
import { NormalizedSchema } from '@smithy/core/schema';
import type { ServiceName } from '../model/catalog';

const MODULES: Record<ServiceName, Record<string, unknown>> = {
  cloudwatch,
  codebuild,
  codedeploy,
  dynamodb,
  ecr,
  ecs,
  eventbridge,
  inspector2,
  sfn,
  sns,
  ssm,
};

/** How each service names its error for a request that does not match its model, and the status. */
export const VALIDATION_ERROR: Record<ServiceName, { readonly name: string; readonly status: number }> = {
  ecs: { name: 'InvalidParameterException', status: 400 },
  ecr: { name: 'InvalidParameterException', status: 400 },
  codebuild: { name: 'InvalidInputException', status: 400 },
  codedeploy: { name: 'InvalidInputException', status: 400 },
  inspector2: { name: 'ValidationException', status: 400 },
  cloudwatch: { name: 'InvalidParameterValue', status: 400 },
  sns: { name: 'InvalidParameterException', status: 400 },
  eventbridge: { name: 'ValidationException', status: 400 },
  ssm: { name: 'ValidationException', status: 400 },
  sfn: { name: 'ValidationException', status: 400 },
  dynamodb: { name: 'ValidationException', status: 400 },
};

type RawStruct = [number, string, string, unknown, string[], unknown[], number?];
const isRawStruct = (s: unknown): s is RawStruct =>
  Array.isArray(s) && (s[0] === 3 || s[0] === 4) && Array.isArray(s[4]);

const inputSchemas = new Map<string, NormalizedSchema | undefined>();

/** The input schema of an operation, or undefined when the client does not ship one. */
export const inputSchema = (service: ServiceName, operation: string): NormalizedSchema | undefined => {
  const key = `${service}:${operation}`;
  if (!inputSchemas.has(key)) inputSchemas.set(key, loadInputSchema(service, operation));
  return inputSchemas.get(key);
};

const loadInputSchema = (service: ServiceName, operation: string): NormalizedSchema | undefined => {
  const op = MODULES[service][`${operation}$`] as unknown[] | undefined;
  if (!Array.isArray(op) || op[0] !== 9) return undefined;
  const input = typeof op[4] === 'function' ? (op[4] as () => unknown)() : op[4];
  return NormalizedSchema.of(input as never);
};

/** Required member names of a structure (the schema lists them first and counts them last). */
export const requiredMembers = (schema: NormalizedSchema): string[] => {
  const raw = schema.getSchema();
  if (!isRawStruct(raw)) return [];
  return raw[4].slice(0, typeof raw[6] === 'number' ? raw[6] : 0);
};

const memberCache = new WeakMap<object, Map<string, NormalizedSchema>>();
/** A structure's members by name, computed once per schema. */
const membersOf = (schema: NormalizedSchema): Map<string, NormalizedSchema> => {
  const raw = schema.getSchema() as object;
  let members = memberCache.get(raw);
  if (!members) {
    members = new Map();
    for (const [name, member] of schema.structIterator()) members.set(name, member);
    memberCache.set(raw, members);
  }
  return members;
};

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  !(v instanceof Date) &&
  !(v instanceof Uint8Array);

const check = (schema: NormalizedSchema, value: unknown, at: string, problems: string[]): void => {
  if (value === undefined) return;
  if (schema.isDocumentSchema()) return;
  if (schema.isStructSchema() || schema.isUnionSchema()) {
    if (!isPlainObject(value)) {
      problems.push(`${at}: expected a structure (${schema.getName()}), got ${describe(value)}`);
      return;
    }
    const members = membersOf(schema);
    for (const key of Object.keys(value)) {
      if (!members.has(key))
        problems.push(`${at ? `${at}.` : ''}${key}: ${schema.getName()} has no member ${key}`);
    }
    if (schema.isUnionSchema()) {
      const set = Object.keys(value).filter((k) => value[k] !== undefined);
      if (set.length !== 1)
        problems.push(`${at}: ${schema.getName()} must have exactly one member set, has ${set.length}`);
    } else {
      for (const name of requiredMembers(schema)) {
        if (value[name] === undefined || value[name] === null)
          problems.push(`${at ? `${at}.` : ''}${name}: required by ${schema.getName()}, missing`);
      }
    }
    for (const [name, member] of members) check(member, value[name], at ? `${at}.${name}` : name, problems);
    return;
  }
  if (schema.isListSchema()) {
    if (!Array.isArray(value) && !(value instanceof Set)) {
      problems.push(`${at}: expected a list, got ${describe(value)}`);
      return;
    }
    [...value].forEach((item, i) => {
      check(schema.getValueSchema(), item, `${at}[${i}]`, problems);
    });
    return;
  }
  if (schema.isMapSchema()) {
    if (!isPlainObject(value)) {
      problems.push(`${at}: expected a map, got ${describe(value)}`);
      return;
    }
    for (const [k, v] of Object.entries(value)) check(schema.getValueSchema(), v, `${at}.${k}`, problems);
    return;
  }
  if (schema.isTimestampSchema()) {
    if (!(value instanceof Date) && typeof value !== 'number' && typeof value !== 'string')
      problems.push(`${at}: expected a timestamp, got ${describe(value)}`);
    return;
  }
  if (schema.isBlobSchema()) {
    if (!(value instanceof Uint8Array) && typeof value !== 'string')
      problems.push(`${at}: expected a blob, got ${describe(value)}`);
    return;
  }
  if (schema.isBooleanSchema()) {
    if (typeof value !== 'boolean') problems.push(`${at}: expected a boolean, got ${describe(value)}`);
    return;
  }
  if (schema.isBigIntegerSchema() || schema.isBigDecimalSchema()) return;
  if (schema.isNumericSchema()) {
    if (typeof value !== 'number' || Number.isNaN(value))
      problems.push(`${at}: expected a number, got ${describe(value)}`);
    return;
  }
  if (schema.isStringSchema() && typeof value !== 'string')
    problems.push(`${at}: expected a string, got ${describe(value)}`);
};

/**
 * What is wrong with a request, by the operation's model: empty when it is well-formed. An operation
 * the client ships no schema for is reported too (the simulation would answer it unchecked).
 */
export const requestProblems = (service: ServiceName, operation: string, input: unknown): string[] => {
  const schema = inputSchema(service, operation);
  if (!schema) return [`${service} has no operation ${operation} in its API model`];
  const problems: string[] = [];
  check(schema, input ?? {}, '', problems);
  return problems;
};
