package cckmclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
)

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	JWT          string      `json:"jwt"`
	Duration     json.Number `json:"duration"` // read leniently: it may be huge, or a fraction
	TokenType    string      `json:"token_type"`
	RefreshToken string      `json:"refresh_token"`
}

// grant calls the token endpoint once, when minGrantInterval (or a
// Retry-After) allows, and stores what it returns.
func (ts *tokenSource) grant(ctx context.Context, body map[string]any, grantType string) error {
	if err := ts.waitForGrant(ctx); err != nil {
		return err
	}
	sentAt := ts.now()
	ts.mu.Lock()
	ts.nextGrantAt = sentAt.Add(minGrantInterval)
	ts.grantsSent++
	ts.mu.Unlock()
	err := ts.request(ctx, body, grantType, sentAt)
	ts.mu.Lock()
	ts.lastGrantErr = err
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		ts.nextGrantAt = later(ts.nextGrantAt, ts.now().Add(min(apiErr.RetryAfter, maxGrantHold)))
	}
	ts.mu.Unlock()
	if ts.onRenew != nil {
		ts.onRenew(grantType, err)
	}
	return err
}

// request sends one token request, sent at sentAt, and stores the token it
// returns.
func (ts *tokenSource) request(ctx context.Context, body map[string]any, grantType string, sentAt time.Time) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ts.timeout)
	defer cancel()
	// The span holds the endpoint and the grant type: the body, which holds
	// the credentials, stays out of it.
	ctx, span := startAttemptSpan(ctx, ts.tracer, http.MethodPost, ts.endpoint,
		attribute.String("cckm.operation", "token"), attribute.String("cckm.grant_type", grantType))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.endpoint, bytes.NewReader(payload))
	if err != nil {
		endAttemptSpan(span, 0, err)
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if span.SpanContext().IsValid() {
		traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	status, err := ts.send(req, grantType, sentAt)
	endAttemptSpan(span, status, err)
	return err
}

// send sends a token request and stores the token it returns. It returns
// the HTTP status (0 when no answer came).
func (ts *tokenSource) send(req *http.Request, grantType string, sentAt time.Time) (int, error) {
	op := "token " + grantType + " grant"
	resp, err := ts.httpClient.Do(req)
	if err != nil {
		return 0, &UnreachableError{Op: op, Err: stripURL(err)}
	}
	defer resp.Body.Close()
	return resp.StatusCode, ts.store(resp, grantType, sentAt)
}

// store reads a token response and stores the token it holds.
func (ts *tokenSource) store(resp *http.Response, grantType string, sentAt time.Time) error {
	op := "token " + grantType + " grant"
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

	lifetime := tokenLifetime(durationSeconds(tok.Duration), readJWTTimes(tok.JWT), sentAt)
	margin := max(0, min(ts.renewMargin, lifetime/5))
	expiresAt := sentAt.Add(lifetime)

	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.jwt = tok.JWT
	ts.tokenType = "Bearer" // CipherTrust Manager sends "Bearer"; nothing else is known to work.
	ts.grantedAt = sentAt
	ts.expiresAt = expiresAt
	ts.renewAt = expiresAt.Add(-margin)
	ts.retryRenewAt = time.Time{}
	ts.generation++
	if tok.RefreshToken != "" {
		ts.refreshToken = Secret(tok.RefreshToken)
	}
	if lifetime <= 0 {
		ts.log.Warn().Str("grant", grantType).Dur("lifetime", lifetime).
			Msg("the new CipherTrust Manager token says it has expired already; using it, and renewing at most once a second")
		return nil
	}
	ts.log.Debug().Str("grant", grantType).Dur("lifetime", lifetime).Msg("got a CipherTrust Manager token")
	return nil
}

// durationSeconds reads the response's duration leniently: a fraction is
// cut, and anything that is not a positive number is 0 (unknown).
func durationSeconds(duration json.Number) int64 {
	seconds, err := duration.Float64() // too large a number is +Inf, with an error
	if (err != nil && !math.IsInf(seconds, 1)) || math.IsNaN(seconds) || seconds < 1 {
		return 0
	}
	return int64(min(seconds, float64(maxTokenLifetime/time.Second)))
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
