/**
 * A bounded cache of promises for facts that never change once known (the commits in a range of
 * commit ids, who last edited a file at a commit). The oldest entry goes first; a failed load is
 * not kept, so the next call asks again instead of repeating a transient error.
 */
export function boundedMemo<T>(limit: number, load: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const entries = new Map<string, Promise<T>>();
  return (key) => {
    let found = entries.get(key);
    if (found === undefined) {
      if (entries.size >= limit) entries.delete(entries.keys().next().value ?? '');
      const loading = load(key);
      // Only this load's own entry: a newer one for the key (after an eviction) stays.
      loading.catch(() => {
        if (entries.get(key) === loading) entries.delete(key);
      });
      entries.set(key, loading);
      found = loading;
    }
    return found;
  };
}
