/** Projects: a name bound to a git repository that holds its airlock.yaml. */
import { ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
import type { RunsDeps } from './deps.js';
import { actorRecord, iso, newId } from './deps.js';
import type { Actor, RunContext } from './deps.js';

export interface ProjectInfo {
  readonly id: string;
  readonly name: string;
  readonly repo: string;
  readonly createdAt: string;
  readonly createdBy: string;
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export class Projects {
  constructor(private readonly deps: RunsDeps) {}

  /** Register a repository. It is cloned once now, so a typo fails here rather than at the first run. */
  async add(actor: Actor, input: { name: string; repo: string }, context?: RunContext): Promise<ProjectInfo> {
    if (!NAME.test(input.name)) throw new ValidationError('name must be 1-63 characters: a lower-case letter, then lower-case letters, digits or "-"', [{ path: 'name', message: 'must match ^[a-z][a-z0-9-]{0,62}$' }]);
    const repo = input.repo.trim();
    if (repo === '' || repo.startsWith('-') || repo.length > 1000) throw new ValidationError('repo must be a local path or a git URL', [{ path: 'repo', message: 'invalid' }]);
    const id = newId();
    await this.deps.git.sync(id, repo);
    return this.deps.store.transact(async (tx) => {
      const taken = await tx.db.selectFrom('projects').select('id').where('name', '=', input.name).executeTakeFirst();
      if (taken !== undefined) throw new ConflictError(`project ${input.name} already exists`, { name: input.name });
      const now = iso(this.deps.clock());
      await tx.db.insertInto('projects').values({ id, name: input.name, repo, created_at: now, created_by: actor.id }).execute();
      await actorRecord(this.deps, tx, { actor, action: 'projects.create', resource: `projects/${input.name}`, context, details: { repo } });
      return { id, name: input.name, repo, createdAt: now, createdBy: actor.id };
    });
  }

  async list(): Promise<ProjectInfo[]> {
    const rows = await this.deps.store.db.selectFrom('projects').selectAll().orderBy('name').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, repo: r.repo, createdAt: r.created_at, createdBy: r.created_by }));
  }

  async get(name: string): Promise<ProjectInfo> {
    const found = (await this.list()).find((p) => p.name === name);
    if (found === undefined) throw new NotFoundError(`no project named ${name} (see airlock project list)`, { name });
    return found;
  }
}
