package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func followConfig(mode Mode) Config {
	cfg := testConfig(mode)
	cfg.FollowInterval = 20 * time.Millisecond
	cfg.FollowTimeout = 10 * time.Second
	return cfg
}

func TestAFollowedCancelPublishesASettledEventWhenTheJobEnds(t *testing.T) {
	for _, mode := range []Mode{ModeJetStream, ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			env := newTestEnv(t, cckmtest.Options{SettleAfter: 300 * time.Millisecond})
			settledEvents := env.watchResults(t, messages.KindRefresh.SettledSubject())
			env.startWorker(t, followConfig(mode), env.client(t, nil))

			id := messages.NewRequestID()
			env.cm.AddJob(cckmtest.Refresh, id)
			result, _ := env.send(t, mode, messages.KindRefresh, `{"id":"`+id+`","request_id":"ir-follow","follow":true}`)
			require.Equal(t, messages.StatusCanceled, result.Status)
			assert.Equal(t, "in progress", result.OverallStatus, "the result comes at once, before the job ends")

			settled, msg := settledEvents.next(t)
			require.NotNil(t, settled.Settled)
			assert.True(t, *settled.Settled)
			assert.Equal(t, "ir-follow", settled.RequestID)
			assert.Equal(t, messages.KindRefresh, settled.Kind)
			assert.Equal(t, id, settled.ID)
			assert.Equal(t, messages.StatusCanceled, settled.Status)
			assert.Equal(t, "completed", settled.OverallStatus)
			assert.True(t, settled.Abort)
			assert.Contains(t, string(settled.Job), `"overall_status":"completed"`)
			assert.Equal(t, "ir-follow.settled", msg.Header.Get(messages.HeaderMsgID))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stream, err := env.js.Stream(ctx, SettledStream)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				info, err := stream.Info(ctx)
				return err == nil && info.State.Msgs == 1
			}, 5*time.Second, 10*time.Millisecond, "the settled event is stored in %s", SettledStream)
		})
	}
}

func TestWorkerFollowFollowsEveryCanceledJobAndSettledGoesToTheReplySubject(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{SettleAfter: 100 * time.Millisecond})
	cfg := followConfig(ModeJetStream)
	cfg.Follow = true
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.BulkJob, id)
	inbox := nats.NewInbox()
	replies := env.watchResults(t, inbox)
	env.publish(t, messages.KindBulkJob, id, nats.Header{messages.HeaderReplyTo: {inbox}})

	first, _ := replies.next(t)
	assert.Nil(t, first.Settled, "first the result")
	second, _ := replies.next(t)
	require.NotNil(t, second.Settled, "then the settled event, on Cckm-Reply-To too")
	assert.True(t, *second.Settled)
	assert.Equal(t, "completed", second.OverallStatus)
	assert.Equal(t, first.RequestID, second.RequestID)
}

func TestAFollowThatTimesOutSettlesFalse(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{SettleAfter: -1})
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	cfg := followConfig(ModeJetStream)
	cfg.FollowTimeout = 300 * time.Millisecond
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.publish(t, messages.KindRefresh, `{"id":"`+id+`","follow":true}`, nil)

	settled, _ := settledEvents.next(t)
	require.NotNil(t, settled.Settled)
	assert.False(t, *settled.Settled)
	assert.Equal(t, "in progress", settled.OverallStatus, "the last status seen")
	assert.GreaterOrEqual(t, len(env.cm.CallsFor(id)), 3, "a cancel and at least two polls")
}

func TestAFollowSurvivesTheWorkerStopping(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{SettleAfter: 1500 * time.Millisecond})
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	cfg := followConfig(ModeJetStream)
	cfg.FollowInterval = 100 * time.Millisecond
	first := env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.publish(t, messages.KindRefresh, `{"id":"`+id+`","follow":true}`, nil)
	// The first worker polls at least once, then stops before the job ends.
	require.Eventually(t, func() bool { return len(env.cm.CallsFor(id)) >= 2 }, 5*time.Second, 5*time.Millisecond)
	first.stop(t)
	_, err := settledEvents.sub.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "not settled yet")

	env.startWorker(t, cfg, env.client(t, nil))
	settled, _ := settledEvents.next(t)
	require.NotNil(t, settled.Settled)
	assert.True(t, *settled.Settled, "the second worker finished the follow")
	assert.Equal(t, "completed", settled.OverallStatus)
}

func TestFollowStep(t *testing.T) {
	now := time.Now()
	canceled := messages.Result{RequestID: "r", Kind: messages.KindRefresh, ID: jobIDForTest,
		Status: messages.StatusCanceled, Abort: true, OverallStatus: "in progress", HTTPStatus: 200, Attempts: 1}
	running := cckmclient.Response{Job: jobWith(true, "in_progress"), HTTPStatus: 200, Attempts: 1}
	done := cckmclient.Response{Job: jobWith(true, "FAILED"), HTTPStatus: 200, Attempts: 1}
	gone := &cckmclient.APIError{StatusCode: 404, CodeDesc: "NCERRResourceNotFound: Resource not found"}
	unavailable := &cckmclient.APIError{StatusCode: 503}

	_, final := followStep(canceled, running, nil, false, now)
	assert.False(t, final, "a running job is polled again")

	settled, final := followStep(canceled, done, nil, false, now)
	require.True(t, final)
	assert.True(t, *settled.Settled, "failed, in any case, is terminal")
	assert.Equal(t, "FAILED", settled.OverallStatus)
	assert.Equal(t, 1, settled.Attempts, "the result's fields are kept")

	_, final = followStep(canceled, cckmclient.Response{HTTPStatus: 503}, unavailable, false, now)
	assert.False(t, final, "a transient error is polled again")

	settled, final = followStep(canceled, cckmclient.Response{HTTPStatus: 404, Attempts: 1}, gone, false, now)
	require.True(t, final)
	assert.False(t, *settled.Settled)
	require.NotNil(t, settled.Error)
	assert.Equal(t, messages.CodeNotFound, settled.Error.Code)
	assert.Equal(t, 404, settled.HTTPStatus)

	settled, final = followStep(canceled, running, nil, true, now)
	require.True(t, final)
	assert.False(t, *settled.Settled, "past the deadline")
	assert.Equal(t, "in_progress", settled.OverallStatus)
}

func TestWithoutAFollowStreamTheRequestSettlesFalseAndIsNotRedelivered(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := followConfig(ModeJetStream)
	cfg.setDefaults()
	_, err := env.js.CreateStream(ctx, requestStreamConfig())
	require.NoError(t, err)
	_, err = env.js.CreateStream(ctx, cfg.resultStreamConfig())
	require.NoError(t, err)
	_, err = env.js.CreateConsumer(ctx, RequestStream, cfg.consumerConfig())
	require.NoError(t, err)
	env.createInFlight(t, cfg)
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	results := env.watchResults(t, messages.SubjectResults)

	cfg.Provision = false
	env.startWorker(t, cfg, env.client(t, nil))
	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	env.publish(t, messages.KindRefresh, `{"id":"`+id+`","follow":true}`, nil)

	result, _ := results.next(t)
	assert.Equal(t, messages.StatusCanceled, result.Status)
	settled, _ := settledEvents.next(t)
	require.NotNil(t, settled.Settled)
	assert.False(t, *settled.Settled, "cannot follow: settled false at once")
	env.requireNothingPending(t)
	assert.Len(t, env.cm.CallsFor(id), 1, "no redelivery, no second cancel")
}

func TestFollowDelayDoublesUpToFollowMaxInterval(t *testing.T) {
	cfg := Config{FollowInterval: time.Second, FollowMaxInterval: 3 * time.Second}
	var got []time.Duration
	for polls := 1; polls <= 5; polls++ {
		got = append(got, cfg.followDelay(polls))
	}
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}, got)
	assert.Equal(t, 3*time.Second, cfg.followDelay(1000), "a long follow waits the cap, not an overflowed shift")

	cfg = Config{}
	cfg.setDefaults()
	assert.Equal(t, DefaultFollowMaxInterval, cfg.FollowMaxInterval, "the default cap")
}

// A job that ends 5 s after its cancel: with the doubling capped at
// FollowMaxInterval, its settled event comes at most about that long after
// the job's end (uncapped, the polls at 0.5, 1.5, 3.5 and 7.5 s would
// settle it 2.5 s late).
func TestAFollowNoticesTheEndOfAJobWithinFollowMaxInterval(t *testing.T) {
	const (
		jobEndsAfter = 5 * time.Second
		maxInterval  = time.Second
		// slack covers a poll's GET, the settled event's publish and the
		// timer resolution of NakWithDelay.
		slack = 500 * time.Millisecond
	)
	env := newTestEnv(t, cckmtest.Options{SettleAfter: jobEndsAfter})
	settledEvents := env.watchResults(t, messages.KindRefresh.SettledSubject())
	cfg := followConfig(ModeJetStream)
	cfg.FollowInterval = 500 * time.Millisecond
	cfg.FollowMaxInterval = maxInterval
	cfg.FollowTimeout = 30 * time.Second
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	canceledBy := time.Now()
	result, _ := env.send(t, ModeJetStream, messages.KindRefresh, `{"id":"`+id+`","follow":true}`)
	require.Equal(t, messages.StatusCanceled, result.Status)
	canceledAt := time.Now() // the cancel call happened between canceledBy and now

	settled, _ := settledEvents.next(t)
	settledAt := time.Now()
	require.NotNil(t, settled.Settled)
	require.True(t, *settled.Settled, "the job ended")
	assert.Equal(t, "completed", settled.OverallStatus)
	assert.GreaterOrEqual(t, settledAt.Sub(canceledBy), jobEndsAfter, "settled after the job's end")
	assert.LessOrEqual(t, settledAt.Sub(canceledAt), jobEndsAfter+maxInterval+slack,
		"settled within WORKER_FOLLOW_MAX_INTERVAL of the job's end")
}

// A follow task is a plain message on cckm.cancel.follow.<kind>: anyone who
// may publish requests may publish one, with a deadline years away, and
// have the worker poll a running job for ever. The deadline it honours is
// at most WORKER_FOLLOW_TIMEOUT after the task was stored.
func TestAForgedFollowTaskWithAFarDeadlineStillEndsByFollowTimeout(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{SettleAfter: -1})
	settledEvents := env.watchResults(t, messages.SubjectSettled)
	cfg := followConfig(ModeJetStream)
	cfg.FollowTimeout = 500 * time.Millisecond
	env.startWorker(t, cfg, env.client(t, nil))

	id := messages.NewRequestID()
	env.cm.AddJob(cckmtest.Refresh, id)
	task := messages.Result{RequestID: "forged-1", Kind: messages.KindRefresh, ID: id, Status: messages.StatusCanceled}
	msg := nats.NewMsg(followSubject(messages.KindRefresh))
	msg.Data = task.AppendJSON(nil)
	msg.Header.Set(HeaderFollowDeadline, time.Now().AddDate(100, 0, 0).UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := env.js.PublishMsg(ctx, msg)
	require.NoError(t, err)

	settled, _ := settledEvents.next(t) // within 10 s
	assert.Equal(t, id, settled.ID)
	require.NotNil(t, settled.Settled)
	assert.False(t, *settled.Settled, "timed out, by the worker's own WORKER_FOLLOW_TIMEOUT")
}
