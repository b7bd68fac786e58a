package cckmclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestATransientFailureIsRetriedAndTheCancelSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		step cckmtest.Step
	}{
		{"408 request timeout", cckmtest.Step{Status: http.StatusRequestTimeout}},
		{"429 too many requests", cckmtest.Step{Status: http.StatusTooManyRequests}},
		{"500 internal server error", cckmtest.Step{Status: http.StatusInternalServerError}},
		{"502 bad gateway", cckmtest.Step{Status: http.StatusBadGateway}},
		{"503 service unavailable", cckmtest.Step{Status: http.StatusServiceUnavailable}},
		{"504 gateway timeout", cckmtest.Step{Status: http.StatusGatewayTimeout}},
		{"a dropped connection", cckmtest.Step{Drop: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, cckmtest.Options{StaticToken: testStatic})
			client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
			id := addJob(server, cckmtest.Refresh)
			server.Script(id, tt.step)

			resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
			require.NoError(t, err)
			assert.Equal(t, 2, resp.Attempts)
			assert.Equal(t, http.StatusOK, resp.HTTPStatus)
			assert.True(t, resp.Job.Abort)
			assert.Equal(t, []int{tt.step.Status, http.StatusOK}, statuses(server.CallsFor(id)))
		})
	}
}

func TestAnOtherClientErrorIsFinalAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		scripted bool // else the fake answers it for real
	}{
		{"400 bad request", http.StatusBadRequest, true},
		{"403 forbidden", http.StatusForbidden, true},
		{"404 not found", http.StatusNotFound, true},
		{"405 method not allowed", http.StatusMethodNotAllowed, true},
		{"409 conflict", http.StatusConflict, true},
		{"422 unprocessable entity", http.StatusUnprocessableEntity, true},
		{"an unknown job is not found", http.StatusNotFound, false},
		{"a finished job is a conflict", http.StatusConflict, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, cckmtest.Options{StaticToken: testStatic})
			client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
			id := newID()
			switch {
			case tt.scripted:
				server.AddJob(cckmtest.BulkJob, id)
				server.Script(id, cckmtest.Step{Status: tt.status})
			case tt.status == http.StatusConflict:
				server.AddFinishedJob(cckmtest.BulkJob, id, cckmtest.StatusCompleted)
			}

			resp, err := client.Cancel(testContext(t), messages.KindBulkJob, id)
			require.Error(t, err)
			assert.Equal(t, tt.status, statusOf(err))
			assert.False(t, cckmclient.Retryable(err))
			assert.Equal(t, 1, resp.Attempts)
			assert.Equal(t, tt.status, resp.HTTPStatus)
			assert.Nil(t, resp.Job)
			var apiErr *cckmclient.APIError
			require.True(t, errors.As(err, &apiErr), "%T: %v", err, err)
			assert.Contains(t, apiErr.CodeDesc, "NCERR", "CipherTrust Manager's own text is kept")
			assert.NotEmpty(t, apiErr.RequestID)
			assert.Len(t, server.CallsFor(id), 1)
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter func() string
		minWait    time.Duration
	}{
		{"in seconds", func() string { return "1" }, time.Second},
		// An HTTP date has whole seconds: now+3 s, rounded down, is at least
		// 2 s away when it is written.
		{"as an HTTP date", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) },
			1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newServer(t, cckmtest.Options{StaticToken: testStatic})
			client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
			id := addJob(server, cckmtest.Refresh)
			server.Script(id, cckmtest.Step{Status: http.StatusTooManyRequests, RetryAfter: tt.retryAfter()})

			resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
			require.NoError(t, err)
			assert.Equal(t, 2, resp.Attempts)
			calls := server.CallsFor(id)
			require.Len(t, calls, 2)
			assert.GreaterOrEqual(t, calls[1].Time.Sub(calls[0].Time), tt.minWait,
				"the back-off alone would wait at most 10 ms")
		})
	}
}

func TestARetryAfterBeyondTheBudgetEndsTheCallAtOnce(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, RetryBudget: 2 * time.Second})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable, RetryAfter: "30"})

	started := time.Now()
	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	assert.Less(t, time.Since(started), time.Second, "no point waiting for a retry that cannot come")
	assert.GreaterOrEqual(t, statusOf(err), 500)
	assert.Equal(t, 1, resp.Attempts)
}

func TestMaxAttemptsBoundsTheAttempts(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, MaxAttempts: 3})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, slices.Repeat([]cckmtest.Step{{Status: http.StatusServiceUnavailable}}, 10)...)

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	assert.Equal(t, 3, resp.Attempts)
	assert.Len(t, server.CallsFor(id), 3)
	assert.Equal(t, http.StatusServiceUnavailable, resp.HTTPStatus)
	assert.GreaterOrEqual(t, statusOf(err), 500)
	assert.True(t, cckmclient.Retryable(err), "a later redelivery may succeed")
}

func TestTheRetryBudgetEndsAHang(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{
		Credentials: staticCreds,
		Timeout:     200 * time.Millisecond,
		RetryBudget: time.Second,
		MaxAttempts: 100,
	})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, slices.Repeat([]cckmtest.Step{{Hang: true}}, 100)...)

	started := time.Now()
	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	elapsed := time.Since(started)
	require.Error(t, err)
	assert.Less(t, elapsed, 1500*time.Millisecond)
	assert.GreaterOrEqual(t, elapsed, 800*time.Millisecond, "the budget, not MaxAttempts, ended the call")
	assert.True(t, isUnreachable(err), "%T: %v", err, err)
	assert.True(t, cckmclient.Retryable(err))
	assert.Zero(t, resp.HTTPStatus)
	assert.GreaterOrEqual(t, resp.Attempts, 4, "each 200 ms attempt timed out and was retried")
	var unreachable *cckmclient.UnreachableError
	assert.True(t, errors.As(err, &unreachable), "%T: %v", err, err)
}

func TestTheCallersContextEndsTheCall(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, slices.Repeat([]cckmtest.Step{{Hang: true}}, 10)...)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started := time.Now()
	resp, err := client.Cancel(ctx, messages.KindRefresh, id)
	require.Error(t, err)
	assert.Less(t, time.Since(started), time.Second, fmt.Sprint(err))
	assert.True(t, isUnreachable(err), "%T: %v", err, err)
	assert.Equal(t, 1, resp.Attempts)
}
