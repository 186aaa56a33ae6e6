// A real, certified OpenID provider (the `oidc-provider` npm package, pinned in
// package.json) for `tests/interop.rs`. Test-only: never run this anywhere else.
//
//   node provider.js <redirect_uri> <backchannel_logout_uri> <post_logout_redirect_uri>
//
// The one client (gatehouse) signs in at <redirect_uri>, is sent OpenID
// Connect Back-Channel Logout 1.0 logout tokens (with `sid`) at
// <backchannel_logout_uri>, and may return browsers to
// <post_logout_redirect_uri> after RP-initiated logout.
//
// Listens on 127.0.0.1 on an ephemeral port, then prints one JSON line to
// stdout, e.g. {"issuer":"http://127.0.0.1:40123"}. Exits when stdin closes
// (the test process died) or after five minutes, so it never outlives a test.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const [redirectUri, backchannelLogoutUri, postLogoutRedirectUri] = process.argv.slice(2);
if (!redirectUri || !backchannelLogoutUri || !postLogoutRedirectUri) {
  console.error('usage: node provider.js <redirect_uri> <backchannel_logout_uri> <post_logout_redirect_uri>');
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
      post_logout_redirect_uris: [postLogoutRedirectUri],
      backchannel_logout_uri: backchannelLogoutUri,
      // `sid` in the ID token and in every logout token
      backchannel_logout_session_required: true,
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
    features: {
      // The built-in HTML login and consent forms: plain GET/POST, no
      // script, so the Rust test can fill them in like a browser.
      devInteractions: { enabled: true },
      // Ending the session at the provider (its end_session_endpoint, after
      // the built-in confirm form) POSTs a logout token to gatehouse and
      // waits for the answer before redirecting the browser.
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    cookies: { keys: ['interop-test-only-cookie-key'] },
  });

  // on stderr, which the test prints when it fails
  provider.on('backchannel.success', (ctx, client, accountId, sid) => {
    console.error(`backchannel.success client=${client.clientId} sub=${accountId} sid=${sid}`);
  });
  provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
    const body = err.response ? ` body=${JSON.stringify(err.response.body)}` : '';
    console.error(`backchannel.error client=${client.clientId} sub=${accountId} sid=${sid}: ${err.message}${body}`);
  });
  for (const event of ['end_session.error', 'end_session_confirm.error']) {
    provider.on(event, (ctx, err) => {
      console.error(`${event}: ${err.message} ${err.error_description ?? ''}`);
    });
  }

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(70), 5 * 60 * 1000).unref();
