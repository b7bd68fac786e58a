package cckmclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// tokenPath is CipherTrust Manager's token endpoint.
const tokenPath = "/api/v1/auth/tokens"

// tokenSource holds the client's JWT and renews it: once at first use,
// before it expires, and when a call is refused with 401. Concurrent
// callers share one renewal. It never logs in for every call: each login
// mints a refresh token, and they pile up on the server (cm-api.md §1.2).
type tokenSource struct {
	creds       Credentials
	endpoint    string
	httpClient  *http.Client
	timeout     time.Duration
	renewMargin time.Duration
	log         zerolog.Logger
	now         func() time.Time
	onRenew     func(grant string, err error)
	scrub       func(text string, also ...string) string

	renewing chan struct{} // a one-slot lock held while a renewal runs

	mu           sync.Mutex
	jwt          string
	tokenType    string
	expiresAt    time.Time // when the JWT expires, by duration or exp
	renewAt      time.Time // when to renew it
	generation   uint64    // bumped at each renewal
	refreshToken Secret    // the latest refresh token
	retryRenewAt time.Time // after a failed early renewal, when to try again
}

// token returns a bearer token to use now and its generation, renewing it
// first if it is missing, expired or due.
func (ts *tokenSource) token(ctx context.Context) (string, uint64, error) {
	if ts.creds.Token != "" {
		return "Bearer " + ts.creds.Token.Reveal(), 0, nil
	}
	for {
		if header, gen, ok := ts.current(); ok {
			return header, gen, nil
		}
		select {
		case ts.renewing <- struct{}{}:
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
		header, gen, ok := ts.current()
		if ok {
			<-ts.renewing
			return header, gen, nil
		}
		err := ts.renew(ctx)
		<-ts.renewing
		if err == nil {
			continue
		}
		// A failed renewal of a token that is still good keeps the old token
		// a while; CipherTrust Manager may be back before it expires.
		ts.mu.Lock()
		stillValid := ts.jwt != "" && ts.now().Before(ts.expiresAt)
		if stillValid {
			ts.retryRenewAt = ts.now().Add(min(5*time.Second, ts.expiresAt.Sub(ts.now())/4))
		}
		ts.mu.Unlock()
		if !stillValid {
			return "", 0, &AuthError{Err: err}
		}
		ts.log.Warn().Err(err).Msg("renewing the CipherTrust Manager token failed; the current one is still valid")
	}
}

// current returns the JWT when it needs no renewal.
func (ts *tokenSource) current() (string, uint64, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	due := now.After(ts.renewAt) && now.After(ts.retryRenewAt)
	if ts.jwt == "" || !now.Before(ts.expiresAt) || due {
		return "", 0, false
	}
	return ts.tokenType + " " + ts.jwt, ts.generation, true
}

// liveSecrets returns the JWT and the refresh token held now, for scrubbing
// server text.
func (ts *tokenSource) liveSecrets() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return []string{ts.jwt, ts.refreshToken.Reveal()}
}

// invalidate drops the JWT of generation gen after CipherTrust Manager
// refused it, so that the next token call renews. It reports false for a
// static token, which cannot be renewed. Callers that saw a 401 on the same
// generation cause one renewal between them.
func (ts *tokenSource) invalidate(gen uint64) bool {
	if ts.creds.Token != "" {
		return false
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.generation == gen {
		ts.jwt = ""
		ts.retryRenewAt = time.Time{}
	}
	return true
}

// renew gets a new JWT: with the refresh token when there is one, falling
// back to the password grant when that token is refused and a password is
// configured.
func (ts *tokenSource) renew(ctx context.Context) error {
	ts.mu.Lock()
	refreshToken := ts.refreshToken
	ts.mu.Unlock()

	var err error
	if refreshToken != "" {
		// Renewal rotates the refresh token (the old one stops working).
		// The configured CCKM_REFRESH_TOKEN is never rotated: a restarted
		// worker, or a second instance with the same secret, must still be
		// able to use it. Tokens the worker got itself are rotated.
		err = ts.grant(ctx, map[string]any{
			"grant_type":          "refresh_token",
			"refresh_token":       refreshToken.Reveal(),
			"renew_refresh_token": refreshToken != ts.creds.RefreshToken,
		}, "refresh_token")
		// Only a refused refresh token is worth a password login: when
		// CipherTrust Manager is unreachable, a login would fail the same way
		// (or mint yet another refresh token).
		if err == nil || ts.creds.Password == "" || Retryable(err) {
			return err
		}
		ts.log.Warn().Err(err).Msg("the refresh-token grant was refused; logging in with the password")
	}
	body := map[string]any{
		"grant_type": "password",
		"username":   ts.creds.Username,
		"password":   ts.creds.Password.Reveal(),
	}
	if ts.creds.Domain != "" {
		body["domain"] = ts.creds.Domain
	}
	return ts.grant(ctx, body, "password")
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	JWT          string `json:"jwt"`
	Duration     int64  `json:"duration"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
}

// grant calls the token endpoint once and stores what it returns.
func (ts *tokenSource) grant(ctx context.Context, body map[string]any, grantType string) (err error) {
	defer func() {
		if ts.onRenew != nil {
			ts.onRenew(grantType, err)
		}
	}()
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ts.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.endpoint, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	op := "token " + grantType + " grant"
	sentAt := ts.now()
	resp, err := ts.httpClient.Do(req)
	if err != nil {
		return &UnreachableError{Op: op, Err: stripURL(err)}
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize))
	if err != nil {
		return &UnreachableError{Op: op, Err: stripURL(err)}
	}
	if resp.StatusCode/100 != 2 {
		apiErr := newAPIError(op, resp.StatusCode, resp.Header, respBody, ts.now())
		apiErr.Message, apiErr.CodeDesc = ts.scrub(apiErr.Message), ts.scrub(apiErr.CodeDesc)
		return apiErr
	}
	var tok tokenResponse
	if err := json.Unmarshal(respBody, &tok); err != nil || tok.JWT == "" {
		return &APIError{Op: op, StatusCode: resp.StatusCode, Message: "the token response holds no jwt"}
	}

	expiresAt := jwtExpiry(tok.JWT)
	if tok.Duration > 0 {
		byDuration := sentAt.Add(time.Duration(tok.Duration) * time.Second)
		if expiresAt.IsZero() || byDuration.Before(expiresAt) {
			expiresAt = byDuration
		}
	}
	if expiresAt.IsZero() {
		expiresAt = sentAt.Add(defaultTokenLifetime)
	}
	lifetime := expiresAt.Sub(sentAt)
	margin := min(ts.renewMargin, lifetime/5)

	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.jwt = tok.JWT
	ts.tokenType = "Bearer" // CipherTrust Manager sends "Bearer"; nothing else is known to work.
	ts.expiresAt = expiresAt
	ts.renewAt = expiresAt.Add(-margin)
	ts.retryRenewAt = time.Time{}
	ts.generation++
	if tok.RefreshToken != "" {
		ts.refreshToken = Secret(tok.RefreshToken)
	}
	ts.log.Debug().Str("grant", grantType).Dur("lifetime", lifetime).Msg("got a CipherTrust Manager token")
	return nil
}

// defaultTokenLifetime is assumed when a token response says neither
// duration nor exp: CipherTrust Manager's documented 300 s.
const defaultTokenLifetime = 300 * time.Second

// jwtExpiry reads the exp claim of a JWT without checking its signature
// (the client only needs to know when to renew), or returns zero.
func jwtExpiry(jwt string) time.Time {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	seconds, err := claims.Exp.Float64()
	if err != nil || seconds <= 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(seconds*float64(time.Second)))
}

// stripURL removes the URL from a *url.Error so that errors name the
// operation, not a URL that might carry a user's query.
func stripURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		return urlErr.Err
	}
	return err
}
