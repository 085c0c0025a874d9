package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// IdentifiedByOIDC says that the session's employee was named by a token
// of the company's identity provider (Login.Token).
const IdentifiedByOIDC = "oidc"

// tokenLogin asks the client for its password, checks it as a token with
// Login.Token and returns the role the token maps to, with the session's
// identity set. Every refusal is the same FATAL 28P01 as a wrong password;
// the log says why. The token itself is never logged.
func (s *session) tokenLogin() (string, error) {
	name := s.info.User
	if err := s.setStartupDeadline(s.client, s.cfg.Now().Add(min(loginTimeout, s.cfg.StartupTimeout))); err != nil {
		return "", err
	}
	token, err := s.cleartextPassword()
	if err != nil {
		return "", err
	}
	if err := s.setStartupDeadline(s.client, s.cfg.Now().Add(s.cfg.StartupTimeout)); err != nil {
		return "", err
	}
	var id *TokenIdentity
	if token == "" {
		err = errEmptyToken
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
		id, err = s.cfg.Login.Token(ctx, &s.info, token)
		cancel()
	}
	if err == nil && (id == nil || id.Role == "" || id.Employee == "") {
		err = errNoTokenIdentity
	}
	if err != nil {
		s.log.Warn("login_failed", "login", name, "method", LoginToken.String(), "reason", err.Error())
		return "", &wireError{Severity: "FATAL", Code: codeInvalidPassword,
			Message: fmt.Sprintf("password authentication failed for user %q", name)}
	}
	s.log.Info("login_succeeded", "login", name, "employee", id.Employee, "role", id.Role, "method", LoginToken.String(),
		"issuer", id.Issuer, "subject", id.Subject, "groups", id.Groups, "token_expiry", id.Expiry)
	s.info.User, s.info.Employee, s.info.IdentifiedBy = id.Role, id.Employee, IdentifiedByOIDC
	s.info.Groups, s.info.Issuer, s.info.Subject = id.Groups, id.Issuer, id.Subject
	if !id.SessionEnd.IsZero() {
		s.info.SessionEnd = id.SessionEnd
		go s.endAt(id.SessionEnd, s.log.With("employee", id.Employee))
	}
	return id.Role, nil
}

// Why a token login failed before Login.Token had a say.
var (
	errEmptyToken      = tokenError("empty password: no token")
	errNoTokenIdentity = tokenError("the token names no employee or role")
)

type tokenError string

func (e tokenError) Error() string { return string(e) }

// errSignInAgain ends a session that has outlived its sign-in.
var errSignInAgain = fatalf(codeInvalidAuthorization, nil,
	"terminating connection because your sign-in has expired: sign in again (pgwarden login) and reconnect")

// endAt ends the session at its first clean point from t on: at once if it
// is waiting for its client between transactions, else when the relay
// next reaches such a point (see signInExpired).
func (s *session) endAt(t time.Time, log *slog.Logger) {
	timer := time.NewTimer(t.Sub(s.cfg.Now()))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-s.done:
		return
	}
	s.signInExpired.Store(true)
	if s.idle.Load() {
		log.Info("session_sign_in_expired", "session_end", t)
		s.terminate(errSignInAgain)
	}
}
