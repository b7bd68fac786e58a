package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
)

// TestThreeBinariesKeepToCCKMMaxInFlightTogether: three worker processes
// of WORKER_CONCURRENCY=64 with CCKM_MAX_IN_FLIGHT=10, 1,000 requests (one
// in ten followed) against a CipherTrust Manager answering in 50 ms: it
// never sees more than 10 calls at once, cancels and GETs together, and
// every request gets its result.
func TestThreeBinariesKeepToCCKMMaxInFlightTogether(t *testing.T) {
	t.Parallel()
	const (
		requests    = 1000
		maxInFlight = 10
		followEvery = 10
	)
	ns := natstest.RunServer(t, nil)
	cm := cckmtest.NewServer(cckmtest.Options{Username: "worker", Password: "bound-password", AnyJob: true,
		Latency: 50 * time.Millisecond, SettleAfter: time.Nanosecond})
	t.Cleanup(cm.Close)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	results := make(chan *nats.Msg, requests)
	sub, err := nc.ChanSubscribe("cckm.cancel.*.result", results)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CCKM_URL": cm.URL(), "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn",
		"CCKM_USERNAME": "worker", "CCKM_PASSWORD": "bound-password",
		"WORKER_CONCURRENCY": "64", "CCKM_MAX_IN_FLIGHT": fmt.Sprint(maxInFlight),
		"WORKER_FOLLOW_MAX_INTERVAL": "1s",
	}
	for range 3 {
		p := startBinary(t, env)
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := js.Consumer(ctx, "CCKM_CANCEL_INFLIGHT", "cckm-cancel-inflight")
			return err == nil || p.exited()
		}, 20*time.Second, 20*time.Millisecond)
		require.False(t, p.exited(), "the binary exited: %s", p.output())
	}

	var acks []jetstream.PubAckFuture
	for i := range requests {
		payload := newUUID(t)
		if i%followEvery == 0 {
			payload = `{"id":"` + payload + `","follow":true}`
		}
		ack, err := js.PublishAsync("cckm.cancel.refresh", []byte(payload))
		require.NoError(t, err)
		acks = append(acks, ack)
	}
	natstest.AwaitAcks(t, acks, 10*time.Second)
	got := receiveResults(t, results, requests, 60*time.Second)
	for _, msg := range got {
		assert.Equal(t, "canceled", decodeResult(t, msg).Status)
	}
	// The follows' GETs run after their results; give them time to poll.
	require.Eventually(t, func() bool { return countCalls(cm, "get") >= requests/followEvery }, 30*time.Second,
		20*time.Millisecond, "each followed job is polled")

	t.Logf("peak %d calls at once, %d GETs", cm.PeakJobCalls(), countCalls(cm, "get"))
	assert.LessOrEqual(t, cm.PeakJobCalls(), int64(maxInFlight), "CCKM_MAX_IN_FLIGHT calls at once across the three processes")
	assert.GreaterOrEqual(t, cm.PeakJobCalls(), int64(maxInFlight/2), "the calls ran side by side")
}
