/**
 * PostgreSQL schemas made by this run are dropped once, after every test file has finished.
 * Dropping them while other suites run would race kysely's migrator, whose table
 * introspection reads every schema in the database (a schema vanishing mid-query fails it).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const PG_URL = process.env.AIRLOCK_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export default function setup(): () => Promise<void> {
  const run = randomBytes(4).toString('hex');
  // Inherited by the test workers, which name their schemas t_<run>_<random>.
  process.env.AIRLOCK_TEST_RUN = run;
  return async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      const { rows } = await client.query<{ nspname: string }>("select nspname from pg_namespace where nspname like $1", [`t\\_${run}\\_%`]);
      for (const { nspname } of rows) await client.query(`drop schema if exists "${nspname}" cascade`);
    } catch {
      // PostgreSQL unreachable: the suites that needed it have already failed loudly.
    } finally {
      await client.end().catch(() => undefined);
    }
  };
}
