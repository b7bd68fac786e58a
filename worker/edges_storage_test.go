package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// A results stream that stops storing while the worker runs (here: full,
// with discard new; in life: out of storage) answers every publish with a
// 503. The request must not be redelivered forever: after the last delivery
// its result goes out on core NATS, the request ends, and CipherTrust
// Manager was called once.
func TestAResultsStreamThatStopsStoringDoesNotLoopTheRequest(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg := testConfig(ModeJetStream)
	cfg.publishBudget = 200 * time.Millisecond
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, cfg, env.client(t, nil))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := env.js.Stream(ctx, ResultStream)
	require.NoError(t, err)
	full := stream.CachedInfo().Config
	full.MaxMsgs, full.Discard = 1, jetstream.DiscardNew
	_, err = env.js.UpdateStream(ctx, full)
	require.NoError(t, err)

	first := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, first)
	env.publish(t, messages.KindRefresh, first, nil)
	stored, _ := results.next(t)
	require.Equal(t, first, stored.ID)

	second := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, second)
	env.publish(t, messages.KindRefresh, second, nil)
	var got messages.Result
	require.Eventually(t, func() bool {
		msg, err := results.sub.NextMsg(100 * time.Millisecond)
		if err != nil {
			return false
		}
		var r messages.Result
		if json.Unmarshal(msg.Data, &r) != nil {
			return false
		}
		got = r
		return r.ID == second
	}, 20*time.Second, time.Millisecond, "the result goes out on core NATS")
	assert.Equal(t, messages.StatusCanceled, got.Status)
	env.requireNothingPending(t)
	assert.Len(t, env.cm.CallsFor(second), 1, "one call: the publishes failed, not CipherTrust Manager")
	assert.Len(t, env.storedResults(t), 1, "only the first was stored")
}
