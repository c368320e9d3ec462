/** The identity domain, assembled: people, sessions, SSO, machines, and request authentication. */
import type { CallContext, IdentityDeps } from './common.js';
import type { TokenService, VerifiedToken } from './jwt.js';
import type { OidcClient } from './oidc.js';
import type { Principal } from './principal.js';
import { Roles } from './roles.js';
import { API_AUDIENCE, ServiceAccounts } from './service-accounts.js';
import type { SessionSettings } from './sessions.js';
import { Sessions } from './sessions.js';
import { Sso } from './sso.js';
import { Users } from './users.js';
import { tokenKind } from './secret-tokens.js';
import { isAirlockError } from '../errors/index.js';

export interface IdentitySettings extends SessionSettings {
  /** Label shown in authenticator apps (the otpauth issuer). */
  readonly totpIssuer: string;
}

/** Result of authenticating one request's credential. */
export type Authentication = { readonly principal: Principal } | { readonly reason: string };

export class Identity {
  readonly roles: Roles;
  readonly users: Users;
  readonly sessions: Sessions;
  readonly serviceAccounts: ServiceAccounts;
  readonly sso: Sso | undefined;

  constructor(
    readonly deps: IdentityDeps,
    readonly tokens: TokenService,
    settings: IdentitySettings,
    oidc: (() => Promise<OidcClient>) | undefined,
  ) {
    this.roles = new Roles(deps);
    this.users = new Users(deps, this.roles, settings.totpIssuer);
    this.sessions = new Sessions(deps, settings);
    this.serviceAccounts = new ServiceAccounts(deps, this.roles, tokens);
    this.sso = oidc === undefined ? undefined : new Sso(deps, oidc, this.roles, this.sessions);
  }

  /**
   * Who presents `credential` (a session token or a JWT). Never throws for a bad credential:
   * the caller refuses with 401 and records the returned reason.
   */
  async authenticate(credential: string): Promise<Authentication> {
    switch (tokenKind(credential)) {
      case 'session':
        return this.sessions.authenticate(credential);
      case 'jwt':
        return this.authenticateJwt(credential);
      case 'api-key':
        // Keys are exchanged at /api/v1/auth/token, never sent on every request.
        return { reason: 'api_key_not_a_bearer_token' };
      default:
        return { reason: 'credential_malformed' };
    }
  }

  private async authenticateJwt(token: string): Promise<Authentication> {
    let v: VerifiedToken;
    try {
      v = await this.tokens.verify(token, { audience: API_AUDIENCE, kind: 'any' });
    } catch (err) {
      return { reason: isAirlockError(err) && typeof err.details.reason === 'string' ? `token_${err.details.reason}` : 'token_invalid' };
    }
    // Outside the try: a storage failure here is ours, not the token's.
    if (v.kind === 'service') return this.serviceAccounts.principalOf(v);
    const claims: Record<string, string> = { pipeline: v.pipeline, run_id: v.runId, step: v.step, commit: v.commit, trigger: v.trigger };
    if (v.environment !== undefined) claims.environment = v.environment;
    if (v.ref !== undefined) claims.ref = v.ref;
    if (v.stepId !== undefined) claims.step_id = v.stepId;
    return { principal: { kind: 'workload', id: v.subject, name: v.subject, roles: [], authMethod: 'workload-token', tokenId: v.jti, claims } };
  }
}

export type { CallContext };
