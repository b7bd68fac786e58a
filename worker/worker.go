package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// heldPerSlot bounds the requests held per slot, from pull to settle:
// waiting for a slot (kept alive, so that one is ready when a slot frees),
// being called about, or publishing their result (a slot is given back
// when the call is over, so that the next call starts meanwhile).
const heldPerSlot = 2

// Worker consumes cancel requests and publishes their results. Make one
// with New and call Run.
type Worker struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	canceler Canceler
	log      zerolog.Logger
	metrics  *Metrics
	now      func() time.Time
	trace    tracing // spans of requests, publishes and follows

	out      *outputs        // where results, dead letters, follow tasks and settled events go
	assets   *provisioner    // the streams and consumers
	follow   *follower       // following canceled jobs to their end
	slots    chan struct{}   // one per call in flight
	holds    chan struct{}   // one per request held, until it is settled
	inFlight sync.WaitGroup  // handlers running
	pool     *goPool         // the goroutines handlers run on
	keep     *keeper         // InProgress for every message held
	permits  *permits        // jetstream mode: CCKM_MAX_IN_FLIGHT across the instances
	links    atomic.Uint64   // the times the NATS connection was lost, for the permits
	memory   *deliveryMemory // what earlier deliveries learned

	drainOver   chan struct{} // closed when the shutdown deadline has passed
	bound       atomic.Bool   // the consumer (or the subscriptions) is bound
	followReady atomic.Bool   // the follow consumer is bound
	counts      counters      // for the status endpoint and micro stats
}

// New returns a Worker that reads from nc and cancels through canceler.
// metrics may be nil.
func New(cfg Config, nc *nats.Conn, canceler Canceler, log zerolog.Logger, metrics *Metrics) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	w := &Worker{
		cfg:       cfg,
		nc:        nc,
		js:        js,
		canceler:  canceler,
		log:       log,
		metrics:   metrics,
		now:       time.Now,
		trace:     newTracing(cfg.TracerProvider),
		slots:     make(chan struct{}, cfg.Concurrency),
		holds:     make(chan struct{}, heldPerSlot*cfg.Concurrency),
		pool:      newGoPool(cfg.Concurrency),
		keep:      newKeeper(),
		memory:    newDeliveryMemory(cfg.redeliveryHorizon(cfg.AckWait)),
		drainOver: make(chan struct{}),
	}
	switch {
	case cfg.Mode != ModeJetStream && cfg.Permits != nil:
		cfg.Permits.p.turnOff()
	case cfg.Permits != nil:
		w.permits = cfg.Permits.p // the Canceler waits for them per attempt
	case cfg.Mode == ModeJetStream:
		w.permits = newPermits(log, metrics, w.now)
		w.canceler = permitted{Canceler: canceler, permits: w.permits}
	}
	w.out = newOutputs(&w.cfg, nc, js, log, metrics, &w.counts)
	w.out.trace = w.trace
	w.assets = &provisioner{js: js, cfg: &w.cfg, log: log, out: w.out}
	w.follow = &follower{cfg: &w.cfg, canceler: w.canceler, out: w.out, assets: w.assets, log: log, now: w.now, trace: w.trace}
	return w, nil
}

// Ready returns nil when the worker can take requests: NATS is connected
// and the consumer (or, in core mode, the subscriptions) is bound.
func (w *Worker) Ready() error {
	if !w.nc.IsConnected() {
		return errors.New("not connected to NATS")
	}
	if !w.bound.Load() {
		return errors.New("consumer not bound")
	}
	return nil
}

// Run consumes requests until ctx is done, then drains: it takes no new
// request, lets the work in flight finish within ShutdownTimeout, and
// returns. It returns an error only when it cannot start at all: a
// *SettingError for a stream or consumer whose settings break a promise
// under WORKER_PROVISION=false.
func (w *Worker) Run(ctx context.Context) error {
	// Work in flight runs under its own context, which a stop does not
	// cancel: results and acks must still go out while draining. Only a
	// shutdown that overruns ShutdownTimeout cancels it.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	// runCtx is ctx, or ends earlier when following cannot start.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()

	// drainOver closes ShutdownTimeout after the stop: one deadline for
	// the whole drain.
	runDone := make(chan struct{})
	defer close(runDone)
	go func() {
		select {
		case <-runCtx.Done():
		case <-runDone:
			return
		}
		timer := time.NewTimer(w.cfg.ShutdownTimeout)
		defer timer.Stop()
		select {
		case <-timer.C:
			close(w.drainOver)
		case <-runDone:
		}
	}()

	svc, err := w.registerService()
	if err != nil {
		w.log.Warn().Err(err).Msg("cannot register the NATS micro service; nats micro will not list this instance")
	} else {
		defer func() { _ = svc.Stop() }()
	}

	// The keeper runs until the work in flight is over.
	keeperCtx, stopKeeper := context.WithCancel(workCtx)
	keeperDone := make(chan struct{})
	go func() {
		defer close(keeperDone)
		w.keep.run(keeperCtx)
	}()
	defer func() {
		stopKeeper()
		<-keeperDone
	}()
	if w.permits != nil {
		// Counted from the connection's own events, not from its Stats,
		// which lock the connection on every call.
		lost := w.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
		counted := make(chan struct{})
		go func() {
			defer close(counted)
			for range lost {
				w.links.Add(1)
			}
		}()
		defer func() {
			w.nc.RemoveStatusListener(lost)
			<-counted
		}()
		permitsDone := make(chan struct{})
		go func() {
			defer close(permitsDone)
			w.permits.run(keeperCtx)
		}()
		defer func() {
			stopKeeper()
			<-permitsDone
		}()
	}

	// Follows are polled in jetstream mode, and in core mode when the NATS
	// server has JetStream. A follow consumer that cannot be used as it is
	// (a *SettingError) stops the requests too, as the request consumer's
	// would.
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followDone := make(chan struct{})
	var followErr error
	go func() {
		defer close(followDone)
		if w.cfg.Mode == ModeJetStream || w.jetStreamEnabled(followCtx) {
			if followErr = w.runFollow(followCtx, workCtx); followErr != nil {
				stopRun()
			}
		}
	}()

	switch w.cfg.Mode {
	case ModeCore:
		err = w.runCore(runCtx, workCtx)
	default:
		err = w.runJetStream(runCtx, workCtx)
	}
	w.bound.Store(false)
	stopFollow()
	<-followDone
	if err == nil {
		err = followErr
	}

	done := make(chan struct{})
	go func() {
		w.inFlight.Wait()
		close(done)
	}()
	defer w.pool.close()
	select {
	case <-done:
	case <-w.drainOver:
		w.log.Warn().Dur("shutdown_timeout", w.cfg.ShutdownTimeout).
			Msg("work in flight did not finish in time; abandoning it (jetstream mode redelivers it)")
		cancelWork()
		<-done
	}
	if w.permits != nil {
		w.permits.close() // no call is left to use them
	}
	return err
}

// jetStreamEnabled reports whether the NATS server offers JetStream.
func (w *Worker) jetStreamEnabled(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := w.js.AccountInfo(ctx)
	return err == nil
}

// spawn runs fn on a goroutine of the pool, which Run waits for, holding a
// slot of slots that the caller acquired. fn calls release once the call to
// CipherTrust Manager is over, so that the next request's call starts while
// this one's result is being published; the slot is released when fn
// returns at the latest.
func (w *Worker) spawn(slots chan struct{}, fn func(release func())) {
	w.inFlight.Add(1)
	w.metrics.addInFlight(1)
	w.counts.inFlight.Add(1)
	w.pool.run(func() {
		released := false
		release := func() {
			if !released {
				released = true
				<-slots
			}
		}
		defer func() {
			w.counts.inFlight.Add(-1)
			w.metrics.addInFlight(-1)
			release()
			w.inFlight.Done()
		}()
		fn(release)
	})
}

// logOutcome writes one line per finished request.
func (w *Worker) logOutcome(out outcome, deliveries int) {
	r := out.result
	event := w.log.Info()
	if r.Status != messages.StatusCanceled {
		event = w.log.Warn()
	}
	event = event.Str("request_id", r.RequestID).Str("kind", string(r.Kind)).Str("id", r.ID).
		Str("status", string(r.Status)).Int("http_status", r.HTTPStatus).Int("attempts", r.Attempts)
	if deliveries > 0 {
		event = event.Int("deliveries", deliveries)
	}
	if r.Error != nil {
		event = event.Str("code", string(r.Error.Code)).Str("error", r.Error.Message)
	}
	event.Msg("request done")
}
