package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Under load on 2 vCPUs (make bench), consuming now and then pauses with
// requests waiting in the stream, no pull request at the server
// (NumWaiting 0) and nothing unacknowledged: the client believes it has
// asked for enough and does not ask again until two heartbeats are missed.
// The likely cause is in Consume's refill: it skips asking while its
// previous pull request is still being sent (fetchInProgress), and when
// every outstanding message is handled within that window no message is
// left to ask again. nats.go issue #1622 reports the same state. With the
// client's defaults (30 s expiry, 15 s heartbeat) a pause lasted 30 s; a
// 5 s expiry and the shortest heartbeat the client accepts (500 ms) bound
// it to about 1 s (about one 20,000-request run in ten at 0 ms CM latency
// shows one). The cost while idle: two heartbeats a second and a pull
// request every 5 s.
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = 500 * time.Millisecond
)

// Back-off while the stream or consumer cannot be bound.
const (
	minBindRetry = 250 * time.Millisecond
	maxBindRetry = 10 * time.Second
)

// runJetStream binds the consumer (retrying until it can) and consumes
// until ctx ends. A consumer that disappears is bound again.
func (w *Worker) runJetStream(ctx, workCtx context.Context) error {
	wait := minBindRetry
	for ctx.Err() == nil {
		cons, err := w.bindConsumer(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.log.Error().Err(err).Dur("retry_in", wait).Msg("cannot bind the JetStream consumer")
			sleepCtx(ctx, wait)
			wait = min(2*wait, maxBindRetry)
			continue
		}
		wait = minBindRetry
		ackWait := w.cfg.AckWait
		if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
			ackWait = info.Config.AckWait
		}
		w.progress.setAckWait(ackWait)
		w.log.Info().Str("stream", RequestStream).Str("consumer", ConsumerName).
			Int("concurrency", w.cfg.Concurrency).Dur("ack_wait", ackWait).Msg("consuming requests")
		err = w.consume(ctx, cons, w.slots, &w.bound, func(msg jetstream.Msg, release func()) {
			w.handleJetStream(workCtx, msg, release)
		})
		if err != nil && ctx.Err() == nil {
			w.log.Error().Err(err).Msg("consuming stopped; binding again")
			sleepCtx(ctx, wait)
		}
	}
	return nil
}

// consume hands requests to handle, each holding a slot of slots, until
// ctx ends; then it drains: requests already pulled but not started are
// handed back with a Nak, so another instance takes them at once.
//
// It uses Consume, whose messages wait in an ordinary subscription while
// every slot is busy. (The Messages iterator keeps them in a channel the
// size of its batch; when that channel was full, a message could be
// dropped client-side, and the iterator then waited for its pull request
// to expire: 30 s stalls under load in make bench.)
//
// ready is true from the moment consuming has started until it stops (a
// Consume that fails at once never makes the worker look ready).
func (w *Worker) consume(ctx context.Context, cons jetstream.Consumer, slots chan struct{}, ready *atomic.Bool, handle func(jetstream.Msg, func())) error {
	fatal := make(chan error, 1)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if !acquire(ctx, slots) {
			_ = msg.Nak() // stopping: hand it back
			return
		}
		w.spawn(slots, func(release func()) { handle(msg, release) })
	},
		jetstream.PullMaxMessages(cap(slots)),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case fatal <- err:
				default:
				}
				return
			}
			w.log.Debug().Err(err).Msg("consuming: the client recovers by itself")
		}))
	if err != nil {
		return err
	}
	ready.Store(true)
	defer ready.Store(false)
	select {
	case <-ctx.Done():
		cc.Drain()
		<-cc.Closed()
		return nil
	case err := <-fatal:
		cc.Stop()
		<-cc.Closed()
		return err
	}
}

// handleJetStream processes one request and maps the outcome to broker
// actions: Ack after the result is stored, NakWithDelay for a transient
// failure with deliveries left, Term for a rejected request, and a dead
// letter plus Term when the last delivery failed.
func (w *Worker) handleJetStream(ctx context.Context, msg jetstream.Msg, release func()) {
	received := w.now()
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata; terminating it")
		_ = msg.Term()
		return
	}
	kind, ok := messages.KindOfSubject(msg.Subject())
	if !ok {
		w.log.Error().Str("subject", msg.Subject()).Msg("message on a subject that is not a request subject; terminating it")
		_ = msg.TermWithReason("not a cckm.cancel request subject")
		return
	}
	deliveries := int(meta.NumDelivered)
	seq := meta.Sequence.Stream
	if deliveries > 1 {
		w.metrics.redelivery(kind)
		w.counts.redelivered.Add(1)
	}
	d := delivery{
		kind:        kind,
		payload:     msg.Data(),
		header:      messages.Header(msg.Headers()),
		received:    received,
		prior:       w.attempts.load(seq),
		final:       deliveries >= w.cfg.MaxDeliveries,
		redelivered: deliveries > 1,
	}

	// Kept alive until acknowledged: publishing may take a while too.
	w.progress.track(msg, received)
	defer w.progress.untrack(msg)
	out := process(ctx, w.canceler, d, w.now)
	release() // the call is over: let the next one start

	if out.verdict == verdictRetry {
		w.attempts.store(seq, out)
		delay := w.cfg.redeliveryDelay(deliveries, out.retryAfter)
		if ctx.Err() != nil {
			delay = 0 // abandoned at shutdown: let another instance take it now
		}
		w.log.Info().Str("request_id", out.request.RequestID).Str("kind", string(kind)).
			Int("delivery", deliveries).Int("attempts", out.attempts).Dur("redeliver_in", delay).
			Msg("transient failure; the request will be delivered again")
		_ = msg.NakWithDelay(delay)
		return
	}

	if err := w.publishResult(ctx, out.result, out.request, ""); err != nil {
		w.log.Error().Err(err).Msg("cannot publish the result; the request will be delivered again")
		w.attempts.store(seq, out)
		_ = msg.NakWithDelay(w.cfg.RetryDelay)
		return
	}
	if w.wantsFollow(out) {
		if err := w.publishFollowTask(ctx, out); err != nil && !noStream(err) {
			w.log.Error().Err(err).Msg("cannot store the follow task; the request will be delivered again")
			w.attempts.store(seq, out)
			_ = msg.NakWithDelay(w.cfg.RetryDelay)
			return
		} else if err != nil {
			// No stream for follow tasks (WORKER_PROVISION=false and it was
			// not created): waiting cannot help, and redelivering would call
			// CipherTrust Manager again and again. Say so and move on.
			w.cannotFollow(ctx, out, err)
		}
	}
	if out.deadLetter {
		info := deadLetterInfo{deliveries: deliveries, sequence: seq, subject: msg.Subject()}
		if err := w.publishDeadLetter(ctx, d, out, info); err != nil {
			w.log.Error().Err(err).Msg("cannot publish the dead letter; the request will be delivered again")
			w.attempts.store(seq, out)
			_ = msg.NakWithDelay(w.cfg.RetryDelay)
			return
		}
	}
	w.attempts.forget(seq)
	w.logOutcome(out, deliveries)
	switch {
	case out.verdict == verdictRejected:
		_ = msg.TermWithReason(out.result.Error.Message)
	case out.deadLetter:
		_ = msg.TermWithReason("dead-lettered: " + string(out.result.Error.Code))
	default:
		_ = msg.Ack()
	}
}

// keepAlive tells the server, every third of the ack wait, that msg is
// still being worked on, so that a slow call is not redelivered to another
// instance meanwhile. It costs a timer, not a goroutine, per message. The
// returned function stops it.
func keepAlive(msg jetstream.Msg, ackWait time.Duration) (stop func()) {
	interval := ackWait / 3
	if interval <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	var timer *time.Timer
	mu.Lock() // the callback reads timer
	defer mu.Unlock()
	timer = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		timer.Reset(interval)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}
