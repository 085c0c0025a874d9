package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
)

// SASL mechanism names as PostgreSQL offers them in AuthenticationSASL.
const (
	SHA256     = "SCRAM-SHA-256"
	SHA256Plus = "SCRAM-SHA-256-PLUS"
)

// MaxIterations bounds the PBKDF2 iteration count a server may ask for, so that
// a hostile or misconfigured upstream cannot make the proxy spend unbounded CPU
// per login. PostgreSQL's default (scram_iterations) is 4096.
const MaxIterations = 10_000_000

var (
	// ErrNoMechanism is returned by NewClient when the server offers neither
	// SCRAM-SHA-256 nor SCRAM-SHA-256-PLUS.
	ErrNoMechanism = errors.New("scram: server offers no supported SASL mechanism")

	// ErrProtocol is wrapped by every error about a malformed or unexpected
	// server message, or a call out of order.
	ErrProtocol = errors.New("scram: protocol violation")

	// ErrServerSignature is returned by ServerFinal when the server's
	// signature does not match: the server does not know the password's
	// secret, or the exchange was tampered with.
	ErrServerSignature = errors.New("scram: server signature mismatch")
)

const (
	clientNonceLen = 18 // random bytes before base64, as libpq uses
	keyLen         = sha256.Size

	gs2NoBinding       = "n,,"
	gs2BindingNotOffer = "y,,"
	gs2ServerEndPoint  = "p=tls-server-end-point,,"
)

type state uint8

const (
	stateClientFirst state = iota // client-first sent, waiting for server-first
	stateServerFirst              // client-final sent, waiting for server-final
	stateDone                     // server verified
	stateFailed
)

// Client is one SCRAM exchange. It is not safe for concurrent use and cannot be
// reused: make a new Client for every authentication.
type Client struct {
	mechanism string
	password  string // SASLprep-normalised
	gs2Header string
	cbindData []byte // tls-server-end-point hash of the server certificate, PLUS only

	clientNonce     string
	clientFirstBare string

	saltedPassword []byte
	authMessage    []byte
	state          state
}

// NewClient starts an exchange. It picks SCRAM-SHA-256-PLUS when serverCert is
// non-nil and the server offers it, else SCRAM-SHA-256, and returns
// ErrNoMechanism if neither is offered. serverCert is the upstream's TLS leaf
// certificate, nil without TLS.
//
// The GS2 header tells the server what the client can do: "p=tls-server-end-point,,"
// with channel binding, "y,," when the connection has TLS but the server does
// not offer PLUS, "n,," without TLS. A certificate whose signature algorithm
// has no tls-server-end-point hash (RFC 5929 section 4.1; Ed25519, for example)
// cannot be bound: the exchange then uses SCRAM-SHA-256 with "n,,", because a
// "y,," while PLUS is offered is rejected by PostgreSQL as a downgrade.
func NewClient(mechanisms []string, password string, serverCert *x509.Certificate) (*Client, error) {
	raw := make([]byte, clientNonceLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("scram: client nonce: %w", err)
	}
	return newClient(mechanisms, password, serverCert, "", base64.StdEncoding.EncodeToString(raw))
}

// newClient is NewClient with the user name and client nonce chosen by the
// caller, for test vectors. PostgreSQL ignores the SCRAM user name (it takes
// the user from the startup message), so NewClient sends an empty one.
func newClient(mechanisms []string, password string, serverCert *x509.Certificate, user, nonce string) (*Client, error) {
	plusOffered := slices.Contains(mechanisms, SHA256Plus)
	c := &Client{password: normalizePassword(password), clientNonce: nonce}

	var cbind []byte
	if serverCert != nil && plusOffered {
		cbind = endPointHash(serverCert)
	}
	switch {
	case cbind != nil:
		c.mechanism, c.gs2Header, c.cbindData = SHA256Plus, gs2ServerEndPoint, cbind
	case slices.Contains(mechanisms, SHA256):
		c.mechanism, c.gs2Header = SHA256, gs2NoBinding
		if serverCert != nil && !plusOffered {
			c.gs2Header = gs2BindingNotOffer
		}
	default:
		return nil, fmt.Errorf("%w (offered: %s)", ErrNoMechanism, strings.Join(mechanisms, ", "))
	}

	c.clientFirstBare = "n=" + saslName(user) + ",r=" + nonce
	return c, nil
}

// endPointHash is the tls-server-end-point channel binding data (RFC 5929
// section 4.1): the certificate hashed with its signature's hash function, or
// with SHA-256 when that is MD5 or SHA-1. It is nil when the signature
// algorithm has no such hash.
func endPointHash(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}

// saslName escapes a SCRAM user name (RFC 5802 section 5.1).
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// Mechanism is the SASL mechanism the exchange uses, to be sent in
// SASLInitialResponse. SHA256Plus means the exchange is channel-bound.
func (c *Client) Mechanism() string { return c.mechanism }

// ClientFirst is the client-first-message, the data of SASLInitialResponse.
func (c *Client) ClientFirst() []byte {
	return []byte(c.gs2Header + c.clientFirstBare)
}

// ServerFirst takes the server-first-message (the data of
// AuthenticationSASLContinue) and returns the client-final-message, the data
// of SASLResponse. It rejects a nonce that does not extend the client's, a
// salt that is not base64 or is empty, and an iteration count that is not a
// positive integer of at most MaxIterations.
func (c *Client) ServerFirst(serverFirst []byte) ([]byte, error) {
	if c.state != stateClientFirst {
		return nil, fmt.Errorf("%w: server-first-message out of order", ErrProtocol)
	}
	c.state = stateFailed

	nonce, salt, iterations, err := parseServerFirst(serverFirst)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce) {
		return nil, fmt.Errorf("%w: server nonce does not extend the client nonce", ErrProtocol)
	}

	cbindInput := append([]byte(c.gs2Header), c.cbindData...)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbindInput) + ",r=" + nonce

	c.saltedPassword, err = pbkdf2.Key(sha256.New, c.password, salt, iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("scram: salted password: %w", err)
	}
	c.authMessage = slices.Concat([]byte(c.clientFirstBare), []byte{','}, serverFirst, []byte{','}, []byte(withoutProof))

	clientKey := computeHMAC(c.saltedPassword, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := computeHMAC(storedKey[:], string(c.authMessage))
	for i := range proof {
		proof[i] ^= clientKey[i]
	}

	c.state = stateServerFirst
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// parseServerFirst splits server-first-message =
// [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions].
func parseServerFirst(msg []byte) (nonce string, salt []byte, iterations int, err error) {
	attrs := strings.Split(string(msg), ",")
	if len(attrs) < 3 {
		return "", nil, 0, fmt.Errorf("%w: malformed server-first-message", ErrProtocol)
	}
	if strings.HasPrefix(attrs[0], "m=") {
		return "", nil, 0, fmt.Errorf("%w: unsupported mandatory extension in server-first-message", ErrProtocol)
	}
	nonce, ok := strings.CutPrefix(attrs[0], "r=")
	if !ok || nonce == "" {
		return "", nil, 0, fmt.Errorf("%w: server-first-message has no nonce", ErrProtocol)
	}
	for i := 0; i < len(nonce); i++ {
		// printable = %x21-2B / %x2D-7E (the comma is excluded by the split)
		if nonce[i] < 0x21 || nonce[i] > 0x7e {
			return "", nil, 0, fmt.Errorf("%w: server nonce has a non-printable character", ErrProtocol)
		}
	}
	b64, ok := strings.CutPrefix(attrs[1], "s=")
	if !ok {
		return "", nil, 0, fmt.Errorf("%w: server-first-message has no salt", ErrProtocol)
	}
	salt, err = base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(salt) == 0 {
		return "", nil, 0, fmt.Errorf("%w: invalid salt in server-first-message", ErrProtocol)
	}
	count, ok := strings.CutPrefix(attrs[2], "i=")
	if !ok {
		return "", nil, 0, fmt.Errorf("%w: server-first-message has no iteration count", ErrProtocol)
	}
	iterations, err = strconv.Atoi(count)
	if err != nil || iterations <= 0 || count[0] == '+' {
		return "", nil, 0, fmt.Errorf("%w: invalid iteration count %q", ErrProtocol, count)
	}
	if iterations > MaxIterations {
		return "", nil, 0, fmt.Errorf("%w: iteration count %d exceeds %d", ErrProtocol, iterations, MaxIterations)
	}
	return nonce, salt, iterations, nil
}

// ServerFinal takes the server-final-message (the data of
// AuthenticationSASLFinal) and verifies the server's signature in constant
// time. Only after it returns nil has the server proved that it knows the
// password's secret; until then AuthenticationOk must not be trusted.
func (c *Client) ServerFinal(serverFinal []byte) error {
	if c.state != stateServerFirst {
		return fmt.Errorf("%w: server-final-message out of order", ErrProtocol)
	}
	c.state = stateFailed

	attr, _, _ := bytes.Cut(serverFinal, []byte{','})
	if e, ok := bytes.CutPrefix(attr, []byte("e=")); ok {
		return fmt.Errorf("%w: server error %q", ErrProtocol, e)
	}
	v, ok := bytes.CutPrefix(attr, []byte("v="))
	if !ok {
		return fmt.Errorf("%w: server-final-message has no verifier", ErrProtocol)
	}
	got := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Strict().Decode(got, v)
	if err != nil {
		return fmt.Errorf("%w: invalid verifier encoding", ErrServerSignature)
	}

	serverKey := computeHMAC(c.saltedPassword, "Server Key")
	want := computeHMAC(serverKey, string(c.authMessage))
	if !hmac.Equal(got[:n], want) {
		return ErrServerSignature
	}
	c.state = stateDone
	return nil
}

// Verified reports whether ServerFinal has verified the server's signature.
// A caller must not accept AuthenticationOk before it is true: a server (or a
// man in the middle) that skips AuthenticationSASLFinal proves nothing.
func (c *Client) Verified() bool { return c.state == stateDone }

func computeHMAC(key []byte, msg string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}
