package cckmclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// jobPaths are the job URL paths of each kind, without the id.
var jobPaths = map[messages.Kind]string{
	messages.KindRefresh: "/api/v1/cckm/external-cm/refresh/",
	messages.KindBulkJob: "/api/v1/cckm/aws/bulkjob/",
}

// rawGet reads a job with a plain HTTP client, for comparison.
func rawGet(t *testing.T, server *cckmtest.Server, kind messages.Kind, id string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, server.URL()+jobPaths[kind]+id, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testStatic)
	resp, err := server.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	return bytes.TrimSpace(body)
}

func TestCancelAndGetReturnTheJobAsCipherTrustManagerSentIt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind        messages.Kind
		wantRunning string
	}{
		{messages.KindRefresh, "in progress"},
		{messages.KindBulkJob, "in_progress"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			server := newServer(t, cckmtest.Options{StaticToken: testStatic, SettleAfter: -1})
			client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
			ctx := testContext(t)
			id := addJob(server, cckmtest.Kind(tt.kind))

			resp, err := client.Get(ctx, tt.kind, id)
			require.NoError(t, err)
			assert.False(t, resp.Job.Abort, "a GET changes nothing")
			assert.Equal(t, tt.wantRunning, resp.Job.OverallStatus)

			resp, err = client.Cancel(ctx, tt.kind, id)
			require.NoError(t, err)
			assert.Equal(t, 1, resp.Attempts)
			assert.Equal(t, http.StatusOK, resp.HTTPStatus)
			job := resp.Job
			require.NotNil(t, job)
			assert.Equal(t, id, job.ID)
			assert.True(t, job.Abort)
			assert.Equal(t, tt.wantRunning, job.OverallStatus, "a cancel leaves the job running")
			assert.Equal(t, string(rawGet(t, server, tt.kind, id)), string(job.Raw), "the raw JSON is kept byte for byte")

			resp, err = client.Get(ctx, tt.kind, id)
			require.NoError(t, err)
			assert.True(t, resp.Job.Abort)
			assert.JSONEq(t, string(job.Raw), string(resp.Job.Raw))
			var fields map[string]any
			require.NoError(t, json.Unmarshal(resp.Job.Raw, &fields))
			assert.Contains(t, fields, "detailed_status")
		})
	}
}

func TestTheDocumentationsWrapperIsTolerated(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	id := newID()
	inner := `{"id":"` + id + `","abort":true,"overall_status":"in progress","extra":{"kept":[1,2]}}`
	server.Script(id, cckmtest.Step{Status: http.StatusOK, Body: `{"application/json": ` + inner + `}`})

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.NoError(t, err)
	require.NotNil(t, resp.Job)
	assert.Equal(t, inner, string(resp.Job.Raw))
	assert.True(t, resp.Job.Abort)
	assert.Equal(t, "in progress", resp.Job.OverallStatus)
	assert.Equal(t, id, resp.Job.ID)
}

func TestA2xxThatDoesNotSetAbortIsNoErrorOfTheClient(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	ctx := testContext(t)

	id := addJob(server, cckmtest.BulkJob)
	server.Script(id, cckmtest.Step{NoAbort: true})
	resp, err := client.Cancel(ctx, messages.KindBulkJob, id)
	require.NoError(t, err, "the caller judges the abort flag")
	require.NotNil(t, resp.Job)
	assert.False(t, resp.Job.Abort)
	assert.Equal(t, "in_progress", resp.Job.OverallStatus)
	assert.Equal(t, http.StatusOK, resp.HTTPStatus)
	assert.Equal(t, 1, resp.Attempts)

	id = addJob(server, cckmtest.BulkJob)
	server.Script(id, cckmtest.Step{Status: http.StatusOK, Body: `["not", "a", "job"]`})
	resp, err = client.Cancel(ctx, messages.KindBulkJob, id)
	require.NoError(t, err)
	assert.Nil(t, resp.Job, "a 2xx without a job object has no job")
	assert.Equal(t, http.StatusOK, resp.HTTPStatus)
}

func TestAnInvalidIDIsRefusedWithoutAnyHTTPCall(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{AnyJob: true})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
	ctx := testContext(t)
	for _, id := range []string{
		"", "not-a-uuid", "8155fe39-570a-4132-92ca-e40b7640c7d", "8155fe39-570a-4132-92ca-e40b7640c7dc/cancel",
		"../../auth/tokens", "8155fe39-570a-4132-92ca-e40b7640c7dc?x=1", " 8155fe39-570a-4132-92ca-e40b7640c7dc",
		"8155fe39%2d570a-4132-92ca-e40b7640c7dc", "g155fe39-570a-4132-92ca-e40b7640c7dc",
	} {
		for _, call := range []func(context.Context, messages.Kind, string) (cckmclient.Response, error){
			client.Cancel, client.Get,
		} {
			resp, err := call(ctx, messages.KindRefresh, id)
			assert.ErrorIs(t, err, cckmclient.ErrInvalidID, "%q", id)
			assert.False(t, cckmclient.Retryable(err))
			assert.Zero(t, resp.Attempts)
		}
	}
	assert.Empty(t, server.Calls(), "not even a login")
}

func TestAnUpperCaseIDIsSentInLowerCase(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	id := addJob(server, cckmtest.Refresh)

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, strings.ToUpper(id))
	require.NoError(t, err)
	assert.True(t, resp.Job.Abort)
}

func TestRequestsHaveTheContractsShape(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds})
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := cckmclient.WithTraceparent(testContext(t), traceparent)
	refreshID, bulkID := addJob(server, cckmtest.Refresh), addJob(server, cckmtest.BulkJob)

	for _, call := range []func() (cckmclient.Response, error){
		func() (cckmclient.Response, error) { return client.Cancel(traced, messages.KindRefresh, refreshID) },
		func() (cckmclient.Response, error) { return client.Get(traced, messages.KindRefresh, refreshID) },
		func() (cckmclient.Response, error) { return client.Cancel(traced, messages.KindBulkJob, bulkID) },
		func() (cckmclient.Response, error) { return client.Get(testContext(t), messages.KindBulkJob, bulkID) },
	} {
		_, err := call()
		require.NoError(t, err)
	}

	calls := server.Calls()
	require.Len(t, calls, 4)
	want := []struct{ method, path, traceparent string }{
		{http.MethodPost, jobPaths[messages.KindRefresh] + refreshID + "/cancel", traceparent},
		{http.MethodGet, jobPaths[messages.KindRefresh] + refreshID, traceparent},
		{http.MethodPost, jobPaths[messages.KindBulkJob] + bulkID + "/cancel", traceparent},
		{http.MethodGet, jobPaths[messages.KindBulkJob] + bulkID, ""},
	}
	for i, call := range calls {
		assert.Equal(t, want[i].method, call.Method)
		assert.Equal(t, want[i].path, call.Path)
		assert.Equal(t, want[i].traceparent, call.Header.Get("Traceparent"), "%s %s", call.Method, call.Path)
		assert.Equal(t, "application/json", call.Header.Get("Accept"))
		assert.Equal(t, "Bearer "+testStatic, call.Header.Get("Authorization"))
		assert.Contains(t, []string{"", "0"}, call.Header.Get("Content-Length"), "no body")
		assert.Empty(t, call.Header.Get("Transfer-Encoding"), "no body")
		assert.Empty(t, call.Header.Get("Content-Type"), "no body")
	}
}

func TestOnAttemptIsCalledOncePerAttempt(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	var mu sync.Mutex
	var attempts []cckmclient.Attempt
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, OnAttempt: func(a cckmclient.Attempt) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, a)
	}})
	ctx := testContext(t)
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable}, cckmtest.Step{Drop: true})

	_, err := client.Cancel(ctx, messages.KindRefresh, id)
	require.NoError(t, err)
	_, err = client.Get(ctx, messages.KindRefresh, id)
	require.NoError(t, err)
	_, err = client.Cancel(ctx, messages.KindRefresh, "not-a-uuid")
	require.True(t, errors.Is(err, cckmclient.ErrInvalidID))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, 4, "three for the cancel, one for the get, none for an invalid id")
	want := []struct {
		op     string
		status int
		retry  bool
	}{{"cancel", 503, false}, {"cancel", 0, true}, {"cancel", 200, true}, {"get", 200, false}}
	for i, attempt := range attempts {
		assert.Equal(t, want[i].op, attempt.Op, "attempt %d", i)
		assert.Equal(t, messages.KindRefresh, attempt.Kind)
		assert.Equal(t, want[i].status, attempt.Status, "attempt %d", i)
		assert.Equal(t, want[i].retry, attempt.Retry, "attempt %d", i)
		assert.Positive(t, attempt.Duration)
	}
}
