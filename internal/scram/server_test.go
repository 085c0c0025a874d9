package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// testServer is the server side of one SCRAM-SHA-256(-PLUS) exchange, written
// from RFC 5802 and PostgreSQL's auth-scram.c behaviour, to drive Client in
// tests without a network.
type testServer struct {
	storedKey, serverKey []byte
	salt                 []byte
	iterations           int
	serverNonce          string
	plusOffered          bool
	cbindData            []byte // the server's own tls-server-end-point hash; nil without TLS

	mechanism       string
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
}

func newTestServer(password string, plusOffered bool, cbindData []byte) *testServer {
	salt := []byte("pgwarden-test-salt")
	const iterations = 4096
	salted, err := pbkdf2.Key(sha256.New, normalizePassword(password), salt, iterations, sha256.Size)
	if err != nil {
		panic(err)
	}
	clientKey := computeHMAC(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	return &testServer{
		storedKey:   storedKey[:],
		serverKey:   computeHMAC(salted, "Server Key"),
		salt:        salt,
		iterations:  iterations,
		serverNonce: "c2VydmVyLW5vbmNl+/srv",
		plusOffered: plusOffered,
		cbindData:   cbindData,
	}
}

func (s *testServer) mechanisms() []string {
	if s.plusOffered {
		return []string{SHA256Plus, SHA256}
	}
	return []string{SHA256}
}

// clientFirst checks the SASLInitialResponse and returns server-first.
func (s *testServer) clientFirst(mechanism string, msg []byte) ([]byte, error) {
	s.mechanism = mechanism
	m := string(msg)
	switch {
	case strings.HasPrefix(m, "p=tls-server-end-point,,"):
		if mechanism != SHA256Plus || s.cbindData == nil {
			return nil, errors.New("channel binding requested without PLUS")
		}
		s.gs2Header = "p=tls-server-end-point,,"
	case strings.HasPrefix(m, "y,,"):
		// The client thinks we do not support channel binding.
		if s.plusOffered && s.cbindData != nil {
			return nil, errors.New("channel binding negotiation error")
		}
		s.gs2Header = "y,,"
	case strings.HasPrefix(m, "n,,"):
		s.gs2Header = "n,,"
	default:
		return nil, fmt.Errorf("bad GS2 header in %q", m)
	}
	if mechanism == SHA256Plus && s.gs2Header[0] != 'p' {
		return nil, errors.New("PLUS without channel binding")
	}
	s.clientFirstBare = strings.TrimPrefix(m, s.gs2Header)
	_, clientNonce, ok := strings.Cut(s.clientFirstBare, ",r=")
	if !ok || !strings.HasPrefix(s.clientFirstBare, "n=") || clientNonce == "" {
		return nil, fmt.Errorf("bad client-first-message-bare %q", s.clientFirstBare)
	}
	s.nonce = clientNonce + s.serverNonce
	s.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", s.nonce, base64.StdEncoding.EncodeToString(s.salt), s.iterations)
	return []byte(s.serverFirst), nil
}

// clientFinal checks binding, nonce and proof, and returns server-final.
func (s *testServer) clientFinal(msg []byte) ([]byte, error) {
	withoutProof, proofB64, ok := strings.Cut(string(msg), ",p=")
	if !ok {
		return nil, errors.New("no proof")
	}
	cbind, nonce, ok := strings.Cut(withoutProof, ",r=")
	if !ok || !strings.HasPrefix(cbind, "c=") {
		return nil, fmt.Errorf("bad client-final-message %q", msg)
	}
	gotBinding, err := base64.StdEncoding.DecodeString(cbind[2:])
	if err != nil {
		return nil, err
	}
	wantBinding := []byte(s.gs2Header)
	if s.gs2Header[0] == 'p' {
		wantBinding = append(wantBinding, s.cbindData...)
	}
	if !bytes.Equal(gotBinding, wantBinding) {
		return nil, errors.New("channel binding mismatch")
	}
	if nonce != s.nonce {
		return nil, errors.New("nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return nil, errors.New("bad proof encoding")
	}

	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	clientKey := computeHMAC(s.storedKey, authMessage)
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	storedKey := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(storedKey[:], s.storedKey) != 1 {
		return nil, errors.New("password authentication failed")
	}
	sig := hmac.New(sha256.New, s.serverKey)
	sig.Write([]byte(authMessage))
	return []byte("v=" + base64.StdEncoding.EncodeToString(sig.Sum(nil))), nil
}
