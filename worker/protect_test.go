package worker

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// guardedClient is a client of the test's fake that passes guard.
func (e *testEnv) guardedClient(t *testing.T, guard *Guard, budget time.Duration) *cckmclient.Client {
	t.Helper()
	client, err := cckmclient.New(cckmclient.Config{
		BaseURL:     e.cm.URL(),
		Credentials: cckmclient.Credentials{Username: testUser, Password: testPassword},
		Timeout:     2 * time.Second,
		MaxAttempts: 2,
		RetryBudget: budget,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		Gate:        guard,
	})
	require.NoError(t, err)
	return client
}

// jobCalls are the cancels and GETs the fake saw, in order of arrival.
func jobCalls(cm *cckmtest.Server) []cckmtest.Call {
	var calls []cckmtest.Call
	for _, call := range cm.Calls() {
		if call.Op == "cancel" || call.Op == "get" {
			calls = append(calls, call)
		}
	}
	return calls
}

// gaugeValue reads a gauge or counter without labels from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		metric := family.GetMetric()[0]
		if metric.GetGauge() != nil {
			return metric.GetGauge().GetValue()
		}
		return metric.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// collectResults waits for n results on sub, within timeout in all.
func collectResults(t *testing.T, watch *resultWatch, n int, timeout time.Duration) []messages.Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	results := make([]messages.Result, 0, n)
	for len(results) < n {
		msg, err := watch.sub.NextMsg(time.Until(deadline))
		require.NoError(t, err, "%d of %d results within %s", len(results), n, timeout)
		var r messages.Result
		require.NoError(t, json.Unmarshal(msg.Data, &r))
		results = append(results, r)
	}
	return results
}

func TestARateLimitOf50KeepsCallsWithin50ASecondPlusTheBurst(t *testing.T) {
	const (
		limit  = 50
		burst  = 1
		window = 5 * time.Second
	)
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	guard := NewGuard(GuardConfig{RateLimit: limit, RateBurst: burst}, zerolog.Nop(), nil)
	client := env.guardedClient(t, guard, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = client.Cancel(ctx, messages.KindRefresh, messages.NewRequestID())
			}
		})
	}
	wg.Wait()

	calls := len(jobCalls(env.cm))
	assert.LessOrEqual(t, calls, limit*5+burst, "at most the rate times the window, plus the burst")
	assert.GreaterOrEqual(t, calls, limit*5*8/10, "the limit paces calls, it does not stop them")
}

func TestAGuardHoldsAfterFiveFailuresInARowAndLetsOneProbeThroughAtATime(t *testing.T) {
	reg := prometheus.NewRegistry()
	guard := NewGuard(GuardConfig{FirstHold: 100 * time.Millisecond, MaxHold: time.Second}, zerolog.Nop(), NewMetrics(reg))
	ctx := context.Background()
	answer := func(status int) {
		t.Helper()
		done, err := guard.Wait(ctx)
		require.NoError(t, err)
		done(status, 0)
	}

	for _, status := range []int{500, 0, 502, 504, 200, 0, 0, 0, 0} {
		answer(status)
	}
	assert.False(t, guard.Held(), "four failures after a success are not yet a hold")
	answer(cckmclient.GateAbandoned)
	assert.False(t, guard.Held(), "an abandoned attempt counts for nothing")
	answer(0)
	require.True(t, guard.Held(), "the fifth failure in a row holds")
	assert.Equal(t, 1.0, gaugeValue(t, reg, "cckm_cancel_cm_held"))

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err := guard.Wait(short)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a call whose time ends while held fails")

	probe, err := guard.Wait(ctx) // after the hold
	require.NoError(t, err)
	second := make(chan func(int, time.Duration), 1)
	go func() {
		done, err := guard.Wait(ctx)
		assert.NoError(t, err)
		second <- done
	}()
	select {
	case <-second:
		t.Fatal("a second attempt went while the probe was out")
	case <-time.After(300 * time.Millisecond):
	}
	probe(cckmclient.GateAbandoned, 0)
	var next func(int, time.Duration)
	select {
	case next = <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("an abandoned probe did not let another attempt be the probe")
	}
	assert.True(t, guard.Held())
	next(200, 0)
	assert.False(t, guard.Held(), "a probe that gets an answer ends the hold")
	assert.Equal(t, 0.0, gaugeValue(t, reg, "cckm_cancel_cm_held"))
	assert.Equal(t, 1.0, gaugeValue(t, reg, "cckm_cancel_cm_holds_total"))
}

func TestWhileCMAnswers503OneCallGoesPerHoldAndEveryRequestEndsCanceledOnceItIsBack(t *testing.T) {
	const (
		outage    = 10 * time.Second
		requests  = 20
		firstHold = 500 * time.Millisecond
		maxHold   = 2 * time.Second
	)
	var downUntil atomic.Int64
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, Fault: func(cckmtest.Call) *cckmtest.Step {
		if time.Now().UnixNano() < downUntil.Load() {
			return &cckmtest.Step{Status: 503}
		}
		return nil
	}})
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	guard := NewGuard(GuardConfig{FirstHold: firstHold, MaxHold: maxHold}, zerolog.New(logs), NewMetrics(reg))
	cfg := testConfig(ModeJetStream)
	cfg.MaxDeliveries = 10
	cfg.RetryDelay = 200 * time.Millisecond
	cfg.MaxRetryDelay = time.Second
	env.startWorker(t, cfg, env.guardedClient(t, guard, 3*time.Second))
	watch := env.watchResults(t, messages.KindRefresh.ResultSubject())

	downUntil.Store(time.Now().Add(outage).UnixNano())
	env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	require.Eventually(t, guard.Held, 5*time.Second, 5*time.Millisecond, "the first 503 holds calls")
	assert.Equal(t, 1.0, gaugeValue(t, reg, "cckm_cancel_cm_held"), "/metrics shows the hold")
	for range requests - 1 {
		env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	}

	for _, r := range collectResults(t, watch, requests, 30*time.Second) {
		assert.Equal(t, messages.StatusCanceled, r.Status, "request %s", r.RequestID)
	}
	assert.Len(t, env.storedResults(t), requests, "one result per request")

	var during []cckmtest.Call
	for _, call := range jobCalls(env.cm) {
		if call.Time.UnixNano() < downUntil.Load() {
			during = append(during, call)
		}
	}
	require.GreaterOrEqual(t, len(during), 3, "probes went while CipherTrust Manager was down")
	for i := 1; i < len(during); i++ {
		hold := min(firstHold<<(i-1), maxHold)
		gap := during[i].Time.Sub(during[i-1].Time)
		assert.GreaterOrEqual(t, gap, hold, "call %d came %s after the one before; the hold was %s", i, gap, hold)
	}
	t.Logf("%d calls while down over %s", len(during), outage)

	assert.False(t, guard.Held())
	assert.Equal(t, 0.0, gaugeValue(t, reg, "cckm_cancel_cm_held"))
	assert.Equal(t, 1.0, gaugeValue(t, reg, "cckm_cancel_cm_holds_total"), "one hold for the whole outage")
	assert.Equal(t, 1, strings.Count(logs.String(), "holding every new call"), "the log says when holding starts, once")
	assert.Equal(t, 1, strings.Count(logs.String(), "calls resume"), "and when it ends, once")
	env.requireNothingPending(t)
}

func TestA429WithRetryAfter3HoldsEveryCallButTheProbeFor3Seconds(t *testing.T) {
	const requests = 10
	var first atomic.Bool
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, Fault: func(cckmtest.Call) *cckmtest.Step {
		if first.CompareAndSwap(false, true) {
			return &cckmtest.Step{Status: 429, RetryAfter: "3"}
		}
		return nil
	}})
	guard := NewGuard(GuardConfig{FirstHold: 100 * time.Millisecond, MaxHold: 10 * time.Second}, zerolog.Nop(), nil)
	env.startWorker(t, testConfig(ModeJetStream), env.guardedClient(t, guard, 8*time.Second))
	watch := env.watchResults(t, messages.KindRefresh.ResultSubject())

	env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	require.Eventually(t, guard.Held, 5*time.Second, 5*time.Millisecond, "the 429 holds calls")
	for range requests - 1 {
		env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	}
	for _, r := range collectResults(t, watch, requests, 15*time.Second) {
		assert.Equal(t, messages.StatusCanceled, r.Status, "request %s", r.RequestID)
	}

	calls := jobCalls(env.cm)
	require.Len(t, calls, requests+1, "the 429, then one call per request")
	assert.Equal(t, 429, calls[0].Status)
	gap := calls[1].Time.Sub(calls[0].Time)
	assert.GreaterOrEqual(t, gap, 3*time.Second, "no call for the Retry-After; the next came after %s", gap)
	assert.False(t, guard.Held())
}
