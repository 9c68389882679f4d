// Benchmark-only OpenID provider: the tests' panva oidc-provider (rotating refresh tokens with
// reuse detection) plus two routes the refresher benchmark needs and no real provider has.
//
//   POST /bench/mint?count=N  -> {"refresh_tokens": [...]}: N grants, one refresh token each,
//                                made in-process (10,000 browser flows would take minutes)
//   GET  /bench/stats         -> {"refreshed": n, "grants": distinct grants refreshed,
//                                 "reused": refresh tokens presented twice}
//
// Usage: node bench/refresh_provider.mjs <port> <client_id> <client_secret>
// Prints "READY <issuer>" once listening; exits when stdin closes.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

const lib = '../tests/support/oidc_provider/node_modules/oidc-provider/lib';
const { default: Provider } = await import(`${lib}/index.js`);
const { default: MemoryAdapter } = await import(`${lib}/adapters/memory_adapter.js`);
const { default: LRU } = await import(`${lib}/helpers/lru.js`);

const [port, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const scope = 'openid offline_access';

// The default in-memory store keeps 1,000 entries (least recently used go): far too few for
// tens of thousands of grants, which would then vanish and fail as invalid_grant.
const store = new LRU({ maxSize: 10_000_000 });

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [`${issuer}/unused`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  scopes: ['openid', 'offline_access'],
  pkce: { required: () => true },
  rotateRefreshToken: () => true, // and 9.x destroys the grant when a used one comes back
  ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 14 * 24 * 3600, Grant: 14 * 24 * 3600 },
  features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
});

const refreshedGrants = new Set();
let refreshed = 0;
let reused = 0;
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params.grant_type !== 'refresh_token') return;
  refreshed += 1;
  refreshedGrants.add(ctx.oidc.entities.Grant.jti);
});
provider.on('grant.error', (ctx, err) => {
  if (String(err.error_detail ?? '').includes('already used')) reused += 1;
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/bench/stats') {
    ctx.body = { refreshed, grants: refreshedGrants.size, reused };
    return undefined;
  }
  if (ctx.path !== '/bench/mint' || ctx.method !== 'POST') return next();
  const count = Number(ctx.query.count);
  const client = await provider.Client.find(clientId);
  const tokens = [];
  for (let i = 0; i < count; i += 1) {
    const accountId = `bench-${randomBytes(8).toString('hex')}`;
    const grant = new provider.Grant({ accountId, clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const token = new provider.RefreshToken({
      accountId, client, grantId, scope, gty: 'authorization_code', expiresWithSession: false,
    });
    tokens.push(await token.save());
  }
  ctx.body = { refresh_tokens: tokens };
  return undefined;
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
