// Package oidc checks the tokens of the company's identity provider that
// employees send as their password in pgwarden's login mode, and says who
// they name.
//
// A client connects over TLS and answers pgwarden's cleartext password
// request with an OIDC ID token (or, per configuration, a JWT access token).
// Verifier.Verify checks it:
//
//   - Signature. The issuer's keys come from the jwks_uri of its discovery
//     document (.well-known/openid-configuration), fetched once and cached.
//     A token signed with a key id not in the cache refreshes the keys, at
//     most once per MinRefreshInterval, so that a key rotation is picked up
//     and a flood of made-up key ids cannot turn into a flood of requests to
//     the identity provider. Keys an hour old are fetched again at the next
//     token, so that a key the provider withdrew stops verifying. While the
//     provider is unreachable the cached keys keep working, for up to
//     KeysMaxAge after they were fetched.
//     Only the signing algorithms of the discovery document (or Algorithms)
//     are accepted, never "none".
//   - Claims. iss must be the issuer, aud must hold the audience, exp and
//     nbf are compared with the clock allowing Skew; go-oidc and go-jose do
//     the parsing and the checks.
//   - Identity. The employee is the configured claim (email by default),
//     their groups the groups claim mapped through GroupMap, and the role to
//     log in upstream as the first Roles entry one of their groups matches,
//     else DefaultRole.
//
// Each refusal is a *Refusal whose Reason names the check that failed, for
// the server log; the client gets the same answer as for a wrong password.
package oidc
