/**
 * Questions to the person at the terminal. On a TTY the question goes to stderr and a hidden
 * answer (password, setup token, code) is read with echo off. When stdin is not a TTY (a script,
 * a test), answers are read as lines from stdin in the order asked, and no question is written.
 */
import { createInterface } from 'node:readline';
import type { Interface } from 'node:readline';
import { AirlockError } from '../errors/index.js';
import type { Io } from './io.js';

/** Reads answers for one invocation. Call {@link Prompter.close} when done. */
export interface Prompter {
  /** True when a person can be asked (stdin is a terminal). */
  readonly interactive: boolean;
  /** One visible line. `what` names the answer in the error when stdin ends first. */
  line(question: string, what: string): Promise<string>;
  /** One line typed with echo off on a terminal (a plain line from a pipe). */
  hidden(question: string, what: string): Promise<string>;
  /** Release stdin so the process can exit. */
  close(): void;
}

/** The part of a tty.ReadStream this module uses. */
interface TerminalInput extends NodeJS.ReadableStream {
  readonly isTTY?: boolean;
  setRawMode(mode: boolean): unknown;
}

/** True when stdin is a terminal. */
export function stdinIsTTY(io: Io): boolean {
  return (io.stdin as Partial<TerminalInput>).isTTY === true;
}

function inputEnded(what: string): AirlockError {
  return new AirlockError('VALIDATION_FAILED', `expected ${what} on stdin, but the input ended`, { issues: [{ path: 'stdin', message: `missing ${what}` }] });
}

/** A prompter for `io`: a terminal when stdin is one, otherwise stdin's lines in order. */
export function createPrompter(io: Io): Prompter {
  return stdinIsTTY(io) ? terminalPrompter(io) : pipePrompter(io);
}

function pipePrompter(io: Io): Prompter {
  let rl: Interface | undefined;
  let lines: AsyncIterator<string> | undefined;
  const next = async (what: string): Promise<string> => {
    // Created on first use: until then stdin is not read at all.
    if (lines === undefined) {
      rl = createInterface({ input: io.stdin, crlfDelay: Infinity, terminal: false });
      lines = rl[Symbol.asyncIterator]();
    }
    const r = await lines.next();
    if (r.done === true) throw inputEnded(what);
    return r.value.replace(/\r$/, '');
  };
  return {
    interactive: false,
    line: (_question, what) => next(what),
    hidden: (_question, what) => next(what),
    close: () => {
      rl?.close();
    },
  };
}

function terminalPrompter(io: Io): Prompter {
  const stdin = io.stdin as TerminalInput;
  return {
    interactive: true,
    line: async (question, what) => {
      const rl = createInterface({ input: stdin, output: io.stderr, terminal: true });
      try {
        return await new Promise<string>((done, fail) => {
          rl.once('close', () => {
            fail(inputEnded(what));
          });
          rl.question(question, done);
        });
      } finally {
        rl.close();
      }
    },
    hidden: (question, what) => readHidden(stdin, io.stderr, question, what),
    close: () => {
      stdin.pause();
    },
  };
}

/** Read one line in raw mode without echo. Ctrl-C restores the terminal and interrupts. */
function readHidden(stdin: TerminalInput, out: NodeJS.WritableStream, question: string, what: string): Promise<string> {
  // Echo goes off before the question appears, so an answer typed right away is never shown.
  stdin.setRawMode(true);
  out.write(question);
  return new Promise<string>((done, fail) => {
    let text = '';
    const finish = (err?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      out.write('\n');
      if (err === undefined) done(text);
      else fail(err);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          finish();
          return;
        }
        if (ch === '\u0003') {
          finish(new AirlockError('VALIDATION_FAILED', 'interrupted', {}));
          // Behave like any interrupted program (exit 130) once the terminal is restored.
          process.kill(process.pid, 'SIGINT');
          return;
        }
        if (ch === '\u0004') {
          if (text === '') {
            finish(inputEnded(what));
            return;
          }
          continue;
        }
        if (ch === '\u007f' || ch === '\b') {
          text = Array.from(text).slice(0, -1).join('');
          continue;
        }
        if (ch === '\u0015') {
          // Ctrl-U: erase the whole line, as a terminal in cooked mode would.
          text = '';
          continue;
        }
        if (ch >= ' ') text += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}
