// Test-only OpenID provider (panva/oidc-provider 9.x) for the personal_connectors test suite.
//
// Usage: node server.mjs <config.json>   (config format: see tests/support/oidc.py)
// Prints exactly one line "READY <issuer>" on stdout once listening on 127.0.0.1.
// Exits on SIGTERM/SIGINT, and (with "exit_on_stdin_eof": true) when stdin closes, so a
// killed test run leaves no orphan.
// Never logs tokens: only event names, error codes and descriptions go to stderr.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

import { largeMemoryAdapter } from './store.mjs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const {
  port,
  issuer,
  clients = [],
  access_token_ttl: accessTokenTTL = 3600,
  refresh_token_ttl: refreshTokenTTL = 14 * 24 * 3600,
  features = {},
  auto_login: autoLogin = null,
  extra_scopes: extraScopes = [],
  resource_scopes: resourceScopes = ['mcp:tools'],
} = config;

const log = (...args) => process.stderr.write(`[oidc-provider] ${args.join(' ')}\n`);

// One fresh RSA key per run: ID tokens default to RS256 and we do not want the dev keystore.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

// Any login is an account; claims are derived from the login so tests can predict them.
async function findAccount(ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: `${sub}@example.test`,
        email_verified: true,
        name: sub.charAt(0).toUpperCase() + sub.slice(1),
      };
    },
  };
}

const provider = new Provider(issuer, {
  adapter: largeMemoryAdapter,
  clients: clients.map((client) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...client,
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount,
  scopes: ['openid', 'email', 'profile', 'offline_access', ...extraScopes],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  pkce: { required: () => true }, // 9.x only supports S256
  // Always rotate; 9.x itself destroys the grant when a consumed refresh token is replayed.
  rotateRefreshToken: () => true,
  clientBasedCORS: () => true,
  // Public clients only (`token_endpoint_auth_method: none`): what some MCP servers' providers
  // register through RFC 7591.
  ...(features.public_clients_only ? { clientAuthMethods: ['none'] } : {}),
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: 600,
    ClientCredentials: accessTokenTTL,
    IdToken: 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    DeviceCode: 600,
    RefreshToken: refreshTokenTTL,
    Grant: Math.max(refreshTokenTTL, 14 * 24 * 3600),
  },
  features: {
    devInteractions: { enabled: !autoLogin },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    pushedAuthorizationRequests: {
      enabled: Boolean(features.par || features.require_par),
      requirePushedAuthorizationRequests: Boolean(features.require_par),
    },
    deviceFlow: { enabled: Boolean(features.device_flow) },
    // Machine clients (grant_types ["client_credentials"]) mint tokens with no user.
    clientCredentials: { enabled: Boolean(features.client_credentials) },
    // RFC 7591: anyone may register a client (as MCP clients do at an MCP server's provider).
    ...(features.registration ? { registration: { enabled: true } } : {}),
    // RFC 8707: a token asked for a resource is a JWT whose audience is that resource (an MCP
    // server checks it is itself), with the resource server's own scope.
    ...(features.resource_indicators ? {
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: resourceScopes.join(' '),
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    } : {}),
  },
  ...(autoLogin ? { interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` } } : {}),
});

if (autoLogin) {
  // Finish every interaction by redirect alone: login as `autoLogin`, then consent to all
  // that the prompt reports missing (this includes offline_access when prompt=consent).
  provider.use(async (ctx, next) => {
    const match = ctx.method === 'GET' && ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!match) return next();
    const { prompt, params, session, grantId } = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    let merge = false;
    if (prompt.name === 'login') {
      result = { login: { accountId: autoLogin } };
    } else if (prompt.name === 'consent') {
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
      merge = true;
    } else {
      ctx.throw(501, `auto_login cannot handle prompt ${prompt.name}`);
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: merge,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });
}

// Every secret this provider hands out or is shown (codes, PKCE verifiers, access, refresh and
// ID tokens, device codes), one JSON array a line, into the file the tests name: they then look
// for each in the output of every process they started (tests/support/outputs.py).
if (config.issued_file) {
  const SECRET_PARAMS = ['code', 'code_verifier', 'refresh_token', 'device_code', 'token', 'client_secret'];
  const SECRET_ANSWERS = ['access_token', 'refresh_token', 'id_token', 'device_code', 'client_secret'];
  provider.use(async (ctx, next) => {
    await next();
    const seen = [];
    const params = ctx.oidc?.params ?? {};
    for (const name of SECRET_PARAMS) if (typeof params[name] === 'string') seen.push([name, params[name]]);
    const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body) ? ctx.body : {};
    for (const name of SECRET_ANSWERS) if (typeof body[name] === 'string') seen.push([name, body[name]]);
    const location = ctx.response.get('location');
    if (location && location.includes('code=')) {
      const code = new URL(location, issuer).searchParams.get('code');
      if (code) seen.push(['code', code]);
    }
    if (seen.length) appendFileSync(config.issued_file, `${JSON.stringify(seen)}\n`);
  });
}
// Every refresh_token grant, one JSON object a line, into the file the tests name: the SHA-256 of
// the refresh token presented (never the token) and the answer's status and error, so a test
// can see whether any refresh token was ever presented twice (tests/deploy/).
if (config.refresh_log_file) {
  provider.use(async (ctx, next) => {
    await next();
    const params = ctx.oidc?.params ?? {};
    if (ctx.oidc?.route !== 'token' || params.grant_type !== 'refresh_token') return;
    const presented = typeof params.refresh_token === 'string' ? params.refresh_token : '';
    const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body) ? ctx.body : {};
    appendFileSync(config.refresh_log_file, `${JSON.stringify({
      presented_sha256: createHash('sha256').update(presented).digest('hex'),
      status: ctx.status,
      error: body.error ?? null,
    })}\n`);
  });
}
// A browser holding the cookie `pc_test_coop` (set by a test for this provider's origin) gets
// every page with `Cross-Origin-Opener-Policy: <its value>`, as Django-based providers send.
provider.use(async (ctx, next) => {
  await next();
  const coop = ctx.cookies.get('pc_test_coop');
  if (coop === 'same-origin' || coop === 'same-origin-allow-popups') {
    ctx.set('Cross-Origin-Opener-Policy', coop);
  }
});

// GET /test/grants: how many token requests succeeded, per grant_type, so a test can count
// what the provider itself issued (e.g. exactly one client_credentials token for ten callers).
const grantsIssued = {};
provider.on('grant.success', (ctx) => {
  const grantType = ctx.oidc.params.grant_type;
  grantsIssued[grantType] = (grantsIssued[grantType] ?? 0) + 1;
});
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || ctx.path !== '/test/grants') return next();
  ctx.body = grantsIssued;
});
// GET /test/registrations: the clients registered dynamically (RFC 7591), oldest first.
const registered = [];
provider.on('registration_create.success', (ctx, client) => {
  registered.push({
    client_id: client.clientId,
    redirect_uris: client.redirectUris,
    token_endpoint_auth_method: client.clientAuthMethod,
  });
});
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || ctx.path !== '/test/registrations') return next();
  ctx.body = registered;
});

// Error codes and descriptions only (they never contain token values).
for (const event of ['grant.error', 'registration_create.error', 'authorization.error', 'revocation.error', 'userinfo.error',
  'introspection.error', 'pushed_authorization_request.error', 'device_authorization.error']) {
  provider.on(event, (ctx, err) => log(event, err.error ?? err.name, JSON.stringify(err.error_detail ?? err.error_description ?? '')));
}
provider.on('server_error', (ctx, err) => log('server_error', err.stack));

// Static clients are validated lazily; fail at start-up instead of at the first request.
try {
  for (const { client_id: clientId } of clients) await provider.Client.find(clientId);
} catch (err) {
  log('invalid client metadata:', err.error ?? err.name, JSON.stringify(err.error_description ?? err.message));
  process.exit(1);
}

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => {
  log('listen failed:', err.code ?? '', err.message);
  process.exit(1);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (config.exit_on_stdin_eof) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
