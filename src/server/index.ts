/** HTTP server: a thin adapter from HTTP to the App. Everything other modules may use is here. */
export { BODY_LIMIT, buildServer, registeredRoutes, startServer } from './server.js';
export type { RegisteredRoute, RunningServer, ServerOptions, StartServerOptions } from './server.js';
export type { ErrorBody, HttpErrorCode } from './errors.js';
