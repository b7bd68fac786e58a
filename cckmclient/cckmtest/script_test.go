package cckmtest

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScriptedStatusesAreAnsweredInOrder(t *testing.T) {
	server := newTestServer(t, Options{SettleAfter: -1})
	server.AddJob(BulkJob, bulkID)
	server.Script(bulkID,
		Step{Status: http.StatusServiceUnavailable, RetryAfter: "2"},
		Step{Status: http.StatusTooManyRequests, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"},
		Step{Status: http.StatusBadGateway, Body: `{"code":14,"codeDesc":"NCERRX: custom","message":"custom"}`},
		Step{Status: http.StatusTeapot},
	)
	cases := []struct {
		status     int
		retryAfter string
		code       int
		codeDesc   string
	}{
		{503, "2", 14, "NCERRServiceUnavailable: Service unavailable"},
		{429, "Wed, 21 Oct 2015 07:28:00 GMT", 14, "NCERRTooManyRequests: Too many requests"},
		{502, "", 14, "NCERRX: custom"},
		{418, "", 1, "NCERRUnknown: I'm a teapot"},
	}
	for _, want := range cases {
		answer := cancelJob(t, server, BulkJob, bulkID, "")
		require.Equal(t, want.status, answer.status, "scripted answers need no token")
		require.Equal(t, want.retryAfter, answer.header.Get("Retry-After"))
		body := answer.object(t)
		require.EqualValues(t, want.code, body["code"])
		require.Equal(t, want.codeDesc, body["codeDesc"])
	}
	job, _ := server.Job(BulkJob, bulkID)
	require.False(t, job.Abort, "scripted errors change nothing")

	answer := cancelJob(t, server, BulkJob, bulkID, testStatic)
	require.Equal(t, http.StatusOK, answer.status, "normal again after the script")
	require.Empty(t, answer.header.Get("Retry-After"))
}

func TestScriptedBodyWithoutStatusAnswers200(t *testing.T) {
	server := newTestServer(t, Options{})
	server.Script(refreshID, Step{Body: `{"id":"x","abort":"maybe"}`})
	answer := getJob(t, server, Refresh, refreshID, "")
	require.Equal(t, http.StatusOK, answer.status)
	require.JSONEq(t, `{"id":"x","abort":"maybe"}`, string(answer.body))
}

func TestScriptedNoAbortAnswersTheJobUnchanged(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{NoAbort: true})
	answer := cancelJob(t, server, Refresh, refreshID, testStatic)
	require.Equal(t, http.StatusOK, answer.status)
	require.Equal(t, false, answer.object(t)["abort"])
	job, _ := server.Job(Refresh, refreshID)
	require.False(t, job.Abort)
	require.Equal(t, 1, job.Cancels)

	require.Equal(t, true, cancelJob(t, server, Refresh, refreshID, testStatic).object(t)["abort"])
}

func TestScriptedNoAbortStillNeedsAToken(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{NoAbort: true})
	require.Equal(t, http.StatusUnauthorized, cancelJob(t, server, Refresh, refreshID, "").status)
}

func TestScriptedDelayIsWaited(t *testing.T) {
	server := newTestServer(t, Options{Latency: 20 * time.Millisecond})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{Delay: 80 * time.Millisecond})
	start := time.Now()
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, testStatic).status)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "delay plus latency")
}

func TestScriptedDelayEndsWhenTheClientGivesUp(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{Delay: time.Hour})
	client := server.Client()
	client.Timeout = 100 * time.Millisecond
	_, err := send(t, client, http.MethodPost, jobURL(server, Refresh, refreshID, true), testStatic, nil)
	require.Error(t, err)
	require.Eventually(t, func() bool {
		calls := server.CallsFor(refreshID)
		return len(calls) == 1 && calls[0].Status == 0
	}, 5*time.Second, 10*time.Millisecond)
}

func TestScriptedHangEndsWithTheClientTimeout(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(BulkJob, bulkID)
	server.Script(bulkID, Step{Hang: true})
	client := server.Client()
	client.Timeout = 100 * time.Millisecond
	start := time.Now()
	_, err := send(t, client, http.MethodPost, jobURL(server, BulkJob, bulkID, true), testStatic, nil)
	require.Error(t, err)
	var timeout interface{ Timeout() bool }
	require.True(t, errors.As(err, &timeout) && timeout.Timeout(), "error %v", err)
	require.Less(t, time.Since(start), 5*time.Second)
	job, _ := server.Job(BulkJob, bulkID)
	require.False(t, job.Abort, "a hung cancel does nothing")
}

func TestCloseEndsHangs(t *testing.T) {
	server := NewServer(Options{StaticToken: testStatic})
	defer server.Close()
	server.Script(refreshID, Step{Hang: true})
	result := make(chan error, 1)
	go func() {
		request, _ := http.NewRequest(http.MethodGet, jobURL(server, Refresh, refreshID, false), nil)
		answer, err := server.Client().Do(request)
		if err == nil {
			answer.Body.Close()
		}
		result <- err
	}()
	require.Eventually(t, func() bool { return len(server.Calls()) == 1 }, 5*time.Second, 5*time.Millisecond)
	closed := make(chan struct{})
	go func() { server.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the hang")
	}
	select {
	case err := <-result:
		require.Error(t, err, "a hang ended by Close is not answered")
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not return")
	}
}

func TestScriptedDropIsANetworkError(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{Drop: true}, Step{Drop: true})
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		client := &http.Client{Transport: &http.Transport{}} // a fresh connection, so GET is not retried
		_, err := send(t, client, method, jobURL(server, Refresh, refreshID, method == http.MethodPost), testStatic, nil)
		require.Error(t, err, method)
		require.False(t, errors.Is(err, context.DeadlineExceeded))
		client.CloseIdleConnections()
	}
	for _, call := range server.CallsFor(refreshID) {
		require.Zero(t, call.Status)
	}
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, testStatic).status)
}

func TestFaultHookAppliesWhereNothingIsScripted(t *testing.T) {
	var consulted atomic.Int32
	server := newTestServer(t, Options{Fault: func(call Call) *Step {
		consulted.Add(1)
		if call.Op == "cancel" && call.Kind == BulkJob {
			return &Step{Status: http.StatusServiceUnavailable, RetryAfter: "1"}
		}
		return nil
	}})
	server.AddJob(BulkJob, bulkID)
	server.AddJob(Refresh, refreshID)
	server.Script(bulkID, Step{Status: http.StatusInternalServerError})

	require.Equal(t, http.StatusInternalServerError, cancelJob(t, server, BulkJob, bulkID, testStatic).status,
		"a scripted step wins")
	answer := cancelJob(t, server, BulkJob, bulkID, testStatic)
	require.Equal(t, http.StatusServiceUnavailable, answer.status)
	require.Equal(t, "1", answer.header.Get("Retry-After"))
	require.Equal(t, http.StatusOK, getJob(t, server, BulkJob, bulkID, testStatic).status)
	require.Equal(t, http.StatusOK, cancelJob(t, server, Refresh, refreshID, testStatic).status)
	login(t, server)
	require.EqualValues(t, 3, consulted.Load(), "not for scripted requests nor token requests")

	server.SetFault(func(Call) *Step { return &Step{Status: http.StatusBadGateway} })
	require.Equal(t, http.StatusBadGateway, getJob(t, server, Refresh, refreshID, testStatic).status)
	server.SetFault(nil)
	require.Equal(t, http.StatusOK, getJob(t, server, Refresh, refreshID, testStatic).status)
}
