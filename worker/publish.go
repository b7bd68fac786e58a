package worker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// resultMessage builds the NATS message of a result: on the kind's result
// subject, with Nats-Msg-Id <request_id>.result so that a results stream
// drops the copy a redelivery publishes, and the request's traceparent.
func resultMessage(result messages.Result, req messages.Request) *nats.Msg {
	msg := nats.NewMsg(result.Kind.ResultSubject())
	msg.Data = result.AppendJSON(make([]byte, 0, 512+len(result.Job)))
	msg.Header.Set(messages.HeaderMsgID, messages.ResultMsgID(result.RequestID))
	if req.Traceparent != "" {
		msg.Header.Set(messages.HeaderTraceparent, req.Traceparent)
	}
	return msg
}

// publishResult publishes a result, through JetStream (waiting for the
// stream's acknowledgement) when a stream holds the result subjects, and
// then to the request's Cckm-Reply-To and to extraReply, if any. Only the
// first publish decides success: a reply that cannot be sent is logged.
func (w *Worker) publishResult(ctx context.Context, result messages.Result, req messages.Request, extraReply string) error {
	msg := resultMessage(result, req)
	if err := w.publish(ctx, msg, w.resultsStored.Load()); err != nil {
		w.metrics.publishFailed("result")
		return fmt.Errorf("publish result %s: %w", result.RequestID, err)
	}
	w.metrics.result(result)
	w.counts.result(result.Status)
	for _, reply := range []string{req.ReplyTo, extraReply} {
		if reply == "" {
			continue
		}
		replyMsg := &nats.Msg{Subject: reply, Header: msg.Header, Data: msg.Data}
		if err := w.nc.PublishMsg(replyMsg); err != nil {
			w.log.Warn().Err(err).Str("request_id", result.RequestID).Str("reply_to", reply).Msg("cannot send the result to the reply subject")
		}
	}
	return nil
}

// publish sends msg through JetStream when stored, else on core NATS.
func (w *Worker) publish(ctx context.Context, msg *nats.Msg, stored bool) error {
	if !stored {
		return w.nc.PublishMsg(msg)
	}
	// PublishMsgAsync and a wait for its acknowledgement cost less CPU than
	// PublishMsg, which sets up a request per message (make bench, pprof).
	// The JetStream context's async timeout (publishTimeout) bounds the
	// wait and forgets an acknowledgement that never comes.
	ack, err := w.js.PublishMsgAsync(msg)
	if err != nil {
		return err
	}
	select {
	case <-ack.Ok():
		return nil
	case err := <-ack.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deadLetterInfo says why a request is dead-lettered.
type deadLetterInfo struct {
	deliveries int
	sequence   uint64
	subject    string
}

// publishDeadLetter copies a request whose last delivery failed to
// cckm.cancel.dead.<kind>, with its payload and headers and headers saying
// why.
func (w *Worker) publishDeadLetter(ctx context.Context, d delivery, out outcome, info deadLetterInfo) error {
	msg := nats.NewMsg(d.kind.DeadLetterSubject())
	msg.Data = d.payload
	for name, values := range d.header {
		msg.Header[name] = append([]string(nil), values...)
	}
	msg.Header.Set(messages.HeaderMsgID, out.result.RequestID+".dead")
	msg.Header.Set(HeaderRequestID, out.result.RequestID)
	msg.Header.Set(HeaderOrigSubject, info.subject)
	msg.Header.Set(HeaderDeadDeliveries, strconv.Itoa(info.deliveries))
	msg.Header.Set(HeaderDeadAttempts, strconv.Itoa(out.attempts))
	msg.Header.Set(HeaderStreamSequence, strconv.FormatUint(info.sequence, 10))
	if out.result.Error != nil {
		msg.Header.Set(HeaderDeadCode, string(out.result.Error.Code))
		msg.Header.Set(HeaderDeadReason, out.result.Error.Message)
	}
	if err := w.publish(ctx, msg, w.deadStored.Load()); err != nil {
		w.metrics.publishFailed("dead_letter")
		return fmt.Errorf("publish dead letter %s: %w", out.result.RequestID, err)
	}
	w.metrics.deadLetter(d.kind)
	w.counts.deadLetters.Add(1)
	return nil
}
