import { describe, expect, it } from 'vitest';
import { isDriverError, toStorageError } from '../../src/storage/index.js';

const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('driver errors become coded errors without driver text', () => {
  it.each([
    [withCode('SQLITE_FULL', 'database or disk is full'), 'STORAGE_FAILED', /SQLITE_FULL.*disk is full/],
    [withCode('SQLITE_READONLY', 'attempt to write a readonly database'), 'STORAGE_FAILED', /read-only/],
    [withCode('57P01', 'terminating connection due to administrator command'), 'STORAGE_UNAVAILABLE', /57P01/],
    [withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'), 'STORAGE_UNAVAILABLE', /unreachable/],
    [new Error('Client has encountered a connection error and is not queryable'), 'STORAGE_UNAVAILABLE', /connection lost/],
    [new Error('Connection terminated unexpectedly'), 'STORAGE_UNAVAILABLE', /connection lost/],
    [withCode('23505', 'duplicate key value violates unique constraint "k" Key (value)=(hunter2)'), 'CONFLICT', /23505/],
  ])('%s', (err, code, message) => {
    expect(isDriverError(err)).toBe(true);
    const mapped = toStorageError(err, 'database write');
    expect(mapped.code).toBe(code);
    expect(mapped.message).toMatch(message);
    // The driver's own text can quote row values; it must never reach the message.
    expect(mapped.message).not.toContain(err.message);
  });

  it('leaves programming errors alone', () => {
    expect(isDriverError(new TypeError('x is not a function'))).toBe(false);
    expect(isDriverError('a string')).toBe(false);
  });
});
