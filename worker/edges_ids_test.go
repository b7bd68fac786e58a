package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Identifiers a user relies on: request_id and the results' Nats-Msg-Id
// (one stored result per request, whatever is delivered twice), the
// results stream's duplicate window that makes that hold, and the trace
// context carried only when it is valid.

// publishSeq stores a request in CCKM_CANCEL and returns its stream
// sequence.
func (e *testEnv) publishSeq(t *testing.T, kind messages.Kind, payload string, header nats.Header) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: kind.RequestSubject(), Data: []byte(payload), Header: header})
	require.NoError(t, err)
	require.Equal(t, RequestStream, ack.Stream)
	return ack.Sequence
}

// storedRequestTime is when CCKM_CANCEL stored the request at seq.
func (e *testEnv) storedRequestTime(t *testing.T, seq uint64) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, RequestStream)
	require.NoError(t, err)
	msg, err := stream.GetMsg(ctx, seq)
	require.NoError(t, err)
	return msg.Time
}

func TestABareIDRequestWhoseWorkerStoppedMidCallIsStoredOnceUnderItsDerivedRequestID(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.AckWait = 500 * time.Millisecond
	cfg.ShutdownTimeout = 200 * time.Millisecond
	first := env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.cm.Script(id, cckmtest.Step{Hang: true})
	seq := env.publishSeq(t, messages.KindRefresh, id, nil) // the bare id, no Nats-Msg-Id
	storedAt := env.storedRequestTime(t, seq)
	require.Eventually(t, func() bool { return len(env.cm.CallsFor(id)) == 1 }, 5*time.Second, 5*time.Millisecond)

	// The first worker dies mid-call.
	first.nc.Close()
	first.stop(t)
	env.startWorker(t, cfg, env.client(t, nil))

	result, msg := results.next(t)
	assert.Equal(t, id, result.ID)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	assert.Equal(t, messages.DerivedRequestID(RequestStream, seq, storedAt), result.RequestID,
		"the request_id derived from the stored message, the same on every delivery")
	assert.Equal(t, messages.ResultMsgID(result.RequestID), msg.Header.Get(messages.HeaderMsgID))

	env.requireRequestsDone(t)
	stored := env.storedMessages(t, ResultStream)
	require.Len(t, stored, 1, "exactly one stored result")
	storedResult, _ := decodeStored(t, stored[0])
	assert.Equal(t, result.RequestID, storedResult.RequestID)
	if _, err := results.sub.NextMsg(100 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("a second result was published: %v", err)
	}
	assert.LessOrEqual(t, callsOf(env.cm, id, "cancel"), maxCancelCalls(cfg))
}

// Users of a server on which one worker's acknowledgements are refused.
const (
	everyoneUser = "everyone"
	noAckUser    = "no-ack"
)

func TestABareIDRequestWhoseAckWasLostIsAnsweredAgainUnderTheSameRequestIDAndStoredOnce(t *testing.T) {
	opts := natstest.Options(t)
	opts.Users = []*server.User{
		{Username: everyoneUser, Password: everyoneUser + "-password"},
		{Username: noAckUser, Password: noAckUser + "-password", Permissions: &server.Permissions{
			// Its results go out, but the server refuses its Ack (and InProgress).
			Publish: &server.SubjectPermission{Deny: []string{"$JS.ACK.>"}},
		}},
	}
	opts.NoAuthUser = everyoneUser
	env := newTestEnvOn(t, natstest.RunServer(t, opts), cckmtest.Options{})
	results := env.watchResults(t, messages.SubjectResults)
	cfg := testConfig(ModeJetStream)
	cfg.AckWait = time.Second
	first := env.startWorkerWith(t, cfg, env.client(t, nil), nats.UserInfo(noAckUser, noAckUser+"-password"))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.publishSeq(t, messages.KindRefresh, id, nil)
	firstResult, firstMsg := results.next(t)
	require.Equal(t, messages.StatusCanceled, firstResult.Status)
	first.stop(t)

	// The request comes back to another worker after the ack wait.
	env.startWorker(t, cfg, env.client(t, nil))
	again, againMsg := results.next(t)
	assert.Equal(t, id, again.ID)
	assert.Equal(t, firstResult.RequestID, again.RequestID, "the same request_id on every delivery")
	assert.Equal(t, firstMsg.Header.Get(messages.HeaderMsgID), againMsg.Header.Get(messages.HeaderMsgID))

	env.requireRequestsDone(t)
	stored := env.storedMessages(t, ResultStream)
	require.Len(t, stored, 1, "the results stream dropped the copy")
	storedResult, _ := decodeStored(t, stored[0])
	assert.Equal(t, firstResult.RequestID, storedResult.RequestID)
	assert.Equal(t, messages.StatusCanceled, storedResult.Status)
	assert.LessOrEqual(t, callsOf(env.cm, id, "cancel"), maxCancelCalls(cfg))
}

func TestTwoRequestsSharingARequestIDEachGetTheirOwnStoredResult(t *testing.T) {
	payload := func(id string) string { return `{"id":"` + id + `","request_id":"ir-shared"}` }

	t.Run("in jetstream mode the second is stored under its stream sequence", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

		firstID, secondID := messages.NewRequestID(), messages.NewRequestID()
		env.publishSeq(t, messages.KindRefresh, payload(firstID), nil)
		env.waitStored(t, ResultStream, 1, 10*time.Second)
		seq := env.publishSeq(t, messages.KindRefresh, payload(secondID), nil)
		env.waitStored(t, ResultStream, 2, 10*time.Second)
		env.requireRequestsDone(t)

		stored := env.storedMessages(t, ResultStream)
		require.Len(t, stored, 2)
		first, _ := decodeStored(t, stored[0])
		second, _ := decodeStored(t, stored[1])
		assert.Equal(t, firstID, first.ID)
		assert.Equal(t, "ir-shared.result", stored[0].Header.Get(messages.HeaderMsgID))
		assert.Equal(t, secondID, second.ID)
		assert.Equal(t, "ir-shared."+strconv.FormatUint(seq, 10)+".result", stored[1].Header.Get(messages.HeaderMsgID))
		for _, r := range []messages.Result{first, second} {
			assert.Equal(t, "ir-shared", r.RequestID, "both echo the request_id they were sent with")
			assert.Equal(t, messages.StatusCanceled, r.Status)
		}
		assert.Equal(t, 1, callsOf(env.cm, firstID, "cancel"))
		assert.Equal(t, 1, callsOf(env.cm, secondID, "cancel"))
	})

	t.Run("in core mode the second is stored under a new UUID", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		env.startWorker(t, testConfig(ModeCore), env.client(t, nil))

		firstID, secondID := messages.NewRequestID(), messages.NewRequestID()
		for i, id := range []string{firstID, secondID} {
			reply, err := env.nc.Request(messages.SubjectRefresh, []byte(payload(id)), 10*time.Second)
			require.NoError(t, err)
			assert.Contains(t, string(reply.Data), id)
			env.waitStored(t, ResultStream, i+1, 10*time.Second)
		}

		stored := env.storedMessages(t, ResultStream)
		require.Len(t, stored, 2)
		first, _ := decodeStored(t, stored[0])
		second, _ := decodeStored(t, stored[1])
		assert.Equal(t, firstID, first.ID)
		assert.Equal(t, "ir-shared.result", stored[0].Header.Get(messages.HeaderMsgID))
		assert.Equal(t, secondID, second.ID)
		msgID := stored[1].Header.Get(messages.HeaderMsgID)
		distinct, ok := strings.CutPrefix(msgID, "ir-shared.")
		distinct, ok2 := strings.CutSuffix(distinct, ".result")
		assert.True(t, ok && ok2 && messages.IsUUID(distinct), "ir-shared.<uuid>.result, got %q", msgID)
		assert.Equal(t, "ir-shared", second.RequestID)
	})
}

func TestAResultsStreamWithAShortDuplicateWindow(t *testing.T) {
	const shortWindow = 30 * time.Second
	shortResults := func(cfg Config) jetstream.StreamConfig {
		sc := cfg.resultStreamConfig()
		sc.Duplicates = shortWindow
		sc.MaxAge = time.Minute // shorter than the horizon too: the window may not outlast it
		return sc
	}
	resultConfig := func(t *testing.T, env *testEnv) jetstream.StreamConfig {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := env.js.Stream(ctx, ResultStream)
		require.NoError(t, err)
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		return info.Config
	}

	t.Run("is corrected to the redelivery horizon with provisioning on", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		cfg.setDefaults()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := env.js.CreateStream(ctx, shortResults(cfg))
		require.NoError(t, err)
		env.startWorker(t, cfg, env.client(t, nil))

		got := resultConfig(t, env)
		horizon := cfg.redeliveryHorizon(cfg.AckWait)
		require.Greater(t, horizon, shortWindow, "the test means something only if the horizon is longer")
		assert.GreaterOrEqual(t, got.Duplicates, horizon, "duplicate window")
		assert.GreaterOrEqual(t, got.MaxAge, got.Duplicates, "results are kept at least as long as the window")
	})

	t.Run("stops the worker with a setting error under provisioning off", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		cfg.setDefaults()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := env.js.CreateStream(ctx, requestStreamConfig())
		require.NoError(t, err)
		_, err = env.js.CreateConsumer(ctx, RequestStream, cfg.consumerConfig())
		require.NoError(t, err)
		_, err = env.js.CreateStream(ctx, shortResults(cfg))
		require.NoError(t, err)

		cfg.Provision = false
		w, err := env.runUntilSettingError(t, cfg)
		var settingErr *SettingError
		require.ErrorAs(t, err, &settingErr)
		assert.Equal(t, "duplicate_window", settingErr.Setting)
		assert.Contains(t, settingErr.Asset, ResultStream)
		assert.NotContains(t, err.Error(), "\n", "one line")
		assert.Error(t, w.Ready(), "never ready")
		assert.Equal(t, shortWindow, resultConfig(t, env).Duplicates, "left as it was")
	})
}

func TestAnInvalidTraceparentIsNeitherForwardedNorEchoed(t *testing.T) {
	traceparents := []struct {
		name, value string
	}{
		{"a traceparent with a control byte", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x01"},
		{"a traceparent whose trace id is all zeros", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
	}
	hasTraceparent := func(header map[string][]string) bool {
		for name := range header {
			if strings.EqualFold(name, messages.HeaderTraceparent) {
				return true
			}
		}
		return false
	}
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	results := env.watchResults(t, messages.SubjectResults)
	env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	for i, tc := range traceparents {
		t.Run(tc.name, func(t *testing.T) {
			id := messages.NewRequestID()
			env.publishSeq(t, messages.KindRefresh, id, nats.Header{messages.HeaderTraceparent: {tc.value}})

			result, msg := results.next(t)
			assert.Equal(t, id, result.ID)
			assert.Equal(t, messages.StatusCanceled, result.Status, "the cancel is made all the same")
			assert.False(t, hasTraceparent(msg.Header), "no traceparent on the result: %v", msg.Header)
			calls := env.cm.CallsFor(id)
			require.Len(t, calls, 1)
			require.NotNil(t, calls[0].Header, "the fake records headers")
			assert.False(t, hasTraceparent(calls[0].Header), "no traceparent on the HTTP call: %v", calls[0].Header)

			env.waitStored(t, ResultStream, i+1, 10*time.Second)
			stored := env.storedMessages(t, ResultStream)
			assert.False(t, hasTraceparent(stored[i].Header), "no traceparent on the stored result")
		})
	}
}

// hasStoredResultFor reports whether the last result stored is job id's.
func (e *testEnv) hasStoredResultFor(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, ResultStream)
	if err != nil {
		return false
	}
	msg, err := stream.GetLastMsgForSubject(ctx, messages.SubjectResults)
	return err == nil && strings.Contains(string(msg.Data), `"id":"`+id+`"`)
}

// runUntilSettingError runs a worker with cfg on env and returns what Run
// returned, failing the test if it does not return in time.
func (e *testEnv) runUntilSettingError(t *testing.T, cfg Config) (*Worker, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := New(cfg, natstest.Connect(t, e.ns), e.client(t, nil), zerolog.Nop(), nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case err = <-done:
		return w, err
	case <-ctx.Done():
		t.Fatal("Run did not return")
		return nil, nil
	}
}

func TestAResultsStreamThatWouldRefuseResults(t *testing.T) {
	cases := []struct {
		name    string
		setting string
		spoil   func(*jetstream.StreamConfig)
		fixed   func(t *testing.T, sc jetstream.StreamConfig)
	}{
		{
			name: "a max_msg_size smaller than a result", setting: "max_msg_size",
			spoil: func(sc *jetstream.StreamConfig) { sc.MaxMsgSize = 256 },
			fixed: func(t *testing.T, sc jetstream.StreamConfig) {
				assert.True(t, sc.MaxMsgSize <= 0 || sc.MaxMsgSize >= minResultMsgSize, "max_msg_size %d", sc.MaxMsgSize)
			},
		},
		{
			name: "a limit with discard new", setting: "discard",
			spoil: func(sc *jetstream.StreamConfig) { sc.MaxMsgs, sc.Discard = 1, jetstream.DiscardNew },
			fixed: func(t *testing.T, sc jetstream.StreamConfig) {
				assert.Equal(t, jetstream.DiscardOld, sc.Discard)
			},
		},
	}
	streamConfig := func(t *testing.T, env *testEnv) jetstream.StreamConfig {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := env.js.Stream(ctx, ResultStream)
		require.NoError(t, err)
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		return info.Config
	}
	for _, tc := range cases {
		t.Run(tc.name+" is corrected with provisioning on", func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{AnyJob: true})
			cfg := testConfig(ModeJetStream)
			cfg.setDefaults()
			sc := cfg.resultStreamConfig()
			tc.spoil(&sc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := env.js.CreateStream(ctx, sc)
			require.NoError(t, err)
			env.startWorker(t, cfg, env.client(t, nil))
			tc.fixed(t, streamConfig(t, env))

			// Fill the stream, then one more: its result is stored too.
			for range 2 {
				id := messages.NewRequestID()
				env.publish(t, messages.KindRefresh, id, nil)
				require.Eventually(t, func() bool { return env.hasStoredResultFor(id) }, 10*time.Second, 10*time.Millisecond,
					"the result of %s is stored", id)
			}
			env.requireRequestsDone(t)
		})

		t.Run(tc.name+" stops the worker with provisioning off", func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{})
			cfg := testConfig(ModeJetStream)
			cfg.setDefaults()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := env.js.CreateStream(ctx, requestStreamConfig())
			require.NoError(t, err)
			_, err = env.js.CreateConsumer(ctx, RequestStream, cfg.consumerConfig())
			require.NoError(t, err)
			sc := cfg.resultStreamConfig()
			tc.spoil(&sc)
			_, err = env.js.CreateStream(ctx, sc)
			require.NoError(t, err)

			cfg.Provision = false
			w, err := env.runUntilSettingError(t, cfg)
			var settingErr *SettingError
			require.ErrorAs(t, err, &settingErr)
			assert.Equal(t, tc.setting, settingErr.Setting)
			assert.Contains(t, settingErr.Asset, ResultStream)
			assert.Error(t, w.Ready(), "never ready")
		})
	}
}

// TestTwoRequestsSharingARequestIDWithJobsTooLargeToPublish: the second
// request's result only fits once its job is left out. The try with the
// job was refused as too large, so it stored nothing: the duplicate the
// try without the job meets is the first request's result, and the second
// must still be stored under its own id.
func TestTwoRequestsSharingARequestIDWithJobsTooLargeToPublish(t *testing.T) {
	opts := natstest.Options(t)
	opts.MaxPayload = 128 << 10
	env := newTestEnvOn(t, natstest.RunServer(t, opts), cckmtest.Options{})
	env.startWorker(t, testConfig(ModeJetStream), env.client(t, nil))

	payload := func(id string) string { return `{"id":"` + id + `","request_id":"ir-shared-big"}` }
	firstID, secondID := messages.NewRequestID(), messages.NewRequestID()
	for _, id := range []string{firstID, secondID} {
		env.cm.Script(id, cckmtest.Step{Body: bigJobBody(id, 200<<10)})
	}
	env.publishSeq(t, messages.KindRefresh, payload(firstID), nil)
	env.waitStored(t, ResultStream, 1, 10*time.Second)
	seq := env.publishSeq(t, messages.KindRefresh, payload(secondID), nil)
	env.requireRequestsDoneWithin(t, 10*time.Second)

	stored := env.storedMessages(t, ResultStream)
	require.Len(t, stored, 2, "one stored result per request")
	second, _ := decodeStored(t, stored[1])
	assert.Equal(t, secondID, second.ID)
	assert.True(t, second.JobOmitted, "job_omitted")
	assert.Equal(t, "ir-shared-big."+strconv.FormatUint(seq, 10)+".result", stored[1].Header.Get(messages.HeaderMsgID))
	assert.Equal(t, stored[1].Header.Get(messages.HeaderMsgID), stored[1].Header.Get("ce-id"), "ce-id is the stored id")
	assert.Equal(t, 1, callsOf(env.cm, secondID, "cancel"))
}
