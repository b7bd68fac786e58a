package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestARetryAfterFarAheadStillRedeliversWithinTheMaxRetryDelay(t *testing.T) {
	cases := []struct {
		name       string
		retryAfter string
	}{
		{"a day in seconds", "86400"},
		{"an HTTP date years ahead", time.Now().AddDate(10, 0, 0).UTC().Format(http.TimeFormat)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{})
			results := env.watchResults(t, messages.SubjectResults)
			cfg := testConfig(ModeJetStream)
			env.startWorker(t, cfg, env.client(t, nil))

			id := messages.NewRequestID()
			env.cm.AddJob(cckmtest.Refresh, id)
			env.cm.Script(id, cckmtest.Step{Status: http.StatusServiceUnavailable, RetryAfter: tc.retryAfter})
			env.publish(t, messages.KindRefresh, id, nil)

			result, _ := results.next(t)
			assert.Equal(t, messages.StatusCanceled, result.Status, "the second delivery cancels the job")
			assert.Equal(t, 2, result.Attempts, "one attempt per delivery: the first gave up at once on a wait past its budget")

			cancels := env.cm.CallsFor(id)
			require.Len(t, cancels, 2)
			gap := cancels[1].Time.Sub(cancels[0].Time)
			assert.Less(t, gap, 3*time.Second, "redelivered after at most WORKER_MAX_RETRY_DELAY (%v), not after the Retry-After", cfg.MaxRetryDelay)
			env.requireNothingPending(t)
		})
	}
}

func TestRequestsWaitingForASlotAreNotRedeliveredWhileCallsOutliveTheAckWait(t *testing.T) {
	const requests = 12
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 1500 * time.Millisecond})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.Concurrency = 2
	cfg.AckWait = time.Second
	env.startWorker(t, cfg, env.client(t, nil))

	for i := range requests {
		env.publish(t, messages.KindRefresh, fmt.Sprintf(`{"id":%q,"request_id":"slot-%d"}`, messages.NewRequestID(), i), nil)
	}
	got := map[string]int{}
	for range requests {
		result, _ := results.next(t)
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.Equal(t, 1, result.Attempts, "one call for %s", result.RequestID)
		got[result.RequestID]++
	}
	assert.Len(t, got, requests, "every request got a result")
	_, err := results.sub.NextMsg(cfg.AckWait + 500*time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrTimeout, "no second result for any request")
	env.requireNothingPending(t)

	assert.Equal(t, requests, len(cancelCalls(env.cm)), "exactly one cancel call per request: none was redelivered while it waited")
	info := consumerInfo(t, env)
	assert.Zero(t, info.NumRedelivered)
}

func TestMemoryFollowsTheNumberOfSlotsNotThePayloads(t *testing.T) {
	t.Run("the request stream refuses a request over 64 KiB", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := env.js.Publish(ctx, messages.SubjectRefresh, paddedRequest(messages.NewRequestID(), "big", 70<<10))
		require.Error(t, err)
		assert.ErrorIs(t, err, jetstream.ErrStreamMessageExceedsMaximum)
		assert.Empty(t, env.cm.Calls(), "nothing reached the worker")
	})

	t.Run("in core mode a request over 64 KiB is rejected without a call", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		env.startWorker(t, testConfig(ModeCore), env.client(t, nil))

		id := messages.NewRequestID()
		reply, err := env.nc.Request(messages.SubjectRefresh, paddedRequest(id, "big-core", 70<<10), 10*time.Second)
		require.NoError(t, err)
		var result messages.Result
		require.NoError(t, json.Unmarshal(reply.Data, &result), string(reply.Data))
		assert.Equal(t, messages.StatusRejected, result.Status)
		require.NotNil(t, result.Error)
		assert.Equal(t, messages.CodeInvalidRequest, result.Error.Code)
		assert.Zero(t, result.Attempts)
		assert.Empty(t, env.cm.CallsFor(id), "no HTTP call for a refused request")
		assert.Less(t, len(reply.Data), 8<<10, "the result does not carry the payload back")
	})

	t.Run("with a backlog of large requests the worker holds messages in proportion to its slots", func(t *testing.T) {
		const (
			requests    = 200
			payloadSize = 60 << 10
		)
		env := newTestEnv(t, cckmtest.Options{AnyJob: true, NoRecord: true, Latency: 200 * time.Millisecond})
		results := env.watchResults(t, messages.SubjectResults)
		cfg := testConfig(ModeJetStream)
		cfg.Concurrency = 4

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := env.js.CreateStream(ctx, requestStreamConfig())
		require.NoError(t, err)
		futures := make([]jetstream.PubAckFuture, 0, requests)
		for i := range requests {
			future, err := env.js.PublishAsync(messages.SubjectRefresh,
				paddedRequest(messages.NewRequestID(), fmt.Sprintf("large-%d", i), payloadSize))
			require.NoError(t, err)
			futures = append(futures, future)
		}
		natstest.AwaitAcks(t, futures, 30*time.Second)

		counting := &countingCanceler{Canceler: env.client(t, nil)}
		w := env.startWorker(t, cfg, counting)

		// Sample what the worker holds, and what the server counts as
		// delivered and not yet acknowledged, while it works.
		var heldPeak, ackPendingPeak atomic.Int64
		sampling, stopSampling := context.WithCancel(context.Background())
		var sampled sync.WaitGroup
		sampled.Go(func() {
			for sampling.Err() == nil {
				raise(&heldPeak, int64(w.keep.count()))
				time.Sleep(time.Millisecond)
			}
		})
		sampled.Go(func() {
			cons, err := env.js.Consumer(ctx, RequestStream, ConsumerName)
			if err != nil {
				return
			}
			for sampling.Err() == nil {
				if info, err := cons.Info(sampling); err == nil {
					raise(&ackPendingPeak, int64(info.NumAckPending))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		for range requests {
			result, _ := results.next(t)
			assert.Equal(t, messages.StatusCanceled, result.Status)
		}
		stopSampling()
		sampled.Wait()

		// The worker holds at most two requests per slot, from pull to
		// settle (the ones waiting for a slot, kept alive, and the ones
		// publishing); a client buffer would hold much of the backlog of
		// 200. The server counts an acknowledged message as pending until
		// the ack, sent without waiting, reaches it: its count may pass the
		// worker's by the acks on their way.
		maxHeld := int64(2 * cfg.Concurrency)
		assert.Equal(t, int64(cfg.Concurrency), counting.peak.Load(), "calls in flight")
		assert.Positive(t, heldPeak.Load(), "the sampler saw the worker at work")
		assert.LessOrEqual(t, heldPeak.Load(), maxHeld, "messages held by the worker at once")
		assert.LessOrEqual(t, ackPendingPeak.Load(), maxHeld+int64(cfg.Concurrency), "messages delivered and not yet settled")
		t.Logf("peaks: %d calls, %d messages held, %d ack pending (Concurrency %d)",
			counting.peak.Load(), heldPeak.Load(), ackPendingPeak.Load(), cfg.Concurrency)
	})
}

func TestACoreModeStopWithABacklogAnswersEveryRequestWithinTheShutdownTimeout(t *testing.T) {
	const requests = 40
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 300 * time.Millisecond})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeCore)
	cfg.Concurrency = 2
	// Three times this (4.5 s) is well past the bound below.
	cfg.ShutdownTimeout = 1500 * time.Millisecond
	w := env.startWorker(t, cfg, env.client(t, nil))

	for i := range requests {
		kind := messages.Kinds[i%len(messages.Kinds)]
		payload := fmt.Sprintf(`{"id":%q,"request_id":"backlog-%d"}`, messages.NewRequestID(), i)
		require.NoError(t, env.nc.Publish(kind.RequestSubject(), []byte(payload)))
	}
	// Once the server has them, it has queued them to the worker ahead of
	// anything the worker's drain asks for: every request is received.
	require.NoError(t, env.nc.Flush())
	require.Eventually(t, func() bool { return len(cancelCalls(env.cm)) >= cfg.Concurrency },
		5*time.Second, 5*time.Millisecond, "the first calls started")

	took := stopTimed(t, w)
	t.Logf("Run returned %v after the stop", took)
	assert.Less(t, took, cfg.ShutdownTimeout+2*time.Second, "Run returns within the shutdown timeout and a little")
	// The binary drains its connection after Run: what the callbacks still
	// publish goes out then.
	drainConn(t, w.nc, cfg.ShutdownTimeout)
	assert.NotContains(t, w.logs.String(), "cannot publish the result")

	got := map[string]messages.Result{}
	for range requests {
		result, _ := results.next(t)
		_, twice := got[result.RequestID]
		assert.False(t, twice, "a second result for %s", result.RequestID)
		got[result.RequestID] = result
	}
	_, err := results.sub.NextMsg(300 * time.Millisecond)
	assert.ErrorIs(t, err, nats.ErrTimeout, "one result per request")

	canceled, notStarted := 0, 0
	for requestID, r := range got {
		switch r.Status {
		case messages.StatusCanceled:
			canceled++
		default:
			notStarted++
			assert.Equal(t, messages.StatusFailed, r.Status, requestID)
			if assert.NotNil(t, r.Error, requestID) {
				assert.Equal(t, messages.CodeUnreachable, r.Error.Code, requestID)
				assert.True(t, r.Error.Retryable, "%s may be sent again", requestID)
			}
		}
	}
	assert.GreaterOrEqual(t, canceled, cfg.Concurrency, "the work in flight finished")
	assert.Positive(t, notStarted, "the backlog was longer than the drain")
	assert.LessOrEqual(t, len(cancelCalls(env.cm)), canceled+cfg.Concurrency, "no request started after the drain ended")
}

func TestACoreModeRequestCutShortAtTheShutdownDeadlineStillGetsItsReply(t *testing.T) {
	const requests = 4
	// Calls far longer than the drain: the first two are cut short at the
	// deadline, the other two never start.
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 20 * time.Second})
	cfg := testConfig(ModeCore)
	cfg.Concurrency = 2
	cfg.ShutdownTimeout = time.Second
	w := env.startWorker(t, cfg, env.client(t, nil))

	replies := make(chan *nats.Msg, requests)
	for range requests {
		inbox := nats.NewInbox()
		sub, err := env.nc.ChanSubscribe(inbox, replies)
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		require.NoError(t, env.nc.PublishRequest(messages.SubjectRefresh, inbox, []byte(messages.NewRequestID())))
	}
	require.NoError(t, env.nc.Flush())
	require.Eventually(t, func() bool { return len(cancelCalls(env.cm)) == cfg.Concurrency },
		5*time.Second, time.Millisecond, "the first calls started")

	stopTimed(t, w)
	drainConn(t, w.nc, cfg.ShutdownTimeout)
	for range requests {
		select {
		case reply := <-replies:
			var result messages.Result
			require.NoError(t, json.Unmarshal(reply.Data, &result), string(reply.Data))
			assert.Equal(t, messages.StatusFailed, result.Status)
			if assert.NotNil(t, result.Error) {
				assert.Equal(t, messages.CodeUnreachable, result.Error.Code)
				assert.True(t, result.Error.Retryable)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request got no reply")
		}
	}
	assert.NotContains(t, w.logs.String(), "cannot publish the result")
}

// paddedRequest is a valid JSON request of about size bytes: the padding
// is a field the worker ignores.
func paddedRequest(id, requestID string, size int) []byte {
	head := fmt.Sprintf(`{"id":%q,"request_id":%q,"padding":"`, id, requestID)
	return []byte(head + strings.Repeat("x", max(size-len(head)-2, 0)) + `"}`)
}

// cancelCalls returns the cancel calls the fake saw.
func cancelCalls(cm *cckmtest.Server) []cckmtest.Call {
	var cancels []cckmtest.Call
	for _, call := range cm.Calls() {
		if call.Op == "cancel" {
			cancels = append(cancels, call)
		}
	}
	return cancels
}

// consumerInfo reads the request consumer's state.
func consumerInfo(t *testing.T, env *testEnv) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := env.js.Consumer(ctx, RequestStream, ConsumerName)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	return info
}

// raise sets peak to v when v is larger.
func raise(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// stopTimed stops the worker and returns how long Run took to return.
func stopTimed(t *testing.T, rw *runningWorker) time.Duration {
	t.Helper()
	start := time.Now()
	rw.cancel()
	select {
	case err := <-rw.done:
		took := time.Since(start)
		require.NoError(t, err)
		rw.done <- nil // later calls of stop return at once
		return took
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop in 15s")
		return 0
	}
}

// drainConn drains nc as the binary does after Run, and waits until it
// is closed.
func drainConn(t *testing.T, nc *nats.Conn, timeout time.Duration) {
	t.Helper()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	require.NoError(t, nc.Drain())
	select {
	case <-closed:
	case <-time.After(timeout + 5*time.Second):
		t.Fatal("the connection did not drain")
	}
}
