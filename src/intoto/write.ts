/** Writing an export to a directory: plain files, 0644, never over someone else's files by default. */
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, ValidationError } from '../errors/index.js';
import type { ExportFile } from './export.js';

// A name from the server becomes a path here: no separators, no `..`, no hidden files.
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

/**
 * Write `files` into `dir` (created when missing). A non-empty `dir` is refused unless
 * `overwrite`, which replaces same-named files (unlinked first, so a planted symlink is not
 * followed) and leaves others alone. Returns the written paths.
 */
export async function writeExport(dir: string, files: readonly ExportFile[], opts: { overwrite?: boolean } = {}): Promise<string[]> {
  const names = new Set<string>();
  for (const f of files) {
    if (!SAFE_NAME.test(f.name) || f.name.includes('..')) throw new ValidationError(`export file name ${JSON.stringify(f.name.slice(0, 80))} is not a plain file name`, [{ path: 'files.name', message: 'not a plain file name' }]);
    if (names.has(f.name)) throw new ValidationError(`export file ${f.name} appears twice`, [{ path: 'files.name', message: 'duplicate' }]);
    names.add(f.name);
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const existing = await readdir(dir);
  if (existing.length > 0 && opts.overwrite !== true) throw new ConflictError(`${dir} is not empty; choose an empty directory or pass --force to replace the export's files`, { dir });
  const written: string[] = [];
  for (const f of files) {
    const path = join(dir, f.name);
    if (opts.overwrite === true) await rm(path, { force: true });
    await writeFile(path, f.content, { mode: 0o644, flag: 'wx' });
    await chmod(path, 0o644); // the umask may have taken bits away
    written.push(path);
  }
  return written;
}
