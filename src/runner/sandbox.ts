/**
 * How a step's shell is launched: a plain process, or under bubblewrap.
 *
 * Under bubblewrap the step sees an allowlisted, read-only system (/usr and the /bin, /lib
 * links, a few files from /etc), its own workspace read-write, fresh /proc, /dev and /tmp, and
 * nothing else: not $AIRLOCK_HOME, the artifact store, other workspaces, /root or /home. It
 * gets new pid, ipc, uts (and, unless the job asks for network, net) namespaces and no
 * capabilities, even when Airlock runs as root.
 */
import { constants } from 'node:fs';
import { access, lstat, readlink } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** What to spawn. `fdArgs`, when set, is written to fd 3 (bwrap `--args 3`). */
export interface Launch {
  readonly file: string;
  readonly args: readonly string[];
  /** The environment of the spawned process itself. */
  readonly env: Readonly<Record<string, string>>;
  readonly fdArgs: Buffer | null;
}

/** The absolute path of `bwrap` on PATH, or null. */
export async function findBwrap(pathEnv: string | undefined = process.env.PATH): Promise<string | null> {
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (!dir.startsWith('/')) continue; // a relative PATH entry would resolve against our cwd
    const candidate = join(dir, 'bwrap');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

// Enough of /etc for users, name resolution, TLS roots and the dynamic linker; notably not
// shadow, ssh keys, sudoers, package manager credentials or Airlock's own configuration.
const ETC_FILES = [
  'passwd',
  'group',
  'hosts',
  'resolv.conf',
  'nsswitch.conf',
  'host.conf',
  'gai.conf',
  'services',
  'protocols',
  'ssl',
  'ca-certificates',
  'ca-certificates.conf',
  'pki',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'alternatives',
  'localtime',
  'timezone',
  'os-release',
  'debian_version',
  'mime.types',
];

async function systemMounts(): Promise<string[]> {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    try {
      const st = await lstat(dir);
      // Merged-/usr systems have /bin -> usr/bin: recreate the link, do not bind its target twice.
      if (st.isSymbolicLink()) args.push('--symlink', await readlink(dir), dir);
      else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
    } catch {
      // absent on this system
    }
  }
  for (const name of ETC_FILES) args.push('--ro-bind-try', `/etc/${name}`, `/etc/${name}`);
  return args;
}

/**
 * Launch `/bin/sh -c command` in `workspace`. Under bubblewrap the options, including the
 * environment, go through a pipe (`--args 3`) rather than argv: argv is readable by every
 * local user in /proc, the environment may hold secrets, and bwrap itself must not start with
 * the step's environment (LD_PRELOAD would run code in bwrap before it drops privileges).
 */
export async function buildLaunch(opts: {
  readonly bwrap: string | null;
  readonly workspace: string;
  readonly env: Readonly<Record<string, string>>;
  readonly network: boolean;
  readonly argv: readonly string[];
}): Promise<Launch> {
  const [file, ...rest] = opts.argv;
  if (file === undefined) throw new TypeError('empty argv');
  if (opts.bwrap === null) return { file, args: rest, env: opts.env, fdArgs: null };
  const options = [
    ...(await systemMounts()),
    '--proc', '/proc',
    '--dev', '/dev',
    '--tmpfs', '/tmp',
    // After the /tmp tmpfs, so a workspace under /tmp stays visible.
    '--bind', opts.workspace, opts.workspace,
    // The root bwrap builds (where /etc's allowlisted files sit) is a tmpfs: freeze it too.
    '--remount-ro', '/',
    '--chdir', opts.workspace,
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--hostname', 'airlock-step',
    '--unshare-cgroup-try',
    ...(opts.network ? [] : ['--unshare-net']),
    '--die-with-parent',
    '--cap-drop', 'ALL',
    '--clearenv',
    ...Object.entries(opts.env).flatMap(([name, value]) => ['--setenv', name, value]),
  ];
  const fdArgs = Buffer.from(options.map((o) => `${o}\0`).join(''), 'utf8');
  return { file: opts.bwrap, args: ['--args', '3', '--', file, ...rest], env: {}, fdArgs };
}
