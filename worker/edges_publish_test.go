package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
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

// A publish that cannot succeed must not loop: whatever NATS refuses, a
// request ends with one stored result and costs at most
// MaxDeliveries × the client's attempts cancel calls.

// clientMaxAttempts is the MaxAttempts of testEnv.client: the most HTTP
// attempts one delivery makes.
const clientMaxAttempts = 2

// maxCancelCalls is the most cancel calls one request may cost under cfg.
func maxCancelCalls(cfg Config) int { return cfg.MaxDeliveries * clientMaxAttempts }

// callsOf counts the calls of one operation ("cancel" or "get") the fake
// received for job id.
func callsOf(cm *cckmtest.Server, id, op string) int {
	n := 0
	for _, call := range cm.CallsFor(id) {
		if call.Op == op {
			n++
		}
	}
	return n
}

// storedMessages reads every message of the named stream, headers
// included.
func (e *testEnv) storedMessages(t *testing.T, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, name)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	var msgs []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		msgs = append(msgs, msg)
	}
	return msgs
}

// storedCount is the number of messages in the named stream, or -1 when
// it cannot be read (missing, or NATS busy).
func (e *testEnv) storedCount(name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, name)
	if err != nil {
		return -1
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// waitStored waits until the named stream holds n messages.
func (e *testEnv) waitStored(t *testing.T, name string, n int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return e.storedCount(name) == n }, within, 10*time.Millisecond,
		"%s does not hold %d messages (holds %d)", name, n, e.storedCount(name))
}

// requireRequestsDone waits until no request is pending or unacknowledged
// and the request stream is empty (it is a work queue: an acknowledged or
// terminated request leaves it).
func (e *testEnv) requireRequestsDone(t *testing.T) {
	t.Helper()
	e.requireRequestsDoneWithin(t, 5*time.Second)
}

func (e *testEnv) requireRequestsDoneWithin(t *testing.T, within time.Duration) {
	t.Helper()
	e.requireConsumerIdleWithin(t, within)
	e.waitStored(t, RequestStream, 0, within)
}

// decodeStored decodes a stored result or settled event.
func decodeStored(t *testing.T, msg *jetstream.RawStreamMsg) (messages.Result, map[string]json.RawMessage) {
	t.Helper()
	var result messages.Result
	require.NoError(t, json.Unmarshal(msg.Data, &result))
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(msg.Data, &raw))
	return result, raw
}

// bigJobBody is a canceled job object of about size bytes.
func bigJobBody(id string, size int) string {
	head := `{"id":"` + id + `","overall_status":"in progress","abort":true,"keys":["`
	tail := `"]}`
	return head + strings.Repeat("k", max(size-len(head)-len(tail), 0)) + tail
}

func TestAJobTooLargeToPublishIsStoredWithoutIt(t *testing.T) {
	cases := []struct {
		name       string
		maxPayload int32 // the NATS server's max_payload; 0 for the default 1 MiB
		jobSize    int
	}{
		{name: "a job under the result's job bound but over the server's max payload", maxPayload: 128 << 10, jobSize: 200 << 10},
		{name: "a job of 1.5 MiB with the server's default max payload", jobSize: 1536 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := natstest.Options(t)
			if tc.maxPayload > 0 {
				opts.MaxPayload = tc.maxPayload
			}
			env := newTestEnvOn(t, natstest.RunServer(t, opts), cckmtest.Options{})
			cfg := testConfig(ModeJetStream)
			env.startWorker(t, cfg, env.client(t, nil))

			id := messages.NewRequestID()
			env.cm.Script(id, cckmtest.Step{Body: bigJobBody(id, tc.jobSize)})
			env.publish(t, messages.KindRefresh, id, nil)

			env.waitStored(t, ResultStream, 1, 10*time.Second)
			env.requireRequestsDone(t)
			stored := env.storedMessages(t, ResultStream)
			require.Len(t, stored, 1, "exactly one stored result")
			result, raw := decodeStored(t, stored[0])
			assert.Equal(t, id, result.ID)
			assert.Equal(t, messages.StatusCanceled, result.Status)
			assert.True(t, result.JobOmitted, "job_omitted")
			assert.NotContains(t, raw, "job", "the job is left out")
			assert.True(t, result.Abort, "abort still read from the job")
			assert.Equal(t, "in progress", result.OverallStatus, "overall_status still read from the job")
			assert.Equal(t, 200, result.HTTPStatus)
			assert.Equal(t, 1, callsOf(env.cm, id, "cancel"), "one cancel call, no redelivery")
		})
	}
}

func TestARequestPinnedToAStreamIsDeadLetteredWithoutItsNATSHeaders(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg := testConfig(ModeJetStream)
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.Script(id, repeatStep(cckmtest.Step{Status: 503, RetryAfter: "0"}, 20)...)
	payload := `{"id":"` + id + `","request_id":"ir-pinned"}`
	// The request stream stores both: the first names it, and the server
	// reads JetStream headers in their exact case only. Copied onto the dead
	// letter, the first would make CCKM_CANCEL_DEAD refuse it.
	env.publish(t, messages.KindRefresh, payload, nats.Header{
		"Nats-Expected-Stream": {RequestStream},
		"nats-expected-stream": {"SOMETHING-ELSE"},
		"X-Incident":           {"INC-9"},
	})

	env.waitStored(t, ResultStream, 1, 10*time.Second)
	env.waitStored(t, DeadLetterStream, 1, 10*time.Second)
	env.requireRequestsDone(t)

	result, _ := decodeStored(t, env.storedMessages(t, ResultStream)[0])
	assert.Equal(t, "ir-pinned", result.RequestID)
	assert.Equal(t, messages.StatusFailed, result.Status)
	require.NotNil(t, result.Error)
	assert.Equal(t, messages.CodeServerError, result.Error.Code)

	dead := env.storedMessages(t, DeadLetterStream)
	require.Len(t, dead, 1)
	assert.Equal(t, payload, string(dead[0].Data), "the request as it was sent")
	assert.Equal(t, "INC-9", dead[0].Header.Get("X-Incident"), "the request's own headers are kept")
	assert.Equal(t, "ir-pinned", dead[0].Header.Get(HeaderRequestID))
	for name, values := range dead[0].Header {
		if strings.HasPrefix(strings.ToLower(name), "nats-") {
			assert.Equal(t, messages.HeaderMsgID, name, "no request Nats-* header on the dead letter, found %s: %v", name, values)
		}
	}
	assert.Equal(t, "ir-pinned.dead", dead[0].Header.Get(messages.HeaderMsgID), "only the dead letter's own id")
	assert.Len(t, env.cm.CallsFor(id), maxCancelCalls(cfg), "every delivery's attempts and no more")
}

func TestCipherTrustManagerErrorTextOver64KiBIsCut(t *testing.T) {
	huge := strings.Repeat("the job cannot be canceled because\r\n", 100<<10/36)
	require.Greater(t, len(huge), 64<<10)
	body := `{"code":9,"codeDesc":"NCERRConflict","message":` + string(mustJSON(t, huge)) + `}`

	requireCut := func(t *testing.T, text, what string) {
		t.Helper()
		assert.LessOrEqual(t, len(text), messages.MaxErrorMessage, "%s is at most 1 KiB", what)
		assert.True(t, strings.HasSuffix(text, "…"), "%s ends in …", what)
	}

	t.Run("a 409 fails with the text cut to 1 KiB", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))
		id := messages.NewRequestID()
		env.cm.Script(id, cckmtest.Step{Status: 409, Body: body})
		env.publish(t, messages.KindBulkJob, id, nil)

		env.waitStored(t, ResultStream, 1, 10*time.Second)
		env.requireRequestsDone(t)
		result, _ := decodeStored(t, env.storedMessages(t, ResultStream)[0])
		assert.Equal(t, messages.StatusFailed, result.Status)
		require.NotNil(t, result.Error)
		assert.Equal(t, messages.CodeConflict, result.Error.Code)
		assert.Contains(t, result.Error.Message, "NCERRConflict", "CipherTrust Manager's own text")
		requireCut(t, result.Error.Message, "error.message")
		assert.Equal(t, 1, callsOf(env.cm, id, "cancel"))
	})

	t.Run("a 503 to the last delivery is dead-lettered with a reason cut to 1 KiB", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		env.startWorker(t, cfg, env.client(t, nil))
		id := messages.NewRequestID()
		env.cm.Script(id, repeatStep(cckmtest.Step{Status: 503, RetryAfter: "0", Body: body}, 20)...)
		env.publish(t, messages.KindBulkJob, id, nil)

		env.waitStored(t, ResultStream, 1, 10*time.Second)
		env.waitStored(t, DeadLetterStream, 1, 10*time.Second)
		env.requireRequestsDone(t)
		result, _ := decodeStored(t, env.storedMessages(t, ResultStream)[0])
		assert.Equal(t, messages.StatusFailed, result.Status)
		require.NotNil(t, result.Error)
		assert.Equal(t, messages.CodeServerError, result.Error.Code)
		requireCut(t, result.Error.Message, "error.message")

		dead := env.storedMessages(t, DeadLetterStream)
		require.Len(t, dead, 1)
		reason := dead[0].Header.Get(HeaderDeadReason)
		assert.Contains(t, reason, "NCERRConflict")
		requireCut(t, reason, HeaderDeadReason)
		assert.NotContains(t, reason, "\n", "one header line")
		assert.Equal(t, id, string(dead[0].Data), "the dead letter keeps the request's payload")
		assert.Len(t, env.cm.CallsFor(id), maxCancelCalls(cfg))
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// provisionStreams creates the request stream, its consumer and the
// results stream as the worker would, for a worker run with
// WORKER_PROVISION=false.
func (e *testEnv) provisionStreams(t *testing.T, cfg Config) {
	t.Helper()
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.js.CreateStream(ctx, requestStreamConfig())
	require.NoError(t, err)
	_, err = e.js.CreateStream(ctx, cfg.resultStreamConfig())
	require.NoError(t, err)
	_, err = e.js.CreateConsumer(ctx, RequestStream, cfg.consumerConfig())
	require.NoError(t, err)
	e.createInFlight(t, cfg)
}

// createInFlight makes the permit stream and its consumer as the worker
// does (the worker fills the stream with permits, provisioning or not).
func (e *testEnv) createInFlight(t *testing.T, cfg Config) {
	t.Helper()
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.js.CreateStream(ctx, cfg.inFlightStreamConfig())
	require.NoError(t, err)
	_, err = e.js.CreateConsumer(ctx, InFlightStream, cfg.inFlightConsumerConfig())
	require.NoError(t, err)
}

func (e *testEnv) deleteStream(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.js.DeleteStream(ctx, name))
}

func TestTheResultsStreamDeletedWhileTheWorkerRuns(t *testing.T) {
	t.Run("with provisioning on, the next result is stored in the stream made again", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		cfg := testConfig(ModeJetStream)
		env.startWorker(t, cfg, env.client(t, nil))

		before := messages.NewRequestID()
		env.publish(t, messages.KindRefresh, before, nil)
		env.waitStored(t, ResultStream, 1, 10*time.Second)
		env.deleteStream(t, ResultStream)

		id := messages.NewRequestID()
		env.publish(t, messages.KindRefresh, id, nil)
		env.waitStored(t, ResultStream, 1, 20*time.Second)
		env.requireRequestsDone(t)
		stored := env.storedMessages(t, ResultStream)
		require.Len(t, stored, 1)
		result, _ := decodeStored(t, stored[0])
		assert.Equal(t, id, result.ID, "the result of the request sent after the deletion")
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.Equal(t, 1, callsOf(env.cm, id, "cancel"))
	})

	t.Run("with provisioning off, results go out on core NATS and requests are acknowledged", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		cfg := testConfig(ModeJetStream)
		env.provisionStreams(t, cfg)
		cfg.Provision = false
		results := env.watchResults(t, messages.SubjectResults)
		env.startWorker(t, cfg, env.client(t, nil))
		env.deleteStream(t, ResultStream)

		// The first publish waits for a stream acknowledgement that cannot
		// come (a core subscriber takes the message), then goes to core
		// NATS; the second goes there at once.
		for _, id := range []string{messages.NewRequestID(), messages.NewRequestID()} {
			env.publish(t, messages.KindRefresh, id, nil)
			msg, err := results.sub.NextMsg(publishTimeout + 10*time.Second)
			require.NoError(t, err, "a result on core NATS")
			var result messages.Result
			require.NoError(t, json.Unmarshal(msg.Data, &result))
			// The JetStream publish that timed out reached the subscriber
			// too: skip its copy.
			for result.ID != id {
				msg, err = results.sub.NextMsg(10 * time.Second)
				require.NoError(t, err)
				require.NoError(t, json.Unmarshal(msg.Data, &result))
			}
			assert.Equal(t, messages.StatusCanceled, result.Status)
			env.requireRequestsDoneWithin(t, publishTimeout+5*time.Second)
			assert.Equal(t, 1, callsOf(env.cm, id, "cancel"), "acknowledged after one call")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := env.js.Stream(ctx, ResultStream)
		assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "not made again with provisioning off")
	})
}

func TestAFollowWhoseSettledEventCannotBeStoredEndsByTheFollowTimeout(t *testing.T) {
	const followTimeout = 2 * time.Second
	// The most GETs a follow may make: polls 20 ms apart, doubling, within
	// followTimeout make 8; a few more leave room for timing.
	const maxPolls = 12

	run := func(t *testing.T, env *testEnv, cfg Config) {
		t.Helper()
		id := messages.NewRequestID()
		env.cm.AddJob(cckmtest.Refresh, id)
		start := time.Now()
		env.publish(t, messages.KindRefresh, `{"id":"`+id+`","follow":true}`, nil)

		env.waitStored(t, ResultStream, 1, 10*time.Second)
		env.requireRequestsDone(t)
		// The follow ends: its task leaves the follow stream, by the
		// timeout (with room for one poll and the publishes).
		require.Eventually(t, func() bool {
			return callsOf(env.cm, id, "get") > 0 && env.storedCount(FollowStream) == 0
		}, followTimeout+publishTimeout+5*time.Second, 10*time.Millisecond, "the follow task is still in %s", FollowStream)
		assert.Less(t, time.Since(start), followTimeout+publishTimeout+3*time.Second, "ended by the follow timeout")
		polls := callsOf(env.cm, id, "get")
		assert.LessOrEqual(t, polls, maxPolls, "no endless polling")
		assert.Never(t, func() bool { return callsOf(env.cm, id, "get") > polls }, 500*time.Millisecond, 20*time.Millisecond,
			"no poll after the follow ended")
		assert.Equal(t, 1, callsOf(env.cm, id, "cancel"))
	}

	t.Run("a settled stream too small for the event, the job never ending", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{SettleAfter: -1})
		cfg := followConfig(ModeJetStream)
		cfg.FollowTimeout = followTimeout
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		settled := cfg.settledStreamConfig()
		settled.MaxMsgSize = 64 // smaller than any settled event, with or without its job
		_, err := env.js.CreateStream(ctx, settled)
		require.NoError(t, err)
		env.startWorker(t, cfg, env.client(t, nil))
		run(t, env, cfg)
		assert.Equal(t, 0, env.storedCount(SettledStream))
	})

	t.Run("a settled stream too small for the event, the job ending at once", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{SettleAfter: 50 * time.Millisecond})
		cfg := followConfig(ModeJetStream)
		cfg.FollowTimeout = followTimeout
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		settled := cfg.settledStreamConfig()
		settled.MaxMsgSize = 64
		_, err := env.js.CreateStream(ctx, settled)
		require.NoError(t, err)
		env.startWorker(t, cfg, env.client(t, nil))
		run(t, env, cfg)
		assert.Equal(t, 0, env.storedCount(SettledStream))
	})

	t.Run("the settled stream deleted with provisioning off", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{SettleAfter: 50 * time.Millisecond})
		cfg := followConfig(ModeJetStream)
		cfg.FollowTimeout = followTimeout
		// A first run makes every stream and consumer; the second may not.
		first := env.startWorker(t, cfg, env.client(t, nil))
		require.Eventually(t, func() bool { return first.followReady.Load() }, 10*time.Second, 5*time.Millisecond)
		first.stop(t)
		cfg.Provision = false
		w := env.startWorker(t, cfg, env.client(t, nil))
		require.Eventually(t, func() bool { return w.followReady.Load() }, 10*time.Second, 5*time.Millisecond)
		settledEvents := env.watchResults(t, messages.SubjectSettled)
		env.deleteStream(t, SettledStream)

		run(t, env, cfg)
		settled, _ := settledEvents.next(t)
		require.NotNil(t, settled.Settled)
		assert.True(t, *settled.Settled, "the settled event went out on core NATS")
	})
}

func TestAnOverallStatusTooLongToPublishIsCut(t *testing.T) {
	// 2 MiB: over the server's max payload on its own, job or no job.
	status := strings.Repeat("in progress ", (2<<20)/12)
	body := func(id string) string {
		return `{"id":"` + id + `","abort":true,"overall_status":"` + status + `"}`
	}
	requireCut := func(t *testing.T, got string) {
		t.Helper()
		assert.LessOrEqual(t, len(got), messages.MaxOverallStatus, "overall_status is bounded")
		assert.True(t, strings.HasPrefix(got, "in progress"), "overall_status begins as CipherTrust Manager sent it")
	}

	t.Run("in the result", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))
		id := messages.NewRequestID()
		env.cm.Script(id, cckmtest.Step{Body: body(id)})
		env.publish(t, messages.KindRefresh, id, nil)

		env.waitStored(t, ResultStream, 1, 10*time.Second)
		env.requireRequestsDone(t)
		result, _ := decodeStored(t, env.storedMessages(t, ResultStream)[0])
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.True(t, result.JobOmitted)
		requireCut(t, result.OverallStatus)
		assert.Equal(t, 1, callsOf(env.cm, id, "cancel"))
	})

	t.Run("in the settled event", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{SettleAfter: -1})
		cfg := followConfig(ModeJetStream)
		cfg.FollowTimeout = time.Second
		env.startWorker(t, cfg, env.client(t, nil))
		id := messages.NewRequestID()
		env.cm.AddJob(cckmtest.Refresh, id)
		// The cancel as usual, then every poll sees the long status.
		env.cm.Script(id, append([]cckmtest.Step{{}}, repeatStep(cckmtest.Step{Body: body(id)}, 50)...)...)
		env.publish(t, messages.KindRefresh, `{"id":"`+id+`","follow":true}`, nil)

		env.waitStored(t, SettledStream, 1, 10*time.Second)
		settled, _ := decodeStored(t, env.storedMessages(t, SettledStream)[0])
		require.NotNil(t, settled.Settled)
		assert.False(t, *settled.Settled, "timed out: the long status is not a terminal one")
		requireCut(t, settled.OverallStatus)
		assert.Equal(t, 0, env.storedCount(FollowStream), "the follow ended")
	})
}
