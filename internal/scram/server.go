package scram

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrClientProof is returned by Server.ClientFinal when the client's proof
// does not match the verifier: the client does not know the password.
var ErrClientProof = errors.New("scram: client proof mismatch")

// serverNonceLen is the random part of the server nonce, before base64, as
// PostgreSQL's SCRAM_RAW_NONCE_LEN.
const serverNonceLen = 18

// Server is the server side of one SCRAM-SHA-256 or SCRAM-SHA-256-PLUS
// exchange against a stored Verifier. NewServer offers SCRAM-SHA-256 only;
// NewServerPlus offers both on a TLS connection, binding the exchange to
// the server's certificate (tls-server-end-point). It follows PostgreSQL's auth-scram.c: the user name
// in the client-first-message is ignored (the startup message names the
// user), an authorization identity and mandatory extensions are refused.
//
//	client -> SASLInitialResponse          client-first  ClientFirst returns server-first
//	server -> AuthenticationSASLContinue   server-first
//	client -> SASLResponse                 client-final  ClientFinal checks the proof, returns server-final
//	server -> AuthenticationSASLFinal      server-final
//
// A Server is not safe for concurrent use and serves one exchange.
type Server struct {
	v *Verifier
	// endPoint is the tls-server-end-point data of the certificate the
	// client saw, when SCRAM-SHA-256-PLUS is offered; plus is set when the
	// client selected it.
	endPoint []byte
	plus     bool

	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
	state           state
}

// NewServer starts an exchange against v, offering SCRAM-SHA-256.
func NewServer(v *Verifier) *Server {
	return &Server{v: v}
}

// NewServerPlus starts an exchange against v on a TLS connection whose
// server certificate has the tls-server-end-point data endPoint
// (EndPointHash), offering SCRAM-SHA-256-PLUS and SCRAM-SHA-256.
func NewServerPlus(v *Verifier, endPoint []byte) *Server {
	return &Server{v: v, endPoint: endPoint}
}

// Mechanisms are the mechanisms to offer in AuthenticationSASL, the
// channel-bound one first, as PostgreSQL lists them.
func (s *Server) Mechanisms() []string {
	if s.endPoint != nil {
		return []string{SHA256Plus, SHA256}
	}
	return []string{SHA256}
}

// Select takes the mechanism the client chose in SASLInitialResponse.
func (s *Server) Select(mechanism string) error {
	switch {
	case mechanism == SHA256:
	case mechanism == SHA256Plus && s.endPoint != nil:
		s.plus = true
	default:
		return fmt.Errorf("%w: client selected an invalid SASL authentication mechanism", ErrProtocol)
	}
	return nil
}

// EndPointHash is the tls-server-end-point channel binding data of a
// server's certificate (RFC 5929 section 4.1), nil when its signature
// algorithm has none (Ed25519): such a certificate cannot be bound to.
func EndPointHash(cert *x509.Certificate) []byte { return endPointHash(cert) }

// ClientFirst takes the client-first-message (the data of
// SASLInitialResponse) and returns the server-first-message.
func (s *Server) ClientFirst(msg []byte) ([]byte, error) {
	if s.state != stateClientFirst {
		return nil, fmt.Errorf("%w: client-first-message out of order", ErrProtocol)
	}
	s.state = stateFailed
	m := string(msg)
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok := strings.Cut(m, ",")
	if !ok {
		return nil, fmt.Errorf("%w: malformed client-first-message", ErrProtocol)
	}
	// As auth-scram.c read_client_first_message: the flag must agree with
	// the mechanism selected, and "y" while PLUS was offered is a
	// downgrade.
	switch {
	case flag == "n":
		if s.plus {
			return nil, fmt.Errorf("%w: the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data", ErrProtocol)
		}
	case flag == "y":
		if s.plus {
			return nil, fmt.Errorf("%w: the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data", ErrProtocol)
		}
		if s.endPoint != nil {
			return nil, fmt.Errorf("%w: channel binding negotiation error: the client supports channel binding but thinks the server does not", ErrProtocol)
		}
	case strings.HasPrefix(flag, "p="):
		if !s.plus {
			return nil, fmt.Errorf("%w: the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data", ErrProtocol)
		}
		if flag != "p=tls-server-end-point" {
			return nil, fmt.Errorf("%w: unsupported SCRAM channel-binding type %q", ErrProtocol, strings.TrimPrefix(flag, "p="))
		}
	default:
		return nil, fmt.Errorf("%w: invalid channel binding flag", ErrProtocol)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("%w: malformed client-first-message", ErrProtocol)
	}
	if authzid != "" {
		return nil, fmt.Errorf("%w: authorization identities are not supported", ErrProtocol)
	}
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 {
		return nil, fmt.Errorf("%w: malformed client-first-message", ErrProtocol)
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return nil, fmt.Errorf("%w: unsupported mandatory extension", ErrProtocol)
	}
	if !strings.HasPrefix(attrs[0], "n=") {
		return nil, fmt.Errorf("%w: client-first-message has no user name", ErrProtocol)
	}
	clientNonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || clientNonce == "" || !printable(clientNonce) {
		return nil, fmt.Errorf("%w: invalid client nonce", ErrProtocol)
	}
	raw := make([]byte, serverNonceLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("scram: server nonce: %w", err)
	}
	s.gs2Header = flag + ",,"
	s.clientFirstBare = bare
	s.nonce = clientNonce + base64.StdEncoding.EncodeToString(raw)
	s.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", s.nonce, base64.StdEncoding.EncodeToString(s.v.Salt), s.v.Iterations)
	s.state = stateServerFirst
	return []byte(s.serverFirst), nil
}

// printable reports whether every byte is in %x21-7E except the comma.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// ClientFinal takes the client-final-message (the data of SASLResponse),
// checks its channel binding and nonce, and then its proof in constant
// time. It returns the server-final-message when the proof matches,
// ErrClientProof when it does not, and an error wrapping ErrProtocol for a
// malformed message, whose proof is not checked.
func (s *Server) ClientFinal(msg []byte) ([]byte, error) {
	if s.state != stateServerFirst {
		return nil, fmt.Errorf("%w: client-final-message out of order", ErrProtocol)
	}
	s.state = stateFailed
	// client-final-message = "c=" cbind "," "r=" nonce ["," extensions] ",p=" proof
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, fmt.Errorf("%w: client-final-message has no proof", ErrProtocol)
	}
	withoutProof, proof64 := m[:i], m[i+len(",p="):]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 {
		return nil, fmt.Errorf("%w: malformed client-final-message", ErrProtocol)
	}
	cbind, ok := strings.CutPrefix(attrs[0], "c=")
	if !ok {
		return nil, fmt.Errorf("%w: client-final-message has no channel binding", ErrProtocol)
	}
	gotBinding, err := base64.StdEncoding.Strict().DecodeString(cbind)
	want := []byte(s.gs2Header)
	if s.plus {
		want = append(want, s.endPoint...)
	}
	if err != nil || subtle.ConstantTimeCompare(gotBinding, want) != 1 {
		return nil, fmt.Errorf("%w: channel binding does not match the client-first-message", ErrProtocol)
	}
	nonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || nonce != s.nonce {
		return nil, fmt.Errorf("%w: nonce mismatch", ErrProtocol)
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(proof64)
	if err != nil || len(proof) != keyLen {
		return nil, fmt.Errorf("%w: malformed proof", ErrProtocol)
	}

	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof
	// holds if H(ClientKey) is StoredKey.
	clientKey := computeHMAC(s.v.StoredKey, authMessage)
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	storedKey := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(storedKey[:], s.v.StoredKey) != 1 {
		return nil, ErrClientProof
	}
	sig := hmac.New(sha256.New, s.v.ServerKey)
	sig.Write([]byte(authMessage))
	s.state = stateDone
	return []byte("v=" + base64.StdEncoding.EncodeToString(sig.Sum(nil))), nil
}
