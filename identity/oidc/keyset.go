package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet is the issuer's signing keys, fetched from its JWKS URL and
// cached. It implements go-oidc's KeySet.
type keySet struct {
	url        string
	client     *http.Client
	algs       []jose.SignatureAlgorithm
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time
	log        *slog.Logger

	fetchMu sync.Mutex // one fetch at a time

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last attempt
}

// note carries a refusal of VerifySignature back through go-oidc, whose
// errors have no type.
type note struct{ refusal *Refusal }

type noteKey struct{}

// maxJWKSSize bounds the JWKS document read.
const maxJWKSSize = 1 << 20

// VerifySignature implements oidc.KeySet: it returns the payload of raw when
// one of the issuer's keys signed it.
func (k *keySet) VerifySignature(ctx context.Context, raw string) (payload []byte, err error) {
	defer func() {
		var r *Refusal
		if n, ok := ctx.Value(noteKey{}).(*note); ok && errors.As(err, &r) {
			n.refusal = r
		}
	}()
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, refuse(ReasonMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(ReasonMalformed, errors.New("want exactly one signature"))
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, fresh := k.lookup(kid)
	if fresh && len(keys) > 0 && k.age() >= keysRecheck {
		// Keys the provider has withdrawn stop verifying within the
		// hour; if it cannot be reached, the cached keys go on.
		if err := k.refresh(ctx, false); err == nil {
			keys, fresh = k.lookup(kid)
		} else if !errors.Is(err, errRefreshLimited) {
			k.log.Warn("oidc_jwks_refresh_failed", "error", err)
		}
	}
	if len(keys) == 0 || !fresh {
		if err := k.refresh(ctx, !fresh); err != nil {
			if !fresh {
				return nil, refuse(ReasonKeysExpired, err)
			}
			k.log.Warn("oidc_jwks_refresh_failed", "error", err)
		}
		keys, fresh = k.lookup(kid)
		if !fresh {
			return nil, refuse(ReasonKeysExpired, fmt.Errorf("keys fetched more than %s ago", k.maxAge))
		}
	}
	if len(keys) == 0 {
		return nil, refuse(ReasonUnknownKey, fmt.Errorf("no key with kid %q", kid))
	}
	for _, key := range keys {
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	return nil, refuse(ReasonBadSignature, fmt.Errorf("signature does not verify with key %q", kid))
}

// lookup returns the cached keys with id kid (every key when kid is
// empty), and whether the cache is younger than maxAge.
func (k *keySet) lookup(kid string) (keys []jose.JSONWebKey, fresh bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			keys = append(keys, key)
		}
	}
	return keys, !k.fetchedAt.IsZero() && k.now().Sub(k.fetchedAt) < k.maxAge
}

// keysRecheck is the age past which cached keys are fetched again even
// when the token's key is among them.
const keysRecheck = time.Hour

// age is the time since the keys were last fetched.
func (k *keySet) age() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.now().Sub(k.fetchedAt)
}

// errRefreshLimited says that the keys were fetched too recently to be
// fetched again.
var errRefreshLimited = errors.New("keys fetched less than the minimum refresh interval ago")

// refresh fetches the keys unless they were tried less than minRefresh
// ago (force: whatever the time, for keys past their maximum age).
func (k *keySet) refresh(ctx context.Context, force bool) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	k.mu.Lock()
	since := k.now().Sub(k.triedAt)
	if !k.triedAt.IsZero() && since < k.minRefresh && !(force && since >= time.Second) {
		k.mu.Unlock()
		return errRefreshLimited
	}
	k.triedAt = k.now()
	k.mu.Unlock()

	keys, err := k.fetch(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.keys, k.fetchedAt = keys, k.now()
	k.mu.Unlock()
	k.log.Info("oidc_jwks_fetched", "keys", len(keys), "jwks_uri", k.url)
	return nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: %s: %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize))
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys = append(keys, key)
		}
	}
	return keys, nil
}
