package worker

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestATransientFailureIsRedeliveredAndThenSucceedsWithOneResult(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	// Delivery 1: 503, 503 (both attempts). Delivery 2: 503, then the cancel.
	env.cm.Script(id, repeatStep(cckmtest.Step{Status: 503}, 3)...)
	env.publish(t, messages.KindRefresh, id, nil)

	result, _ := results.next(t)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	assert.Equal(t, 4, result.Attempts, "attempts count across deliveries")
	assert.Equal(t, 200, result.HTTPStatus)
	_, err := results.sub.NextMsg(200 * time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrTimeout, "no result for the failed first delivery")

	cancels := env.cm.CallsFor(id)
	require.Len(t, cancels, 4)
	gap := cancels[2].Time.Sub(cancels[1].Time)
	assert.GreaterOrEqual(t, gap, testConfig(ModeJetStream).RetryDelay, "redelivered after the Nak delay")
}

func TestTheLastFailedDeliveryIsDeadLetteredAndTerminated(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	dead := env.watchResults(t, messages.KindBulkJob.DeadLetterSubject())
	w := env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.Script(id, repeatStep(cckmtest.Step{Status: 503, RetryAfter: "0"}, 20)...)
	payload := `{"id":"` + id + `","request_id":"ir-dead-1"}`
	env.publish(t, messages.KindBulkJob, payload, nats.Header{"X-Incident": {"INC-7"}})

	result, _ := results.next(t)
	assert.Equal(t, messages.StatusFailed, result.Status)
	require.NotNil(t, result.Error)
	assert.Equal(t, messages.CodeServerError, result.Error.Code)
	assert.True(t, result.Error.Retryable)

	deadMsg, err := dead.sub.NextMsg(5 * time.Second)
	require.NoError(t, err, "a copy on cckm.cancel.dead.bulkjob")
	assert.Equal(t, payload, string(deadMsg.Data), "the request as it was sent")
	assert.Equal(t, "INC-7", deadMsg.Header.Get("X-Incident"), "the request's own headers")
	assert.Equal(t, "server_error", deadMsg.Header.Get(HeaderDeadCode))
	assert.Equal(t, "2", deadMsg.Header.Get(HeaderDeadDeliveries))
	assert.Equal(t, "4", deadMsg.Header.Get(HeaderDeadAttempts))
	assert.Equal(t, "ir-dead-1", deadMsg.Header.Get(HeaderRequestID))
	assert.Equal(t, messages.SubjectBulkJob, deadMsg.Header.Get(HeaderOrigSubject))
	assert.NotEmpty(t, deadMsg.Header.Get(HeaderDeadReason))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := env.js.Stream(ctx, DeadLetterStream)
	require.NoError(t, err)
	// The core subscriber may see the copy before the stream has stored it.
	require.Eventually(t, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 1
	}, 5*time.Second, 10*time.Millisecond, "the dead letter is stored in %s", DeadLetterStream)

	env.requireNothingPending(t)
	require.Len(t, env.cm.CallsFor(id), 4, "no further delivery after the dead letter")
	assert.Contains(t, w.logs.String(), "transient failure")
}

func TestARejectedRequestIsTerminatedAndNeverRedelivered(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.AckWait = 300 * time.Millisecond
	env.startWorker(t, cfg, env.client(t, nil))

	env.publish(t, messages.KindRefresh, "not-a-job-id", nil)
	result, _ := results.next(t)
	assert.Equal(t, messages.StatusRejected, result.Status)
	env.requireNothingPending(t)
	_, err := results.sub.NextMsg(3 * cfg.AckWait)
	assert.ErrorIs(t, err, nats.ErrTimeout, "a terminated request is not delivered again")
	assert.Empty(t, env.cm.Calls(), "nothing was called")
}

func TestHeadersAreCarriedThrough(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	id := messages.NewRequestID()
	traceparent := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	env.publish(t, messages.KindRefresh, id, nats.Header{
		messages.HeaderMsgID:       {"msg-42"},
		messages.HeaderTraceparent: {traceparent},
	})
	result, msg := results.next(t)
	assert.Equal(t, "msg-42", result.RequestID, "Nats-Msg-Id is the request_id when the payload has none")
	assert.Equal(t, "msg-42.result", msg.Header.Get(messages.HeaderMsgID))
	assert.Equal(t, traceparent, msg.Header.Get(messages.HeaderTraceparent), "traceparent on the result")
	calls := env.cm.CallsFor(id)
	require.Len(t, calls, 1)
	assert.Equal(t, traceparent, calls[0].Header.Get("traceparent"), "traceparent on the HTTP call")
	assert.Equal(t, "application/json", calls[0].Header.Get("Accept"))
}

// requireNothingPending waits until the consumer has no request pending or
// waiting for an ack.
func (e *testEnv) requireNothingPending(t *testing.T) {
	t.Helper()
	e.requireConsumerIdleWithin(t, 5*time.Second)
}

func (e *testEnv) requireConsumerIdleWithin(t *testing.T, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cons, err := e.js.Consumer(ctx, RequestStream, ConsumerName)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	}, within, 10*time.Millisecond, "requests pending on %s", ConsumerName)
}

func TestAWorkerStoppedMidCallLeavesTheRequestToAnother(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg := testConfig(ModeJetStream)
	cfg.AckWait = 500 * time.Millisecond
	cfg.ShutdownTimeout = 200 * time.Millisecond
	first := env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.cm.Script(id, cckmtest.Step{Hang: true})
	env.publish(t, messages.KindRefresh, `{"id":"`+id+`","request_id":"ir-crash"}`, nil)
	require.Eventually(t, func() bool { return len(env.cm.CallsFor(id)) == 1 }, 5*time.Second, 5*time.Millisecond)

	// The first worker dies mid-call: its connection is gone before it
	// could publish or acknowledge anything.
	first.nc.Close()
	first.stop(t)

	env.startWorker(t, cfg, env.client(t, nil))
	require.Eventually(t, func() bool {
		for _, r := range env.storedResults(t) {
			if r.RequestID == "ir-crash" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	env.requireNothingPending(t)

	var forRequest []messages.Result
	for _, r := range env.storedResults(t) {
		if r.RequestID == "ir-crash" {
			forRequest = append(forRequest, r)
		}
	}
	require.Len(t, forRequest, 1, "exactly one result for the request in %s", ResultStream)
	assert.Equal(t, messages.StatusCanceled, forRequest[0].Status)
}

func TestTwoWorkersShareTheConsumerAndAnswerAllRequests(t *testing.T) {
	const requests = 1000
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, NoRecord: true})
	var handled [2]atomic.Int64
	for i := range handled {
		counter := &handled[i]
		cfg := testConfig(ModeJetStream)
		cfg.Concurrency = 16
		env.startWorker(t, cfg, env.client(t, func(cckmclient.Attempt) { counter.Add(1) }))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, 0, requests)
	for i := range requests {
		kind := messages.Kinds[i%2]
		msg := &nats.Msg{Subject: kind.RequestSubject(), Data: []byte(messages.NewRequestID()),
			Header: nats.Header{messages.HeaderMsgID: {"req-" + strconv.Itoa(i)}}}
		ack, err := env.js.PublishMsgAsync(msg)
		require.NoError(t, err)
		acks = append(acks, ack)
	}
	natstest.AwaitAcks(t, acks, 60*time.Second)

	stream, err := env.js.Stream(ctx, ResultStream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs >= requests
	}, 60*time.Second, 50*time.Millisecond)

	seen := map[string]bool{}
	for _, r := range env.storedResults(t) {
		assert.Equal(t, messages.StatusCanceled, r.Status)
		seen[r.RequestID] = true
	}
	assert.Len(t, seen, requests, "every request has its result, once")
	assert.Equal(t, int64(requests), handled[0].Load()+handled[1].Load(), "one call per request")
	assert.Positive(t, handled[0].Load(), "the first worker took a share")
	assert.Positive(t, handled[1].Load(), "the second worker took a share")
	env.requireNothingPending(t)
}

func TestHTTPStatusIsTheLastReceivedAcrossDeliveries(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	id := messages.NewRequestID()
	// Delivery 1: two 503s. Delivery 2 (the last): no answer at all.
	env.cm.Script(id, cckmtest.Step{Status: 503}, cckmtest.Step{Status: 503},
		cckmtest.Step{Drop: true}, cckmtest.Step{Drop: true})
	env.publish(t, messages.KindRefresh, id, nil)

	result, _ := results.next(t)
	require.NotNil(t, result.Error)
	assert.Equal(t, messages.CodeUnreachable, result.Error.Code)
	assert.Equal(t, 503, result.HTTPStatus, "the last status received, from the first delivery")
	assert.Equal(t, 4, result.Attempts)
}

func TestACallSlowerThanTheAckWaitIsKeptAliveNotRedelivered(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.AckWait = 300 * time.Millisecond
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.cm.Script(id, cckmtest.Step{Delay: 4 * cfg.AckWait}) // 1.2 s: four ack waits
	env.publish(t, messages.KindRefresh, `{"id":"`+id+`","request_id":"ir-slow"}`, nil)

	result, _ := results.next(t)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	env.requireNothingPending(t)
	assert.Len(t, env.cm.CallsFor(id), 1, "the request was not delivered again while its call ran")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := env.js.Consumer(ctx, RequestStream, ConsumerName)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.NumRedelivered)
}
