/** The coded error a promise is refused with; fails the test if it resolves. */
import { AirlockError } from '../../src/errors/index.js';

export async function refusal(promise: Promise<unknown>, what = 'the call'): Promise<AirlockError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AirlockError) return err;
    throw err;
  }
  throw new Error(`expected ${what} to be refused, but it succeeded`);
}
