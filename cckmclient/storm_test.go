package cckmclient_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// grantGap is the least gap the tests accept between two token requests as
// the fake saw them arrive: the client's one a second, less what loopback
// latency can shave off.
const grantGap = 900 * time.Millisecond

// everyToken makes every token request of server answer as step says.
func everyToken(server *cckmtest.Server, step cckmtest.TokenStep) {
	server.SetTokenFault(func(cckmtest.Call) *cckmtest.TokenStep { return &step })
}

// maxGrantsIn is how many token requests one client may make in elapsed:
// one at the start, then one a second.
func maxGrantsIn(elapsed time.Duration) int { return 1 + int(elapsed/time.Second) }

// requireGrantGaps checks that the token requests arrived at least grantGap
// apart.
func requireGrantGaps(t *testing.T, server *cckmtest.Server) {
	t.Helper()
	calls := callsOf(server, "token")
	for i := 1; i < len(calls); i++ {
		assert.GreaterOrEqual(t, calls[i].Time.Sub(calls[i-1].Time), grantGap, "token requests %d and %d", i, i+1)
	}
}

func TestAClockBehindOrAZeroLifetimeDoesNotStormTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	const callsFor = 2500 * time.Millisecond
	tests := []struct {
		name string
		step cckmtest.TokenStep
		// renewsOnce: the client can tell the real lifetime, so it renews
		// not at all during the test; else it renews at most once a second.
		renewsOnce bool
	}{
		{"iat and exp an hour behind, duration right", cckmtest.TokenStep{ClockOffset: -time.Hour}, true},
		{"iat and exp an hour behind, no duration", cckmtest.TokenStep{ClockOffset: -time.Hour, NoDuration: true}, true},
		{"only exp, an hour behind, and a positive duration",
			cckmtest.TokenStep{ClockOffset: -time.Hour, NoIssuedAt: true}, true},
		{"only exp, an hour behind, and no duration",
			cckmtest.TokenStep{ClockOffset: -time.Hour, NoIssuedAt: true, NoDuration: true}, false},
		{"only exp, an hour behind, and a negative duration",
			cckmtest.TokenStep{ClockOffset: -time.Hour, NoIssuedAt: true, Duration: -300}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := passwordServer(t, cckmtest.Options{AnyJob: true, SettleAfter: -1})
			everyToken(server, tt.step)
			client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
			id := newID()

			// One call on its own: before the fix it asked for thousands of
			// tokens within the second.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := client.Cancel(ctx, messages.KindRefresh, id)
			cancel()
			require.NoError(t, err)
			assert.True(t, resp.Job.Abort)
			assert.Equal(t, 1, resp.Attempts)
			require.Equal(t, 1, server.TokenRequests(), "one call, one token")

			// Then calls back to back for a few seconds.
			started := time.Now()
			calls := 0
			for ; time.Since(started) < callsFor; calls++ {
				_, err := client.Get(testContext(t), messages.KindRefresh, id)
				require.NoError(t, err)
			}
			elapsed := time.Since(started)
			requests := server.TokenRequests()
			if tt.renewsOnce {
				assert.Equal(t, 1, requests, "the lifetime relative to CipherTrust Manager's clock is right")
			} else {
				assert.LessOrEqual(t, requests, 1+maxGrantsIn(elapsed), "in %v", elapsed)
				assert.GreaterOrEqual(t, requests, 2, "a token that says it expired is still renewed, once a second")
			}
			assert.Equal(t, requests, server.Grants()["password"]+server.Grants()["refresh_token"])
			requireGrantGaps(t, server)
			for _, call := range append(callsOf(server, "cancel"), callsOf(server, "get")...) {
				require.Equal(t, http.StatusOK, call.Status, "CipherTrust Manager accepted every token")
			}
			t.Logf("%d calls, %d token requests in %v", calls, requests, elapsed)
		})
	}
}

func TestAHugeDurationIsBoundedAndDoesNotStorm(t *testing.T) {
	t.Parallel()
	for _, duration := range []int64{1e12, math.MaxInt64} {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			server := passwordServer(t, cckmtest.Options{AnyJob: true, SettleAfter: -1})
			// Without iat, the duration alone says how long the token lives.
			everyToken(server, cckmtest.TokenStep{Duration: duration, NoIssuedAt: true})
			client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
			id := newID()
			for range 100 {
				_, err := client.Cancel(testContext(t), messages.KindBulkJob, id)
				require.NoError(t, err)
			}
			assert.Equal(t, 1, server.TokenRequests(), "duration %d", duration)
		})
	}
}

func TestAFailingTokenEndpointIsAskedAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			server := passwordServer(t, cckmtest.Options{})
			server.ScriptTokens(slices.Repeat([]cckmtest.TokenStep{{Status: status}}, 10)...)
			client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, MaxAttempts: 3})

			resp, err := client.Cancel(testContext(t), messages.KindRefresh, addJob(server, cckmtest.Refresh))
			require.Error(t, err)
			var authErr *cckmclient.AuthError
			require.True(t, errors.As(err, &authErr), "%T: %v", err, err)
			assert.True(t, cckmclient.Retryable(err), "a later redelivery may get a token")
			assert.Equal(t, status, resp.HTTPStatus, "the token endpoint's answer")
			assert.Zero(t, resp.Attempts, "no job call without a token")
			assert.Equal(t, 3, server.TokenRequests(), "one token request per attempt, MaxAttempts of them")
			requireGrantGaps(t, server)
			assert.Empty(t, callsOf(server, "cancel"))
		})
	}
}

func TestTheRetryBudgetBoundsTheTokenRequestsOfAFailingTokenEndpoint(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	everyToken(server, cckmtest.TokenStep{Status: http.StatusBadGateway})
	const budget = 2500 * time.Millisecond
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, MaxAttempts: 1000, RetryBudget: budget})

	started := time.Now()
	_, err := client.Cancel(testContext(t), messages.KindRefresh, newID())
	elapsed := time.Since(started)
	require.Error(t, err)
	assert.GreaterOrEqual(t, statusOf(err), 500)
	assert.True(t, cckmclient.Retryable(err))
	assert.Less(t, elapsed, budget+500*time.Millisecond)
	assert.LessOrEqual(t, server.TokenRequests(), maxGrantsIn(budget), "a thousand attempts allowed, one a second made")
	assert.GreaterOrEqual(t, server.TokenRequests(), 2, "retried within the budget")
	requireGrantGaps(t, server)
}

func TestConcurrentCallersShareAFailedTokenRequest(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	everyToken(server, cckmtest.TokenStep{Status: http.StatusServiceUnavailable})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, MaxAttempts: 3, RetryBudget: 3 * time.Second})

	const callers = 50
	started := time.Now()
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { _, errs[i] = client.Cancel(testContext(t), messages.KindRefresh, newID()) })
	}
	wg.Wait()
	elapsed := time.Since(started)
	for _, err := range errs {
		require.Error(t, err)
		assert.True(t, cckmclient.Retryable(err), "%v", err)
		// The last answer, or, for a caller whose budget ended while it
		// waited for the next allowed request, no answer.
		assert.True(t, statusOf(err) >= 500 || isUnreachable(err), "%v", err)
	}
	assert.LessOrEqual(t, server.TokenRequests(), maxGrantsIn(elapsed), "%d callers, in %v", callers, elapsed)
	requireGrantGaps(t, server)
}

func TestATokenRetryAfterIsHonouredWithinTheBudget(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	server.ScriptTokens(cckmtest.TokenStep{Status: http.StatusTooManyRequests, RetryAfter: "2"})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, addJob(server, cckmtest.Refresh))
	require.NoError(t, err)
	assert.Equal(t, 1, resp.Attempts)
	assert.Equal(t, http.StatusOK, resp.HTTPStatus)
	tokens := callsOf(server, "token")
	require.Len(t, tokens, 2)
	assert.Equal(t, []int{http.StatusTooManyRequests, http.StatusOK}, statuses(tokens))
	assert.GreaterOrEqual(t, tokens[1].Time.Sub(tokens[0].Time), 1900*time.Millisecond,
		"the back-off alone would wait at most 10 ms, the token interval one second")
}

func TestATokenRetryAfterBeyondTheBudgetEndsTheCallAtOnce(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	server.ScriptTokens(cckmtest.TokenStep{Status: http.StatusTooManyRequests, RetryAfter: "30"})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, RetryBudget: 3 * time.Second})

	started := time.Now()
	resp, err := client.Cancel(testContext(t), messages.KindRefresh, addJob(server, cckmtest.Refresh))
	require.Error(t, err)
	assert.Less(t, time.Since(started), time.Second)
	assert.True(t, cckmclient.Retryable(err))
	assert.Equal(t, http.StatusTooManyRequests, resp.HTTPStatus)
	assert.Equal(t, 1, server.TokenRequests())

	// The Retry-After holds the next caller too, rather than let it ask.
	_, err = client.Cancel(testContext(t), messages.KindRefresh, addJob(server, cckmtest.Refresh))
	require.Error(t, err)
	assert.True(t, cckmclient.Retryable(err))
	assert.Equal(t, 1, server.TokenRequests())
}

func TestAHangingTokenEndpointEndsWithTheCall(t *testing.T) {
	t.Parallel()
	t.Run("the caller's context", func(t *testing.T) {
		t.Parallel()
		server := passwordServer(t, cckmtest.Options{})
		everyToken(server, cckmtest.TokenStep{Hang: true})
		client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, Timeout: 10 * time.Second})

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		started := time.Now()
		resp, err := client.Cancel(ctx, messages.KindRefresh, newID())
		require.Error(t, err)
		assert.Less(t, time.Since(started), time.Second)
		assert.True(t, isUnreachable(err), "%T: %v", err, err)
		assert.True(t, cckmclient.Retryable(err))
		assert.Zero(t, resp.HTTPStatus)
		assert.Equal(t, 1, server.TokenRequests())
	})
	t.Run("the retry budget", func(t *testing.T) {
		t.Parallel()
		server := passwordServer(t, cckmtest.Options{})
		everyToken(server, cckmtest.TokenStep{Hang: true})
		const budget = 1500 * time.Millisecond
		client := newClient(t, server, cckmclient.Config{
			Credentials: passwordCreds, Timeout: 400 * time.Millisecond, RetryBudget: budget, MaxAttempts: 100,
		})

		started := time.Now()
		_, err := client.Cancel(testContext(t), messages.KindRefresh, newID())
		require.Error(t, err)
		assert.Less(t, time.Since(started), budget+500*time.Millisecond)
		assert.True(t, isUnreachable(err), "%T: %v", err, err)
		assert.True(t, cckmclient.Retryable(err))
		assert.LessOrEqual(t, server.TokenRequests(), maxGrantsIn(budget))
		requireGrantGaps(t, server)
	})
}

func TestACallWhoseContextEndsBeforeTheNextAllowedTokenRequestReturnsAtOnce(t *testing.T) {
	t.Parallel()
	server := passwordServer(t, cckmtest.Options{})
	server.ScriptTokens(cckmtest.TokenStep{Status: http.StatusServiceUnavailable})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds, MaxAttempts: 1})
	_, err := client.Cancel(testContext(t), messages.KindRefresh, newID())
	require.Error(t, err)
	require.Equal(t, 1, server.TokenRequests())

	t.Run("a deadline before it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		started := time.Now()
		resp, err := client.Cancel(ctx, messages.KindRefresh, newID())
		require.Error(t, err)
		assert.Less(t, time.Since(started), 200*time.Millisecond, "no point waiting for a request that cannot be sent")
		assert.True(t, cckmclient.Retryable(err))
		assert.Equal(t, http.StatusServiceUnavailable, resp.HTTPStatus, "the last answer of the token endpoint")
	})
	t.Run("a cancel while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		started := time.Now()
		_, err := client.Cancel(ctx, messages.KindRefresh, newID())
		require.Error(t, err)
		assert.Less(t, time.Since(started), 500*time.Millisecond)
	})
	assert.Equal(t, 1, server.TokenRequests(), "neither call asked")
}

func TestA401RightAfterAGrantRenewsOnceASecondLater(t *testing.T) {
	t.Parallel()
	// A CipherTrust Manager that says its tokens expired already and refuses
	// them too: the client uses the new token once, renews once, and stops.
	server := passwordServer(t, cckmtest.Options{})
	everyToken(server, cckmtest.TokenStep{ClockOffset: -time.Hour, NoIssuedAt: true, NoDuration: true})
	client := newClient(t, server, cckmclient.Config{Credentials: passwordCreds})
	id := addJob(server, cckmtest.Refresh)
	server.Script(id, slices.Repeat([]cckmtest.Step{{Status: http.StatusUnauthorized}}, 10)...)

	resp, err := client.Cancel(testContext(t), messages.KindRefresh, id)
	require.Error(t, err)
	assert.Equal(t, 401, statusOf(err))
	assert.Equal(t, 2, resp.Attempts, "the first token, then the renewed one")
	assert.Equal(t, 2, server.TokenRequests())
	assert.Equal(t, map[string]int{"password": 1, "refresh_token": 1}, server.Grants())
	requireGrantGaps(t, server)
}
