package cckmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/messages"
)

type traceparentKey struct{}

// WithTraceparent returns a context whose calls carry the W3C traceparent
// header tp when they are not traced themselves (Config.TracerProvider
// unset or not recording); a traced attempt carries its own span's.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return context.WithValue(ctx, traceparentKey{}, tp)
}

// call makes one logical call with retries: network errors, 408, 429, 500,
// 502, 503 and 504 are tried again with exponential back-off and full
// jitter (or the Retry-After wait), within MaxAttempts and RetryBudget. A
// 401 renews the token once and repeats the call.
func (c *Client) call(ctx context.Context, method, op string, kind messages.Kind, id string) (Response, error) {
	var resp Response
	path, err := jobPath(kind, id, method == http.MethodPost)
	if err != nil {
		return resp, err
	}
	target := c.baseURL + path
	opName := op + " " + string(kind) + " " + id

	deadline := c.now().Add(c.cfg.RetryBudget)
	if ctxDeadline, ok := ctx.Deadline(); ok && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	// The budget bounds everything, getting a token included.
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	repeatedAfter401 := false
	var previous error // the last attempt's error, returned if no new attempt can be sent
	for try := 1; ; try++ {
		var lastErr error
		var retryAfter time.Duration
		auth, generation, err := c.tokens.token(ctx)
		if err != nil {
			lastErr = err
			var apiErr *APIError
			if errors.As(err, &apiErr) {
				resp.HTTPStatus = apiErr.StatusCode // the token endpoint's answer
			}
		} else if previous != nil && !c.now().Before(deadline) {
			return resp, previous // no time left to send another attempt: not one more counted
		} else {
			done, gateErr := c.admit(ctx)
			if gateErr != nil {
				if previous != nil {
					return resp, previous // what the last attempt learned says more
				}
				return resp, &UnreachableError{Op: opName, Err: fmt.Errorf("%w: %w", ErrNotSent, gateErr)}
			}
			started := c.now()
			attemptCtx, span := startAttemptSpan(ctx, c.tracer, method, target,
				attribute.String("cckm.operation", op), attribute.String("cckm.kind", string(kind)),
				attribute.Int("cckm.attempt", resp.Attempts+1))
			status, job, err := c.attempt(attemptCtx, method, target, auth, opName, deadline)
			endAttemptSpan(span, status, err)
			done(gateStatus(ctx, status), retryAfterOf(err))
			resp.Attempts++
			if status != 0 {
				resp.HTTPStatus = status
			}
			if c.cfg.OnAttempt != nil {
				c.cfg.OnAttempt(Attempt{Op: op, Kind: kind, Status: status, Duration: c.now().Sub(started), Retry: resp.Attempts > 1})
			}
			if err == nil {
				resp.Job = job
				return resp, nil
			}
			if status == http.StatusUnauthorized && !repeatedAfter401 && c.tokens.invalidate(generation) {
				repeatedAfter401 = true
				c.log.Info().Str("op", opName).Msg("CipherTrust Manager refused the token; renewing it and repeating the call")
				try--
				previous = err
				continue
			}
			lastErr = err
		}
		previous = lastErr
		var apiErr *APIError
		if errors.As(lastErr, &apiErr) {
			retryAfter = apiErr.RetryAfter // the token endpoint's too
		}
		if !Retryable(lastErr) || ctx.Err() != nil || try >= c.cfg.MaxAttempts {
			return resp, lastErr
		}
		wait := retryAfter
		if wait == 0 {
			wait = c.backoff(try)
		}
		if c.now().Add(wait).After(deadline) {
			c.log.Debug().Str("op", opName).Dur("wait", wait).Msg("retry budget spent")
			return resp, lastErr
		}
		c.log.Debug().Err(lastErr).Str("op", opName).Int("try", try).Dur("wait", wait).Msg("retrying")
		if c.sleep(ctx, wait) != nil {
			return resp, lastErr
		}
	}
}

// backoff returns the wait before try+1: a random duration up to
// BaseBackoff·2^(try-1), capped at MaxBackoff ("full jitter").
func (c *Client) backoff(try int) time.Duration {
	ceiling := c.cfg.MaxBackoff
	if try < 30 {
		ceiling = min(ceiling, c.cfg.BaseBackoff<<(try-1))
	}
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling) + 1
}

// attempt makes one HTTP request. It returns the status (0 when no answer
// came), the job of a 2xx answer (nil when the body held none), and an
// *APIError for a non-2xx answer or an *UnreachableError.
func (c *Client) attempt(ctx context.Context, method, target, auth, opName string, deadline time.Time) (int, *Job, error) {
	timeout := min(c.cfg.Timeout, deadline.Sub(c.now()))
	if timeout <= 0 {
		return 0, nil, &UnreachableError{Op: opName, Err: context.DeadlineExceeded}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, nil, &UnreachableError{Op: opName, Err: err}
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	setTraceparent(ctx, req, trace.SpanFromContext(ctx))
	httpResp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, &UnreachableError{Op: opName, Err: stripURL(err)}
	}
	defer httpResp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(httpResp.Body, maxBodySize))
	if err != nil {
		return 0, nil, &UnreachableError{Op: opName, Err: stripURL(err)}
	}
	if httpResp.StatusCode/100 != 2 {
		apiErr := newAPIError(opName, httpResp.StatusCode, httpResp.Header, body, c.now())
		sentToken := strings.TrimPrefix(auth, "Bearer ")
		apiErr.Message = c.scrub(apiErr.Message, sentToken)
		apiErr.CodeDesc = c.scrub(apiErr.CodeDesc, sentToken)
		return httpResp.StatusCode, nil, apiErr
	}
	job, err := DecodeJob(body)
	if err != nil {
		return httpResp.StatusCode, nil, nil
	}
	return httpResp.StatusCode, job, nil
}

// scrub replaces any secret found in text that came from the server, in
// case an error message echoes one: the configured credentials, the JWT and
// refresh token held now (both change at each renewal), and those given in
// also, such as the token the request carried.
func (c *Client) scrub(text string, also ...string) string {
	for _, s := range c.secrets {
		text = strings.ReplaceAll(text, s.Reveal(), secretMask)
	}
	for _, s := range append(c.tokens.liveSecrets(), also...) {
		if len(s) >= minScrubbed {
			text = strings.ReplaceAll(text, s, secretMask)
		}
	}
	return text
}

// gateStatus is what the Gate hears of an attempt: its status, or
// GateAbandoned when no answer came because the call's own context or
// budget ended (not CCKM_TIMEOUT's per-attempt limit).
func gateStatus(ctx context.Context, status int) int {
	if status == 0 && ctx.Err() != nil {
		return GateAbandoned
	}
	return status
}

// retryAfterOf is the Retry-After an attempt's error carried, or 0.
func retryAfterOf(err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}
