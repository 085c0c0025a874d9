package scram

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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

// Server is the server side of one SCRAM-SHA-256 exchange against a stored
// Verifier, for a server that offers SCRAM-SHA-256 and not
// SCRAM-SHA-256-PLUS. It follows PostgreSQL's auth-scram.c: the user name
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

	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
	state           state
}

// NewServer starts an exchange against v.
func NewServer(v *Verifier) *Server {
	return &Server{v: v}
}

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
	switch {
	case flag == "n", flag == "y":
		// "y": the client could bind but thinks the server cannot, which
		// is true: this server never offers SCRAM-SHA-256-PLUS.
	case strings.HasPrefix(flag, "p="):
		return nil, fmt.Errorf("%w: channel binding requested, but SCRAM-SHA-256-PLUS was not offered", ErrProtocol)
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
	if err != nil || string(gotBinding) != s.gs2Header {
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
