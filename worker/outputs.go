package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Publishing results, dead letters, follow tasks and settled events.
//
// A publish that fails is classified: a transient failure (a time-out, a
// lost connection, a stream leader change) is tried again within the
// delivery, for up to publishBudget, while the keeper keeps the message
// alive; a permanent one (too large, a header the stream refuses, no
// stream) is never tried again as it was: the message is made smaller, or
// sent on core NATS, or given up with a log line. So no publish failure
// makes CipherTrust Manager be called again, and none loops.

// Bounds of publishing.
const (
	// publishTimeout bounds the wait for one stream acknowledgement.
	publishTimeout = 5 * time.Second
	// defaultPublishBudget bounds all tries of one publish within a
	// delivery (Config.publishBudget).
	defaultPublishBudget = 15 * time.Second
	// Back-off between tries of a publish.
	minPublishRetry = 50 * time.Millisecond
	maxPublishRetry = 2 * time.Second
)

// errPublishPermanent marks a publish that cannot succeed as it is.
var errPublishPermanent = errors.New("cannot be published as it is")

// permanentError wraps err as a permanent publish failure.
func permanentError(err error) error { return fmt.Errorf("%w: %w", errPublishPermanent, err) }

// isPermanent reports whether a publish error is permanent.
func isPermanent(err error) bool { return errors.Is(err, errPublishPermanent) }

// classifyPublish reports whether a publish error can never succeed by
// trying the same message again: too large for the server or the stream,
// or a header the stream refuses (the request's Nats-Expected-Stream on a
// dead letter, say). Every other error is taken as transient.
func classifyPublish(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadHeaderMsg) || errors.Is(err, nats.ErrBadSubject) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 4xx: the stream refused this message (size, header, expected
		// stream or sequence, TTL); 5xx and 503: the stream is busy.
		return apiErr.Code >= 400 && apiErr.Code < 500
	}
	return false
}

// output is one place results go: a stream, or core NATS when none holds
// the subjects.
type output struct {
	what   string // for logs and metrics: "result", "dead_letter", ...
	stream func() jetstream.StreamConfig
	stored atomic.Bool
}

// outputs publishes what the worker produces.
type outputs struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	log       zerolog.Logger
	metrics   *Metrics
	counts    *counters
	trace     tracing
	provision bool
	// publishBudget bounds all tries of one publish.
	publishBudget time.Duration

	results, deadLetters, follows, settled output
}

func newOutputs(cfg *Config, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger, metrics *Metrics, counts *counters) *outputs {
	o := &outputs{nc: nc, js: js, log: log, metrics: metrics, counts: counts, provision: cfg.Provision, publishBudget: cfg.publishBudget}
	o.results = output{what: "result", stream: cfg.resultStreamConfig}
	o.deadLetters = output{what: "dead_letter", stream: deadLetterStreamConfig}
	o.follows = output{what: "follow_task", stream: followStreamConfig}
	o.settled = output{what: "settled", stream: cfg.settledStreamConfig}
	return o
}

// all lists the outputs, for setting up their streams.
func (o *outputs) all() []*output {
	return []*output{&o.results, &o.deadLetters, &o.follows, &o.settled}
}

// publish sends msg to out: through JetStream, waiting for the stream's
// acknowledgement, when a stream holds its subjects, else on core NATS. It
// tries a transient failure again for up to publishBudget and returns a
// permanent failure at once (isPermanent). A stream that went away is
// created again when provisioning is on; else the output falls back to
// core NATS, with a log line. tries is how many publishes were sent.
func (o *outputs) publish(ctx context.Context, out *output, msg *nats.Msg) (ack *jetstream.PubAck, tries int, err error) {
	ctx, span := o.trace.startProducer(ctx, msg.Subject, out.what)
	defer func() { endProducer(span, tries, err) }()
	deadline := time.Now().Add(o.publishBudget)
	wait := minPublishRetry
	for {
		tries++
		if !out.stored.Load() {
			err = o.nc.PublishMsg(msg)
		} else {
			ack, err = o.publishStored(ctx, msg)
		}
		if err == nil {
			return ack, tries, nil
		}
		if classifyPublish(err) {
			o.metrics.publishFailed(out.what)
			return nil, tries, permanentError(err)
		}
		if out.stored.Load() {
			o.checkStream(ctx, out)
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			o.metrics.publishFailed(out.what)
			return nil, tries, err
		}
		o.log.Debug().Err(err).Str("output", out.what).Int("try", tries).Msg("publish failed; trying again")
		sleepCtx(ctx, wait)
		wait = min(2*wait, maxPublishRetry)
	}
}

// publishStored publishes through JetStream and waits for the stream.
// PublishMsgAsync and a wait for its acknowledgement cost less CPU than
// PublishMsg, which sets up a request per message (make bench, pprof).
func (o *outputs) publishStored(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	future, err := o.js.PublishMsgAsync(msg)
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-future.Ok():
		return ack, nil
	case err := <-future.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// checkStream looks, after a failed publish, whether out's stream is still
// there. A stream deleted while the worker runs is created again when
// provisioning is on; otherwise out goes on on core NATS only, and says so.
func (o *outputs) checkStream(ctx context.Context, out *output) {
	cfg := out.stream()
	lookupCtx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err := o.js.Stream(lookupCtx, cfg.Name)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return // there, or NATS is the trouble: try again
	}
	if o.provision {
		if _, err := o.js.CreateStream(lookupCtx, cfg); err == nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			o.log.Warn().Str("stream", cfg.Name).Msg("the stream was gone; created it again")
			return
		}
	}
	if out.stored.CompareAndSwap(true, false) {
		o.log.Error().Str("stream", cfg.Name).
			Msgf("the stream %s is gone and WORKER_PROVISION is false: %s events go out on core NATS only, unstored", cfg.Name, out.what)
	}
}

// sendReplies sends a published event to reply subjects; a reply that
// cannot be sent is logged, never retried.
func (o *outputs) sendReplies(msg *nats.Msg, requestID string, replies ...string) {
	for _, reply := range replies {
		if reply == "" {
			continue
		}
		replyMsg := &nats.Msg{Subject: reply, Header: msg.Header, Data: msg.Data}
		if err := o.nc.PublishMsg(replyMsg); err != nil {
			o.log.Warn().Err(err).Str("request_id", requestID).Str("reply_to", reply).Msg("cannot send to the reply subject")
		}
	}
}

// eventMessage builds the NATS message of a result or settled event, with
// its Nats-Msg-Id, traceparent and CloudEvents attributes.
func eventMessage(subject string, event messages.Result, msgID, traceparent string) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = event.AppendJSON(make([]byte, 0, 512+len(event.Job)))
	msg.Header.Set(messages.HeaderMsgID, msgID)
	if traceparent != "" {
		msg.Header.Set(messages.HeaderTraceparent, traceparent)
	}
	messages.SetCloudEvent(msg.Header, &event, msgID, traceparent)
	return msg
}

// publishEvent publishes a result or settled event; when it is too large
// for the server or the stream, it is published again without its job
// (job_omitted: true). unsure counts the tries before the last that failed
// in a way that may still have stored the event (a time-out, a lost
// connection); a try refused as too large stored nothing.
func (o *outputs) publishEvent(ctx context.Context, out *output, subject string, event *messages.Result, msgID, traceparent string) (msg *nats.Msg, ack *jetstream.PubAck, unsure int, err error) {
	msg = eventMessage(subject, *event, msgID, traceparent)
	// publish returns at the first permanent failure and at the first
	// success: every try before the last failed transiently.
	ack, tries, err := o.publish(ctx, out, msg)
	unsure = tries - 1
	if isPermanent(err) && len(event.Job) > 0 {
		o.log.Warn().Err(err).Str("request_id", event.RequestID).Int("job_bytes", len(event.Job)).
			Msgf("the %s cannot be published with its job; publishing it without", out.what)
		event.Job, event.JobOmitted = nil, true
		msg = eventMessage(subject, *event, msgID, traceparent)
		ack, tries, err = o.publish(ctx, out, msg)
		unsure += tries - 1
	}
	return msg, ack, unsure, err
}

// publishResult publishes a result under Nats-Msg-Id <request_id>.result,
// so that a results stream drops the copy a redelivery publishes, then to
// the request's reply subjects. When the stream reports a duplicate that
// cannot be this request's own copy (mayBeAnother: its first delivery, and
// no earlier try of this publish could have stored it), another request
// shares the request_id: the result is stored again under
// <request_id>.<distinct>.result. It returns the message id the result was
// stored under.
func (o *outputs) publishResult(ctx context.Context, result *messages.Result, req messages.Request, mayBeAnother bool, distinct string, replies ...string) (string, error) {
	msgID := messages.ResultMsgID(result.RequestID)
	msg, ack, unsure, err := o.publishEvent(ctx, &o.results, result.Kind.ResultSubject(), result, msgID, req.Traceparent)
	if err == nil && ack != nil && ack.Duplicate && mayBeAnother && unsure == 0 {
		msgID = messages.DistinctResultMsgID(result.RequestID, distinct)
		o.log.Warn().Str("request_id", result.RequestID).Str("stored_as", msgID).
			Msg("another request with the same request_id has a result already; storing this one under its own id")
		msg, _, _, err = o.publishEvent(ctx, &o.results, result.Kind.ResultSubject(), result, msgID, req.Traceparent)
	}
	if err != nil {
		return "", fmt.Errorf("publish result %s: %w", result.RequestID, err)
	}
	o.metrics.result(*result)
	o.counts.result(result.Status)
	o.sendReplies(msg, result.RequestID, append([]string{req.ReplyTo}, replies...)...)
	return msgID, nil
}

// deadLetterInfo says why a request is dead-lettered.
type deadLetterInfo struct {
	deliveries int
	attempts   int
	sequence   uint64
	subject    string
}

// isNATSHeader reports whether a request header is one JetStream acts on
// (Nats-Expected-Stream, Nats-Msg-Id, Nats-TTL, ...): copied onto the dead
// letter it would make the dead-letter stream refuse or reshape the copy.
func isNATSHeader(name string) bool { return len(name) >= 5 && strings.EqualFold(name[:5], "Nats-") }

// publishDeadLetter copies a request whose last delivery failed to
// cckm.cancel.dead.<kind>: its payload and headers (less those JetStream
// acts on) and headers saying why. When the copy cannot be published as it
// is, it is published without the request's headers, then without its
// payload; a dead letter that cannot be published at all is logged.
func (o *outputs) publishDeadLetter(ctx context.Context, d delivery, result messages.Result, info deadLetterInfo) error {
	build := func(withHeaders, withPayload bool) *nats.Msg {
		msg := nats.NewMsg(d.kind.DeadLetterSubject())
		if withPayload {
			msg.Data = d.payload
		} else {
			msg.Header.Set(HeaderDeadPayloadOmitted, "true")
		}
		if withHeaders {
			for name, values := range d.header {
				if !isNATSHeader(name) {
					msg.Header[name] = append([]string(nil), values...)
				}
			}
		}
		msg.Header.Set(messages.HeaderMsgID, result.RequestID+".dead")
		msg.Header.Set(HeaderRequestID, result.RequestID)
		msg.Header.Set(HeaderOrigSubject, info.subject)
		msg.Header.Set(HeaderDeadDeliveries, strconv.Itoa(info.deliveries))
		msg.Header.Set(HeaderDeadAttempts, strconv.Itoa(info.attempts))
		msg.Header.Set(HeaderStreamSequence, strconv.FormatUint(info.sequence, 10))
		if result.Error != nil {
			msg.Header.Set(HeaderDeadCode, string(result.Error.Code))
			msg.Header.Set(HeaderDeadReason, messages.TruncateMessage(headerSafe(result.Error.Message)))
		}
		return msg
	}
	var err error
	for _, shape := range []struct{ headers, payload bool }{{true, true}, {false, true}, {false, false}} {
		_, _, err = o.publish(ctx, &o.deadLetters, build(shape.headers, shape.payload))
		if !isPermanent(err) {
			break
		}
		o.log.Warn().Err(err).Str("request_id", result.RequestID).Bool("with_headers", shape.headers).
			Bool("with_payload", shape.payload).Msg("the dead letter cannot be published like this; making it smaller")
	}
	if err != nil {
		return fmt.Errorf("publish dead letter %s: %w", result.RequestID, err)
	}
	o.metrics.deadLetter(d.kind)
	o.counts.deadLetters.Add(1)
	return nil
}

// headerSafe replaces the line breaks a header value cannot hold.
func headerSafe(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
