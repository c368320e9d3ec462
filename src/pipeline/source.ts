/**
 * Reading the file: bytes to text, text to a yaml Document with source positions, and a
 * collector that turns a node (or an offset) into `file:line:col`.
 */
import { createHash } from 'node:crypto';
import { LineCounter, isCollection, isScalar, parseDocument, visit } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import { MAX_FILE_BYTES } from './rules.js';
import type { PipelineProblem } from './types.js';

/** A decoded file and its parsed document (`doc` is undefined when the YAML itself is broken). */
export interface Source {
  readonly file: string;
  /** The text as parsed (a leading byte order mark removed, so columns match an editor's). */
  readonly text: string;
  readonly digest: string;
  readonly lines: LineCounter;
  readonly doc: Document.Parsed | undefined;
}

/** Collects problems; positions come from the LineCounter built while parsing. */
export class Problems {
  readonly list: PipelineProblem[] = [];

  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  /** A problem at a source offset. */
  atOffset(offset: number, path: string, code: string, message: string, hint: string): void {
    const { line, col } = this.lines.linePos(offset);
    this.list.push({ file: this.file, line, col, path, code, message, hint });
  }

  /** A problem at a node (its first character), or at `fallback` when the node has no position. */
  at(node: YamlNode | null | undefined, path: string, code: string, message: string, hint: string, fallback = 0): void {
    this.atOffset(nodeOffset(node) ?? fallback, path, code, message, hint);
  }

  /** The 1-based line a node starts on. */
  lineOf(node: YamlNode | null | undefined): number {
    return this.lines.linePos(nodeOffset(node) ?? 0).line;
  }

  /** Append a finished problem (the credential scanner computes its own positions). */
  push(problem: PipelineProblem): void {
    this.list.push(problem);
  }
}

/** Where a node starts, if it has a source range. */
export function nodeOffset(node: YamlNode | null | undefined): number | undefined {
  return node?.range?.[0];
}

/** Problems in file order (then by code, so the order is stable). */
export function sortProblems(problems: readonly PipelineProblem[]): PipelineProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.col - b.col || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0));
}

const YAML_HINTS: Readonly<Record<string, string>> = {
  TAB_AS_INDENT: 'indent with spaces, not tabs',
  BAD_INDENT: 'check the indentation: a nested key needs more spaces than its parent, and siblings the same number',
  MULTIPLE_DOCS: 'keep one document in the file: remove the `---` separator and what follows it',
  MISSING_CHAR: 'close the quote, bracket or brace that was opened before this point',
  BLOCK_AS_IMPLICIT_KEY: 'a key must fit on one line; quote values that contain ": "',
  MULTILINE_IMPLICIT_KEY: 'a key must fit on one line; quote values that contain ": "',
  BAD_SCALAR_START: 'quote the value: plain values cannot start with this character',
  UNEXPECTED_TOKEN: 'quote values that contain ": ", " #", or start with a special character (@ ` | > * & ! % { [)',
  DUPLICATE_KEY: 'remove or rename one of the two keys',
};

/** Core YAML 1.2 tags; any other tag (`!!binary`, `!custom`) would make the file mean something a reviewer cannot see. */
export const CORE_TAGS: ReadonlySet<string> = new Set(['tag:yaml.org,2002:str', 'tag:yaml.org,2002:int', 'tag:yaml.org,2002:float', 'tag:yaml.org,2002:bool', 'tag:yaml.org,2002:null', 'tag:yaml.org,2002:map', 'tag:yaml.org,2002:seq']);

/**
 * Decode and parse. Problems found here: the file is too large or not UTF-8, YAML syntax errors
 * (then `doc` is undefined: a partly recovered tree would only produce misleading follow-ups),
 * aliases and non-core tags.
 */
export function readSource(input: string | Buffer, file: string): { source: Source; problems: Problems } {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  let text: string;
  let decodeFailed = false;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      text = new TextDecoder('utf-8').decode(input);
      decodeFailed = true;
    }
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = new LineCounter();
  const found = new Problems(file, lines);
  if (bytes.length > MAX_FILE_BYTES) {
    lines.addNewLine(0);
    found.atOffset(0, '', 'too_large', `the file is ${bytes.length} bytes; the limit is ${MAX_FILE_BYTES}`, 'a pipeline file describes stages and steps; move scripts into the repository and call them from `run`');
    return { source: { file, text, digest, lines, doc: undefined }, problems: found };
  }
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false, strict: true, merge: false });
  if (decodeFailed) {
    const at = text.indexOf('\uFFFD');
    found.atOffset(Math.max(at, 0), '', 'encoding', 'the file is not valid UTF-8', 'save the file as UTF-8');
  }
  if (doc.errors.length > 0) {
    for (const err of doc.errors) {
      const message = err.message.replace(/ at line \d+, column \d+[\s\S]*$/, '');
      found.atOffset(err.pos[0], '', 'yaml_syntax', message, YAML_HINTS[err.code] ?? 'fix the YAML syntax at this position');
    }
    return { source: { file, text, digest, lines, doc: undefined }, problems: found };
  }
  visit(doc, {
    Alias(_key, node) {
      found.at(node, '', 'alias_not_allowed', `YAML aliases (*${node.source}) are not allowed`, 'write the value out in full: what a reviewer reads must be what runs');
    },
    Node(_key, node) {
      if ((isScalar(node) || isCollection(node)) && node.tag !== undefined && !CORE_TAGS.has(node.tag)) {
        found.at(node, '', 'tag_not_allowed', `the YAML tag ${node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed`, 'remove the tag; only plain strings, numbers, booleans, lists and maps are used');
      }
    },
  });
  return { source: { file, text, digest, lines, doc }, problems: found };
}
