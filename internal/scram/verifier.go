package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultIterations is the PBKDF2 iteration count of new verifiers,
// PostgreSQL's default scram_iterations.
const DefaultIterations = 4096

// saltLen is the salt length of new verifiers, PostgreSQL's
// SCRAM_DEFAULT_SALT_LEN.
const saltLen = 16

// ErrVerifierFormat is wrapped by ParseVerifier's errors.
var ErrVerifierFormat = errors.New("scram: not a SCRAM-SHA-256 verifier")

// Verifier is what a server stores instead of a password: the salt and
// iteration count the client derives its keys with, and StoredKey and
// ServerKey (RFC 5802 section 3), from which the password cannot be
// recovered but a proof can be checked.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte // H(ClientKey)
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key")
}

// NewVerifier derives a verifier for password with a random salt and
// iterations (DefaultIterations when 0). The password is prepared with
// SASLprep as PostgreSQL prepares it, so the verifier accepts the proofs
// of any client that logs in to PostgreSQL with the same password.
func NewVerifier(password string, iterations int) (*Verifier, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < 1 || iterations > MaxIterations {
		return nil, fmt.Errorf("scram: iteration count %d out of range 1..%d", iterations, MaxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("scram: salt: %w", err)
	}
	return deriveVerifier(password, salt, iterations)
}

func deriveVerifier(password string, salt []byte, iterations int) (*Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, normalizePassword(password), salt, iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("scram: salted password: %w", err)
	}
	storedKey := sha256.Sum256(computeHMAC(salted, "Client Key"))
	return &Verifier{
		Iterations: iterations,
		Salt:       salt,
		StoredKey:  storedKey[:],
		ServerKey:  computeHMAC(salted, "Server Key"),
	}, nil
}

// ParseVerifier reads a verifier in PostgreSQL's format, as pg_authid's
// rolpassword holds it:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// with the salt and keys in base64.
func ParseVerifier(s string) (*Verifier, error) {
	rest, ok := strings.CutPrefix(s, SHA256+"$")
	if !ok {
		return nil, fmt.Errorf("%w: want prefix %s$", ErrVerifierFormat, SHA256)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, fmt.Errorf("%w: no keys", ErrVerifierFormat)
	}
	iter, salt64, ok := strings.Cut(params, ":")
	if !ok {
		return nil, fmt.Errorf("%w: no salt", ErrVerifierFormat)
	}
	stored64, server64, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, fmt.Errorf("%w: no server key", ErrVerifierFormat)
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n < 1 || n > MaxIterations || iter[0] == '+' {
		return nil, fmt.Errorf("%w: invalid iteration count %q", ErrVerifierFormat, iter)
	}
	v := &Verifier{Iterations: n}
	dec := base64.StdEncoding.Strict()
	if v.Salt, err = dec.DecodeString(salt64); err != nil || len(v.Salt) == 0 {
		return nil, fmt.Errorf("%w: invalid salt", ErrVerifierFormat)
	}
	if v.StoredKey, err = dec.DecodeString(stored64); err != nil || len(v.StoredKey) != keyLen {
		return nil, fmt.Errorf("%w: invalid stored key", ErrVerifierFormat)
	}
	if v.ServerKey, err = dec.DecodeString(server64); err != nil || len(v.ServerKey) != keyLen {
		return nil, fmt.Errorf("%w: invalid server key", ErrVerifierFormat)
	}
	return v, nil
}

// String encodes v in PostgreSQL's format (see ParseVerifier).
func (v *Verifier) String() string {
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", SHA256, v.Iterations, enc(v.Salt), enc(v.StoredKey), enc(v.ServerKey))
}

// Check reports whether password is the one v was derived from. It costs
// the PBKDF2 iterations and compares in constant time, as PostgreSQL's
// scram_verify_plain_password does for a cleartext password.
func (v *Verifier) Check(password string) bool {
	salted, err := pbkdf2.Key(sha256.New, normalizePassword(password), v.Salt, v.Iterations, keyLen)
	if err != nil {
		return false
	}
	storedKey := sha256.Sum256(computeHMAC(salted, "Client Key"))
	serverKey := computeHMAC(salted, "Server Key")
	// Both comparisons always run: no early exit on the first mismatch.
	ok := subtle.ConstantTimeCompare(storedKey[:], v.StoredKey) & subtle.ConstantTimeCompare(serverKey, v.ServerKey)
	return ok == 1
}

// MockVerifier is a stand-in verifier for a user that does not exist, as
// PostgreSQL's scram_mock_salt makes one: the salt is derived from key and
// the user name, so it is the same for the same name every time, and an
// exchange with it looks like one with a real verifier of iterations
// (DefaultIterations when 0). No password matches it but by chance of
// 2^-256; a server must still fail the exchange whatever the proof.
func MockVerifier(key []byte, user string, iterations int) *Verifier {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("pgwarden mock salt\x00" + user))
	sum := mac.Sum(nil)
	return &Verifier{
		Iterations: iterations,
		Salt:       sum[:saltLen],
		StoredKey:  computeHMAC(sum, "Stored Key"),
		ServerKey:  computeHMAC(sum, "Server Key"),
	}
}
