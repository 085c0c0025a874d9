package proxy

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/scram"
)

// LoginMethod is how a client authenticates (Login.Method).
type LoginMethod uint8

const (
	// LoginRelay relays authentication to the upstream server: the client
	// proves itself to PostgreSQL as its own role (see auth.go).
	LoginRelay LoginMethod = iota
	// LoginSCRAM has pgwarden authenticate the client itself with
	// SCRAM-SHA-256 against the login's stored verifier.
	LoginSCRAM
	// LoginPassword has pgwarden ask for the password in cleartext and
	// check it against the same verifier, for clients that cannot do
	// SCRAM. It is refused on a connection without TLS.
	LoginPassword
	// LoginToken has pgwarden ask for the password in cleartext, over
	// TLS only, and check it as a signed token (an OIDC ID token or a JWT
	// access token) with Login.Token, as PostgreSQL's password method
	// and RDS IAM tokens do.
	LoginToken
)

func (m LoginMethod) String() string {
	switch m {
	case LoginRelay:
		return "relay"
	case LoginSCRAM:
		return "scram-sha-256"
	case LoginPassword:
		return "password"
	case LoginToken:
		return "token"
	}
	return "unknown"
}

// Login is pgwarden's own authentication of employees (Config.Login). For a
// startup that Method puts under it, the startup message's user is a login
// name in Accounts, not a database role: pgwarden authenticates the client
// against the login's SCRAM verifier, then connects upstream as the role the
// login maps to with the password Credentials gives for it, which the
// client never sees. The session's User is that role, its Employee the
// login name, IdentifiedBy IdentifiedByLogin; Identify, if set, runs after.
//
// A wrong password, an unknown name and a disabled login all get FATAL
// 28P01 "password authentication failed for user NAME" after the same
// exchange (unknown names run SCRAM against a stand-in verifier), delayed
// as Accounts says. md5 cannot be checked against a SCRAM verifier: a
// client that answers the SCRAM request with an md5 hash is refused with a
// message saying so. Over TLS, SCRAM-SHA-256-PLUS is offered too, bound to
// pgwarden's certificate (tls-server-end-point), so that clients with
// channel_binding=require connect.
// Nothing goes upstream, not even a connection, before the client has
// proved its password. A startup without a database gets the role's name
// as the server's default; note that libpq sends the user name (here the
// login name) as the database unless told otherwise.
type Login struct {
	// Method picks how the client of a startup authenticates, from its
	// user, database and parameters (TLS, application_name). Nil means
	// LoginSCRAM for every startup.
	Method func(info *SessionInfo) LoginMethod
	// Accounts holds the logins (identity/userstore.Store implements it).
	Accounts Accounts
	// Credentials returns the password pgwarden logs in upstream with as
	// role (cleartext, md5 or SCRAM-SHA-256, as the server asks). An error
	// refuses the session; its text is logged, not sent to the client.
	Credentials func(ctx context.Context, role string) (password string, err error)
	// Token checks the token a client of a LoginToken startup sent as its
	// password and says who it names and which role to log in upstream
	// as. An error refuses the session with the same FATAL 28P01 as a
	// wrong password; its text, which must not hold the token, is logged.
	Token func(ctx context.Context, info *SessionInfo, token string) (*TokenIdentity, error)
}

// TokenIdentity is what a verified token says of the employee.
type TokenIdentity struct {
	// Employee is the person, from the claim configured (email by
	// default), and Role the database role to log in upstream as.
	Employee, Role string
	// Groups are the employee's policy groups, mapped from the token's
	// groups claim.
	Groups []string
	// Issuer and Subject are the token's iss and sub.
	Issuer, Subject string
	// Expiry is the token's exp.
	Expiry time.Time
	// SessionEnd, if not zero, is when the session ends at its next clean
	// point (between transactions, nothing in flight) with a FATAL asking
	// the employee to sign in again.
	SessionEnd time.Time
}

// Accounts is the store of logins and the throttle of failed attempts.
// For each attempt pgwarden calls Admit, then Lookup, and after an Admit
// that returned nil exactly one of Failed, Succeeded or Abandoned.
type Accounts interface {
	// Lookup returns the SCRAM verifier of the login name and the database
	// role it maps to. When there is no usable login (unknown, disabled)
	// err says why, for the log, and the verifier is a stand-in that no
	// password matches, the same for the name every time, so that the
	// exchange looks like one with a real login. A nil verifier is
	// replaced by a stand-in made from a per-process key.
	Lookup(name string) (v *scram.Verifier, role string, err error)
	// Admit is asked before an attempt to log in as name from the client
	// address addr (an IP address). An error refuses it, a locked-out
	// employee for example: its text reaches the client as FATAL 28000.
	Admit(name, addr string) error
	// Failed ends an attempt with a wrong password (or an unusable login)
	// and returns how long to wait before telling the client.
	Failed(name, addr string) time.Duration
	// Succeeded ends an attempt with the right password.
	Succeeded(name, addr string)
	// Abandoned ends an attempt in which no password was checked.
	Abandoned(name, addr string)
}

func (l *Login) check() error {
	if l.Accounts == nil && l.Token == nil {
		return errors.New("login: Accounts or Token is required")
	}
	if l.Credentials == nil {
		return errors.New("login: Credentials is required")
	}
	return nil
}

// method is the LoginMethod for a startup.
func (l *Login) method(info *SessionInfo) LoginMethod {
	if l == nil {
		return LoginRelay
	}
	if l.Method == nil {
		return LoginSCRAM
	}
	return l.Method(info)
}

// codeInvalidPassword is invalid_password, PostgreSQL's code for a failed
// password authentication.
const codeInvalidPassword = "28P01"

// loginTimeout bounds the password exchange with a client.
const loginTimeout = 10 * time.Second

// mockKey seeds stand-in verifiers when Accounts gives none.
var mockKey = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// login authenticates the client as the login its startup message names
// and returns the role the login maps to, with the session's identity set.
// It runs before anything is sent upstream.
func (s *session) login(method LoginMethod) (role string, err error) {
	lg := s.cfg.Login
	name := s.info.User
	if (method == LoginPassword || method == LoginToken) && !s.info.ClientTLS {
		return "", fatalf(codeInvalidAuthorization, nil,
			"password authentication is only allowed over TLS: connect with sslmode=require")
	}
	if method == LoginToken {
		return s.tokenLogin()
	}
	if method != LoginSCRAM && method != LoginPassword {
		return "", fatalf(codeInternalError, nil, "invalid login method %d", method)
	}
	if lg.Accounts == nil {
		return "", fatalf(codeInvalidAuthorization, nil, "pgwarden has no logins file: sign in with a token from your identity provider (pgwarden login)")
	}
	addr := hostOf(s.info.ClientAddr)
	if err := lg.Accounts.Admit(name, addr); err != nil {
		s.log.Warn("login_refused", "login", name, "error", err)
		return "", fatalf(codeInvalidAuthorization, err, "%s", err)
	}
	ended := false
	defer func() {
		if !ended {
			lg.Accounts.Abandoned(name, addr)
		}
	}()
	v, role, lookupErr := lg.Accounts.Lookup(name)
	if v == nil {
		v = scram.MockVerifier(mockKey, name, 0)
		if lookupErr == nil {
			lookupErr = errors.New("no verifier")
		}
	}

	// The attempt holds one of the employee's slots until it ends: a
	// client that goes silent gives it back soon, not at the end of the
	// startup timeout.
	if err := s.setStartupDeadline(s.client, s.cfg.Now().Add(min(loginTimeout, s.cfg.StartupTimeout))); err != nil {
		return "", err
	}
	var ok bool
	var final []byte // SCRAM server-final, sent on success only
	var mechanism string
	if method == LoginSCRAM {
		ok, final, mechanism, err = s.clientSCRAM(v)
	} else {
		ok, err = s.clientPassword(v)
	}
	if err != nil {
		return "", err
	}
	if err := s.setStartupDeadline(s.client, s.cfg.Now().Add(s.cfg.StartupTimeout)); err != nil {
		return "", err
	}
	if !ok || lookupErr != nil {
		ended = true
		delay := lg.Accounts.Failed(name, addr)
		reason := "wrong password"
		if lookupErr != nil {
			reason = lookupErr.Error()
		}
		s.log.Warn("login_failed", "login", name, "method", method.String(), "reason", reason, "delay", delay)
		if err := s.sleep(delay); err != nil {
			return "", err
		}
		return "", &wireError{Severity: "FATAL", Code: codeInvalidPassword,
			Message: fmt.Sprintf("password authentication failed for user %q", name)}
	}
	ended = true
	lg.Accounts.Succeeded(name, addr)
	if final != nil {
		out, _ := (&pgproto3.AuthenticationSASLFinal{Data: final}).Encode(nil)
		if err := s.toClient.write(out); err != nil {
			return "", err
		}
	}
	s.log.Info("login_succeeded", "login", name, "role", role, "method", method.String(),
		"channel_binding", mechanism == scram.SHA256Plus)
	s.info.User, s.info.Employee, s.info.IdentifiedBy = role, name, IdentifiedByLogin
	return role, nil
}

// hostOf is the IP address of a client address, without its port.
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// sleep waits d unless the session is being stopped.
func (s *session) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.stop:
		return net.ErrClosed
	}
}

// readPassword reads the client's answer to an authentication request, a
// PasswordMessage-type frame ('p').
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
func (s *session) readPassword() ([]byte, error) {
	if err := s.toClient.flush(); err != nil {
		return nil, err
	}
	frame, err := s.fromClient.next()
	if err != nil {
		return nil, authFrameError(err)
	}
	if frame[0] != 'p' {
		return nil, fatalf(codeProtocolViolation, nil, "expected a password message, got message type %q", frame[0])
	}
	return frame[headerLen:], nil
}

// errMD5 refuses a client that answers with an md5 hash.
var errMD5 = fatalf(codeInvalidAuthorization, nil,
	"md5 password authentication is not supported: pgwarden keeps SCRAM-SHA-256 verifiers, against which an md5 hash cannot be checked; use a client that supports SCRAM-SHA-256 (libpq 10 or later)")

// isMD5Answer reports a PasswordMessage body holding an md5 hash
// ("md5" and 32 hex digits), which is what a client that only knows md5
// sends whatever it was asked.
func isMD5Answer(body []byte) bool {
	if len(body) != 3+32+1 || body[len(body)-1] != 0 || !strings.HasPrefix(string(body), "md5") {
		return false
	}
	_, err := hex.DecodeString(string(body[3 : 3+32]))
	return err == nil
}

// clientSCRAM runs SCRAM-SHA-256 with the client, pgwarden as the server,
// against v. It returns ok with the server-final-message when the client's
// proof matches; false when it does not; an error when the client broke
// off or broke the protocol, in which case no password was checked.
// https://www.postgresql.org/docs/current/sasl-authentication.html
func (s *session) clientSCRAM(v *scram.Verifier) (ok bool, final []byte, mechanism string, err error) {
	srv := scram.NewServer(v)
	if ep := s.clientEndPoint(); ep != nil {
		srv = scram.NewServerPlus(v, ep)
	}
	out, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: srv.Mechanisms()}).Encode(nil)
	if err := s.toClient.write(out); err != nil {
		return false, nil, "", err
	}
	body, err := s.readPassword()
	if err != nil {
		return false, nil, "", err
	}
	if isMD5Answer(body) {
		return false, nil, "", errMD5
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(body); err != nil {
		return false, nil, "", fatalf(codeProtocolViolation, err, "expected a SASL initial response")
	}
	if err := srv.Select(first.AuthMechanism); err != nil {
		return false, nil, "", fatalf(codeProtocolViolation, err, "client selected an invalid SASL authentication mechanism")
	}
	serverFirst, err := srv.ClientFirst(first.Data)
	if err != nil {
		return false, nil, "", fatalf(codeProtocolViolation, err, "malformed SCRAM message")
	}
	out, _ = (&pgproto3.AuthenticationSASLContinue{Data: serverFirst}).Encode(nil)
	if err := s.toClient.write(out); err != nil {
		return false, nil, "", err
	}
	body, err = s.readPassword()
	if err != nil {
		return false, nil, "", err
	}
	final, err = srv.ClientFinal(body)
	switch {
	case errors.Is(err, scram.ErrClientProof):
		return false, nil, "", nil
	case err != nil:
		return false, nil, "", fatalf(codeProtocolViolation, err, "malformed SCRAM message")
	}
	return true, final, first.AuthMechanism, nil
}

// clientPassword asks the client for its password in cleartext (over TLS)
// and checks it against v.
func (s *session) clientPassword(v *scram.Verifier) (bool, error) {
	pw, err := s.cleartextPassword()
	if err != nil || pw == "" {
		return false, err
	}
	return v.Check(pw), nil
}

// cleartextPassword asks the client for its password in cleartext.
func (s *session) cleartextPassword() (string, error) {
	out, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	if err := s.toClient.write(out); err != nil {
		return "", err
	}
	body, err := s.readPassword()
	if err != nil {
		return "", err
	}
	var pw pgproto3.PasswordMessage
	if err := pw.Decode(body); err != nil {
		return "", fatalf(codeProtocolViolation, err, "invalid password message")
	}
	return pw.Password, nil
}

// upstreamCredentials asks Login.Credentials for role's password.
func (s *session) upstreamCredentials(role string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartupTimeout)
	defer cancel()
	pw, err := s.cfg.Login.Credentials(ctx, role)
	if err != nil {
		s.log.Error("upstream_credentials", "role", role, "error", err)
		return "", fatalf(codeInvalidAuthorization, nil, "pgwarden has no credentials for role %q", role)
	}
	return pw, nil
}

// authenticateUpstream logs in to the server as role with password, up to
// AuthenticationOk, which goes to the client. The server's own messages
// during authentication (an error naming the role, NegotiateProtocolVersion)
// are relayed; the password is not in any of them.
func (s *session) authenticateUpstream(role, password string) error {
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			return fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
		}
		switch frame[0] {
		case 'R':
		case 'E':
			return s.upstreamRefused(role, frame)
		default: // NegotiateProtocolVersion, NoticeResponse
			if frame[0] == 'v' && s.upstream != nil {
				s.upstream.negotiate = bytes.Clone(frame)
			}
			if err := s.toClient.write(frame); err != nil {
				return err
			}
			continue
		}
		body := frame[headerLen:]
		if len(body) < 4 {
			return fatalf(codeProtocolViolation, nil, "invalid authentication request from upstream")
		}
		var answer []byte
		switch code := binary.BigEndian.Uint32(body); code {
		case authOK:
			return s.toClient.write(frame)
		case authCleartextPassword:
			// The role's password serves every employee mapped to it:
			// it goes in clear only to a server whose certificate was
			// verified, never to whatever answers on the upstream port.
			if s.cfg.UpstreamTLSMode != TLSVerifyFull {
				s.log.Error("login_upstream_cleartext_refused", "role", role, "upstream_tls", string(s.cfg.UpstreamTLSMode),
					"fix", "verify-full upstream TLS, or md5 or scram-sha-256 for this role in pg_hba.conf")
				return fatalf(codeInvalidAuthorization, nil,
					"the upstream server asks for role %q's password in cleartext over a connection whose server is not verified; pgwarden does not send it", role)
			}
			answer, _ = (&pgproto3.PasswordMessage{Password: password}).Encode(nil)
		case authMD5Password:
			if len(body) != 8 {
				return fatalf(codeProtocolViolation, nil, "invalid md5 request from upstream")
			}
			answer, _ = (&pgproto3.PasswordMessage{Password: md5Password(role, password, body[4:8])}).Encode(nil)
		case authSASL:
			var req pgproto3.AuthenticationSASL
			if err := req.Decode(body); err != nil {
				return fatalf(codeProtocolViolation, err, "invalid SASL request from upstream")
			}
			okFrame, err := s.scramUpstream(req.AuthMechanisms, password)
			var ue *upstreamAuthError
			if errors.As(err, &ue) {
				return s.upstreamRefused(role, ue.frame)
			}
			if err != nil {
				return err
			}
			return s.toClient.write(okFrame)
		case authKerberosV5, authGSS, authGSSContinue, authSSPI:
			return fatalf(codeFeatureNotSupported, nil, "GSSAPI and SSPI authentication are not supported through pgwarden")
		default:
			return fatalf(codeFeatureNotSupported, nil, "unsupported authentication request %d from upstream", code)
		}
		if _, err := s.server.Write(answer); err != nil {
			return fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
		}
	}
}

// upstreamRefused turns the server's ErrorResponse to pgwarden's own login
// into the client's error: the login succeeded, the upstream one did not.
func (s *session) upstreamRefused(role string, frame []byte) error {
	msg := errorMessage(frame)
	s.log.Error("upstream_login_failed", "role", role, "error", msg)
	return &wireError{Severity: "FATAL", Code: codeInvalidAuthorization,
		Message: fmt.Sprintf("could not log in upstream as role %q", role),
		Detail:  msg, Err: errors.New(msg)}
}

// md5Password is the answer to an md5 request: "md5" followed by
// md5(md5(password || user) || salt) in hex.
func md5Password(user, password string, salt []byte) string {
	inner := md5.Sum([]byte(password + user))
	h := hex.EncodeToString(inner[:])
	outer := md5.Sum(append([]byte(h), salt...))
	return "md5" + hex.EncodeToString(outer[:])
}
