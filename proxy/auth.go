package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/scram"
)

// Authentication request codes (the int32 after 'R').
const (
	authOK                = 0
	authKerberosV5        = 2
	authCleartextPassword = 3
	authMD5Password       = 5
	authGSS               = 7
	authGSSContinue       = 8
	authSSPI              = 9
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// authenticate relays authentication between the client and the upstream
// server until AuthenticationOk, so that the client proves itself to
// PostgreSQL, not to pgwarden.
//
// Passwords (cleartext, md5) and SCRAM pass through frame by frame. SCRAM's
// channel binding ties the exchange to one TLS connection, so it cannot pass
// a proxy that terminates TLS: pgwarden never offers SCRAM-SHA-256-PLUS. A
// client on TLS that is offered only SCRAM-SHA-256 says so in its GS2 header
// ("y"), and a server on TLS rejects that as a downgrade. In that one case,
// client and upstream both on TLS, pgwarden asks the client for its password
// over the client's TLS connection and runs SCRAM (with channel binding when
// offered) to the server itself.
func (s *session) authenticate() error {
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			return fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
		}
		switch frame[0] {
		case 'R':
		case 'E':
			s.toClient.write(frame)
			s.toClient.flush()
			return fmt.Errorf("upstream refused authentication: %s", errorMessage(frame))
		default: // NegotiateProtocolVersion, NoticeResponse
			if err := s.toClient.write(frame); err != nil {
				return err
			}
			continue
		}
		body := frame[headerLen:]
		if len(body) < 4 {
			return fatalf(codeProtocolViolation, nil, "invalid authentication request from upstream")
		}
		switch code := binary.BigEndian.Uint32(body); code {
		case authOK:
			return s.toClient.write(frame)
		case authCleartextPassword, authMD5Password:
			if err := s.relayAuthStep(frame); err != nil {
				return err
			}
		case authSASL:
			var req pgproto3.AuthenticationSASL
			if err := req.Decode(body); err != nil {
				return fatalf(codeProtocolViolation, err, "invalid SASL request from upstream")
			}
			mechs := make([]string, 0, len(req.AuthMechanisms))
			for _, m := range req.AuthMechanisms {
				if !strings.HasSuffix(m, "-PLUS") {
					mechs = append(mechs, m)
				}
			}
			if s.info.ClientTLS && s.info.UpstreamTLS {
				return s.scramOnBehalf(req.AuthMechanisms)
			}
			if len(mechs) == 0 {
				return fatalf(codeFeatureNotSupported, nil, "upstream offers only SCRAM with channel binding, which cannot pass through a proxy")
			}
			out, _ := (&pgproto3.AuthenticationSASL{AuthMechanisms: mechs}).Encode(nil)
			if err := s.relayAuthStep(out); err != nil {
				return err
			}
		case authSASLContinue:
			if err := s.relayAuthStep(frame); err != nil {
				return err
			}
		case authSASLFinal:
			if err := s.toClient.write(frame); err != nil {
				return err
			}
		case authKerberosV5, authGSS, authGSSContinue, authSSPI:
			return fatalf(codeFeatureNotSupported, nil, "GSSAPI and SSPI authentication are not supported through pgwarden")
		default:
			return fatalf(codeFeatureNotSupported, nil, "unsupported authentication request %d from upstream", code)
		}
	}
}

// relayAuthStep sends an authentication request to the client and relays the
// client's answer, a PasswordMessage-type frame, to the server.
func (s *session) relayAuthStep(request []byte) error {
	if err := s.toClient.write(request); err != nil {
		return err
	}
	if err := s.toClient.flush(); err != nil {
		return err
	}
	frame, err := s.fromClient.next()
	if err != nil {
		return authFrameError(err)
	}
	if frame[0] != 'p' {
		return fatalf(codeProtocolViolation, nil, "expected a password message, got message type %q", frame[0])
	}
	if _, err := s.server.Write(frame); err != nil {
		return fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
	}
	return nil
}

// scramOnBehalf asks the client for its password in cleartext, over the
// client's TLS connection, and authenticates to the server with SCRAM itself.
func (s *session) scramOnBehalf(mechanisms []string) error {
	out, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	if err := s.toClient.write(out); err != nil {
		return err
	}
	if err := s.toClient.flush(); err != nil {
		return err
	}
	frame, err := s.fromClient.next()
	if err != nil {
		return authFrameError(err)
	}
	if frame[0] != 'p' {
		return fatalf(codeProtocolViolation, nil, "expected a password message, got message type %q", frame[0])
	}
	var pw pgproto3.PasswordMessage
	if err := pw.Decode(frame[headerLen:]); err != nil {
		return fatalf(codeProtocolViolation, err, "invalid password message")
	}
	okFrame, err := s.scramUpstream(mechanisms, pw.Password)
	var ue *upstreamAuthError
	if errors.As(err, &ue) {
		s.toClient.write(ue.frame)
		s.toClient.flush()
		return fmt.Errorf("upstream refused authentication: %s", errorMessage(ue.frame))
	}
	if err != nil {
		return err
	}
	return s.toClient.write(okFrame)
}

// upstreamAuthError is the server's ErrorResponse during authentication.
type upstreamAuthError struct{ frame []byte }

func (e *upstreamAuthError) Error() string {
	return "upstream refused authentication: " + errorMessage(e.frame)
}

// scramUpstream authenticates to the server with SCRAM and password, after
// its AuthenticationSASL offered mechanisms, and returns the server's
// AuthenticationOk frame once the server has proved it knows the password.
// The server's ErrorResponse is returned as an *upstreamAuthError.
func (s *session) scramUpstream(mechanisms []string, password string) ([]byte, error) {
	sc, err := scram.NewClient(mechanisms, password, s.serverCert)
	if err != nil {
		return nil, fatalf(codeFeatureNotSupported, err, "cannot authenticate upstream")
	}
	out, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: sc.Mechanism(), Data: sc.ClientFirst()}).Encode(nil)
	if _, err := s.server.Write(out); err != nil {
		return nil, fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
	}
	for {
		frame, err := s.fromServer.next()
		if err != nil {
			return nil, fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
		}
		switch frame[0] {
		case 'E':
			return nil, &upstreamAuthError{frame: bytes.Clone(frame)}
		case 'R':
		default:
			return nil, fatalf(codeProtocolViolation, nil, "unexpected message type %q during SCRAM", frame[0])
		}
		body := frame[headerLen:]
		if len(body) < 4 {
			return nil, fatalf(codeProtocolViolation, nil, "invalid authentication request from upstream")
		}
		switch binary.BigEndian.Uint32(body) {
		case authSASLContinue:
			final, err := sc.ServerFirst(body[4:])
			if err != nil {
				return nil, fatalf(codeInvalidAuthorization, err, "SCRAM exchange with the upstream server failed")
			}
			out, _ := (&pgproto3.SASLResponse{Data: final}).Encode(nil)
			if _, err := s.server.Write(out); err != nil {
				return nil, fatalf(codeConnectionFailure, err, "upstream connection lost during authentication")
			}
		case authSASLFinal:
			if err := sc.ServerFinal(body[4:]); err != nil {
				return nil, fatalf(codeInvalidAuthorization, err, "the upstream server failed to prove it knows the password")
			}
		case authOK:
			if !sc.Verified() {
				// A server that skips SASLFinal never proved it knows the
				// password: it could be anyone.
				return nil, fatalf(codeInvalidAuthorization, nil, "the upstream server ended SCRAM without proving it knows the password")
			}
			return frame, nil
		default:
			return nil, fatalf(codeProtocolViolation, nil, "unexpected authentication request during SCRAM")
		}
	}
}
