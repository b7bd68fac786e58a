package cckmclient

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// Bounds of a token's lifetime as the client reckons it.
const (
	// defaultTokenLifetime is assumed when a token response says neither
	// duration nor exp: CipherTrust Manager's documented 300 s.
	defaultTokenLifetime = 300 * time.Second
	// maxTokenLifetime caps what a token response can claim. A duration of
	// 1e12 seconds would overflow time.Duration and read as already
	// expired; and a token renewed at least daily cannot outlive a revoked
	// account by long.
	maxTokenLifetime = 24 * time.Hour
)

// maxClaimSeconds caps the iat and exp claims: a later time (past the year
// 9999) is read as that, so that converting it cannot overflow.
const maxClaimSeconds = 253402300799

// jwtTimes are the iat and exp claims of a JWT; zero where absent.
type jwtTimes struct {
	issuedAt, expiresAt time.Time
}

// tokenLifetime says how long a token just received stays valid, counted
// from sentAt, when its request was sent. CipherTrust Manager checks a
// token against its own clock, so what counts is the lifetime relative to
// that clock: the response's duration and the JWT's exp − iat, the shorter
// of the two. Only a JWT without iat, in a response without a positive
// duration, has its exp compared with this machine's clock; with neither,
// the lifetime is defaultTokenLifetime. The result is at most
// maxTokenLifetime, and zero or negative when the token says it has expired
// already (the caller then still uses it once: CipherTrust Manager judges).
func tokenLifetime(durationSeconds int64, claims jwtTimes, sentAt time.Time) time.Duration {
	lifetime, known := time.Duration(0), false
	if durationSeconds > 0 {
		lifetime = time.Duration(min(durationSeconds, int64(maxTokenLifetime/time.Second))) * time.Second
		known = true
	}
	if !claims.issuedAt.IsZero() && !claims.expiresAt.IsZero() {
		byClaims := claims.expiresAt.Sub(claims.issuedAt) // saturates rather than overflows
		if !known || byClaims < lifetime {
			lifetime = byClaims
		}
		known = true
	}
	if !known && !claims.expiresAt.IsZero() {
		lifetime, known = claims.expiresAt.Sub(sentAt), true
	}
	if !known {
		lifetime = defaultTokenLifetime
	}
	return min(lifetime, maxTokenLifetime)
}

// readJWTTimes reads the iat and exp claims of a JWT without checking its
// signature (the client only needs to know when to renew). A claim that is
// missing, not a positive number, or not readable is zero.
func readJWTTimes(jwt string) jwtTimes {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return jwtTimes{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return jwtTimes{}
	}
	var claims struct {
		IssuedAt  json.Number `json:"iat"`
		ExpiresAt json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return jwtTimes{}
	}
	return jwtTimes{issuedAt: claimTime(claims.IssuedAt), expiresAt: claimTime(claims.ExpiresAt)}
}

// claimTime converts a NumericDate claim (seconds, possibly fractional) to a
// time, or zero.
func claimTime(claim json.Number) time.Time {
	seconds, err := claim.Float64() // too large a number is +Inf, with an error
	if (err != nil && !math.IsInf(seconds, 1)) || math.IsNaN(seconds) || seconds <= 0 {
		return time.Time{}
	}
	seconds = min(seconds, maxClaimSeconds)
	whole, fraction := math.Modf(seconds)
	return time.Unix(int64(whole), int64(fraction*float64(time.Second)))
}
