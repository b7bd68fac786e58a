package cckmclient_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// recordingGate admits every attempt, or refuses with refuse, and records
// what it hears.
type recordingGate struct {
	mu     sync.Mutex
	waits  int
	heard  []heardAttempt
	refuse error
}

type heardAttempt struct {
	status     int
	retryAfter time.Duration
}

func (g *recordingGate) Wait(ctx context.Context) (func(int, time.Duration), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waits++
	if g.refuse != nil {
		return nil, g.refuse
	}
	return func(status int, retryAfter time.Duration) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.heard = append(g.heard, heardAttempt{status, retryAfter})
	}, nil
}

func (g *recordingGate) snapshot() (int, []heardAttempt) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waits, append([]heardAttempt(nil), g.heard...)
}

func TestTheGateIsWaitedForAndToldOfEveryJobAttemptButNotOfTokens(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	gate := &recordingGate{}
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, Gate: gate})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id,
		cckmtest.Step{Status: http.StatusServiceUnavailable, RetryAfter: "1"},
		cckmtest.Step{Drop: true},
	)

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.NoError(t, err)
	assert.Equal(t, 3, resp.Attempts)

	waits, heard := gate.snapshot()
	assert.Equal(t, 3, waits, "one wait per job attempt; the token request passes no gate")
	assert.Equal(t, []heardAttempt{
		{http.StatusServiceUnavailable, time.Second},
		{cckmclient.GateNoAnswer, 0},
		{http.StatusOK, 0},
	}, heard)
}

func TestACallTheGateHoldsPastItsTimeFailsRetryablyWithoutBeingSent(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	gate := &recordingGate{refuse: context.DeadlineExceeded}
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, Gate: gate})
	id := addJob(server, cckmtest.Refresh)

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	var unreachable *cckmclient.UnreachableError
	require.ErrorAs(t, err, &unreachable)
	assert.ErrorIs(t, err, cckmclient.ErrNotSent)
	assert.True(t, cckmclient.Retryable(err), "a held call is worth trying again")
	assert.Zero(t, resp.Attempts)
	assert.Empty(t, server.CallsFor(id), "nothing reached CipherTrust Manager")
}

func TestAGateThatHoldsARetryReturnsTheEarlierAttemptsError(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	gate := &onceGate{}
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, Gate: gate})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable})

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	var apiErr *cckmclient.APIError
	require.ErrorAs(t, err, &apiErr, "the 503 says more than the hold")
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	assert.Equal(t, 1, resp.Attempts)
	assert.Len(t, server.CallsFor(id), 1)
}

func TestAnAttemptCutShortByTheCallsBudgetIsReportedAbandoned(t *testing.T) {
	t.Parallel()
	server := newServer(t, cckmtest.Options{StaticToken: testStatic})
	gate := &recordingGate{}
	client := newClient(t, server, cckmclient.Config{Credentials: staticCreds, Gate: gate, RetryBudget: 200 * time.Millisecond})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, cckmtest.Step{Hang: true})

	_, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	_, heard := gate.snapshot()
	assert.Equal(t, []heardAttempt{{cckmclient.GateAbandoned, 0}}, heard,
		"running out of the call's own time says nothing of CipherTrust Manager")
}

// onceGate admits one attempt, then holds every other one.
type onceGate struct {
	mu       sync.Mutex
	admitted bool
}

func (g *onceGate) Wait(context.Context) (func(int, time.Duration), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.admitted {
		return nil, errors.New("held")
	}
	g.admitted = true
	return func(int, time.Duration) {}, nil
}

// TestAChainWaitsForEachGateInTurnAndTellsEachHowTheAttemptWent: every
// gate of a chain hears each attempt; when one refuses, the ones it
// follows hear the attempt was abandoned and the ones after it are not
// waited for.
func TestAChainWaitsForEachGateInTurnAndTellsEachHowTheAttemptWent(t *testing.T) {
	t.Parallel()
	first, second := &recordingGate{}, &recordingGate{}
	done, err := cckmclient.Chain(first, second).Wait(testContext(t))
	require.NoError(t, err)
	done(http.StatusServiceUnavailable, time.Second)
	for _, g := range []*recordingGate{first, second} {
		waits, heard := g.snapshot()
		assert.Equal(t, 1, waits)
		assert.Equal(t, []heardAttempt{{http.StatusServiceUnavailable, time.Second}}, heard)
	}

	refusing, after := &recordingGate{refuse: errors.New("held")}, &recordingGate{}
	before := &recordingGate{}
	_, err = cckmclient.Chain(before, refusing, after).Wait(testContext(t))
	require.EqualError(t, err, "held")
	_, heard := before.snapshot()
	assert.Equal(t, []heardAttempt{{cckmclient.GateAbandoned, 0}}, heard, "the gate passed before hears it was abandoned")
	waits, _ := after.snapshot()
	assert.Zero(t, waits, "the gate after the refusal is not waited for")
}
