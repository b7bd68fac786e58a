package worker

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Pulling. The worker asks the server for exactly as many messages as it
// has free slots (Fetch), so a message it receives starts at once: none
// waits in the client for a slot, unseen by the keeper, while its ack wait
// runs out (with Consume, whose buffer the worker cannot see, a call
// slower than the ack wait got queued requests redelivered while they
// still waited). Each pull is bounded in bytes too, so memory follows the
// number of slots, not the size of what producers send.
const (
	// pullExpiry is how long one pull waits at the server for messages. At
	// a stop the worker waits for the pull it has out, so this bounds that
	// wait; idle, it costs one pull request per pullExpiry.
	pullExpiry = 2 * time.Second
	// pullBytesPerMsg is what one request may take in a pull: the largest
	// payload the request stream takes and room for headers.
	pullBytesPerMsg = messages.MaxRequestSize + 8<<10
	// maxPullBytes bounds one pull.
	maxPullBytes = 8 << 20
	// pullErrorWait is the pause after a pull that failed.
	pullErrorWait = 100 * time.Millisecond
)

// Back-off while the stream or consumer cannot be bound.
const (
	minBindRetry = 250 * time.Millisecond
	maxBindRetry = 10 * time.Second
)

// runJetStream binds the consumer and the permits (retrying until it can)
// and consumes until ctx ends. A consumer that disappears is bound again. A stream or
// consumer whose settings break a promise, under WORKER_PROVISION=false,
// ends it with a *SettingError.
func (w *Worker) runJetStream(ctx, workCtx context.Context) error {
	wait := minBindRetry
	for ctx.Err() == nil {
		cons, err := w.assets.bindConsumer(ctx)
		what := "the JetStream consumer"
		if err == nil {
			err = w.bindPermits(ctx, w.assets.bindInFlight)
			what = "the CCKM_MAX_IN_FLIGHT permits"
		}
		var settingErr *SettingError
		if errors.As(err, &settingErr) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.log.Error().Err(err).Dur("retry_in", wait).Msg("cannot bind " + what)
			sleepCtx(ctx, wait)
			wait = min(2*wait, maxBindRetry)
			continue
		}
		wait = minBindRetry
		ackWait := w.cfg.AckWait
		if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
			ackWait = info.Config.AckWait
		}
		w.log.Info().Str("stream", RequestStream).Str("consumer", ConsumerName).
			Int("concurrency", w.cfg.Concurrency).Dur("ack_wait", ackWait).Msg("consuming requests")
		rebindCtx, stopRebind := context.WithCancel(ctx)
		rebound := make(chan struct{})
		go func() {
			defer close(rebound)
			w.rebindLostPermits(rebindCtx)
		}()
		err = w.pull(ctx, cons, budget{slots: w.slots, holds: w.holds}, ackWait, &w.bound, func(msg jetstream.Msg, release func()) settlement {
			return w.handleRequest(workCtx, msg, release)
		})
		stopRebind()
		<-rebound
		if err != nil && ctx.Err() == nil {
			w.log.Error().Err(err).Msg("consuming stopped; binding again")
			sleepCtx(ctx, wait)
		}
	}
	return nil
}

// bindPermits finds (or makes) the permits of CCKM_MAX_IN_FLIGHT with
// bind and hands them out from now on.
func (w *Worker) bindPermits(ctx context.Context, bind func(context.Context) (jetstream.Consumer, error)) error {
	cons, err := bind(ctx)
	if err != nil {
		return err
	}
	ackWait := w.cfg.AckWait
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait
	}
	w.permits.bind(cons, ackWait, w.links.Load)
	return nil
}

// rebindLostPermits binds the permits again whenever a request for them
// failed or brought none: their consumer or stream may be gone, or the
// permits purged (by hand, or the server lost them). It makes what is
// missing and fills the stream, until ctx ends; it corrects no setting, so
// that instances started with other bounds do not undo each other's (the
// last to start sets it). Calls wait meanwhile.
func (w *Worker) rebindLostPermits(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.permits.lost:
		}
		for wait := minBindRetry; ctx.Err() == nil; wait = min(2*wait, maxBindRetry) {
			err := w.bindPermits(ctx, w.assets.restoreInFlight) // logs what it makes
			if err == nil {
				break
			}
			w.log.Error().Err(err).Dur("retry_in", wait).Msg("cannot bind the CCKM_MAX_IN_FLIGHT permits")
			sleepCtx(ctx, wait)
		}
	}
}

// budget bounds what a consumer takes: slots the calls in flight (a
// handler gives its slot back once CipherTrust Manager's part is over), and
// holds the messages held, from their arrival until they are settled. There
// are more holds than slots, so that a request is ready, kept alive, when
// a slot frees; and results NATS is slow to take cannot make the worker
// pull more and more.
type budget struct {
	slots, holds chan struct{}
}

// pull hands messages of cons to handle, each holding a slot of b while
// CipherTrust Manager's part runs and a hold until it is settled, until
// ctx ends, and settles each as handle decides. It asks for as many
// messages as it has free holds, so every message it receives is its own
// to keep alive from the moment it arrives: a message waiting for a slot
// waits in the worker's queue, seen by the keeper, never in the client's
// buffer. At a stop it takes no new work: the pull already out is waited
// for (at most pullExpiry), and what is still queued is handed back at
// once.
//
// ready is true from the first pull request until pulling stops.
func (w *Worker) pull(ctx context.Context, cons jetstream.Consumer, b budget, ackWait time.Duration,
	ready *atomic.Bool, handle func(jetstream.Msg, func()) settlement) error {
	defer ready.Store(false)
	queue := make(chan jetstream.Msg, cap(b.holds)) // never full: each message has a hold
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for msg := range queue {
			w.dispatch(ctx, b, msg, handle)
		}
	}()
	defer func() {
		close(queue)
		<-dispatched
	}()
	for ctx.Err() == nil {
		n := b.reserve(ctx)
		if n == 0 {
			break
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(pullExpiry),
			jetstream.FetchMaxBytes(min(n*pullBytesPerMsg, max(maxPullBytes, w.maxMessageBytes()))))
		if err != nil {
			b.unreserve(n)
			if consumerGone(err) {
				return err
			}
			w.log.Debug().Err(err).Msg("pull request failed; pulling again")
			sleepCtx(ctx, pullErrorWait)
			continue
		}
		ready.Store(true)
		received := 0
		for msg := range batch.Messages() {
			received++
			w.keep.hold(msg, ackWait, w.now())
			queue <- msg
		}
		b.unreserve(n - received)
		if err := batch.Error(); err != nil {
			if consumerGone(err) {
				return err
			}
			if !errors.Is(err, context.Canceled) {
				w.log.Debug().Err(err).Msg("pull ended with an error; pulling again")
				sleepCtx(ctx, pullErrorWait)
			}
		}
	}
	return nil
}

// dispatch starts a queued message as soon as a slot is free, or, once
// ctx has ended, hands it back so that another instance takes it now.
func (w *Worker) dispatch(ctx context.Context, b budget, msg jetstream.Msg, handle func(jetstream.Msg, func()) settlement) {
	if ctx.Err() == nil {
		select {
		case b.slots <- struct{}{}:
			if ctx.Err() == nil {
				w.spawn(b.slots, func(release func()) {
					s := handle(msg, release)
					if err := settle(msg, s); err != nil {
						w.log.Warn().Err(err).Str("subject", msg.Subject()).Msg("cannot settle the message; the server delivers it again")
					}
					w.keep.release(msg)
					<-b.holds
				})
				return
			}
			<-b.slots
		case <-ctx.Done():
		}
	}
	_ = settle(msg, retryIn(0))
	w.keep.release(msg)
	<-b.holds
}

// maxMessageBytes is the largest message the server takes, so that a
// pull is never too small for one message of a stream made without the
// worker's max_msg_size.
func (w *Worker) maxMessageBytes() int {
	return int(w.nc.MaxPayload()) + 8<<10
}

func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

// reserve takes every free hold, waiting for at least a quarter of them
// (one, for a tiny budget); it returns 0 when ctx ends first. Waiting for a
// quarter costs no call: the three quarters still held keep every slot
// busy or have nothing to wait for, and a pull for a handful of messages
// costs the server and the client nearly as much as a pull for many.
func (b budget) reserve(ctx context.Context) int {
	least := max(1, cap(b.holds)/4)
	n := 0
	for n < least {
		if ctx.Err() != nil {
			b.unreserve(n)
			return 0
		}
		select {
		case b.holds <- struct{}{}:
			n++
		case <-ctx.Done():
			b.unreserve(n)
			return 0
		}
	}
	for n < cap(b.holds) {
		select {
		case b.holds <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// unreserve gives back n holds.
func (b budget) unreserve(n int) {
	for range n {
		<-b.holds
	}
}

// handleRequest processes one delivery of a request and decides how it
// ends: transient failures with deliveries left are retried, the result
// (and follow task, and dead letter) published, then the request acked or
// terminated. release is called once CipherTrust Manager's part is over.
func (w *Worker) handleRequest(ctx context.Context, msg jetstream.Msg, release func()) settlement {
	received := w.now()
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error().Err(err).Str("subject", msg.Subject()).Msg("message without JetStream metadata; terminating it")
		return terminate("no JetStream metadata")
	}
	kind, ok := messages.KindOfSubject(msg.Subject())
	if !ok {
		w.log.Error().Str("subject", msg.Subject()).Msg("message on a subject that is not a request subject; terminating it")
		return terminate("not a cckm.cancel request subject")
	}
	deliveries := int(meta.NumDelivered)
	key := keyOf(meta)
	if deliveries > 1 {
		w.metrics.redelivery(kind)
		w.counts.redelivered.Add(1)
	}
	prior := w.memory.load(key)
	d := delivery{
		kind:     kind,
		payload:  msg.Data(),
		header:   messages.Header(msg.Headers()),
		received: received,
		prior:    prior,
		// NumDelivered also counts deliveries no worker saw (a pull lost in a
		// leader election), so a delivery past the last is still carried
		// out, as a last one: a transient failure then ends it.
		final:            deliveries >= w.cfg.MaxDeliveries,
		redelivered:      deliveries > 1,
		defaultRequestID: messages.DerivedRequestID(meta.Stream, meta.Sequence.Stream, meta.Timestamp),
	}

	ctx, span := w.trace.startConsumer(ctx, msg.Subject(), d.header, kind, deliveries)
	var out outcome
	defer func() { endRequest(span, &out) }()
	if prior.finished != nil {
		// An earlier delivery finished but could not publish: publish what
		// it found, without calling CipherTrust Manager again.
		out = *prior.finished
	} else {
		out = process(ctx, w.canceler, d, w.now)
	}
	release() // the call is over: let the next one start
	if tp := traceparentOf(span); tp != "" {
		out.request.Traceparent = tp // the result names the request's span
	}

	if out.verdict == verdictRetry {
		w.memory.store(key, priorDeliveries{attempts: out.attempts, httpStatus: out.httpStatus}, w.now())
		delay := w.cfg.redeliveryDelay(deliveries, out.retryAfter)
		if ctx.Err() != nil {
			delay = 0 // abandoned at shutdown: let another instance take it now
		}
		w.log.Info().Str("request_id", out.request.RequestID).Str("kind", string(kind)).
			Int("delivery", deliveries).Int("attempts", out.attempts).Dur("redeliver_in", delay).
			Msg("transient failure; the request will be delivered again")
		return retryIn(delay)
	}

	s, err := w.publishOutcome(ctx, &out, d, deliveryInfo{
		deliveries: deliveries, sequence: meta.Sequence.Stream, subject: msg.Subject(),
		firstDelivery: deliveries == 1 && prior.finished == nil,
	})
	if err != nil && !isPermanent(err) && deliveries >= w.cfg.MaxDeliveries {
		// The stream has not taken the result for WORKER_MAX_DELIVERIES
		// deliveries (full, out of storage): the most that can be done is to
		// send it on core NATS, and end the request rather than loop.
		msg := eventMessage(out.result.Kind.ResultSubject(), out.result, messages.ResultMsgID(out.result.RequestID), out.request.Traceparent)
		if coreErr := w.nc.PublishMsg(msg); coreErr == nil {
			w.out.sendReplies(msg, out.result.RequestID, out.request.ReplyTo)
			w.log.Error().Err(err).Str("request_id", out.request.RequestID).Int("deliveries", deliveries).
				Msg("the results stream did not store the result on any delivery; sent it on core NATS only and ended the request")
			w.memory.forget(key)
			return terminate("the result could not be stored")
		}
	}
	if err != nil && !isPermanent(err) {
		// NATS did not take the result in time: keep the outcome, so that the
		// next delivery here publishes it without calling again.
		w.log.Error().Err(err).Str("request_id", out.request.RequestID).Msg("cannot publish the result; the request will be delivered again")
		finished := out
		w.memory.store(key, priorDeliveries{attempts: out.attempts, httpStatus: out.httpStatus, finished: &finished}, w.now())
		return retryIn(w.cfg.RetryDelay)
	}
	w.memory.forget(key)
	return s
}

// deliveryInfo is where a delivery came from.
type deliveryInfo struct {
	deliveries    int
	sequence      uint64
	subject       string
	firstDelivery bool
}

// publishOutcome publishes what a finished delivery produced: the result,
// the follow task where one is wanted, and the dead letter after a last
// delivery that failed. It returns how the delivery ends, or the transient
// error that kept the result from being published. A result that can never
// be published ends the request all the same, with a log line: trying
// again could only call CipherTrust Manager again.
func (w *Worker) publishOutcome(ctx context.Context, out *outcome, d delivery, info deliveryInfo) (settlement, error) {
	distinct := strconv.FormatUint(info.sequence, 10)
	msgID, err := w.out.publishResult(ctx, &out.result, out.request, info.firstDelivery, distinct)
	if err != nil && !isPermanent(err) {
		return settlement{}, err
	}
	if err != nil {
		w.log.Error().Err(err).Str("request_id", out.result.RequestID).Msg("the result can never be published; ending the request without one")
		return terminate("the result cannot be published"), err
	}
	if w.follow.wantsFollow(*out) {
		w.follow.startFollow(ctx, *out, msgID)
	}
	if out.deadLetter {
		dead := deadLetterInfo{deliveries: info.deliveries, attempts: out.attempts, sequence: info.sequence, subject: info.subject}
		if err := w.out.publishDeadLetter(ctx, d, out.result, dead); err != nil {
			// The result is stored; the copy is a convenience for replaying.
			w.log.Error().Err(err).Str("request_id", out.result.RequestID).Msg("cannot publish the dead letter")
		}
	}
	w.logOutcome(*out, info.deliveries)
	switch {
	case out.verdict == verdictRejected:
		return terminate(out.result.Error.Message), nil
	case out.deadLetter:
		return terminate("dead-lettered: " + string(out.result.Error.Code)), nil
	}
	return ack(), nil
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
