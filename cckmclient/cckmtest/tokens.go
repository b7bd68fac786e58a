package cckmtest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Grant types the token endpoint accepts.
const (
	grantPassword     = "password"
	grantRefreshToken = "refresh_token"
)

// tokenResponse is the body of a successful token request.
type tokenResponse struct {
	JWT            string `json:"jwt"`
	Duration       int64  `json:"duration"`
	TokenType      string `json:"token_type"`
	RefreshToken   string `json:"refresh_token"`
	RefreshTokenID string `json:"refresh_token_id"`
	ClientID       string `json:"client_id"`
}

// refreshTokenInfo is what the server remembers about a valid refresh token.
type refreshTokenInfo struct {
	id       string
	username string
}

// tokenStore issues and checks JWTs and refresh tokens.
type tokenStore struct {
	lifetime    time.Duration
	staticToken string
	signingKey  []byte
	clientID    string
	subject     string

	mu            sync.RWMutex
	jwtExpiry     map[string]time.Time // every JWT issued, with its exact expiry
	refreshTokens map[string]refreshTokenInfo
	grants        map[string]int
}

// newTokenStore returns a store configured by opts, with opts.RefreshToken valid.
func newTokenStore(opts Options) *tokenStore {
	store := &tokenStore{
		lifetime:      opts.TokenLifetime,
		staticToken:   opts.StaticToken,
		signingKey:    make([]byte, 32),
		clientID:      newUUID(),
		subject:       "local|" + newUUID(),
		jwtExpiry:     make(map[string]time.Time),
		refreshTokens: make(map[string]refreshTokenInfo),
		grants:        make(map[string]int),
	}
	_, _ = rand.Read(store.signingKey)
	if opts.RefreshToken != "" {
		store.refreshTokens[opts.RefreshToken] = refreshTokenInfo{id: newUUID(), username: opts.Username}
	}
	return store
}

// durationSeconds is the lifetime as the response's duration: whole seconds, rounded up,
// at least 1.
func (t *tokenStore) durationSeconds() int64 {
	seconds := int64((t.lifetime + time.Second - 1) / time.Second)
	return max(seconds, 1)
}

// issueLocked makes a new JWT for username and answers it with refreshToken, which must already be
// in t.refreshTokens; step shapes what the answer says of the JWT's lifetime, never the lifetime
// itself. The caller holds t.mu for writing.
func (t *tokenStore) issueLocked(grant, username, refreshToken string, step TokenStep) tokenResponse {
	now := time.Now()
	expires := now.Add(t.lifetime)
	claimed := jwtClaims{
		Subject:           t.subject,
		PreferredUsername: username,
		IssuedAt:          now.Add(step.ClockOffset).Unix(),
		Expires:           expires.Add(step.ClockOffset).Unix(),
	}
	if step.NoIssuedAt {
		claimed.IssuedAt = 0
	}
	jwt := signJWT(t.signingKey, claimed)
	t.jwtExpiry[jwt] = expires
	t.grants[grant]++
	duration := t.durationSeconds()
	switch {
	case step.NoDuration:
		duration = 0
	case step.Duration != 0:
		duration = step.Duration
	}
	return tokenResponse{
		JWT:            jwt,
		Duration:       duration,
		TokenType:      "Bearer",
		RefreshToken:   refreshToken,
		RefreshTokenID: t.refreshTokens[refreshToken].id,
		ClientID:       t.clientID,
	}
}

// passwordGrant issues a JWT, shaped by step, and a new refresh token to username.
func (t *tokenStore) passwordGrant(username string, step TokenStep) tokenResponse {
	refreshToken := newRefreshToken()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refreshTokens[refreshToken] = refreshTokenInfo{id: newUUID(), username: username}
	return t.issueLocked(grantPassword, username, refreshToken, step)
}

// refreshGrant issues a JWT, shaped by step, for a valid refresh token. With renew, the old
// refresh token is revoked and a new one answered; without, the same one is answered and stays
// valid.
func (t *tokenStore) refreshGrant(refreshToken string, renew bool, step TokenStep) (tokenResponse, bool) {
	replacement := ""
	if renew {
		replacement = newRefreshToken()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	info, valid := t.refreshTokens[refreshToken]
	if !valid || refreshToken == "" {
		return tokenResponse{}, false
	}
	if renew {
		delete(t.refreshTokens, refreshToken)
		t.refreshTokens[replacement] = refreshTokenInfo{id: newUUID(), username: info.username}
		refreshToken = replacement
	}
	return t.issueLocked(grantRefreshToken, info.username, refreshToken, step), true
}

// authorize checks an Authorization header value and returns "" when it carries an accepted
// bearer token, or else the message of the 401 to answer.
func (t *tokenStore) authorize(header string, now time.Time) string {
	const malformed = "Unauthorized: Bearer token malformed"
	scheme, token, found := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return malformed
	}
	if t.staticToken != "" && token == t.staticToken {
		return ""
	}
	t.mu.RLock()
	expires, issued := t.jwtExpiry[token]
	t.mu.RUnlock()
	if !issued {
		return malformed
	}
	if now.Before(expires) {
		return ""
	}
	expiredBy := max(now.Sub(expires).Round(time.Second), time.Second)
	return fmt.Sprintf("%s: Token is expired by %v", malformed, expiredBy)
}

// ExpireTokens makes every JWT issued so far expired from now on. StaticToken stays valid.
func (s *Server) ExpireTokens() {
	now := time.Now()
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	for jwt, expires := range s.tokens.jwtExpiry {
		if expires.After(now) {
			s.tokens.jwtExpiry[jwt] = now
		}
	}
}

// RevokeRefreshTokens makes every refresh token issued so far, and Options.RefreshToken,
// invalid, so that a client has to fall back to the password grant.
func (s *Server) RevokeRefreshTokens() {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	clear(s.tokens.refreshTokens)
}

// Grants returns how many token requests succeeded, by grant_type ("password",
// "refresh_token").
func (s *Server) Grants() map[string]int {
	s.tokens.mu.RLock()
	defer s.tokens.mu.RUnlock()
	grants := make(map[string]int, len(s.tokens.grants))
	for grant, count := range s.tokens.grants {
		grants[grant] = count
	}
	return grants
}

// newRefreshToken returns a random opaque refresh token.
func newRefreshToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
