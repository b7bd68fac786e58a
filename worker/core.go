package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Pending limits of a core-mode subscription: requests waiting for a slot
// are held here, and past this NATS drops them (core mode is at most once).
const (
	corePendingMsgs  = 100_000
	corePendingBytes = 256 << 20
)

// runCore subscribes to every request subject in the queue group and
// handles requests until ctx ends; then it drains every subscription at
// once, so that requests already received are still handled, until the
// shutdown deadline.
func (w *Worker) runCore(ctx, workCtx context.Context) error {
	if err := w.setUpCoreOutputs(ctx); err != nil {
		return err
	}
	w.warnOfRequestStream(ctx)
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

	// Drain: stop interest in every subject at once, then handle what was
	// already received. A request still waiting for a slot when the
	// shutdown deadline passes gets a failed result (receiveCore).
	closed := make([]<-chan nats.SubStatus, 0, len(subs))
	for _, sub := range subs {
		ch := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err == nil {
			closed = append(closed, ch)
		}
	}
	for _, ch := range closed {
		select {
		case <-ch:
		case <-w.drainOver:
			w.log.Warn().Msg("draining the subscriptions did not finish in time")
			return nil
		}
	}
	return nil
}

// warnOfRequestStream says so when a stream holds the request subjects: it
// would answer nats req with its own acknowledgement, and a jetstream-mode
// worker beside this one would handle every request a second time.
func (w *Worker) warnOfRequestStream(ctx context.Context) {
	lookupCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, kind := range messages.Kinds {
		if name, err := w.js.StreamNameBySubject(lookupCtx, kind.RequestSubject()); err == nil && name != "" {
			w.log.Warn().Str("stream", name).Str("subject", kind.RequestSubject()).
				Msg("a stream holds the request subjects: it answers nats req with its own acknowledgement, and a jetstream-mode worker would handle every request again")
			return
		}
	}
}

// setUpCoreOutputs looks for (or creates) the result and dead-letter
// streams. Core mode works without JetStream: then results go out on core
// NATS only. Only a stream with a setting it may not correct stops it.
func (w *Worker) setUpCoreOutputs(ctx context.Context) error {
	lookupCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.assets.setUpOutputs(lookupCtx); err != nil {
		var settingErr *SettingError
		if errors.As(err, &settingErr) {
			return err
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			w.log.Info().Msg("JetStream is not enabled: results are published on core NATS only")
		} else {
			w.log.Warn().Err(err).Msg("cannot set up the result stream: results are published on core NATS only")
		}
		for _, out := range w.out.all() {
			out.stored.Store(false)
		}
	}
	return nil
}

// receiveCore runs in the subscription's callback: it waits for a slot,
// which holds back reading more while CipherTrust Manager is busy, and
// handles the request in its own goroutine. Once the shutdown deadline has
// passed, a request that has not started gets a failed result instead.
func (w *Worker) receiveCore(workCtx context.Context, kind messages.Kind, msg *nats.Msg) {
	received := w.now()
	select {
	case <-w.drainOver:
	default:
		select {
		case w.slots <- struct{}{}:
			w.spawn(w.slots, func(release func()) { w.handleCore(workCtx, kind, msg, received, release) })
			return
		case <-w.drainOver:
		}
	}
	d := delivery{kind: kind, payload: msg.Data, header: messages.Header(msg.Header), received: received, final: true}
	ctx, span := w.trace.startConsumer(workCtx, msg.Subject, d.header, kind, 0)
	req, _ := messages.ParseRequest(kind, msg.Data, d.header, "")
	out := abandoned(outcome{request: req}, d, w.now(), "the worker stopped before the request could start")
	w.finishCore(ctx, out, span, safeNATSReply(msg.Reply))
}

// safeNATSReply is the NATS reply subject a core-mode result may be sent
// to: reply, or "" when it is one the worker may not answer on (a system
// subject, a request subject, a wildcard), where a result would act as an
// API call or a new request.
func safeNATSReply(reply string) string {
	if reply == "" || messages.CheckNATSReplySubject(reply) != nil {
		return ""
	}
	return reply
}

// handleCore processes one core-mode request: at most once, so every
// failure is final, and the result also answers the request's reply
// subject.
func (w *Worker) handleCore(ctx context.Context, kind messages.Kind, msg *nats.Msg, received time.Time, release func()) {
	d := delivery{
		kind:      kind,
		payload:   msg.Data,
		header:    messages.Header(msg.Header),
		received:  received,
		final:     true,
		natsReply: msg.Reply,
	}
	ctx, span := w.trace.startConsumer(ctx, msg.Subject, d.header, kind, 0)
	out := process(ctx, w.canceler, d, w.now)
	release() // the call is over: let the next one start
	if out.verdict == verdictRetry {
		// Only when the worker was stopped mid-call: there is no redelivery
		// in core mode, so say so in a result.
		out = abandoned(out, d, w.now(), "the worker stopped before CipherTrust Manager answered")
	}
	w.finishCore(ctx, out, span, safeNATSReply(msg.Reply))
}

// finishCore publishes a core-mode outcome and ends the request's span. A
// result sharing its request_id with one already stored is stored under
// <request_id>.<a new UUID>.result.
func (w *Worker) finishCore(ctx context.Context, out outcome, span trace.Span, reply string) {
	defer func() { endRequest(span, &out) }()
	if tp := traceparentOf(span); tp != "" {
		out.request.Traceparent = tp // the result names the request's span
	}
	pubCtx, cancel := resultContext(ctx)
	defer cancel()
	msgID, err := w.out.publishResult(pubCtx, &out.result, out.request, true, messages.NewRequestID(), reply)
	if err != nil {
		w.log.Error().Err(err).Str("request_id", out.result.RequestID).Msg("cannot publish the result")
		return
	}
	if w.follow.wantsFollow(out) {
		w.follow.startFollow(ctx, out, msgID)
	}
	w.logOutcome(out, 0)
}

// resultContext is what a core-mode result is published under: ctx's
// values, and a cancellation that comes publishTimeout after ctx's. Core
// mode has no redelivery, so a request cut short at the shutdown deadline
// (when the work context is canceled) must still get its failed result and
// its reply, within one publish's wait.
func resultContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pubCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(publishTimeout, cancel) })
	return pubCtx, func() {
		stop()
		cancel()
	}
}

// abandoned turns an outcome cut short by shutdown into a failed result.
func abandoned(out outcome, d delivery, now time.Time, why string) outcome {
	out.verdict = verdictDone
	out.result = messages.Result{
		RequestID:   out.request.RequestID,
		Kind:        d.kind,
		ID:          out.request.ID,
		Status:      messages.StatusFailed,
		Attempts:    out.attempts,
		HTTPStatus:  out.httpStatus,
		ReceivedAt:  messages.NewTimestamp(d.received),
		CompletedAt: messages.NewTimestamp(now),
		Error:       &messages.Error{Code: messages.CodeUnreachable, Message: why, Retryable: true},
	}
	return out
}
