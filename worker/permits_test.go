package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// inFlightInfo is the permit stream as stored.
func inFlightInfo(t *testing.T, env *testEnv) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := env.js.Stream(ctx, InFlightStream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	return info
}

// bindTestPermits binds permits of maxInFlight, with the given ack wait,
// as an instance would; keepAlive runs their keeper and idle sweep (an
// instance that lives), else they are never reported (one that died).
func bindTestPermits(t *testing.T, env *testEnv, maxInFlight int, ackWait time.Duration, keepAlive bool) *permits {
	t.Helper()
	cfg := testConfig(ModeJetStream)
	cfg.MaxInFlight = maxInFlight
	cfg.AckWait = ackWait
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := (&provisioner{js: env.js, cfg: &cfg, log: zerolog.Nop()}).bindInFlight(ctx)
	require.NoError(t, err)
	p := newPermits(zerolog.Nop(), nil, time.Now)
	if keepAlive {
		runCtx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { p.run(runCtx) })
		t.Cleanup(func() {
			stop()
			wg.Wait()
		})
	}
	p.bind(cons, ackWait, func() uint64 { return env.nc.Stats().Reconnects })
	return p
}

// provisionedPermits makes the permit stream and consumer of bound as a
// worker does, and returns the configuration and provisioner that made
// them, for a test to spoil the assets and bind again.
func provisionedPermits(t *testing.T, env *testEnv, bound int) (*Config, *provisioner) {
	t.Helper()
	cfg := testConfig(ModeJetStream)
	cfg.MaxInFlight = bound
	cfg.AckWait = 10 * time.Second
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assets := &provisioner{js: env.js, cfg: &cfg, log: zerolog.Nop()}
	_, err := assets.bindInFlight(ctx)
	require.NoError(t, err)
	return &cfg, assets
}

// acquireWithin takes a permit of p within d, or reports that none came.
func acquireWithin(p *permits, d time.Duration) (permit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.acquire(ctx)
}

// TestThePermitStreamHoldsExactlyTheBound: three instances starting at
// once make exactly CCKM_MAX_IN_FLIGHT permits; one started with a smaller
// bound brings the stream down to it; one with another bound and
// provisioning off is refused, naming max_msgs.
func TestThePermitStreamHoldsExactlyTheBound(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	cfg := testConfig(ModeJetStream)
	cfg.MaxInFlight = 7
	var wg sync.WaitGroup
	workers := make([]*runningWorker, 3)
	for i := range workers {
		wg.Go(func() { workers[i] = env.startWorker(t, cfg, env.client(t, nil)) })
	}
	wg.Wait()
	info := inFlightInfo(t, env)
	assert.Equal(t, uint64(7), info.State.Msgs, "one permit per call, filled by three instances at once")
	assert.Equal(t, int64(7), info.Config.MaxMsgs)
	for _, w := range workers {
		w.stop(t)
	}

	cfg.MaxInFlight = 3
	env.startWorker(t, cfg, env.client(t, nil)).stop(t)
	info = inFlightInfo(t, env)
	assert.Equal(t, uint64(3), info.State.Msgs, "brought down to the smaller bound")
	assert.Equal(t, int64(3), info.Config.MaxMsgs)

	// A stream left with another limit (by hand, say), provisioning off.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spoilt := info.Config
	spoilt.MaxMsgs = 9
	_, err := env.js.UpdateStream(ctx, spoilt)
	require.NoError(t, err)
	cfg.Provision = false
	requireSettingError(t, env.runForError(t, cfg), "max_msgs")
	assert.Equal(t, int64(9), inFlightInfo(t, env).Config.MaxMsgs, "left as it was")
}

// TestPermitsAreSharedAcrossInstances: the permits of two instances
// together never pass the bound; an instance that stops calling gives its
// permits back within permitIdle, one that keeps calling within
// permitRotation, and one that dies (no InProgress) after the ack wait.
func TestPermitsAreSharedAcrossInstances(t *testing.T) {
	const bound = 3

	t.Run("idle permits go back", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{})
		a := bindTestPermits(t, env, bound, 10*time.Second, true)
		b := bindTestPermits(t, env, bound, 10*time.Second, true)
		var held []permit
		for range bound {
			p, err := acquireWithin(a, 5*time.Second)
			require.NoError(t, err)
			held = append(held, p)
		}
		_, err := acquireWithin(b, 300*time.Millisecond)
		require.ErrorIs(t, err, context.DeadlineExceeded, "every permit is in use by the other instance")
		for _, p := range held {
			a.release(p)
		}
		start := time.Now()
		for range bound {
			_, err := acquireWithin(b, 5*time.Second)
			require.NoError(t, err, "the idle instance gave its permits back")
		}
		t.Logf("all %d permits moved in %v", bound, time.Since(start))
		_, err = acquireWithin(a, 300*time.Millisecond)
		require.ErrorIs(t, err, context.DeadlineExceeded, "the bound holds the other way too")
	})

	t.Run("busy instances take turns", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{})
		a := bindTestPermits(t, env, bound, 10*time.Second, true)
		b := bindTestPermits(t, env, bound, 10*time.Second, true)
		defer keepBusy(a, bound)() // a keeps every permit busy, call after call
		p, err := acquireWithin(b, 5*permitRotation)
		require.NoError(t, err, "a permit rotates to the other instance")
		b.release(p)
	})

	t.Run("a dead instance's permits come back after the ack wait", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{})
		const ackWait = time.Second
		dead := bindTestPermits(t, env, bound, ackWait, false)
		for range bound {
			_, err := acquireWithin(dead, 5*time.Second)
			require.NoError(t, err)
		}
		alive := bindTestPermits(t, env, bound, ackWait, true)
		start := time.Now()
		for range bound {
			_, err := acquireWithin(alive, 10*time.Second)
			require.NoError(t, err)
		}
		assert.GreaterOrEqual(t, time.Since(start), ackWait/2, "not before the dead one's ack wait ran out")
	})

	t.Run("a call longer than the ack wait keeps its permit", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, cckmtest.Options{})
		const ackWait = 600 * time.Millisecond
		a := bindTestPermits(t, env, 1, ackWait, true)
		b := bindTestPermits(t, env, 1, ackWait, true)
		p, err := acquireWithin(a, 5*time.Second)
		require.NoError(t, err)
		_, err = acquireWithin(b, 4*ackWait)
		require.ErrorIs(t, err, context.DeadlineExceeded, "reported in progress, the permit is not delivered again")
		a.release(p)
	})
}

// purgePermits purges the permit stream, as an operator might by hand.
func purgePermits(t *testing.T, env *testEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := env.js.Stream(ctx, InFlightStream)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx))
}

// keepBusy has n callers take permits of p call after call (each call 5
// ms) until the returned function is called, which waits for them.
func keepBusy(p *permits, n int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				held, err := p.acquire(ctx)
				if err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond) // the call
				p.release(held)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// permitDeliveries is how many times the permits were delivered so far.
// It fails no test itself: require.Never may still run it after it
// returned, when a test has gone on to delete the consumer.
func permitDeliveries(env *testEnv) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.Delivered.Consumer, nil
}

// busyAlone binds an instance alone to a bound of n permits and keeps all
// of them busy, call after call, until the test ends. It checks that for
// the time given, past permitRotation, none of them goes back to the
// server: nobody else waits.
func busyAlone(t *testing.T, env *testEnv, n int, alone time.Duration) *permits {
	t.Helper()
	p := bindTestPermits(t, env, n, 10*time.Second, true)
	t.Cleanup(keepBusy(p, n)) // before the permits' own clean-up
	require.Eventually(t, func() bool { return p.held() == n }, 5*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool {
		delivered, err := permitDeliveries(env)
		return err == nil && delivered > uint64(n)
	}, alone, 50*time.Millisecond, "no permit went back and came again")
	delivered, err := permitDeliveries(env)
	require.NoError(t, err)
	require.Equal(t, uint64(n), delivered, "no permit went back and came again")
	return p
}

// TestABusyInstanceNobodyWaitsForKeepsItsPermits: an instance whose calls
// keep every permit busy keeps them past permitRotation while no other
// instance waits (giving one back would only make its own next call wait
// for it), and starts giving them back once another instance waits.
func TestABusyInstanceNobodyWaitsForKeepsItsPermits(t *testing.T) {
	t.Parallel()
	const bound = 3
	env := newTestEnv(t, cckmtest.Options{})
	busyAlone(t, env, bound, 3*permitRotation)

	b := bindTestPermits(t, env, bound, 10*time.Second, true)
	p, err := acquireWithin(b, 5*permitRotation)
	require.NoError(t, err, "a permit rotates to the instance that waits")
	b.release(p)
}

// TestPermitsPurgedUnderABusyInstanceAreGivenUpSoon: permits purged by
// hand while an instance keeps them busy are gone from the server; the
// instance sees it within a few permitRotation and stops calling under
// them, rather than after permitMaxHold.
func TestPermitsPurgedUnderABusyInstanceAreGivenUpSoon(t *testing.T) {
	t.Parallel()
	const bound = 3
	env := newTestEnv(t, cckmtest.Options{})
	a := busyAlone(t, env, bound, permitRotation+100*time.Millisecond)

	purgePermits(t, env)
	purged := time.Now()
	require.Eventually(t, func() bool { return a.held() == 0 }, 4*permitRotation, 10*time.Millisecond,
		"the purged permits were given up")
	t.Logf("given up %v after the purge", time.Since(purged).Round(time.Millisecond))
}

// TestGhostPermitsBesideAnotherInstanceAreGivenUpSoon: permits purged by
// hand (or held from a consumer deleted and made anew) while an instance
// keeps them busy, and another instance busy under the permits that
// replace them. The server counts as many permits out as the first
// instance holds (the second's), so the count cannot tell; the first must
// still stop calling under its gone permits within about a second, not
// 10 s after they were delivered (calls at CM meanwhile: twice the bound).
func TestGhostPermitsBesideAnotherInstanceAreGivenUpSoon(t *testing.T) {
	const bound = 3
	for name, spoil := range map[string]func(t *testing.T, env *testEnv){
		"purged": purgePermits,
		"consumer made anew": func(t *testing.T, env *testEnv) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, env.js.DeleteConsumer(ctx, InFlightStream, InFlightConsumer))
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, cckmtest.Options{})
			a := busyAlone(t, env, bound, permitRotation+100*time.Millisecond)

			spoil(t, env)
			spoilt := time.Now()
			b := bindTestPermits(t, env, bound, 10*time.Second, true) // makes what is missing
			t.Cleanup(keepBusy(b, bound))
			require.Eventually(t, func() bool { return b.held() == bound }, 5*time.Second, 10*time.Millisecond,
				"the other instance has the permits that replace them")
			require.Eventually(t, func() bool { return a.held() == 0 }, 2*permitRotation, 10*time.Millisecond,
				"the gone permits were given up")
			t.Logf("given up %v after they were gone", time.Since(spoilt).Round(time.Millisecond))
		})
	}
}

// oneHeld binds an instance to a bound of one permit, and takes it.
func oneHeld(t *testing.T, env *testEnv) (*permits, permit) {
	t.Helper()
	p := bindTestPermits(t, env, 1, 10*time.Second, true)
	held, err := acquireWithin(p, 5*time.Second)
	require.NoError(t, err)
	return p, held
}

// TestAGonePermitIsNotGivenBackToAConsumerMadeAnew: the permit consumer
// deleted and made anew while an instance calls under a permit, which the
// new consumer hands to another instance. A Nak of the old permit would
// reach the new consumer (it goes by stream and delivery sequence), which
// would deliver it to a third instance while the second still calls
// under it: the bound passed by one for as long as the permit is busy.
func TestAGonePermitIsNotGivenBackToAConsumerMadeAnew(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	a, held := oneHeld(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, env.js.DeleteConsumer(ctx, InFlightStream, InFlightConsumer))
	b := bindTestPermits(t, env, 1, 10*time.Second, true) // makes the consumer again
	second, err := acquireWithin(b, 5*time.Second)
	require.NoError(t, err, "the new consumer hands the permit out again")
	cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
	require.NoError(t, err)
	made := cons.CachedInfo().Created
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.made.Equal(made)
	}, 5*time.Second, 10*time.Millisecond, "the first instance saw the consumer made anew")

	a.release(held) // the call under the gone permit ends
	c := bindTestPermits(t, env, 1, 10*time.Second, true)
	_, err = acquireWithin(c, 4*permitIdle)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the permit the second instance holds was delivered again")
	b.release(second)
}

// TestAPermitConsumerWhoseAckWaitIsShortenedKeepsTheBound: the permit
// consumer's ack wait shortened (by hand, or by an instance putting
// another setting right) while an instance holds a permit. Reported in
// progress at the old ack wait's pace, the permit would time out at the
// server and be handed to another instance while the first still calls
// under it.
func TestAPermitConsumerWhoseAckWaitIsShortenedKeepsTheBound(t *testing.T) {
	const shorter = 1500 * time.Millisecond
	env := newTestEnv(t, cckmtest.Options{})
	a, held := oneHeld(t, env)
	updateConsumer(t, env, InFlightStream, InFlightConsumer, func(cfg *jetstream.ConsumerConfig) { cfg.AckWait = shorter })

	b := bindTestPermits(t, env, 1, shorter, true)
	_, err := acquireWithin(b, 3*shorter)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the permit held was handed to another instance")
	a.release(held)
}

// TestPermitsLostWhileTheWorkerRunsAreMadeAgain: with the permit stream
// deleted, or its permits purged, calls wait; the worker makes them again
// and every request still ends canceled.
func TestPermitsLostWhileTheWorkerRunsAreMadeAgain(t *testing.T) {
	for name, lose := range map[string]func(t *testing.T, env *testEnv){
		"stream deleted": func(t *testing.T, env *testEnv) { env.deleteStream(t, InFlightStream) },
		"permits purged": purgePermits,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			losePermits(t, lose)
		})
	}
}

func losePermits(t *testing.T, lose func(t *testing.T, env *testEnv)) {
	env := newTestEnv(t, cckmtest.Options{AnyJob: true})
	cfg := testConfig(ModeJetStream)
	cfg.MaxInFlight = 4
	cfg.MaxDeliveries = 5
	results := env.watchResults(t, messages.SubjectResults)
	w := env.startWorker(t, cfg, env.client(t, nil))

	env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	result, _ := results.next(t)
	require.Equal(t, messages.StatusCanceled, result.Status)

	lose(t, env)
	// Once the instance has given up its idle permit, now gone, the next
	// call must ask the server for one.
	require.Eventually(t, func() bool { return w.permits.held() == 0 }, 5*time.Second, 10*time.Millisecond)
	for range 5 {
		env.publish(t, messages.KindRefresh, messages.NewRequestID(), nil)
	}
	for range 5 {
		result, _ := results.next(t)
		assert.Equal(t, messages.StatusCanceled, result.Status, "%+v", result)
	}
	// The first permits made again may serve every request before the
	// last is made.
	require.Eventually(t, func() bool { return inFlightInfo(t, env).State.Msgs == 4 }, 5*time.Second, 10*time.Millisecond,
		"made again with the bound")
}

// TestSpoiltPermitSettingsAreCaught: a permit stream or consumer left with
// a setting that breaks the bound (permits that expire or delete each
// other, a back-off that hands a held permit to a second instance) or
// that makes calls wait for ever (requests for permits refused) is
// refused under WORKER_PROVISION=false, naming the setting, and put right
// with it on.
func TestSpoiltPermitSettingsAreCaught(t *testing.T) {
	const bound = 3
	for _, tc := range []struct {
		setting string
		stream  func(cfg *jetstream.StreamConfig)
		cons    func(cfg *jetstream.ConsumerConfig)
		fixed   func(t *testing.T, stream jetstream.StreamConfig, cons jetstream.ConsumerConfig)
	}{
		{setting: "max_age", stream: func(cfg *jetstream.StreamConfig) { cfg.MaxAge = time.Hour },
			fixed: func(t *testing.T, stream jetstream.StreamConfig, _ jetstream.ConsumerConfig) {
				assert.Zero(t, stream.MaxAge)
			}},
		{setting: "max_msgs_per_subject", stream: func(cfg *jetstream.StreamConfig) { cfg.MaxMsgsPerSubject = 1 },
			fixed: func(t *testing.T, stream jetstream.StreamConfig, _ jetstream.ConsumerConfig) {
				assert.LessOrEqual(t, stream.MaxMsgsPerSubject, int64(0))
			}},
		{setting: "backoff", cons: func(cfg *jetstream.ConsumerConfig) {
			cfg.BackOff = []time.Duration{10 * time.Second, 50 * time.Millisecond}
		},
			fixed: func(t *testing.T, _ jetstream.StreamConfig, cons jetstream.ConsumerConfig) {
				assert.Empty(t, cons.BackOff)
				assert.Equal(t, 10*time.Second, cons.AckWait)
			}},
		{setting: "max_batch", cons: func(cfg *jetstream.ConsumerConfig) { cfg.MaxRequestBatch = 1 },
			fixed: func(t *testing.T, _ jetstream.StreamConfig, cons jetstream.ConsumerConfig) {
				assert.Zero(t, cons.MaxRequestBatch)
			}},
		{setting: "max_expires", cons: func(cfg *jetstream.ConsumerConfig) { cfg.MaxRequestExpires = 100 * time.Millisecond },
			fixed: func(t *testing.T, _ jetstream.StreamConfig, cons jetstream.ConsumerConfig) {
				assert.Zero(t, cons.MaxRequestExpires)
			}},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, cckmtest.Options{})
			cfg, assets := provisionedPermits(t, env, bound)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			// Spoil it, as an operator's policy or a hand edit might.
			if tc.stream != nil {
				stream, err := env.js.Stream(ctx, InFlightStream)
				require.NoError(t, err)
				spoilt := stream.CachedInfo().Config
				tc.stream(&spoilt)
				_, err = env.js.UpdateStream(ctx, spoilt)
				require.NoError(t, err)
			}
			if tc.cons != nil {
				cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
				require.NoError(t, err)
				spoilt := cons.CachedInfo().Config
				tc.cons(&spoilt)
				_, err = env.js.UpdateConsumer(ctx, InFlightStream, spoilt)
				require.NoError(t, err)
			}

			cfg.Provision = false
			_, err := assets.bindInFlight(ctx)
			requireSettingError(t, err, tc.setting)

			cfg.Provision = true
			_, err = assets.bindInFlight(ctx)
			require.NoError(t, err)
			stream, err := env.js.Stream(ctx, InFlightStream)
			require.NoError(t, err)
			cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
			require.NoError(t, err)
			tc.fixed(t, stream.CachedInfo().Config, cons.CachedInfo().Config)
		})
	}
}

// TestAPermitConsumerWithABackOffIsPutRightBeforeItBreaksTheBound: an
// existing permit consumer with a back-off whose later steps are shorter
// than the ack wait (which the server then takes from the first step).
// The instances bind with provisioning on, which takes the back-off out;
// once the permits have been given back and taken again, a held permit is
// not handed to a second instance while the first still holds it. (With
// the back-off left in place, it was: the test fails without the
// correction.)
func TestAPermitConsumerWithABackOffIsPutRightBeforeItBreaksTheBound(t *testing.T) {
	const bound = 2
	env := newTestEnv(t, cckmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, func() error {
		cfg := testConfig(ModeJetStream)
		cfg.MaxInFlight = bound
		cfg.setDefaults()
		_, err := (&provisioner{js: env.js, cfg: &cfg, log: zerolog.Nop()}).bindInFlight(ctx)
		return err
	}())
	cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
	require.NoError(t, err)
	spoilt := cons.CachedInfo().Config
	spoilt.BackOff = []time.Duration{3 * time.Second, 100 * time.Millisecond}
	_, err = env.js.UpdateConsumer(ctx, InFlightStream, spoilt)
	require.NoError(t, err)

	a := bindTestPermits(t, env, bound, 3*time.Second, true)
	b := bindTestPermits(t, env, bound, 3*time.Second, true)
	take := func() []permit {
		var held []permit
		for range bound {
			p, err := acquireWithin(a, 5*time.Second)
			require.NoError(t, err)
			held = append(held, p)
		}
		return held
	}
	for _, p := range take() { // delivered once, given back when idle
		a.release(p)
	}
	require.Eventually(t, func() bool { return a.held() == 0 }, 5*time.Second, 10*time.Millisecond)
	held := take() // delivered again
	_, err = acquireWithin(b, 1500*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a permit held by one instance was handed to another")
	for _, p := range held {
		a.release(p)
	}
}

// TestCallsWaitingForPermitsKeepFewRequestsAtTheServer: 50 calls of one
// instance waiting for the one permit another holds put a few pull
// requests on the consumer (maxPermitPulls), not one each (the
// server's max_waiting, 512 by default, would refuse the rest at about
// ten instances), and the first of them gets the permit once it is free.
func TestCallsWaitingForPermitsKeepFewRequestsAtTheServer(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	a := bindTestPermits(t, env, 1, 10*time.Second, true)
	b := bindTestPermits(t, env, 1, 10*time.Second, true)
	held, err := acquireWithin(a, 5*time.Second)
	require.NoError(t, err)

	const waiting = 50
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan struct{}, waiting)
	var wg sync.WaitGroup
	for range waiting {
		wg.Go(func() {
			if p, err := b.acquire(ctx); err == nil {
				got <- struct{}{}
				b.release(p)
			}
		})
	}
	cons, err := env.js.Consumer(ctx, InFlightStream, InFlightConsumer)
	require.NoError(t, err)
	most := 0
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		if err != nil {
			return false
		}
		most = max(most, info.NumWaiting)
		b.mu.Lock()
		all := len(b.waiters) == waiting
		b.mu.Unlock()
		return all && info.NumWaiting > 0
	}, 10*time.Second, 5*time.Millisecond, "the calls wait, and ask the server")
	for range 20 { // while they keep waiting
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		most = max(most, info.NumWaiting)
	}
	t.Logf("at most %d requests for permits at the server for %d calls waiting", most, waiting)
	assert.LessOrEqual(t, most, 8, "requests for permits at the server at once: a few, not one per call")

	a.release(held) // idle after this, a gives it back within permitIdle
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no waiting call got the permit freed")
	}
	cancel()
	wg.Wait()
}

// TestAnAttemptWaitingForAPermitWhenAHoldBeginsIsHeldToo: with the
// client's Gate chained as the binary chains it (a permit, then the
// guard), an attempt that was waiting for a permit when CipherTrust
// Manager answered 429 is not sent as soon as it gets one: it waits out
// the hold like every new attempt. (Chained the other way, it had passed
// the guard before the hold began and went at once.)
func TestAnAttemptWaitingForAPermitWhenAHoldBeginsIsHeldToo(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	permits := &Permits{p: bindTestPermits(t, env, 1, 10*time.Second, true)}
	gate := cckmclient.Chain(permits, NewGuard(GuardConfig{}, zerolog.Nop(), nil))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := gate.Wait(ctx) // holds the only permit
	require.NoError(t, err)

	sent := make(chan time.Time, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		done, err := gate.Wait(ctx) // waits for the permit
		if err == nil {
			sent <- time.Now()
			done(200, 0)
		}
	})
	require.Eventually(t, func() bool {
		permits.p.mu.Lock()
		defer permits.p.mu.Unlock()
		return len(permits.p.waiters) == 1
	}, 5*time.Second, time.Millisecond, "the second attempt waits for the permit")

	const retryAfter = time.Second
	answered := time.Now()
	first(429, retryAfter) // a hold begins, and the permit is free
	select {
	case at := <-sent:
		assert.GreaterOrEqual(t, at.Sub(answered), retryAfter-100*time.Millisecond,
			"sent only once the hold allows a probe")
	case <-ctx.Done():
		t.Fatal("the second attempt was never let through")
	}
}

// TestAPermitConsumerThatSkipsPermitsIsCaught: a permit consumer made
// with deliver_policy new (after the stream was filled) would hand out no
// permit, and every call would wait: refused naming deliver_policy with
// provisioning off, made again with it on, and then a permit is had.
func TestAPermitConsumerThatSkipsPermitsIsCaught(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg, assets := provisionedPermits(t, env, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, env.js.DeleteConsumer(ctx, InFlightStream, InFlightConsumer))
	skipping := cfg.inFlightConsumerConfig()
	skipping.DeliverPolicy = jetstream.DeliverNewPolicy
	_, err := env.js.CreateConsumer(ctx, InFlightStream, skipping)
	require.NoError(t, err)

	cfg.Provision = false
	_, err = assets.bindInFlight(ctx)
	var settingErr *SettingError
	require.ErrorAs(t, err, &settingErr)
	assert.Equal(t, "deliver_policy", settingErr.Setting)

	cfg.Provision = true
	cons, err := assets.bindInFlight(ctx)
	require.NoError(t, err)
	assert.Equal(t, jetstream.DeliverAllPolicy, cons.CachedInfo().Config.DeliverPolicy)
	p := newPermits(zerolog.Nop(), nil, time.Now)
	p.bind(cons, cfg.AckWait, nil)
	_, err = acquireWithin(p, 5*time.Second)
	require.NoError(t, err, "the permits stored before are handed out")
}

// TestAStreamHoldingMorePermitsThanItsLimitIsBroughtDown: max_msgs lowered
// by hand (or by an instance whose purge then failed) leaves a discard-new
// stream with the permits it had: refused under WORKER_PROVISION=false,
// purged down to the bound with it on.
func TestAStreamHoldingMorePermitsThanItsLimitIsBroughtDown(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	cfg, assets := provisionedPermits(t, env, 9)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.Equal(t, uint64(9), inFlightInfo(t, env).State.Msgs)
	lowered := inFlightInfo(t, env).Config
	lowered.MaxMsgs = 3
	_, err := env.js.UpdateStream(ctx, lowered)
	require.NoError(t, err)
	require.Equal(t, uint64(9), inFlightInfo(t, env).State.Msgs, "discard new keeps them")

	cfg.MaxInFlight = 3
	cfg.Provision = false
	_, err = assets.bindInFlight(ctx)
	var settingErr *SettingError
	require.ErrorAs(t, err, &settingErr)
	assert.Equal(t, "max_msgs", settingErr.Setting)
	assert.Contains(t, err.Error(), "9 permits")

	cfg.Provision = true
	_, err = assets.bindInFlight(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), inFlightInfo(t, env).State.Msgs)
}

// TestAPermitHeldAcrossAReconnectIsNotGivenBack: after the connection
// was lost, the server may have handed a permit to another instance; a Nak
// then would make it deliverable while that instance calls under it. It is
// dropped instead, and comes back after the ack wait.
func TestAPermitHeldAcrossAReconnectIsNotGivenBack(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	const ackWait = time.Second
	a := bindTestPermits(t, env, 1, ackWait, true)
	b := bindTestPermits(t, env, 1, ackWait, true)
	var links atomic.Uint64
	a.mu.Lock()
	a.links = links.Load
	a.mu.Unlock()

	held, err := acquireWithin(a, 5*time.Second)
	require.NoError(t, err)
	links.Add(1) // a reconnect while the call ran
	a.release(held)
	_, err = acquireWithin(b, ackWait/2)
	require.ErrorIs(t, err, context.DeadlineExceeded, "not given back at once")
	_, err = acquireWithin(b, 5*ackWait)
	require.NoError(t, err, "back after the ack wait")
	assert.Zero(t, a.held(), "the dropped permit is not counted as held")
}

// TestThePermitsGaugeShowsWhatIsHeldAndWhatWaits: cckm_cancel_cm_permits
// counts the permits an instance holds, in use or kept for its next
// call, and its calls waiting for one; a permit given back when idle
// leaves the count.
func TestThePermitsGaugeShowsWhatIsHeldAndWhatWaits(t *testing.T) {
	env := newTestEnv(t, cckmtest.Options{})
	reg := prometheus.NewRegistry()
	a := bindTestPermits(t, env, 1, 10*time.Second, true)
	a.mu.Lock()
	a.metrics = NewMetrics(reg)
	a.mu.Unlock()
	const gauge = "cckm_cancel_cm_permits"
	held, waiting := map[string]string{"state": "held"}, map[string]string{"state": "waiting"}

	first, err := acquireWithin(a, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1.0, requireSeries(t, reg, gauge, held))
	assert.Equal(t, 0.0, requireSeries(t, reg, gauge, waiting))

	second := make(chan permit, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if p, err := acquireWithin(a, 5*time.Second); err == nil {
			second <- p
		}
	})
	requireSeriesReaches(t, reg, gauge, waiting, 1)
	assert.Equal(t, 1.0, requireSeries(t, reg, gauge, held), "the permit in use, not one for the call waiting")

	a.release(first) // handed to the call waiting
	var p permit
	select {
	case p = <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("the call waiting never got the permit")
	}
	assert.Equal(t, 1.0, requireSeries(t, reg, gauge, held))
	assert.Equal(t, 0.0, requireSeries(t, reg, gauge, waiting))

	a.release(p)
	requireSeriesReaches(t, reg, gauge, held, 0) // given back once idle
}
