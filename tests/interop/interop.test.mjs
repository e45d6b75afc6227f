// Interop suite: tokens issued by TokenBroker must verify with public, unmodified npm libraries, the way a
// cloud verifier (AWS STS, GCP WIF, a service's own middleware) would:
//   - openid-client (v6) discovery against the broker's issuer,
//   - jose createRemoteJWKSet + jwtVerify on the issued tokens.
//
// The broker is started once with `dotnet <tokenbroker.dll> demo --serve`, which runs the broker on its embedded
// default (in-memory state, generated ES256 key, sample rules) plus a fake GitHub/GitLab OIDC issuer on loopback and
// prints one JSON line describing the endpoints. The dll is taken from TOKENBROKER_DLL, or else from the Release
// build output relative to this file; DOTNET overrides the `dotnet` host. Build first:
// `dotnet build src/TokenBroker -c Release`. The broker is killed in the `after` hook (SIGTERM, then SIGKILL).
//
// Run: cd tests/interop && npm ci --no-audit --no-fund && node --test --test-reporter=spec

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import * as oidc from 'openid-client';
import * as core from '@actions/core';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as jose from 'jose';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// TOKENBROKER_DLL (absolute, or relative to the current directory); default: the Release build, relative to this file.
const DLL = process.env.TOKENBROKER_DLL
  ? path.resolve(process.env.TOKENBROKER_DLL)
  : path.resolve(HERE, '../../src/TokenBroker/bin/Release/net10.0/tokenbroker.dll');
const DOTNET = process.env.DOTNET || 'dotnet';

const STARTUP_TIMEOUT_MS = 60_000;
const HTTP_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 30_000;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const PAYMENTS_AUD = 'https://deploy.internal/payments';
const IAC_AUD = 'https://iac.internal/state';
const AWS_TAGS = 'https://aws.amazon.com/tags';

// ---------------------------------------------------------------------------------------------------------------
// Broker process management
// ---------------------------------------------------------------------------------------------------------------

/** @type {import('node:child_process').ChildProcess | undefined} */
let child;
let childStderr = '';
let childStdout = '';

function killChildSync() {
  if (child && child.exitCode === null && child.signalCode === null) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
// Belt and braces: whatever happens to the runner, never leave the broker behind.
process.once('exit', killChildSync);

function startBroker() {
  return new Promise((resolve, reject) => {
    if (!existsSync(DLL)) {
      reject(
        new Error(
          `tokenbroker.dll not found at ${DLL}. Build it first (dotnet build src/TokenBroker -c Release) ` +
            'or point TOKENBROKER_DLL at it.',
        ),
      );
      return;
    }

    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(value);
    };
    const describeChild = () =>
      `\n--- broker stdout ---\n${childStdout || '(empty)'}\n--- broker stderr ---\n${childStderr || '(empty)'}`;

    child = spawn(DOTNET, [DLL, 'demo', '--serve'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
    });

    const timer = setTimeout(() => {
      finish(
        new Error(
          `broker did not print its JSON line within ${STARTUP_TIMEOUT_MS / 1000} s (${DOTNET} ${DLL} demo --serve)` +
            describeChild(),
        ),
      );
    }, STARTUP_TIMEOUT_MS);

    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      // Keep the tail only: enough to diagnose, bounded in memory.
      childStderr = (childStderr + chunk).slice(-64_000);
    });

    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      childStdout = (childStdout + line + '\n').slice(-64_000);
      if (settled) return;
      const trimmed = line.trim();
      if (!trimmed.startsWith('{')) return;
      let info;
      try {
        info = JSON.parse(trimmed);
      } catch {
        return;
      }
      if (typeof info?.broker !== 'string') return;
      finish(null, info);
    });

    child.once('error', (err) => {
      finish(new Error(`could not start ${DOTNET} ${DLL}: ${err.message}` + describeChild()));
    });
    child.once('exit', (code, signal) => {
      finish(
        new Error(
          `broker exited (code ${code}, signal ${signal}) before printing its JSON line` + describeChild(),
        ),
      );
    });
  });
}

async function stopBroker() {
  if (!child) return;
  const proc = child;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  let timer;
  const graceful = await Promise.race([
    exited.then(() => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), 5_000);
    }),
  ]);
  clearTimeout(timer);
  if (!graceful) {
    proc.kill('SIGKILL');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
  }
  proc.stdout?.destroy();
  proc.stderr?.destroy();
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/** @type {{broker: string, github_issuer: string, gitlab_issuer: string, actions_id_token_request_url: string, actions_id_token_request_token: string, audience: string}} */
let demo;
/** @type {oidc.Configuration} */
let oidcConfig;
/** @type {oidc.ServerMetadata} */
let metadata;
/** @type {ReturnType<typeof jose.createRemoteJWKSet>} */
let jwks;

function timedFetch(url, init = {}) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
}

/** Gets a CI job token from the fake issuer, the way the GitHub runner does (ACTIONS_ID_TOKEN_REQUEST_URL). */
async function jobToken(provider, fixture) {
  const base = provider === 'gitlab' ? `${demo.gitlab_issuer}/_apis/token` : demo.actions_id_token_request_url;
  const url = new URL(base);
  url.searchParams.set('audience', demo.audience);
  if (fixture) url.searchParams.set('fixture', fixture);
  const res = await timedFetch(url, {
    headers: { authorization: `Bearer ${demo.actions_id_token_request_token}` },
  });
  const text = await res.text();
  assert.equal(res.status, 200, `job token request for ${provider}/${fixture ?? 'default'} failed: ${text}`);
  const body = JSON.parse(text);
  assert.equal(typeof body.value, 'string', `job token response has no value: ${text}`);
  return body.value;
}

/** RFC 8693 exchange against the token endpoint found by discovery. Returns status, headers and parsed body. */
async function exchange(subjectToken, audience, extra = {}) {
  const form = new URLSearchParams({
    grant_type: TOKEN_EXCHANGE,
    subject_token: subjectToken,
    subject_token_type: ID_TOKEN_TYPE,
    audience,
    ...extra,
  });
  const res = await timedFetch(metadata.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form,
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`token endpoint answered ${res.status} with non-JSON body: ${text}`);
  }
  return { status: res.status, headers: res.headers, body, text };
}

async function exchangeOk(subjectToken, audience, extra) {
  const r = await exchange(subjectToken, audience, extra);
  assert.equal(r.status, 200, `exchange for ${audience} failed: ${r.text}`);
  assert.equal(typeof r.body.access_token, 'string');
  return r;
}

function b64urlJson(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

function b64urlEncodeJson(value) {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

async function fetchJwks() {
  const res = await timedFetch(metadata.jwks_uri, { headers: { accept: 'application/json' } });
  assert.equal(res.status, 200, `JWKS fetch failed: ${res.status}`);
  return res.json();
}

/** Asserts a jose verification promise rejects with the given jose error class (and optional claim). */
async function assertJoseRejects(promise, ErrorClass, claim) {
  await assert.rejects(promise, (err) => {
    assert.ok(
      err instanceof ErrorClass,
      `expected ${ErrorClass.name} (${ErrorClass.code}), got ${err?.constructor?.name}: ${err?.code} ${err?.message}`,
    );
    assert.equal(err.code, ErrorClass.code);
    if (claim !== undefined) assert.equal(err.claim, claim, `expected failure on claim ${claim}, got ${err.claim}`);
    return true;
  });
}

function assertIssuedTimes(payload, expectedTtl, expiresIn) {
  const now = Math.floor(Date.now() / 1000);
  for (const c of ['iat', 'nbf', 'exp']) {
    assert.ok(Number.isInteger(payload[c]), `${c} must be an integer NumericDate, got ${payload[c]}`);
  }
  assert.equal(payload.exp - payload.iat, expectedTtl, 'exp - iat must equal the rule ttl');
  assert.equal(expiresIn, expectedTtl, 'expires_in must equal the rule ttl');
  assert.ok(payload.nbf <= payload.iat, 'nbf must not be after iat');
  assert.ok(Math.abs(payload.iat - now) <= 60, `iat ${payload.iat} is not close to now ${now}`);
  assert.equal(typeof payload.jti, 'string');
  assert.ok(payload.jti.length >= 16, 'jti should carry enough entropy');
}

// ---------------------------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------------------------

// A failure to start the broker is recorded here and re-thrown by every case, so that the runner counts each case as
// failed ("fail 9") instead of merely cancelled, which a summary-counting CI script could mistake for success.
let setupError;
let setupErrorReported = false;

function requireSetup() {
  if (setupError) {
    // The full diagnostic (with the broker's stdout/stderr) once, a one-line reference in the other cases.
    if (setupErrorReported) {
      throw new Error(`broker setup failed: ${String(setupError.message).split('\n')[0]} (details in the first failed case)`);
    }
    setupErrorReported = true;
    throw new Error(`broker setup failed: ${setupError.message}`, { cause: setupError });
  }
  assert.ok(demo && metadata && jwks, 'broker setup did not complete');
}

/** A case: fails (not cancelled) when setup failed, and has its own timeout so the runner never hangs. */
function testCase(name, fn) {
  test(name, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    requireSetup();
    await fn(t);
  });
}

describe('TokenBroker interop (openid-client + jose)', { timeout: 360_000 }, () => {
  before(
    async () => {
      try {
        demo = await startBroker();
        for (const k of ['broker', 'github_issuer', 'gitlab_issuer', 'actions_id_token_request_url', 'actions_id_token_request_token', 'audience']) {
          assert.equal(typeof demo[k], 'string', `demo JSON line lacks ${k}: ${JSON.stringify(demo)}`);
        }
        // The discovery a relying party does once, shared by all cases; case 1 asserts on it.
        oidcConfig = await oidc.discovery(new URL(demo.broker), 'tokenbroker-interop', undefined, undefined, {
          execute: [oidc.allowInsecureRequests],
          timeout: HTTP_TIMEOUT_MS / 1000,
        });
        metadata = oidcConfig.serverMetadata();
        jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri), { timeoutDuration: HTTP_TIMEOUT_MS });
      } catch (err) {
        setupError = err;
      }
    },
    { timeout: STARTUP_TIMEOUT_MS + 2 * HTTP_TIMEOUT_MS + 10_000 },
  );

  after(
    async () => {
      await stopBroker();
    },
    { timeout: 30_000 },
  );

  testCase('1. openid-client discovery: issuer byte-identical, endpoints as expected', async () => {
    assert.equal(metadata.issuer, demo.broker, 'discovered issuer must be byte-identical to the broker URL');
    assert.equal(metadata.token_endpoint, `${demo.broker}/token`);
    assert.equal(typeof metadata.jwks_uri, 'string');
    const jwksUri = new URL(metadata.jwks_uri);
    assert.equal(jwksUri.origin, new URL(demo.broker).origin, 'jwks_uri must be served by the broker');
    assert.ok(Array.isArray(metadata.grant_types_supported), 'grant_types_supported must be an array');
    assert.ok(
      metadata.grant_types_supported.includes(TOKEN_EXCHANGE),
      `grant_types_supported lacks token-exchange: ${JSON.stringify(metadata.grant_types_supported)}`,
    );
    if (metadata.id_token_signing_alg_values_supported !== undefined) {
      assert.ok(metadata.id_token_signing_alg_values_supported.includes('ES256'));
    }

    // The RFC 8414 document must agree (some verifiers use it instead of the OIDC one).
    const oauth2 = await oidc.discovery(new URL(demo.broker), 'tokenbroker-interop', undefined, undefined, {
      execute: [oidc.allowInsecureRequests],
      algorithm: 'oauth2',
      timeout: HTTP_TIMEOUT_MS / 1000,
    });
    const m2 = oauth2.serverMetadata();
    assert.equal(m2.issuer, demo.broker);
    assert.equal(m2.token_endpoint, metadata.token_endpoint);
    assert.equal(m2.jwks_uri, metadata.jwks_uri);

    // The JWKS is usable: public EC P-256 signing keys only, each with a kid, no private parts.
    const set = await fetchJwks();
    assert.ok(Array.isArray(set.keys) && set.keys.length >= 1, 'JWKS must hold at least one key');
    for (const k of set.keys) {
      assert.equal(k.kty, 'EC');
      assert.equal(k.crv, 'P-256');
      assert.equal(typeof k.kid, 'string');
      assert.ok(k.kid.length > 0);
      assert.equal(k.d, undefined, 'JWKS must not expose private key material');
      if (k.use !== undefined) assert.equal(k.use, 'sig');
      if (k.alg !== undefined) assert.equal(k.alg, 'ES256');
      await jose.importJWK(k, 'ES256'); // must be importable by jose
    }
  });

  testCase('2. GitHub exchange: jose verifies the at+jwt via the remote JWKS', async () => {
    const subject = await jobToken('github', 'push_main_production');
    const r = await exchangeOk(subject, PAYMENTS_AUD);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.body.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(r.body.token_type, 'Bearer');
    assert.equal(r.body.scope, 'deploy:payments');

    const { payload, protectedHeader } = await jose.jwtVerify(r.body.access_token, jwks, {
      issuer: metadata.issuer,
      audience: PAYMENTS_AUD,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope'],
    });

    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.equal(typeof protectedHeader.kid, 'string');
    const set = await fetchJwks();
    assert.ok(
      set.keys.some((k) => k.kid === protectedHeader.kid),
      `kid ${protectedHeader.kid} not in JWKS ${JSON.stringify(set.keys.map((k) => k.kid))}`,
    );

    assert.equal(payload.iss, demo.broker);
    // Only the requested audience, not every audience the rule could grant (sts.amazonaws.com).
    assert.ok(
      payload.aud === PAYMENTS_AUD || (Array.isArray(payload.aud) && payload.aud.length === 1 && payload.aud[0] === PAYMENTS_AUD),
      `aud must be exactly ${PAYMENTS_AUD}, got ${JSON.stringify(payload.aud)}`,
    );
    assert.equal(payload.sub, 'github:octo-org/payments:production');
    assert.equal(payload.rule, 'payments-deploy-prod');
    assert.equal(payload.repo, 'octo-org/payments');
    assert.equal(payload.repo_id, '900101');
    assert.equal(payload.ref, 'refs/heads/main');
    assert.equal(payload.branch, 'main');
    assert.equal(payload.environment, 'production');
    assert.equal(payload.run_id, '7000123456');
    assert.equal(payload.stage, 'deploy');
    assert.equal(payload.provider, 'github');
    assert.equal(payload.scope, 'deploy:payments');
    assert.equal(payload.client_id, 'github:octo-org/payments');
    assertIssuedTimes(payload, 600, r.body.expires_in);

    // AWS session tags claim shape (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html).
    assert.deepEqual(payload[AWS_TAGS], {
      principal_tags: { repo: ['octo-org/payments'], environment: ['production'] },
      transitive_tag_keys: ['repo', 'environment'],
    });

    // The upstream job token's own claims must not leak through wholesale.
    for (const leaked of ['actor', 'repository_owner_id', 'workflow_sha', 'job_workflow_sha']) {
      assert.equal(payload[leaked], undefined, `issued token must not carry upstream claim ${leaked}`);
    }
    assert.notEqual(payload.jti, b64urlJson(subject.split('.')[1]).jti, 'jti must be fresh, not copied from the job token');
  });

  testCase('3. requested_token_type=jwt: typ JWT, token_type N_A, verified by jose with typ JWT', async () => {
    const subject = await jobToken('github', 'push_main_production');
    const r = await exchangeOk(subject, PAYMENTS_AUD, { requested_token_type: JWT_TOKEN_TYPE });
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.body.issued_token_type, JWT_TOKEN_TYPE);
    assert.equal(r.body.token_type, 'N_A');

    const { payload, protectedHeader } = await jose.jwtVerify(r.body.access_token, jwks, {
      issuer: demo.broker,
      audience: PAYMENTS_AUD,
      typ: 'JWT',
      algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.typ, 'JWT');
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, 'github:octo-org/payments:production');
    assert.equal(payload.rule, 'payments-deploy-prod');
    assertIssuedTimes(payload, 600, r.body.expires_in);

    // Token-type confusion is caught by a verifier that insists on at+jwt (RFC 9068 section 4).
    await assertJoseRejects(
      jose.jwtVerify(r.body.access_token, jwks, { issuer: demo.broker, audience: PAYMENTS_AUD, typ: 'at+jwt', algorithms: ['ES256'] }),
      jose.errors.JWTClaimValidationFailed,
      'typ',
    );
  });

  testCase('4. GitLab exchange: jose verifies the at+jwt via the remote JWKS', async () => {
    const subject = await jobToken('gitlab', 'protected_main_staging');
    const r = await exchangeOk(subject, IAC_AUD);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.body.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(r.body.token_type, 'Bearer');
    assert.deepEqual(r.body.scope.split(' ').sort(), ['state:read', 'state:write']);

    const { payload, protectedHeader } = await jose.jwtVerify(r.body.access_token, jwks, {
      issuer: metadata.issuer,
      audience: IAC_AUD,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope'],
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.typ, 'at+jwt');
    const set = await fetchJwks();
    assert.ok(set.keys.some((k) => k.kid === protectedHeader.kid), `kid ${protectedHeader.kid} not in JWKS`);

    assert.equal(payload.iss, demo.broker);
    assert.equal(payload.sub, 'gitlab:platform/infra:staging');
    assert.equal(payload.rule, 'infra-staging-plan');
    assert.equal(payload.provider, 'gitlab');
    assert.equal(payload.repo, 'platform/infra');
    assert.equal(payload.repo_id, '4242');
    assert.equal(payload.environment, 'staging');
    assert.equal(payload.stage, 'deploy');
    assert.equal(payload.branch, 'main');
    assert.equal(payload.run_id, '993001');
    assert.deepEqual(payload.scope.split(' ').sort(), ['state:read', 'state:write']);
    assert.equal(payload.client_id, 'gitlab:platform/infra');
    assert.equal(payload[AWS_TAGS], undefined, 'infra-staging-plan grants no AWS tags claim');
    assertIssuedTimes(payload, 1800, r.body.expires_in);
  });

  testCase('5. tampered tokens are rejected by jose', async () => {
    const gh = await exchangeOk(await jobToken('github', 'push_main_production'), PAYMENTS_AUD);
    const gl = await exchangeOk(await jobToken('gitlab', 'protected_main_staging'), IAC_AUD);
    const [h, p, s] = gh.body.access_token.split('.');
    const opts = { issuer: demo.broker, audience: PAYMENTS_AUD, typ: 'at+jwt', algorithms: ['ES256'] };

    // Sanity: the untouched token verifies, so the rejections below are due to the tampering.
    await jose.jwtVerify(gh.body.access_token, jwks, opts);

    // (a) claims edited (privilege escalation attempt), original signature kept.
    const claims = b64urlJson(p);
    claims.sub = 'github:octo-org/payments-evil:production';
    claims.scope = 'deploy:payments admin';
    await assertJoseRejects(
      jose.jwtVerify(`${h}.${b64urlEncodeJson(claims)}.${s}`, jwks, opts),
      jose.errors.JWSSignatureVerificationFailed,
    );

    // (b) one character of the encoded payload flipped (a middle character, so the decoded bytes really change).
    const i = Math.floor(p.length / 2);
    const flipped = p.slice(0, i) + (p[i] === 'A' ? 'B' : 'A') + p.slice(i + 1);
    assert.notDeepEqual(Buffer.from(flipped, 'base64url'), Buffer.from(p, 'base64url'));
    await assertJoseRejects(
      jose.jwtVerify(`${h}.${flipped}.${s}`, jwks, opts),
      jose.errors.JWSSignatureVerificationFailed,
    );

    // (c) payload swapped: the GitLab token's (validly signed) payload under the GitHub token's signature.
    const glPayload = gl.body.access_token.split('.')[1];
    await assertJoseRejects(
      jose.jwtVerify(`${h}.${glPayload}.${s}`, jwks, { ...opts, audience: IAC_AUD }),
      jose.errors.JWSSignatureVerificationFailed,
    );

    // (d) signature bytes altered.
    const sig = Buffer.from(s, 'base64url');
    sig[0] ^= 0x01;
    await assertJoseRejects(
      jose.jwtVerify(`${h}.${p}.${sig.toString('base64url')}`, jwks, opts),
      jose.errors.JWSSignatureVerificationFailed,
    );

    // (e) alg downgrade to "none" is refused before any signature check.
    const noneHeader = b64urlEncodeJson({ ...b64urlJson(h), alg: 'none' });
    await assert.rejects(jose.jwtVerify(`${noneHeader}.${p}.`, jwks, opts), (err) => {
      assert.ok(err instanceof jose.errors.JOSEError, `expected a jose error, got ${err}`);
      return true;
    });
  });

  testCase('6. wrong audience or wrong issuer fails in jose', async () => {
    const r = await exchangeOk(await jobToken('github', 'push_main_production'), PAYMENTS_AUD);
    const token = r.body.access_token;
    const base = { issuer: demo.broker, audience: PAYMENTS_AUD, typ: 'at+jwt', algorithms: ['ES256'] };

    await jose.jwtVerify(token, jwks, base); // sanity: correct expectations pass

    // An audience the rule could have granted but that was not requested must not be in the token.
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, audience: 'sts.amazonaws.com' }),
      jose.errors.JWTClaimValidationFailed,
      'aud',
    );
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, audience: IAC_AUD }),
      jose.errors.JWTClaimValidationFailed,
      'aud',
    );
    // The broker's own URL (the job token audience) is not the issued token's audience.
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, audience: demo.audience }),
      jose.errors.JWTClaimValidationFailed,
      'aud',
    );

    // Issuer: the upstream CI issuer, a look-alike with a trailing slash, and another port.
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, issuer: demo.github_issuer }),
      jose.errors.JWTClaimValidationFailed,
      'iss',
    );
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, issuer: `${demo.broker}/` }),
      jose.errors.JWTClaimValidationFailed,
      'iss',
    );
    await assertJoseRejects(
      jose.jwtVerify(token, jwks, { ...base, issuer: 'https://sts.example.invalid' }),
      jose.errors.JWTClaimValidationFailed,
      'iss',
    );
  });

  testCase('7. refused exchange (look-alike repository): 400 invalid_request TB1201, no token, no-store', async () => {
    const subject = await jobToken('github', 'lookalike_repository');
    const r = await exchange(subject, PAYMENTS_AUD);
    assert.equal(r.status, 400, `expected 400, got ${r.status}: ${r.text}`);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json\b/);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.body.error, 'invalid_request');
    assert.equal(r.body.error_id, 'TB1201');
    assert.equal(typeof r.body.error_description, 'string');
    assert.equal(typeof r.body.request_id, 'string');
    assert.ok(r.body.request_id.length > 0);
    const headerRequestId = r.headers.get('x-request-id');
    if (headerRequestId !== null) assert.equal(r.body.request_id, headerRequestId);
    assert.equal(r.body.access_token, undefined);
    assert.ok(!('access_token' in r.body), 'a refusal must not carry access_token');
    assert.ok(!r.text.includes('eyJ'), 'a refusal must not carry anything JWT-shaped');
  });

  testCase('8. replay: the same job token exchanged twice is refused with TB1118', async () => {
    const subject = await jobToken('github', 'push_main_production');
    const first = await exchangeOk(subject, PAYMENTS_AUD);
    await jose.jwtVerify(first.body.access_token, jwks, {
      issuer: demo.broker,
      audience: PAYMENTS_AUD,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });

    const second = await exchange(subject, PAYMENTS_AUD);
    assert.equal(second.status, 400, `replay must be refused, got ${second.status}: ${second.text}`);
    assert.equal(second.body.error, 'invalid_request');
    assert.equal(second.body.error_id, 'TB1118');
    assert.equal(second.headers.get('cache-control'), 'no-store');
    assert.ok(!('access_token' in second.body), 'a refused replay must not carry access_token');
  });

  testCase('9. openid-client genericGrantRequest performs the token exchange', async () => {
    const subject = await jobToken('github', 'push_main_production');
    const tokens = await oidc.genericGrantRequest(oidcConfig, TOKEN_EXCHANGE, {
      subject_token: subject,
      subject_token_type: ID_TOKEN_TYPE,
      audience: PAYMENTS_AUD,
    });
    assert.equal(typeof tokens.access_token, 'string');
    assert.equal(tokens.token_type?.toLowerCase(), 'bearer');
    assert.equal(tokens.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(tokens.expires_in, 600);
    const { payload } = await jose.jwtVerify(tokens.access_token, jwks, {
      issuer: metadata.issuer,
      audience: PAYMENTS_AUD,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    assert.equal(payload.sub, 'github:octo-org/payments:production');

    // The refusal surfaces through openid-client as an OAuth error response.
    await assert.rejects(
      oidc.genericGrantRequest(oidcConfig, TOKEN_EXCHANGE, {
        subject_token: subject,
        subject_token_type: ID_TOKEN_TYPE,
        audience: PAYMENTS_AUD,
      }),
      (err) => {
        assert.ok(err instanceof oidc.ResponseBodyError, `expected ResponseBodyError, got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 400);
        assert.equal(err.error, 'invalid_request');
        assert.equal(err.cause?.error_id, 'TB1118');
        return true;
      },
    );
  });

  testCase('10. @actions/core getIDToken() against the Actions token endpoint, then an exchange verified by jose', async () => {
    // @actions/core reads these exactly as on a GitHub runner.
    process.env.ACTIONS_ID_TOKEN_REQUEST_URL = demo.actions_id_token_request_url;
    process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN = demo.actions_id_token_request_token;
    // @actions/core announces the token to the runner with ::add-mask:: on stdout; keep tokens out of test logs.
    const write = process.stdout.write;
    process.stdout.write = (chunk, ...rest) => (/^::(add-mask|debug)::/.test(String(chunk)) ? true : write.call(process.stdout, chunk, ...rest));
    let idToken;
    try {
      idToken = await core.getIDToken(demo.audience);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(jose.decodeJwt(idToken).aud, demo.audience, 'the job token carries the requested audience');

    const res = await exchange(idToken, PAYMENTS_AUD);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const { payload } = await jose.jwtVerify(res.body.access_token, jwks, {
      issuer: metadata.issuer,
      audience: PAYMENTS_AUD,
      typ: 'at+jwt',
    });
    assert.equal(payload.rule, 'payments-deploy-prod');
  });

  testCase('11. the composite action script exchanges via the Actions environment and reports refusals with the error id', async () => {
    const run = promisify(execFile);
    const script = path.resolve(HERE, '../../samples/github-actions/tokenbroker-exchange/tokenbroker-exchange.sh');
    const env = {
      ...process.env,
      GITHUB_OUTPUT: '',
      TOKENBROKER_URL: demo.broker,
      ACTIONS_ID_TOKEN_REQUEST_URL: demo.actions_id_token_request_url,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: demo.actions_id_token_request_token,
    };
    const ok = await run('bash', [script], { env: { ...env, TOKENBROKER_AUDIENCE: `sts.amazonaws.com ${PAYMENTS_AUD}`, TOKENBROKER_TOKEN_TYPE: 'jwt' }, timeout: HTTP_TIMEOUT_MS });
    const token = ok.stdout.trim();
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer: metadata.issuer, audience: 'sts.amazonaws.com', typ: 'JWT' });
    assert.deepEqual(payload.aud, ['sts.amazonaws.com', PAYMENTS_AUD]);
    assert.equal(protectedHeader.typ, 'JWT');

    await assert.rejects(
      run('bash', [script], { env: { ...env, TOKENBROKER_AUDIENCE: 'https://not-granted.example' }, timeout: HTTP_TIMEOUT_MS }),
      (err) => {
        assert.equal(err.code, 1);
        assert.match(err.stderr, /invalid_target \[TB1202\]/);
        assert.equal(err.stdout, '', 'nothing but the token is ever printed on stdout');
        return true;
      },
    );
  });
});
