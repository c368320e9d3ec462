/**
 * The one place that imports the Cedar WebAssembly build. The nodejs build instantiates its
 * module synchronously on import (about 20 ms), so only code that evaluates policies loads it.
 */
// First: sets a V8 flag that must be in force before any Cedar call is optimized.
import './v8-guard.js';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { DetailedError } from '@cedar-policy/cedar-wasm/nodejs';

export { cedar };
export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  PartialAuthorizationAnswer,
  StatefulAuthorizationCall,
  ValidationError,
} from '@cedar-policy/cedar-wasm/nodejs';

/** Cedar's message with its hint, on one line (it quotes only policy text, never request data). */
export function cedarMessage(error: DetailedError): string {
  const text = error.help === null || error.help === '' ? error.message : `${error.message} (${error.help})`;
  return text.replace(/\s+/g, ' ').trim();
}

/** The value of the policy's `@id("...")` annotation, or undefined when absent or empty. */
export function annotatedId(policyText: string): string | undefined {
  const json = cedar.policyToJson(policyText);
  if (json.type === 'failure') return undefined;
  const id = json.json.annotations?.id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/** 1-based line of `offset` in `text`. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}
