package cckmclient_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestConcurrentCallersShareOneRenewalPerExpiryOfAShortLivedToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 10 s; skipped with -short")
	}
	t.Parallel()
	const (
		lifetime = 2 * time.Second
		callers  = 20
		runFor   = 10 * time.Second
	)
	server := passwordServer(t, cckmtest.Options{
		TokenLifetime: lifetime,
		AnyJob:        true,
		SettleAfter:   -1,                   // canceled jobs keep running, so every cancel answers 200
		Latency:       2 * time.Millisecond, // a little network, and fewer recorded calls
	})
	var grantFailures atomic.Int64
	client := newClient(t, server, cckmclient.Config{
		Credentials:     passwordCreds,
		MaxConnsPerHost: callers,
		OnTokenGrant: func(_ string, err error) {
			if err != nil {
				grantFailures.Add(1)
			}
		},
	})

	stop := time.Now().Add(runFor)
	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for caller := range callers {
		wg.Go(func() {
			kind := []messages.Kind{messages.KindRefresh, messages.KindBulkJob}[caller%2]
			id := newID()
			for n := 0; time.Now().Before(stop); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				var err error
				if n%2 == 0 {
					_, err = client.Cancel(ctx, kind, id)
				} else {
					_, err = client.Get(ctx, kind, id)
				}
				cancel()
				calls.Add(1)
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()

	require.Zero(t, failures.Load(), "of %d calls; first: %v", calls.Load(), firstFailure.Load())
	jobCalls := append(callsOf(server, "cancel"), callsOf(server, "get")...)
	require.NotEmpty(t, jobCalls)
	for _, call := range jobCalls {
		require.NotEqual(t, http.StatusUnauthorized, call.Status, "a token was used after it expired")
		require.Equal(t, http.StatusOK, call.Status, "%s %s", call.Method, call.Path)
	}
	tokenCalls := callsOf(server, "token")
	for _, call := range tokenCalls {
		// renew_refresh_token revokes the refresh token it is given: a second
		// renewal with the same token, by a caller that did not wait for the
		// first, would be refused.
		assert.Equal(t, http.StatusOK, call.Status, "%s grant", call.Grant)
	}
	assert.Zero(t, grantFailures.Load())

	grants := server.Grants()
	assert.Equal(t, 1, grants["password"], "only the first login uses the password")
	// The JWT's iat and exp claims are whole seconds rounded down, and the
	// client takes the shorter of duration and exp − iat as the lifetime: at
	// least 1 s, at most 2 s. It renews a fifth of that lifetime before
	// the end, so consecutive renewals are more than 0.8 × 1 s apart, which
	// allows at most runFor / 0.8 s renewals; one more for the interval
	// started before the run ends, one for rounding. And since every renewal
	// comes at most 0.8 × 2 s after the previous one (plus the wait for the
	// next call), at least runFor / 1.6 s − 1 must have happened.
	minLifetime := lifetime - time.Second
	maxRenewals := int(runFor/(minLifetime*4/5)) + 2
	minRenewals := int(runFor/(lifetime*4/5)) - 1
	assert.LessOrEqual(t, grants["refresh_token"], maxRenewals, "at most one renewal per expiry")
	assert.GreaterOrEqual(t, grants["refresh_token"], minRenewals, "the short-lived token was renewed")
	t.Logf("%d calls, %d renewals, %d token requests", calls.Load(), grants["refresh_token"], len(tokenCalls))
}
