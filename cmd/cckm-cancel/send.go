package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Outcomes decided here rather than by the worker.
const (
	// statusTimeout: sent, but no result (or settled event) in time.
	statusTimeout messages.Status = "timeout"
	// statusUnsent: no worker or stream took the request.
	statusUnsent messages.Status = "unsent"
	// statusInterrupted: the command was stopped before the answer came.
	statusInterrupted messages.Status = "interrupted"
)

// Error codes of the outcomes decided here.
const (
	codeTimeout       messages.ErrorCode = "timeout"
	codeNoResponders  messages.ErrorCode = "no_responders"
	codeDuplicate     messages.ErrorCode = "duplicate"
	codePublishFailed messages.ErrorCode = "publish_failed"
	codeInterrupted   messages.ErrorCode = "interrupted"
)

// sendOptions tune sendAll.
type sendOptions struct {
	timeout       time.Duration // wait for each result, from its publish
	followTimeout time.Duration // wait for each settled event, from its result
	follow        bool
	concurrency   int // requests awaiting their result at once
}

// outcome is what became of one request.
type outcome struct {
	request
	// result is the worker's result, or one made up here (raw nil).
	result messages.Result
	raw    []byte
	// followed is set when a settled event was awaited; settled is then the
	// event, or one made up here (settledRaw nil).
	followed   bool
	settled    messages.Result
	settledRaw []byte
	// queuedIn names the stream that took the request when no result came
	// before the command gave up: the worker will still answer it.
	queuedIn string
}

// ok reports whether the request ended as hoped: canceled and, when
// followed, settled.
func (o *outcome) ok(follow bool) bool {
	if o.result.Status != messages.StatusCanceled {
		return false
	}
	return !follow || (o.settled.Settled != nil && *o.settled.Settled)
}

// events is told of each result and settled event as it is known.
type events interface {
	result(o *outcome)
	settled(o *outcome)
}

// sender publishes requests and matches their answers by request_id.
type sender struct {
	conn   *connection
	opts   sendOptions
	events events
	inbox  string // the run's inbox; the one subscription is inbox + ".>"
	// stored names the stream that holds each kind's request subject, for
	// the kinds that have one: their requests are published through
	// JetStream.
	stored map[messages.Kind]string
	subs   []*nats.Subscription
	// requests and mailbox are fixed before the subscriptions start.
	requests []request
	mailbox  *mailbox
}

// newSender gets ready to send requests: it subscribes to the run's inbox
// (and, with follow, to the settled subject of each kind of request) and
// asks JetStream whether a stream holds each kind's request subject.
func newSender(ctx context.Context, conn *connection, requests []request, opts sendOptions, ev events, stderr io.Writer) (*sender, error) {
	s := &sender{
		conn:     conn,
		opts:     opts,
		events:   ev,
		inbox:    conn.nc.NewInbox(),
		stored:   map[messages.Kind]string{},
		requests: requests,
		mailbox:  newMailbox(requests),
	}
	var kinds []messages.Kind
	for _, req := range requests {
		if !slices.Contains(kinds, req.kind) {
			kinds = append(kinds, req.kind)
		}
	}
	subjects := []string{s.inbox + ".>"}
	if opts.follow {
		for _, kind := range kinds {
			subjects = append(subjects, kind.SettledSubject())
		}
	}
	for _, subject := range subjects {
		sub, err := conn.nc.Subscribe(subject, s.mailbox.deliver)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		s.subs = append(s.subs, sub)
	}
	if err := conn.nc.Flush(); err != nil {
		s.close()
		return nil, fmt.Errorf("NATS at %s: %w", conn.url, err)
	}
	for _, kind := range kinds {
		lookupCtx, cancel := context.WithTimeout(ctx, streamCallTimeout)
		stream, err := conn.js.StreamNameBySubject(lookupCtx, kind.RequestSubject())
		cancel()
		switch {
		case err == nil:
			s.stored[kind] = stream
		case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		default:
			fmt.Fprintf(stderr, "cckm-cancel: cannot ask JetStream which stream holds %s (%v); publishing on core NATS\n", kind.RequestSubject(), err)
		}
	}
	return s, nil
}

// close ends the subscriptions.
func (s *sender) close() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
}

// sendAll sends every request, at most opts.concurrency awaiting their
// result at once, and returns their outcomes in order. It returns when
// every request has its outcome; after ctx ends, the rest are interrupted.
func (s *sender) sendAll(ctx context.Context) []outcome {
	requests := s.requests
	outcomes := make([]outcome, len(requests))
	slots := make(chan struct{}, s.opts.concurrency)
	var wg sync.WaitGroup
	for i, req := range requests {
		outcomes[i].request = req
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			outcomes[i].result = madeUp(req, statusInterrupted, codeInterrupted, "stopped before it was sent")
			s.events.result(&outcomes[i])
			continue
		}
		wg.Go(func() { s.one(ctx, &outcomes[i], func() { <-slots }) })
	}
	wg.Wait()
	return outcomes
}

// one sends a request and waits for its result, then (with follow, when it
// was canceled) for its settled event. release frees its slot once the
// result is known.
func (s *sender) one(ctx context.Context, o *outcome, release func()) {
	box := s.mailbox.byIndex[o.index]
	o.result, o.raw, o.queuedIn = s.awaitResult(ctx, o.request, box)
	release()
	s.events.result(o)
	if !s.opts.follow || o.result.Status != messages.StatusCanceled {
		return
	}
	o.followed = true
	timer := time.NewTimer(s.opts.followTimeout)
	defer timer.Stop()
	select {
	case got := <-box.settled:
		o.settled, o.settledRaw = got.result, got.raw
	case <-timer.C:
		o.settled = madeUp(o.request, statusTimeout, codeTimeout, fmt.Sprintf("no settled event within %s", s.opts.followTimeout))
		o.settled.Settled = new(false)
	case <-ctx.Done():
		o.settled = madeUp(o.request, statusInterrupted, codeInterrupted, "stopped before the settled event came")
		o.settled.Settled = new(false)
	}
	s.events.settled(o)
}

// awaitResult publishes req and waits for its result. It returns the
// worker's result as decoded and as received, or one made up here and nil;
// and the stream where the request stays queued unanswered, if it does.
func (s *sender) awaitResult(ctx context.Context, req request, box *pending) (messages.Result, []byte, string) {
	if err := s.publish(ctx, req); err != nil {
		switch {
		case errors.Is(err, errDuplicate) && req.retryOf != "":
			return madeUp(req, statusUnsent, codeDuplicate, retriedElsewhere), nil, ""
		case errors.Is(err, errDuplicate):
			return madeUp(req, statusUnsent, codeDuplicate, err.Error()), nil, ""
		case ctx.Err() != nil:
			return madeUp(req, statusInterrupted, codeInterrupted, "stopped while publishing"), nil, ""
		default:
			return madeUp(req, statusUnsent, codePublishFailed, err.Error()), nil, ""
		}
	}
	queued := s.stored[req.kind]
	timer := time.NewTimer(s.opts.timeout)
	defer timer.Stop()
	select {
	case got := <-box.result:
		return got.result, got.raw, ""
	case <-box.noResponders:
		return madeUp(req, statusUnsent, codeNoResponders,
			fmt.Sprintf("nothing listens on %s: no worker in core mode and no stream holds it", req.kind.RequestSubject())), nil, ""
	case <-timer.C:
		return madeUp(req, statusTimeout, codeTimeout, fmt.Sprintf("no result within %s", s.opts.timeout)), nil, queued
	case <-ctx.Done():
		return madeUp(req, statusInterrupted, codeInterrupted, "stopped before the result came"), nil, queued
	}
}

// errDuplicate: JetStream dropped the request as a copy of an earlier one.
var errDuplicate = errors.New("JetStream dropped it as a duplicate of an earlier request with the same Nats-Msg-Id " +
	"(within the stream's duplicate window); its result went to that request's sender; use another --request-prefix")

// retriedElsewhere says why a retry was not sent: JetStream dropped it as
// a copy of the one another run sent for the same dead letter.
const retriedElsewhere = "another dead retry sent this dead letter again moments ago; " +
	"that run waits for its result and removes the dead letter"

// publish sends req: through JetStream when a stream holds its subject,
// else on core NATS with a reply subject of its own, so that a missing
// responder is reported at once.
func (s *sender) publish(ctx context.Context, req request) error {
	payload := struct {
		ID        string `json:"id"`
		RequestID string `json:"request_id"`
		Follow    bool   `json:"follow,omitempty"`
		RetryOf   string `json:"retry_of,omitempty"`
	}{req.id, req.requestID, s.opts.follow || req.follow, req.retryOf}
	msg := nats.NewMsg(req.kind.RequestSubject())
	msg.Data, _ = json.Marshal(payload) // strings and a bool always encode
	msg.Header.Set(messages.HeaderMsgID, req.natsMsgID())
	msg.Header.Set(messages.HeaderReplyTo, s.inbox+".results")
	if s.stored[req.kind] == "" {
		msg.Reply = s.inbox + ".request." + strconv.Itoa(req.index)
		return s.conn.nc.PublishMsg(msg)
	}
	pubCtx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	ack, err := s.conn.js.PublishMsg(pubCtx, msg, jetstream.WithMsgID(req.natsMsgID()))
	if err != nil {
		return fmt.Errorf("publish to %s: %w", req.kind.RequestSubject(), err)
	}
	if ack.Duplicate {
		return errDuplicate
	}
	return nil
}

// madeUp is a result for an outcome decided here, in the worker's shape.
func madeUp(req request, status messages.Status, code messages.ErrorCode, message string) messages.Result {
	return messages.Result{
		RequestID: req.requestID,
		Kind:      req.kind,
		ID:        req.id,
		Status:    status,
		Error:     &messages.Error{Code: code, Message: message, Retryable: code != codeDuplicate},
	}
}
