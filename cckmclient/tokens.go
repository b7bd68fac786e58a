package cckmclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// tokenPath is CipherTrust Manager's token endpoint.
const tokenPath = "/api/v1/auth/tokens"

// Limits on asking the token endpoint.
const (
	// minGrantInterval is the least time between two token requests of one
	// client, whatever the last one answered. Without it a CipherTrust
	// Manager whose clock is behind ours, or that answers a lifetime of
	// zero, is asked for a new token in a tight loop (thousands a second),
	// and a failing token endpoint is hammered by every waiting call.
	minGrantInterval = time.Second
	// maxGrantHold caps how long a Retry-After from the token endpoint holds
	// every later token request: a stray huge value must not stop the
	// client for long, and a call's own retry budget still decides whether
	// it waits.
	maxGrantHold = time.Minute
)

// tokenSource holds the client's JWT and renews it: once at first use,
// before it expires, and when a call is refused with 401. Concurrent
// callers share one renewal, and its failure. It never logs in for every
// call: each login mints a refresh token, and they pile up on the server.
// Whatever the token endpoint answers, it is asked at most once per
// minGrantInterval.
type tokenSource struct {
	creds       Credentials
	endpoint    string
	httpClient  *http.Client
	timeout     time.Duration
	renewMargin time.Duration
	log         zerolog.Logger
	tracer      trace.Tracer // a no-op one unless the client is traced
	now         func() time.Time
	onRenew     func(grant string, err error)
	scrub       func(text string, also ...string) string

	renewing chan struct{} // a one-slot lock held while a renewal runs

	mu           sync.Mutex
	jwt          string
	tokenType    string
	grantedAt    time.Time // when the current JWT was asked for
	expiresAt    time.Time // when the JWT expires, by our clock
	renewAt      time.Time // when to renew it
	generation   uint64    // bumped at each renewal
	refreshToken Secret    // the latest refresh token
	retryRenewAt time.Time // after a failed early renewal, when to try again
	nextGrantAt  time.Time // the earliest time the token endpoint may be asked again
	lastGrantErr error     // the last token request's error; nil after a success
	grantsSent   uint64    // token requests sent
	renewals     uint64    // renewals that sent a token request, successful or not
	lastRenewErr error     // the last such renewal's error; nil after a success
}

// tokenState is what a caller of token needs to know, read under the lock.
type tokenState struct {
	header   string // the Authorization value of the JWT held
	gen      uint64
	usable   bool   // the JWT may be sent now
	due      bool   // a renewal should be started now
	renewals uint64 // tokenSource.renewals
	lastErr  error  // tokenSource.lastRenewErr
}

// state reads the token's state as of now. A JWT is usable until it
// expires by our clock, and in any case for minGrantInterval after it was
// asked for: a token just obtained is sent even when its lifetime says it
// has expired already, for CipherTrust Manager is the judge (a 401 then
// renews it, at the allowed pace).
func (ts *tokenSource) state() tokenState {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	usable := ts.jwt != "" && (now.Before(ts.expiresAt) || now.Before(ts.grantedAt.Add(minGrantInterval)))
	st := tokenState{
		usable:   usable,
		renewals: ts.renewals,
		lastErr:  ts.lastRenewErr,
		due:      !usable || (!now.Before(ts.renewAt) && !now.Before(ts.retryRenewAt) && !now.Before(ts.nextGrantAt)),
	}
	if usable {
		st.header, st.gen = ts.tokenType+" "+ts.jwt, ts.generation
	}
	return st
}

// token returns a bearer token to use now and its generation, renewing it
// first if it is missing, expired or due. It makes at most one renewal, and
// returns when ctx ends.
func (ts *tokenSource) token(ctx context.Context) (string, uint64, error) {
	if ts.creds.Token != "" {
		return "Bearer " + ts.creds.Token.Reveal(), 0, nil
	}
	st := ts.state()
	if !st.due {
		return st.header, st.gen, nil
	}
	if st.usable {
		// Due for an early renewal: start it unless another caller has,
		// and use the token held meanwhile.
		select {
		case ts.renewing <- struct{}{}:
		default:
			return st.header, st.gen, nil
		}
	} else {
		select {
		case ts.renewing <- struct{}{}:
		case <-ctx.Done():
			ts.mu.Lock()
			lastErr := ts.lastGrantErr
			ts.mu.Unlock()
			return "", 0, &AuthError{Err: notSentError(lastErr, "waited for the renewal in progress", ctx.Err())}
		}
	}
	defer func() { <-ts.renewing }()
	return ts.renewHeld(ctx, st.renewals)
}

// renewHeld renews the token; the caller holds the renewal slot. seen is
// the number of renewals finished when the caller began to wait for it.
func (ts *tokenSource) renewHeld(ctx context.Context, seen uint64) (string, uint64, error) {
	st := ts.state()
	if !st.due {
		return st.header, st.gen, nil // renewed by another caller meanwhile
	}
	if st.renewals != seen && st.lastErr != nil && !st.usable {
		// The renewal this caller waited for failed: its answer is this
		// caller's too, rather than one more token request at once.
		return "", 0, &AuthError{Err: st.lastErr}
	}
	ts.mu.Lock()
	sentBefore := ts.grantsSent
	ts.mu.Unlock()
	err := ts.renew(ctx)
	ts.mu.Lock()
	if ts.grantsSent != sentBefore {
		// Only the token endpoint's own answer is shared: a renewal that
		// sent nothing before this caller's deadline says nothing of the
		// deadlines of the callers waiting for it.
		ts.renewals++
		ts.lastRenewErr = err
	}
	header, gen := ts.tokenType+" "+ts.jwt, ts.generation
	now := ts.now()
	// A failed renewal of a token that is still good keeps the old token
	// a while; CipherTrust Manager may be back before it expires.
	keepOld := err != nil && ts.jwt != "" && now.Before(ts.expiresAt)
	if keepOld {
		ts.retryRenewAt = now.Add(min(5*time.Second, ts.expiresAt.Sub(now)/4))
	}
	ts.mu.Unlock()
	switch {
	case err == nil:
		return header, gen, nil // the new token, whatever our clock says of it
	case keepOld:
		ts.log.Warn().Err(err).Msg("renewing the CipherTrust Manager token failed; the current one is still valid")
		return header, gen, nil
	}
	return "", 0, &AuthError{Err: err}
}

// waitForGrant waits until the token endpoint may be asked again. When ctx
// ends first, or its deadline comes before that time, it returns at once
// with an error that needs no answer of CipherTrust Manager's.
func (ts *tokenSource) waitForGrant(ctx context.Context) error {
	ts.mu.Lock()
	wait := ts.nextGrantAt.Sub(ts.now())
	lastErr := ts.lastGrantErr
	ts.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && ts.now().Add(wait).After(deadline) {
		return notSentError(lastErr, "the next one is allowed after the call's deadline", context.DeadlineExceeded)
	}
	if err := sleepContext(ctx, wait); err != nil {
		return notSentError(lastErr, "waited for the next one allowed", err)
	}
	return nil
}

// notSentError is the error of a token request that was not sent because
// cause (the end of the call's context) came first; why says what the call
// was waiting for. When the previous token request failed in a way that
// may pass (5xx, 429, no answer), that answer is the more useful one, with
// its Retry-After.
func notSentError(lastErr error, why string, cause error) error {
	if lastErr != nil && Retryable(lastErr) {
		return lastErr
	}
	return &UnreachableError{Op: "token request", Err: fmt.Errorf("not sent: %s: %w", why, cause)}
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

// stripURL removes the URL from a *url.Error so that errors name the
// operation, not a URL that might carry a user's query.
func stripURL(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		return urlErr.Err
	}
	return err
}
