package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestAStreamOrConsumerThatBreaksAPromiseIsCorrectedOrNamed(t *testing.T) {
	lowMaxDeliver := func(c *jetstream.ConsumerConfig) { c.MaxDeliver = 1 }
	refreshOnly := func(c *jetstream.ConsumerConfig) { c.FilterSubject = messages.SubjectRefresh }

	t.Run("a consumer MaxDeliver below WORKER_MAX_DELIVERIES is corrected", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		env.createRequestStream(t, requestSubjects())
		env.createConsumer(t, cfg, lowMaxDeliver)
		results := env.watchResults(t, messages.SubjectResults)
		env.startWorker(t, cfg, env.client(t, nil))

		maxDeliver := consumerInfo(t, env).Config.MaxDeliver
		assert.True(t, maxDeliver == -1 || maxDeliver >= cfg.MaxDeliveries, "MaxDeliver %d", maxDeliver)

		// The first delivery fails (both attempts), the second cancels.
		id := messages.NewRequestID()
		env.cm.AddJob(cckmtest.Refresh, id)
		env.cm.Script(id, cckmtest.Step{Status: 503}, cckmtest.Step{Status: 503})
		env.publish(t, messages.KindRefresh, id, nil)
		result, _ := results.next(t)
		assert.Equal(t, messages.StatusCanceled, result.Status, "the request was delivered again")
		assert.Equal(t, 3, result.Attempts)
	})

	t.Run("a consumer MaxDeliver below WORKER_MAX_DELIVERIES is named under WORKER_PROVISION=false", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		env.createRequestStream(t, requestSubjects())
		env.createConsumer(t, cfg, lowMaxDeliver)
		cfg.Provision = false
		requireSettingError(t, env.runForError(t, cfg), "max_deliver")
		assert.Equal(t, 1, consumerInfo(t, env).Config.MaxDeliver, "left as it was")
	})

	t.Run("a consumer filter that leaves out a request subject is corrected", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		cfg := testConfig(ModeJetStream)
		env.createRequestStream(t, requestSubjects())
		env.createConsumer(t, cfg, refreshOnly)
		results := env.watchResults(t, messages.SubjectResults)
		env.startWorker(t, cfg, env.client(t, nil))

		info := consumerInfo(t, env)
		filters := append(slices.Clone(info.Config.FilterSubjects), info.Config.FilterSubject)
		for _, kind := range messages.Kinds {
			assert.True(t, filterCovers(filters, kind.RequestSubject()), "the filter %v covers %s", filters, kind.RequestSubject())
		}
		for _, kind := range messages.Kinds {
			env.publish(t, kind, messages.NewRequestID(), nil)
			result, _ := results.next(t)
			assert.Equal(t, kind, result.Kind)
			assert.Equal(t, messages.StatusCanceled, result.Status)
		}
	})

	t.Run("a consumer filter that leaves out a request subject is named under WORKER_PROVISION=false", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		env.createRequestStream(t, requestSubjects())
		env.createConsumer(t, cfg, refreshOnly)
		cfg.Provision = false
		requireSettingError(t, env.runForError(t, cfg), "filter_subjects")
	})

	t.Run("a request stream lacking a request subject gets it in place, its waiting requests kept", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true})
		cfg := testConfig(ModeJetStream)
		stream := env.createRequestStream(t, []string{messages.SubjectRefresh})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		// Requests without a request_id: the one the worker derives names
		// the stream sequence and stored time, so the result tells whether
		// the request kept its place.
		const waiting = 3
		want := map[string]bool{}
		for range waiting {
			ack, err := env.js.Publish(ctx, messages.SubjectRefresh, []byte(messages.NewRequestID()))
			require.NoError(t, err)
			stored, err := stream.GetMsg(ctx, ack.Sequence)
			require.NoError(t, err)
			want[messages.DerivedRequestID(RequestStream, ack.Sequence, stored.Time)] = true
		}
		before, err := stream.Info(ctx)
		require.NoError(t, err)

		results := env.watchResults(t, messages.SubjectResults)
		env.startWorker(t, cfg, env.client(t, nil))
		for range waiting {
			result, _ := results.next(t)
			assert.Equal(t, messages.StatusCanceled, result.Status)
			assert.True(t, want[result.RequestID], "request_id %s derived from the request's own place", result.RequestID)
			delete(want, result.RequestID)
		}

		after, err := stream.Info(ctx)
		require.NoError(t, err)
		assert.Equal(t, before.Created, after.Created, "the same stream, not a new one")
		for _, subject := range requestSubjects() {
			assert.Contains(t, after.Config.Subjects, subject)
		}
		for _, kind := range messages.Kinds {
			env.publish(t, kind, messages.NewRequestID(), nil)
			result, _ := results.next(t)
			assert.Equal(t, kind, result.Kind)
			assert.Equal(t, messages.StatusCanceled, result.Status)
		}
	})

	t.Run("a request stream lacking a request subject is named under WORKER_PROVISION=false", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{})
		cfg := testConfig(ModeJetStream)
		env.createRequestStream(t, []string{messages.SubjectRefresh})
		cfg.Provision = false
		requireSettingError(t, env.runForError(t, cfg), "subjects")
	})
}

func TestDeliveryMemoryStaysBounded(t *testing.T) {
	t.Run("instances sharing the consumer remember only requests redelivered elsewhere", func(t *testing.T) {
		const requests = 30
		env := newTestEnv(t, cckmtest.Options{})
		results := env.watchResults(t, messages.SubjectResults)
		deliveries := &deliveryLog{byID: map[string][]int{}}
		cfg := testConfig(ModeJetStream)
		cfg.Concurrency = 2
		var workers []*runningWorker
		for i := range 3 {
			canceler := &taggingCanceler{Canceler: env.client(t, nil), instance: i, log: deliveries}
			workers = append(workers, env.startWorker(t, cfg, canceler))
		}

		for range requests {
			id := messages.NewRequestID()
			env.cm.AddJob(cckmtest.Refresh, id)
			// The first delivery fails on both its attempts.
			env.cm.Script(id, cckmtest.Step{Status: 503}, cckmtest.Step{Status: 503})
			env.publish(t, messages.KindRefresh, id, nil)
		}
		attempts := map[string]int{}
		for range requests {
			result, _ := results.next(t)
			assert.Equal(t, messages.StatusCanceled, result.Status)
			attempts[result.ID] = result.Attempts
		}
		env.requireNothingPending(t)

		// An instance whose delivery failed remembers the attempts until the
		// request comes back; when it comes back elsewhere, the entry stays
		// until the horizon sweeps it. Nothing else is kept.
		stale := make([]int, len(workers))
		for id, instances := range deliveries.snapshot() {
			require.Len(t, instances, 2, "two deliveries of %s", id)
			if instances[0] != instances[1] {
				stale[instances[0]]++
				// The other instance does not know the first delivery's.
				assert.Equal(t, 1, attempts[id], "attempts of %s, redelivered elsewhere", id)
			} else {
				assert.Equal(t, 3, attempts[id], "attempts of %s across its deliveries", id)
			}
		}
		total := 0
		for i, w := range workers {
			assert.Equal(t, stale[i], w.memory.size(), "entries of instance %d", i)
			total += w.memory.size()
		}
		assert.LessOrEqual(t, total, requests)
		assert.Positive(t, total, "some requests came back to another instance (else this checks nothing)")
	})

	t.Run("entries older than the horizon are swept", func(t *testing.T) {
		const horizon = time.Minute
		m := newDeliveryMemory(horizon)
		t0 := time.Unix(1_700_000_000, 0)
		key := func(seq uint64) messageKey { return messageKey{sequence: seq, stored: t0.UnixNano() + int64(seq)} }

		m.store(key(1), priorDeliveries{attempts: 2}, t0)
		m.store(key(2), priorDeliveries{attempts: 2}, t0.Add(50*time.Second))
		require.Equal(t, 2, m.size())
		// A sweep runs at most every quarter horizon: the first entry is gone
		// by horizon + horizon/4 at the latest.
		m.store(key(3), priorDeliveries{attempts: 2}, t0.Add(horizon+horizon/4+time.Second))
		assert.Equal(t, priorDeliveries{}, m.load(key(1)), "the old entry is gone")
		assert.Equal(t, 2, m.load(key(2)).attempts, "a recent entry stays")
		assert.Equal(t, 2, m.size())

		// A steady stream of entries never looked up again (their requests
		// came back elsewhere) holds at most what the horizon holds.
		const every = 10 * time.Millisecond
		m = newDeliveryMemory(horizon)
		peak := 0
		for i := range 100_000 {
			m.store(key(uint64(i)), priorDeliveries{attempts: 1}, t0.Add(time.Duration(i)*every))
			peak = max(peak, m.size())
		}
		assert.LessOrEqual(t, peak, int((horizon+horizon/4)/every)+1)
	})

	t.Run("a stream created again does not lend old attempts to new requests", func(t *testing.T) {
		t0 := time.Unix(1_700_000_000, 0)
		m := newDeliveryMemory(time.Hour)
		m.store(messageKey{sequence: 1, stored: t0.UnixNano()}, priorDeliveries{attempts: 2, httpStatus: 503}, t0)
		assert.Equal(t, priorDeliveries{}, m.load(messageKey{sequence: 1, stored: t0.Add(time.Second).UnixNano()}),
			"the same sequence stored at another time is another message")

		env := newTestEnv(t, cckmtest.Options{})
		results := env.watchResults(t, messages.SubjectResults)
		cfg := testConfig(ModeJetStream)
		// The failed request waits long enough for the stream to go first.
		cfg.RetryDelay, cfg.MaxRetryDelay = 30*time.Second, 30*time.Second
		env.startWorker(t, cfg, env.client(t, nil))

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		old := messages.NewRequestID()
		env.cm.Script(old, cckmtest.Step{Status: 503}, cckmtest.Step{Status: 503})
		oldAck, err := env.js.Publish(ctx, messages.SubjectRefresh, []byte(old))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(env.cm.CallsFor(old)) == 2 }, 5*time.Second, 5*time.Millisecond)

		// An operator deletes CCKM_CANCEL; the worker creates it again.
		require.NoError(t, env.js.DeleteStream(ctx, RequestStream))
		require.Eventually(t, func() bool {
			_, err := env.js.Consumer(ctx, RequestStream, ConsumerName)
			return err == nil
		}, 10*time.Second, 10*time.Millisecond, "the worker created the stream and consumer again")

		fresh := messages.NewRequestID()
		env.cm.AddJob(cckmtest.Refresh, fresh)
		freshAck, err := env.js.Publish(ctx, messages.SubjectRefresh, []byte(fresh))
		require.NoError(t, err)
		require.Equal(t, oldAck.Sequence, freshAck.Sequence, "the new request has the old one's sequence")

		result, _ := results.next(t)
		assert.Equal(t, fresh, result.ID)
		assert.Equal(t, messages.StatusCanceled, result.Status)
		assert.Equal(t, 1, result.Attempts, "its own attempts only")
		assert.Equal(t, 200, result.HTTPStatus)
	})
}

func TestAfterAStopNoReceivedRequestStarts(t *testing.T) {
	t.Run("a pull still out at the stop hands back what it brings", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 600 * time.Millisecond})
		cfg := testConfig(ModeJetStream)
		cfg.Concurrency = 2
		first := env.startWorker(t, cfg, env.client(t, nil))

		// One request takes one slot; the pull for the other stays out.
		env.publish(t, messages.KindRefresh, `{"id":"`+messages.NewRequestID()+`","request_id":"stop-0"}`, nil)
		require.Eventually(t, func() bool { return len(cancelCalls(env.cm)) == 1 }, 5*time.Second, time.Millisecond)

		stopAt := time.Now()
		first.cancel()
		const later = 8
		for i := 1; i <= later; i++ {
			env.publish(t, messages.KindRefresh, fmt.Sprintf(`{"id":%q,"request_id":"stop-%d"}`, messages.NewRequestID(), i), nil)
		}
		first.stop(t)
		assert.Empty(t, callsSince(env.cm, stopAt), "no cancel call started after the stop")

		second := env.startWorker(t, cfg, env.client(t, nil))
		env.requireOneStoredResultEach(t, later+1)
		assert.Equal(t, later+1, len(cancelCalls(env.cm)), "one call per request")
		assert.Positive(t, second.counts.redelivered.Load(), "the stopped worker handed back a request it had received")
	})

	t.Run("requests waiting while every slot is busy", func(t *testing.T) {
		env := newTestEnv(t, cckmtest.Options{AnyJob: true, Latency: 600 * time.Millisecond})
		cfg := testConfig(ModeJetStream)
		cfg.Concurrency = 2
		first := env.startWorker(t, cfg, env.client(t, nil))

		const requests = 8
		for i := range requests {
			env.publish(t, messages.KindRefresh, fmt.Sprintf(`{"id":%q,"request_id":"busy-%d"}`, messages.NewRequestID(), i), nil)
		}
		require.Eventually(t, func() bool { return len(cancelCalls(env.cm)) == cfg.Concurrency }, 5*time.Second, time.Millisecond)
		stopAt := time.Now()
		first.stop(t)
		assert.Empty(t, callsSince(env.cm, stopAt), "no cancel call started after the stop")

		env.startWorker(t, cfg, env.client(t, nil))
		env.requireOneStoredResultEach(t, requests)
		assert.Equal(t, requests, len(cancelCalls(env.cm)), "one call per request")
	})
}

// createRequestStream creates CCKM_CANCEL as the worker would, on subjects.
func (e *testEnv) createRequestStream(t *testing.T, subjects []string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := requestStreamConfig()
	cfg.Subjects = subjects
	stream, err := e.js.CreateStream(ctx, cfg)
	require.NoError(t, err)
	return stream
}

// createConsumer creates the request consumer as the worker would with
// cfg, then changed by change.
func (e *testEnv) createConsumer(t *testing.T, cfg Config, change func(*jetstream.ConsumerConfig)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg.setDefaults()
	consumerCfg := cfg.consumerConfig()
	change(&consumerCfg)
	_, err := e.js.CreateConsumer(ctx, RequestStream, consumerCfg)
	require.NoError(t, err)
}

// runForError runs a worker that is expected to stop at start, and returns
// what Run returned.
func (e *testEnv) runForError(t *testing.T, cfg Config) error {
	t.Helper()
	nc := natstest.Connect(t, e.ns)
	w, err := New(cfg, nc, e.client(t, nil), zerolog.Nop(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.Run(ctx)
}

// requireSettingError checks that err is a *SettingError naming setting.
func requireSettingError(t *testing.T, err error, setting string) {
	t.Helper()
	var settingErr *SettingError
	require.True(t, errors.As(err, &settingErr), "Run returned %v, not a *SettingError", err)
	assert.Equal(t, setting, settingErr.Setting)
	assert.Contains(t, err.Error(), setting, "the line names the setting")
	assert.NotContains(t, err.Error(), "\n", "one line")
}

// filterCovers reports whether a stream or consumer with filters takes
// subject, by the server's own matching of wildcards.
func filterCovers(filters []string, subject string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
}

// callsSince returns the cancel calls that arrived after t.
func callsSince(cm *cckmtest.Server, t time.Time) []cckmtest.Call {
	var later []cckmtest.Call
	for _, call := range cancelCalls(cm) {
		if call.Time.After(t) {
			later = append(later, call)
		}
	}
	return later
}

// requireOneStoredResultEach waits until CCKM_CANCEL_RESULTS holds n
// results and checks that they belong to n requests, all canceled.
func (e *testEnv) requireOneStoredResultEach(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(e.storedResults(t)) >= n }, 15*time.Second, 20*time.Millisecond)
	e.requireNothingPending(t)
	seen := map[string]int{}
	for _, r := range e.storedResults(t) {
		seen[r.RequestID]++
		assert.Equal(t, messages.StatusCanceled, r.Status, r.RequestID)
	}
	assert.Len(t, seen, n, "one stored result per request")
	for requestID, count := range seen {
		assert.Equal(t, 1, count, requestID)
	}
}

// deliveryLog records which instance each delivery of a job id ran on.
type deliveryLog struct {
	mu   sync.Mutex
	byID map[string][]int
}

func (l *deliveryLog) add(id string, instance int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byID[id] = append(l.byID[id], instance)
}

func (l *deliveryLog) snapshot() map[string][]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]int, len(l.byID))
	for id, instances := range l.byID {
		out[id] = slices.Clone(instances)
	}
	return out
}

// taggingCanceler logs, per cancel (one per delivery), the instance that
// made it.
type taggingCanceler struct {
	Canceler
	instance int
	log      *deliveryLog
}

func (c *taggingCanceler) Cancel(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error) {
	c.log.add(id, c.instance)
	return c.Canceler.Cancel(ctx, kind, id)
}

// TestThreeInstancesOneLostMidWayStoreOneResultPerBareIDRequest: three
// instances share the consumer; one loses its NATS connection with calls
// in flight (as a kill would leave them: nothing acknowledged) and a new
// instance takes its place. Bare-id requests carry no request_id, so only
// the id derived from where the message is stored keeps a redelivery on
// another instance from storing a second result.
func TestThreeInstancesOneLostMidWayStoreOneResultPerBareIDRequest(t *testing.T) {
	const requests = 60
	env := newTestEnv(t, cckmtest.Options{AnyJob: true, SettleAfter: -1, Latency: 50 * time.Millisecond})
	cfg := testConfig(ModeJetStream)
	cfg.MaxDeliveries = 5
	workers := make([]*runningWorker, 3)
	for i := range workers {
		workers[i] = env.startWorker(t, cfg, env.client(t, nil))
	}
	ids := make([]string, requests)
	for i := range ids {
		ids[i] = messages.NewRequestID()
		env.publish(t, messages.KindRefresh, ids[i], nil)
	}
	require.Eventually(t, func() bool { n := env.storedCount(ResultStream); return n > 0 && n < requests/2 },
		10*time.Second, time.Millisecond, "the loss falls mid-way")
	workers[0].nc.Close() // no drain, no ack: what it held is delivered again after the ack wait
	env.startWorker(t, cfg, env.client(t, nil))

	require.Eventually(t, func() bool { return env.storedCount(ResultStream) >= requests }, 20*time.Second, 20*time.Millisecond)
	env.requireRequestsDoneWithin(t, 10*time.Second)
	perJob := map[string]int{}
	requestIDs := map[string]bool{}
	for _, r := range env.storedResults(t) {
		perJob[r.ID]++
		requestIDs[r.RequestID] = true
		assert.Equal(t, messages.StatusCanceled, r.Status, r.ID)
	}
	for _, id := range ids {
		assert.Equal(t, 1, perJob[id], "one stored result for %s", id)
	}
	assert.Len(t, requestIDs, requests, "one request_id per request")
	assert.Greater(t, len(cancelCalls(env.cm)), requests, "the lost instance had calls in flight, made again elsewhere")
}
