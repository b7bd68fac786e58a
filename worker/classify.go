package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// HTTP statuses the classification names.
const (
	statusUnauthorized = 401
	statusForbidden    = 403
	statusNotFound     = 404
	statusConflict     = 409
)

// callFacts is what the worker needs to know of a failed call, read from
// the client's plain facts: the HTTP status (0 when CipherTrust Manager
// was not reached), its own error text, the wait it asked for, and
// whether trying again may help.
type callFacts struct {
	status     int
	detail     string
	retryAfter time.Duration
	retryable  bool
	auth       bool // the token endpoint refused the credentials
	invalidID  bool
}

// factsOf reads a client error.
func factsOf(err error) callFacts {
	facts := callFacts{retryable: cckmclient.Retryable(err), detail: err.Error()}
	var apiErr *cckmclient.APIError
	if errors.As(err, &apiErr) {
		facts.status = apiErr.StatusCode
		facts.detail = apiErr.Detail()
		facts.retryAfter = apiErr.RetryAfter
	}
	var authErr *cckmclient.AuthError
	if errors.As(err, &authErr) {
		facts.auth = apiErr != nil && !facts.retryable
		if facts.auth {
			facts.detail = "CipherTrust Manager refused the worker's credentials: " + facts.detail
		}
	}
	facts.invalidID = errors.Is(err, cckmclient.ErrInvalidID)
	return facts
}

// code is the result's error code for a failed call: the only place a
// call's facts become the result's vocabulary.
func (f callFacts) code() messages.ErrorCode {
	switch {
	case f.invalidID:
		return messages.CodeInvalidRequest
	case f.auth || f.status == statusUnauthorized:
		return messages.CodeUnauthorized
	case f.status == 0:
		return messages.CodeUnreachable
	case f.status == statusForbidden:
		return messages.CodeForbidden
	case f.status == statusNotFound:
		return messages.CodeNotFound
	case f.status == statusConflict:
		return messages.CodeConflict
	case f.status >= 500:
		return messages.CodeServerError
	}
	return messages.CodeClientError
}

// resultError is the result's error object for a failed call, its text cut
// to messages.MaxErrorMessage.
func (f callFacts) resultError(prefix string) *messages.Error {
	return &messages.Error{Code: f.code(), Message: messages.TruncateMessage(prefix + f.detail), Retryable: f.retryable}
}

// isConflict reports whether err is CipherTrust Manager's 409.
func isConflict(err error) bool {
	var apiErr *cckmclient.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == statusConflict
}

func abortNotSetMessage(resp cckmclient.Response) string {
	if resp.Job == nil {
		return fmt.Sprintf("CipherTrust Manager answered HTTP %d without a job object", resp.HTTPStatus)
	}
	return fmt.Sprintf("CipherTrust Manager answered HTTP %d but the job's abort flag is not true", resp.HTTPStatus)
}
