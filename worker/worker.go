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

// publishTimeout bounds one JetStream publish of a result or dead letter.
const publishTimeout = 10 * time.Second

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

	slots    chan struct{}   // one per call in flight
	inFlight sync.WaitGroup  // handlers running
	pool     *goPool         // the goroutines handlers run on
	progress *progressKeeper // InProgress for slow requests
	attempts attemptCounts   // HTTP attempts of requests being redelivered

	bound         atomic.Bool // the consumer (or the subscriptions) is bound
	resultsStored atomic.Bool // a stream holds the result subjects
	deadStored    atomic.Bool // a stream holds the dead-letter subjects
	followStored  atomic.Bool // a stream holds the follow tasks
	settledStored atomic.Bool // a stream holds the settled events
	followReady   atomic.Bool // the follow consumer is bound
	counts        counters    // for the status endpoint and micro stats
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
	return &Worker{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		canceler: canceler,
		log:      log,
		metrics:  metrics,
		now:      time.Now,
		slots:    make(chan struct{}, cfg.Concurrency),
		pool:     newGoPool(cfg.Concurrency),
		progress: newProgressKeeper(),
		attempts: attemptCounts{counts: map[uint64]priorDeliveries{}},
	}, nil
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
// returns. It returns an error only when it cannot start at all.
func (w *Worker) Run(ctx context.Context) error {
	// Work in flight runs under its own context, which a stop does not
	// cancel: results and acks must still go out while draining. Only a
	// shutdown that overruns ShutdownTimeout cancels it.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	svc, err := w.registerService()
	if err != nil {
		w.log.Warn().Err(err).Msg("cannot register the NATS micro service; nats micro will not list this instance")
	} else {
		defer func() { _ = svc.Stop() }()
	}

	// Follows are polled in jetstream mode, and in core mode when the NATS
	// server has JetStream.
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		if w.cfg.Mode == ModeJetStream || w.jetStreamEnabled(ctx) {
			w.runFollow(ctx, workCtx)
		}
	}()

	// The progress keeper runs until the work in flight is over.
	keeperCtx, stopKeeper := context.WithCancel(workCtx)
	keeperDone := make(chan struct{})
	go func() {
		defer close(keeperDone)
		w.progress.run(keeperCtx)
	}()
	defer func() {
		stopKeeper()
		<-keeperDone
	}()

	switch w.cfg.Mode {
	case ModeCore:
		err = w.runCore(ctx, workCtx)
	default:
		err = w.runJetStream(ctx, workCtx)
	}
	w.bound.Store(false)
	<-followDone

	done := make(chan struct{})
	go func() {
		w.inFlight.Wait()
		close(done)
	}()
	defer w.pool.close()
	select {
	case <-done:
	case <-time.After(w.cfg.ShutdownTimeout):
		w.log.Warn().Dur("shutdown_timeout", w.cfg.ShutdownTimeout).
			Msg("work in flight did not finish in time; abandoning it (jetstream mode redelivers it)")
		cancelWork()
		<-done
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

// acquire takes a slot of slots, or reports false when ctx ends first.
func acquire(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
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

// attemptCounts remembers, by stream sequence, what earlier deliveries of
// requests waiting for redelivery learned: their HTTP attempts and the last
// HTTP status received. So attempts and http_status span the deliveries
// this instance handled.
type attemptCounts struct {
	mu     sync.Mutex
	counts map[uint64]priorDeliveries
}

// priorDeliveries is what earlier deliveries of one request learned.
type priorDeliveries struct {
	attempts   int
	httpStatus int
}

func (a *attemptCounts) load(seq uint64) priorDeliveries {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[seq]
}

func (a *attemptCounts) store(seq uint64, out outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts[seq] = priorDeliveries{attempts: out.attempts, httpStatus: out.httpStatus}
}

func (a *attemptCounts) forget(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.counts, seq)
}
