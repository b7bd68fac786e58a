package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// boundClient is a CipherTrust Manager client of env with up to 64
// connections, as each instance of the bound tests has.
func boundClient(t *testing.T, env *testEnv) *cckmclient.Client {
	t.Helper()
	cfg := env.clientConfig()
	cfg.Timeout = 5 * time.Second
	cfg.RetryBudget = 10 * time.Second
	cfg.MaxConnsPerHost = 64
	client, err := cckmclient.New(cfg)
	require.NoError(t, err)
	return client
}

// callsWith counts the calls cm received with the operation op.
func callsWith(cm *cckmtest.Server, op string) int64 {
	var n int64
	for _, call := range cm.Calls() {
		if call.Op == op {
			n++
		}
	}
	return n
}

// TestMaxInFlightBoundsTheCallsOfEveryInstanceTogether: three instances
// of 64 slots each, CCKM_MAX_IN_FLIGHT=10, 1,000 requests against a CM
// answering in 50 ms: CM never sees more than 10 calls at once, cancels
// and follow GETs together, and every request gets its result.
func TestMaxInFlightBoundsTheCallsOfEveryInstanceTogether(t *testing.T) {
	const (
		requests    = 1000
		maxInFlight = 10
		followEvery = 10 // with follows: every tenth request asks for one
	)
	for _, follows := range []bool{false, true} {
		name := "cancels only"
		if follows {
			name = "with follows running"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 50 * time.Millisecond,
				SettleAfter: time.Nanosecond})
			results := env.watchResults(t, messages.SubjectResults)
			settledEvents := env.watchResults(t, messages.SubjectSettled)
			cfg := testConfig(ModeJetStream)
			cfg.Concurrency = 64
			cfg.MaxInFlight = maxInFlight
			cfg.AckWait = 5 * time.Second
			cfg.MaxDeliveries = 5
			for range 3 {
				env.startWorker(t, cfg, boundClient(t, env))
			}

			ids := map[string]bool{}
			wantFollows := 0
			var acks []jetstream.PubAckFuture
			for i := range requests {
				id := messages.NewRequestID()
				ids[id] = true
				payload := id
				if follows && i%followEvery == 0 {
					payload = `{"id":"` + id + `","follow":true}`
					wantFollows++
				}
				ack, err := env.js.PublishAsync(messages.KindRefresh.RequestSubject(), []byte(payload))
				require.NoError(t, err)
				acks = append(acks, ack)
			}
			natstest.AwaitAcks(t, acks, 10*time.Second)
			seen := map[string]bool{}
			for len(seen) < requests {
				result, _ := results.next(t)
				require.Equal(t, messages.StatusCanceled, result.Status, "%+v", result)
				require.True(t, ids[result.ID], "a result for a job never asked for: %s", result.ID)
				seen[result.ID] = true
			}
			settled := 0
			for settled < wantFollows {
				event, _ := settledEvents.next(t)
				require.NotNil(t, event.Settled)
				require.True(t, *event.Settled, "%+v", event)
				settled++
			}

			peak, cancels, gets := env.cm.PeakJobCalls(), callsWith(env.cm, "cancel"), callsWith(env.cm, "get")
			t.Logf("peak %d calls at once; %d cancels, %d GETs", peak, cancels, gets)
			assert.LessOrEqual(t, peak, int64(maxInFlight),
				"CCKM_MAX_IN_FLIGHT calls at once across the three instances, never more")
			assert.GreaterOrEqual(t, peak, int64(maxInFlight/2),
				"the calls did run side by side")
			assert.GreaterOrEqual(t, cancels, int64(requests))
			if follows {
				assert.GreaterOrEqual(t, gets, int64(wantFollows), "each follow GETs its job")
			} else {
				assert.Zero(t, gets)
			}
		})
	}
}

// TestAnExistingConsumerIsBroughtToItsMaxAckPending: a consumer with
// MaxAckPending 1000 (as an older worker made the request consumer) is
// brought to what CCKM_MAX_IN_FLIGHT gives it (twice the bound for the
// requests held, the bound for the follows in progress) with provisioning
// on, and left as it is, with a warning, with it off.
func TestAnExistingConsumerIsBroughtToItsMaxAckPending(t *testing.T) {
	for _, provision := range []bool{true, false} {
		for _, tc := range []struct{ consumer, stream string }{
			{ConsumerName, RequestStream},
			{FollowConsumer, FollowStream},
		} {
			t.Run(tc.consumer+map[bool]string{true: " is corrected", false: " is left, with a warning"}[provision], func(t *testing.T) {
				env := newTestEnv(t, cckmtest.Options{AnyJob: true})
				cfg := testConfig(ModeJetStream)
				cfg.MaxInFlight = 100
				want := map[string]int{ConsumerName: 200, FollowConsumer: 100}[tc.consumer]

				// Every asset as the worker makes it, then the consumer as
				// an older worker (or an operator) left it.
				setup := env.startWorker(t, cfg, env.client(t, nil))
				require.Eventually(t, func() bool { return setup.followReady.Load() }, 10*time.Second, 5*time.Millisecond)
				setup.stop(t)
				require.Equal(t, want, storedMaxAckPending(t, env, tc.stream, tc.consumer), "made so")
				setMaxAckPending(t, env, tc.stream, tc.consumer, 1000)

				cfg.Provision = provision
				if !provision {
					// No promise is broken (the permits bound the calls):
					// the worker runs, says so, and changes nothing.
					w := env.startWorker(t, cfg, env.client(t, nil))
					require.Eventually(t, func() bool { return w.followReady.Load() }, 10*time.Second, 5*time.Millisecond)
					assert.Contains(t, w.logs.String(), "max_ack_pending is not")
					assert.Equal(t, 1000, storedMaxAckPending(t, env, tc.stream, tc.consumer), "left as it was")
					return
				}
				env.startWorker(t, cfg, env.client(t, nil))
				require.Eventually(t, func() bool {
					return storedMaxAckPending(t, env, tc.stream, tc.consumer) == want
				}, 10*time.Second, 10*time.Millisecond, "the consumer is brought to it")
			})
		}
	}
}

func storedMaxAckPending(t *testing.T, env *testEnv, stream, consumer string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := env.js.Consumer(ctx, stream, consumer)
	require.NoError(t, err)
	return cons.CachedInfo().Config.MaxAckPending
}

func setMaxAckPending(t *testing.T, env *testEnv, stream, consumer string, n int) {
	t.Helper()
	updateConsumer(t, env, stream, consumer, func(cfg *jetstream.ConsumerConfig) { cfg.MaxAckPending = n })
}

// updateConsumer changes the settings of an existing consumer as an
// operator would: its current configuration, changed by change.
func updateConsumer(t *testing.T, env *testEnv, stream, consumer string, change func(*jetstream.ConsumerConfig)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := env.js.Consumer(ctx, stream, consumer)
	require.NoError(t, err)
	cfg := cons.CachedInfo().Config
	change(&cfg)
	_, err = env.js.UpdateConsumer(ctx, stream, cfg)
	require.NoError(t, err)
}
