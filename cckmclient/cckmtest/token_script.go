package cckmtest

import (
	"sync"
	"time"
)

// TokenStep scripts one answer of the token endpoint. The zero TokenStep is normal
// behaviour; several fields may be combined (Delay with Status, ClockOffset with Duration).
type TokenStep struct {
	// Status, when not zero, is answered instead of a grant (no credentials are checked),
	// with Body or a CM error body fitting the status (503: code 14 NCERRServiceUnavailable).
	Status int
	// Body is the raw body sent instead of a grant, with Status, or with 200 when Status is
	// zero.
	Body string
	// RetryAfter is a Retry-After header value to send with the answer.
	RetryAfter string
	// Delay is waited before answering. When the client goes away or the server closes
	// first, the connection is closed without an answer.
	Delay time.Duration
	// Hang never answers: the connection is closed when the client goes away or the server
	// closes.
	Hang bool
	// Drop closes the connection without any response, a network error for the client.
	Drop bool

	// The fields below shape a grant that succeeds; the credentials are checked as usual
	// and the server accepts the JWT for its real lifetime (Options.TokenLifetime) whatever
	// they make it say.

	// ClockOffset shifts the JWT's iat and exp claims, as a CipherTrust Manager whose clock
	// is that much ahead (positive) or behind (negative) would write them.
	ClockOffset time.Duration
	// NoIssuedAt leaves the iat claim out, so that a client can only compare exp with its
	// own clock.
	NoIssuedAt bool
	// Duration, when not zero, is answered as the response's duration in seconds instead of
	// the real lifetime: negative, or huge (1e12) to test a client's bounds.
	Duration int64
	// NoDuration answers a duration of 0, as a server that does not say.
	NoDuration bool
}

// replaces reports whether the step answers instead of a grant.
func (step TokenStep) replaces() bool { return step.Status != 0 || step.Body != "" }

// tokenScript holds the scripted token steps.
type tokenScript struct {
	mu    sync.Mutex
	steps []TokenStep
}

// ScriptTokens queues steps for the following token requests, one step per request in
// order (whatever its grant type, failed and hung ones included), after any steps queued
// before. Once they are used up the token endpoint behaves normally again, or as
// Options.TokenFault says.
func (s *Server) ScriptTokens(steps ...TokenStep) {
	s.tokenScript.mu.Lock()
	defer s.tokenScript.mu.Unlock()
	s.tokenScript.steps = append(s.tokenScript.steps, steps...)
}

// SetTokenFault replaces Options.TokenFault while the server runs; nil removes the hook.
func (s *Server) SetTokenFault(fault func(Call) *TokenStep) {
	if fault == nil {
		s.tokenFault.Store(nil)
		return
	}
	s.tokenFault.Store(&fault)
}

// TokenRequests returns how many requests reached the token endpoint: every POST, answered
// or not, refused, failed, hung or dropped (Grants counts only those that got a token). It
// counts even when Options.NoRecord is set.
func (s *Server) TokenRequests() int { return int(s.tokenRequests.Load()) }

// nextTokenStep returns the step for a token request: the next scripted one, else what the
// token fault hook returns, else the zero TokenStep (normal behaviour).
func (s *Server) nextTokenStep(call Call) TokenStep {
	s.tokenScript.mu.Lock()
	if len(s.tokenScript.steps) > 0 {
		step := s.tokenScript.steps[0]
		s.tokenScript.steps = s.tokenScript.steps[1:]
		s.tokenScript.mu.Unlock()
		return step
	}
	s.tokenScript.mu.Unlock()
	if fault := s.tokenFault.Load(); fault != nil {
		if step := (*fault)(call); step != nil {
			return *step
		}
	}
	return TokenStep{}
}
