package worker

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// An operator upgrades a cluster whose CCKM_CANCEL and consumer were made
// by the worker that knew two kinds, with requests waiting: the new worker
// widens both in place, every waiting request gets its result, and a
// request of a new kind is taken.
func TestAnUpgradedWorkerTakesEveryKindAndKeepsTheWaitingRequests(t *testing.T) {
	const waiting = 100
	// What the worker of two kinds made, spelt out: not derived from the
	// kinds table, which now says more.
	oldSubjects := []string{"cckm.cancel.refresh", "cckm.cancel.bulkjob"}
	const newKind messages.Kind = "oci-sync"
	const newKindPath = "/api/v1/cckm/oci/synchronization-jobs/"

	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: -1})
	cfg := testConfig(ModeJetStream)
	stream := env.createRequestStream(t, oldSubjects)
	env.createConsumer(t, cfg, func(c *jetstream.ConsumerConfig) { c.FilterSubjects = oldSubjects })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The requests, published before any worker runs, as `nats pub` does:
	// the bare id, no request_id, so that the request_id the worker derives
	// names the stream sequence and stored time, and each result tells
	// whether its request kept its place.
	type waitingRequest struct {
		kind messages.Kind
		id   string
	}
	byRequestID := map[string]waitingRequest{}
	for i := range waiting {
		req := waitingRequest{kind: messages.KindRefresh, id: messages.NewRequestID()}
		if i%2 == 1 {
			req.kind = messages.KindBulkJob
		}
		ack, err := env.js.Publish(ctx, req.kind.RequestSubject(), []byte(req.id))
		require.NoError(t, err)
		stored, err := stream.GetMsg(ctx, ack.Sequence)
		require.NoError(t, err)
		byRequestID[messages.DerivedRequestID(RequestStream, ack.Sequence, stored.Time)] = req
	}
	require.Len(t, byRequestID, waiting)
	streamBefore, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(waiting), streamBefore.State.Msgs)
	consumerBefore := consumerInfo(t, env)
	require.Equal(t, uint64(waiting), consumerBefore.NumPending, "the old filter takes every waiting request")

	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, cfg, env.client(t, nil))

	for range waiting {
		result, _ := results.next(t)
		req, ok := byRequestID[result.RequestID]
		if !assert.True(t, ok, "request_id %s is derived from a waiting request's own place", result.RequestID) {
			continue
		}
		delete(byRequestID, result.RequestID)
		assert.Equal(t, req.kind, result.Kind, result.RequestID)
		assert.Equal(t, req.id, result.ID, result.RequestID)
		assert.Equal(t, messages.StatusCanceled, result.Status, result.RequestID)
	}
	assert.Empty(t, byRequestID, "requests without a result")
	env.requireOneStoredResultEach(t, waiting)
	assert.Len(t, cancelCalls(env.cm), waiting, "one cancel call per waiting request")

	// The stream and the consumer were changed in place, not made anew.
	streamAfter, err := stream.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, streamBefore.Created, streamAfter.Created, "the same stream")
	assert.Equal(t, oldSubjects, streamAfter.Config.Subjects[:len(oldSubjects)], "the old subjects kept, first")
	assert.Len(t, streamAfter.Config.Subjects, 16)
	assert.ElementsMatch(t, requestSubjects(), streamAfter.Config.Subjects)
	assert.Contains(t, streamAfter.Config.Subjects, "cckm.cancel.oci-sync")
	consumerAfter := consumerInfo(t, env)
	assert.Equal(t, consumerBefore.Created, consumerAfter.Created, "the same consumer")
	filters := append(consumerAfter.Config.FilterSubjects, consumerAfter.Config.FilterSubject)
	for _, kind := range messages.Kinds {
		assert.True(t, filterCovers(filters, kind.RequestSubject()), "the consumer's filter %v takes %s", filters, kind.RequestSubject())
	}

	// A request of a kind the old worker did not know.
	id := messages.NewRequestID()
	env.publish(t, newKind, id, nil)
	result, _ := results.next(t)
	assert.Equal(t, newKind, result.Kind)
	assert.Equal(t, id, result.ID)
	env.requireNothingPending(t)
	var calls []cckmtest.Call
	for _, call := range env.cm.Calls() {
		if strings.Contains(call.Path, id) {
			calls = append(calls, call)
		}
	}
	require.Len(t, calls, 1, "one call for the new kind's request")
	assert.Equal(t, http.MethodPost, calls[0].Method)
	assert.Equal(t, newKindPath+id+"/cancel", calls[0].Path)
	assert.Equal(t, calls[0].Status, result.HTTPStatus, "the result carries the answer")
	assert.Equal(t, http.StatusOK, calls[0].Status)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	assert.True(t, result.Abort)
}

// The output streams an older worker made hold the two old kinds only: a
// new worker widens them in place, so that a new kind's follow task and
// dead letter find their stream.
func TestAnUpgradedWorkerWidensTheOutputStreamsOfAnOlderOne(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := []messages.Kind{messages.KindRefresh, messages.KindBulkJob}
	follow := followStreamConfig()
	follow.Subjects = []string{followSubject(old[0]), followSubject(old[1])}
	dead := deadLetterStreamConfig()
	dead.Subjects = []string{old[0].DeadLetterSubject(), old[1].DeadLetterSubject()}
	for _, cfg := range []jetstream.StreamConfig{follow, dead} {
		_, err := env.js.CreateStream(ctx, cfg)
		require.NoError(t, err)
	}
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	env.startWorker(t, followConfig(ModeJetStream), env.client(t, nil))

	const newKind = messages.Kind("oci-sync")
	id := messages.NewRequestID()
	env.publish(t, newKind, `{"id":"`+id+`","follow":true}`, nil)
	settled, msg := settledEvents.next(t)
	assert.Equal(t, newKind.SettledSubject(), msg.Subject)
	require.NotNil(t, settled.Settled)
	assert.True(t, *settled.Settled, "followed to its end through the widened follow stream")

	for _, name := range []string{FollowStream, DeadLetterStream} {
		stream, err := env.js.Stream(ctx, name)
		require.NoError(t, err)
		assert.Len(t, stream.CachedInfo().Config.Subjects, len(messages.Kinds), name)
	}
}
