package worker

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestEveryCallFailureGetsTheContractsErrorCode(t *testing.T) {
	for status, code := range map[int]messages.ErrorCode{
		400: messages.CodeClientError, 401: messages.CodeUnauthorized, 403: messages.CodeForbidden,
		404: messages.CodeNotFound, 405: messages.CodeClientError, 408: messages.CodeClientError,
		409: messages.CodeConflict, 422: messages.CodeClientError, 429: messages.CodeClientError,
		500: messages.CodeServerError, 501: messages.CodeServerError, 503: messages.CodeServerError,
	} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			assert.Equal(t, code, factsOf(&cckmclient.APIError{StatusCode: status}).code())
		})
	}
	unreachable := &cckmclient.UnreachableError{Err: os.ErrDeadlineExceeded}
	assert.Equal(t, messages.CodeUnreachable, factsOf(unreachable).code())
	assert.Equal(t, messages.CodeUnauthorized, factsOf(&cckmclient.AuthError{Err: &cckmclient.APIError{StatusCode: 400}}).code(),
		"a refused login is unauthorized whatever its status")
	assert.Equal(t, messages.CodeUnreachable, factsOf(&cckmclient.AuthError{Err: unreachable}).code())
	assert.Equal(t, messages.CodeServerError, factsOf(&cckmclient.AuthError{Err: &cckmclient.APIError{StatusCode: 503}}).code())
	assert.Equal(t, messages.CodeInvalidRequest, factsOf(fmt.Errorf("x: %w", cckmclient.ErrInvalidID)).code())
}

func TestAResultsErrorTextIsCipherTrustManagersCutTo1KiB(t *testing.T) {
	long := &cckmclient.APIError{StatusCode: 409, Message: strings.Repeat("m", 100_000)}
	e := factsOf(long).resultError("")
	assert.Equal(t, messages.CodeConflict, e.Code)
	assert.LessOrEqual(t, len(e.Message), messages.MaxErrorMessage)
	assert.True(t, strings.HasSuffix(e.Message, "…"))
}
