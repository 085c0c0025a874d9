// Package identity decides who the employee behind a session is: the person
// on whom pgwarden keys its counts, norms and decisions. By default that is
// the database role of the startup message; this package names someone more
// precise, and refuses sessions that cannot say who they are where policy
// demands it.
//
// Its hooks run inside the proxy's session handshake:
//
//   - TLS. The client's certificate, if it sends one, is verified during the
//     handshake against the configured CAs (Certs.ConfigureTLS sets ClientCAs
//     and ClientAuth). A certificate that the revocation lists name, or whose
//     issuer's list has expired, fails the handshake, as it does with
//     PostgreSQL's ssl_crl_file.
//   - Startup. Once the startup message is read and before anything goes
//     upstream, proxy.Config.Identify is called with the session's database,
//     role and verified chain. Certs.Identify maps the certificate to an
//     employee (its SAN email or subject common name), sets
//     SessionInfo.IdentifiedBy to "certificate", and refuses, with FATAL
//     28000 and a message naming the database and role, a session that a rule
//     requires a certificate of and that has none, or whose certificate names
//     no acceptable employee.
//
// Revocation lists are files an operator replaces while pgwarden runs: each
// is checked for a new version (modification time and size) at most once per
// reload interval, when a certificate is being checked. A list that fails to
// load keeps the previous one in force; a list past its NextUpdate refuses
// every certificate of its CA until it is renewed (fail closed).
package identity
