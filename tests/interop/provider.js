// A real, certified OpenID provider (the `oidc-provider` npm package, pinned in
// package.json) for `tests/interop.rs`. Test-only: never run this anywhere else.
//
//   node provider.js <redirect_uri>
//
// Listens on 127.0.0.1 on an ephemeral port, then prints one JSON line to
// stdout, e.g. {"issuer":"http://127.0.0.1:40123"}. Exits when stdin closes
// (the test process died) or after five minutes, so it never outlives a test.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const redirectUri = process.argv[2];
if (!redirectUri) {
  console.error('usage: node provider.js <redirect_uri>');
  process.exit(64);
}

// The one user, keyed by account id (= `sub`). The dev sign-in form takes the
// account id as its `login` and does not check the password. `sub` differs
// from `preferred_username` so the test can tell which one gatehouse forwards.
// Keep in step with the constants in tests/interop.rs.
const ACCOUNTS = {
  '248289761001': {
    sub: '248289761001',
    email: 'alice@interop.example',
    email_verified: true,
    name: 'Alice Interop',
    preferred_username: 'alice',
  },
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'gatehouse',
      client_secret: 's3cret',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    // A fresh RS256 signing key per run (no committed private key).
    jwks: {
      keys: [{
        ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
        kid: 'interop',
        use: 'sig',
        alg: 'RS256',
      }],
    },
    pkce: { methods: ['S256'], required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    // Put scope claims into the ID token even for the code flow (what most
    // deployed providers do): gatehouse reads identity from the ID token.
    conformIdTokenClaims: false,
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, claims: async () => account };
    },
    // The built-in HTML login and consent forms: plain GET/POST, no script,
    // so the Rust test can fill them in like a browser.
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['interop-test-only-cookie-key'] },
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(70), 5 * 60 * 1000).unref();
