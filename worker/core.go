package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Pending limits of a core-mode subscription: requests waiting for a slot
// are held here, and past this NATS drops them (core mode is at most once).
const (
	corePendingMsgs  = 100_000
	corePendingBytes = 256 << 20
)

// runCore subscribes to both request subjects in the queue group and
// handles requests until ctx ends; then it drains the subscriptions, so
// that requests already received are still handled.
func (w *Worker) runCore(ctx, workCtx context.Context) error {
	w.setUpCoreOutputs(ctx)
	var subs []*nats.Subscription
	for _, kind := range messages.Kinds {
		sub, err := w.nc.QueueSubscribe(kind.RequestSubject(), QueueGroup, func(msg *nats.Msg) {
			w.receiveCore(workCtx, kind, msg)
		})
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return fmt.Errorf("subscribe to %s: %w", kind.RequestSubject(), err)
		}
		_ = sub.SetPendingLimits(corePendingMsgs, corePendingBytes)
		subs = append(subs, sub)
	}
	// Ready means the server has the subscriptions: a request sent now finds
	// a responder.
	if err := w.nc.FlushTimeout(5 * time.Second); err != nil {
		w.log.Warn().Err(err).Msg("cannot confirm the subscriptions with the NATS server yet")
	}
	w.bound.Store(true)
	w.log.Info().Str("queue_group", QueueGroup).Int("concurrency", w.cfg.Concurrency).Msg("consuming requests in core mode")
	<-ctx.Done()
	w.bound.Store(false)

	// Drain: stop interest, then handle what was already received. Each
	// callback takes a slot before it returns, so once the subscriptions
	// are closed every request received is counted in inFlight.
	for _, sub := range subs {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			continue
		}
		select {
		case <-closed:
		case <-time.After(w.cfg.ShutdownTimeout):
			w.log.Warn().Str("subject", sub.Subject).Msg("draining the subscription timed out")
		}
	}
	return nil
}

// setUpCoreOutputs looks for (or creates) the result and dead-letter
// streams. Core mode works without JetStream: then results go out on core
// NATS only.
func (w *Worker) setUpCoreOutputs(ctx context.Context) {
	lookupCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.setUpOutputs(lookupCtx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			w.log.Info().Msg("JetStream is not enabled: results are published on core NATS only")
		} else {
			w.log.Warn().Err(err).Msg("cannot set up the result stream: results are published on core NATS only")
		}
		w.resultsStored.Store(false)
		w.deadStored.Store(false)
		w.followStored.Store(false)
		w.settledStored.Store(false)
	}
}

// receiveCore runs in the subscription's callback: it waits for a slot,
// which holds back reading more while CipherTrust Manager is busy, and
// handles the request in its own goroutine.
func (w *Worker) receiveCore(workCtx context.Context, kind messages.Kind, msg *nats.Msg) {
	received := w.now()
	if !acquire(workCtx, w.slots) {
		return
	}
	w.spawn(w.slots, func(release func()) { w.handleCore(workCtx, kind, msg, received, release) })
}

// handleCore processes one core-mode request: at most once, so every
// failure is final, and the result also answers the request's reply
// subject.
func (w *Worker) handleCore(ctx context.Context, kind messages.Kind, msg *nats.Msg, received time.Time, release func()) {
	d := delivery{
		kind:     kind,
		payload:  msg.Data,
		header:   messages.Header(msg.Header),
		received: received,
		final:    true,
	}
	out := process(ctx, w.canceler, d, w.now)
	release() // the call is over: let the next one start
	if out.verdict == verdictRetry {
		// Only when the worker was stopped mid-call: there is no redelivery
		// in core mode, so say so in a result.
		out = abandoned(out, d, w.now())
	}
	if err := w.publishResult(ctx, out.result, out.request, msg.Reply); err != nil {
		w.log.Error().Err(err).Str("request_id", out.result.RequestID).Msg("cannot publish the result")
		return
	}
	if w.wantsFollow(out) {
		if err := w.publishFollowTask(ctx, out); err != nil {
			w.cannotFollow(ctx, out, err)
		}
	}
	w.logOutcome(out, 0)
}

// abandoned turns an outcome cut short by shutdown into a failed result.
func abandoned(out outcome, d delivery, now time.Time) outcome {
	out.verdict = verdictDone
	out.result = messages.Result{
		RequestID:   out.request.RequestID,
		Kind:        d.kind,
		ID:          out.request.ID,
		Status:      messages.StatusFailed,
		Attempts:    out.attempts,
		ReceivedAt:  messages.NewTimestamp(d.received),
		CompletedAt: messages.NewTimestamp(now),
		Error: &messages.Error{
			Code:      messages.CodeUnreachable,
			Message:   "the worker stopped before CipherTrust Manager answered",
			Retryable: true,
		},
	}
	return out
}
