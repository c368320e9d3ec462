/**
 * Who is calling, as the enforcement point sees it after authentication. Built per request
 * from a session, a service token or a workload token; never from anything the client asserts.
 */
import type { AuditEventInput } from '../audit/index.js';

export type AuthMethod = 'anonymous' | 'session' | 'service-token' | 'workload-token';

interface Base {
  readonly id: string;
  /** Username, service account name or workload subject: the audit actor id. */
  readonly name: string;
  readonly roles: readonly string[];
  readonly authMethod: AuthMethod;
}

export interface AnonymousPrincipal extends Base {
  readonly kind: 'anonymous';
}

export interface UserPrincipal extends Base {
  readonly kind: 'user';
  readonly sessionId: string;
  /** Time of the last MFA proof in this session (login with TOTP, step-up, or a trusted IdP amr). */
  readonly mfaAt: Date | undefined;
  /** password or sso: how the session was opened. */
  readonly loginMethod: string;
}

export interface ServicePrincipal extends Base {
  readonly kind: 'service';
  readonly apiKeyId: string;
  readonly tokenId: string;
}

export interface WorkloadPrincipal extends Base {
  readonly kind: 'workload';
  readonly tokenId: string;
  readonly claims: Readonly<Record<string, string>>;
}

export type Principal = AnonymousPrincipal | UserPrincipal | ServicePrincipal | WorkloadPrincipal;

export const ANONYMOUS: AnonymousPrincipal = Object.freeze({ kind: 'anonymous', id: 'anonymous', name: 'anonymous', roles: [], authMethod: 'anonymous' });

/** The audit actor for a principal. */
export function actorOf(p: Principal): AuditEventInput['actor'] {
  switch (p.kind) {
    case 'anonymous':
      return { kind: 'anonymous', id: 'anonymous' };
    case 'user':
      return { kind: 'user', id: p.name };
    case 'service':
      return { kind: 'service', id: p.name };
    case 'workload':
      return { kind: 'workload', id: p.name };
  }
}

/** Seconds since the principal's last MFA proof; 2^31-1 when it has none (Cedar Long). */
export function mfaAgeSeconds(p: Principal, now: Date): number {
  if (p.kind !== 'user' || p.mfaAt === undefined) return 2147483647;
  return Math.max(0, Math.floor((now.getTime() - p.mfaAt.getTime()) / 1000));
}
