package cckmclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidID is returned, before any HTTP call, for an id that is not a
// UUID: an id is never pasted into a URL unchecked.
var ErrInvalidID = errors.New("job id is not a UUID")

// ErrNotSent is wrapped in the *UnreachableError of a call whose time ran
// out while Config.Gate held its attempt: nothing was sent, and trying
// again later may succeed.
var ErrNotSent = errors.New("not sent: the call's time ran out while it waited its turn")

// APIError is an error answer from CipherTrust Manager.
type APIError struct {
	// Op says what was being done, e.g. "cancel refresh 8155fe39-...".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code, CodeDesc, Message and RequestID are CipherTrust Manager's error
	// body fields, where it sent them.
	Code      int
	CodeDesc  string
	Message   string
	RequestID string
	// RetryAfter is the wait the Retry-After header asked for, or 0.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, e.Detail())
}

// Detail is CipherTrust Manager's own text for the error, or the HTTP
// status text when it sent none.
func (e *APIError) Detail() string {
	switch {
	case e.CodeDesc != "" && strings.Contains(e.CodeDesc, e.Message):
		return e.CodeDesc
	case e.CodeDesc != "" && e.Message != "":
		return e.CodeDesc + ": " + e.Message
	case e.Message != "":
		return e.Message
	}
	return http.StatusText(e.StatusCode)
}

// Retryable reports whether the same call may succeed later: 408, 429,
// 500, 502, 503 and 504.
func (e *APIError) Retryable() bool { return retryableStatus(e.StatusCode) }

// HTTPStatus is the status received.
func (e *APIError) HTTPStatus() int { return e.StatusCode }

func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// UnreachableError says that no answer came from CipherTrust Manager: a
// connection, TLS or time-out failure on the last attempt.
type UnreachableError struct {
	Op  string
	Err error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("%s: no answer: %v", e.Op, e.Err) }

// Unwrap returns the underlying network error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Retryable is true but for a certificate CipherTrust Manager's TLS
// handshake could not verify: that is a setting to fix (CCKM_CA_FILE), and
// trying again cannot help.
func (e *UnreachableError) Retryable() bool {
	var verifyErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	return !errors.As(e.Err, &verifyErr) && !errors.As(e.Err, &unknownAuthority) &&
		!errors.As(e.Err, &hostname) && !errors.As(e.Err, &invalid)
}

// AuthError says that no token could be had from CipherTrust Manager. It
// wraps the token endpoint's *APIError or *UnreachableError.
type AuthError struct {
	Err error
}

func (e *AuthError) Error() string { return "get a token: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// Retryable is the cause's answer: a refused login is not retryable, an
// unreachable token endpoint is.
func (e *AuthError) Retryable() bool {
	var r interface{ Retryable() bool }
	return errors.As(e.Err, &r) && r.Retryable()
}

// Retryable reports whether err is worth trying again later.
func Retryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// errorBody is CipherTrust Manager's error body. code is a number in every
// known sample; it is decoded leniently.
type errorBody struct {
	Code      json.RawMessage `json:"code"`
	CodeDesc  string          `json:"codeDesc"`
	Message   string          `json:"message"`
	RequestID string          `json:"requestID"`
}

// newAPIError builds an *APIError from a response status, header and body.
func newAPIError(op string, status int, header http.Header, body []byte, now time.Time) *APIError {
	apiErr := &APIError{Op: op, StatusCode: status, RetryAfter: parseRetryAfter(header.Get("Retry-After"), now)}
	var parsed errorBody
	if json.Unmarshal(body, &parsed) == nil {
		apiErr.Code, _ = strconv.Atoi(strings.Trim(string(parsed.Code), `"`))
		apiErr.CodeDesc = parsed.CodeDesc
		apiErr.Message = parsed.Message
		apiErr.RequestID = parsed.RequestID
	} else if text := strings.TrimSpace(string(body)); text != "" && len(text) <= 512 && !strings.HasPrefix(text, "<") {
		apiErr.Message = text
	}
	return apiErr
}

// maxRetryAfterSeconds caps a Retry-After in seconds, so that a huge value
// cannot overflow a time.Duration (found by FuzzDecodeResponse). A day is
// far past any retry budget.
const maxRetryAfterSeconds = 24 * 60 * 60

// parseRetryAfter reads a Retry-After value, in seconds or as an HTTP date.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if seconds, err := strconv.Atoi(value); err == nil {
		if seconds < 0 {
			return 0
		}
		return time.Duration(min(seconds, maxRetryAfterSeconds)) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}
