/** The bounded promise cache behind commit ranges and last config editors. */
import { describe, expect, it } from 'vitest';
import { boundedMemo } from '../../src/delivery/index.js';

describe('boundedMemo', () => {
  it('loads a key once, evicts the oldest past the limit, and forgets a failed load', async () => {
    const loads: string[] = [];
    let fail = true;
    const memo = boundedMemo(2, (key) => {
      loads.push(key);
      if (key === 'flaky' && fail) return Promise.reject(new Error('git failed'));
      return Promise.resolve(key.toUpperCase());
    });
    expect(await memo('a')).toBe('A');
    expect(await memo('a')).toBe('A');
    expect(loads).toEqual(['a']);
    await memo('b');
    await memo('c'); // evicts a
    await memo('a');
    expect(loads).toEqual(['a', 'b', 'c', 'a']);
    await expect(memo('flaky')).rejects.toThrow('git failed');
    fail = false;
    expect(await memo('flaky')).toBe('FLAKY');
    expect(loads.filter((k) => k === 'flaky')).toHaveLength(2);
  });
});
