package worker

import (
	"context"
	"time"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Canceler cancels and reads jobs in CipherTrust Manager.
// *cckmclient.Client is one.
type Canceler interface {
	Cancel(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error)
	Get(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error)
}

// delivery is one request as it reached the worker, whatever the mode.
type delivery struct {
	kind     messages.Kind
	payload  []byte
	header   messages.Header
	received time.Time
	// prior is what earlier deliveries of the same request learned, where
	// known.
	prior priorDeliveries
	// final is true when no redelivery will follow a transient failure.
	final bool
	// redelivered is true when an earlier delivery of the request may have
	// reached CipherTrust Manager already.
	redelivered bool
	// defaultRequestID is the request_id when neither the payload nor
	// Nats-Msg-Id names one: the same for every delivery of a message.
	defaultRequestID string
	// natsReply is the request's own NATS reply subject where the result
	// answers it (core mode); one the worker may not answer on rejects
	// the request.
	natsReply string
}

// verdict is what the broker edge must do with a request.
type verdict int

const (
	// verdictDone: publish the result, then acknowledge.
	verdictDone verdict = iota
	// verdictRejected: publish the result, then terminate the message.
	verdictRejected
	// verdictRetry: publish nothing; have the request delivered again later.
	verdictRetry
)

// outcome is what processing a delivery decided.
type outcome struct {
	verdict verdict
	request messages.Request
	result  messages.Result
	// attempts is the HTTP attempts made so far, this delivery's included,
	// and httpStatus the last HTTP status received in any of them.
	attempts   int
	httpStatus int
	// retryAfter is the wait CipherTrust Manager asked for, if any.
	retryAfter time.Duration
	// deadLetter is true when a transient failure ended on the last
	// delivery: the request is copied to the dead-letter subject.
	deadLetter bool
}

// process is the worker's pure core: parse, validate, call, classify, and
// build the result. It knows nothing of NATS: the caller maps the verdict
// to broker actions.
func process(ctx context.Context, canceler Canceler, d delivery, now func() time.Time) outcome {
	req, err := messages.ParseRequest(d.kind, d.payload, d.header, d.defaultRequestID)
	if err == nil && d.natsReply != "" {
		if replyErr := messages.CheckNATSReplySubject(d.natsReply); replyErr != nil {
			err = &messages.RequestError{Reason: replyErr.Error()}
		}
	}
	result := messages.Result{
		RequestID:  req.RequestID,
		Kind:       d.kind,
		ID:         req.ID,
		ReceivedAt: messages.NewTimestamp(d.received),
	}
	if err != nil {
		result.Status = messages.StatusRejected
		result.Error = &messages.Error{Code: messages.CodeInvalidRequest, Message: messages.TruncateMessage(err.Error())}
		result.CompletedAt = messages.NewTimestamp(now())
		return outcome{verdict: verdictRejected, request: req, result: result}
	}

	callCtx := cckmclient.WithTraceparent(ctx, req.Traceparent)
	resp, err := canceler.Cancel(callCtx, d.kind, req.ID)
	if d.redelivered && isConflict(err) {
		resp, err = checkEarlierCancel(callCtx, canceler, d.kind, req.ID, resp, err)
	}
	out := outcome{
		verdict:    verdictDone,
		request:    req,
		attempts:   d.prior.attempts + resp.Attempts,
		httpStatus: resp.HTTPStatus,
	}
	if out.httpStatus == 0 {
		out.httpStatus = d.prior.httpStatus
	}
	result.HTTPStatus = out.httpStatus
	result.Attempts = out.attempts
	if resp.Job != nil {
		result.SetJob(resp.Job.Raw)
		result.Abort = resp.Job.Abort
		result.OverallStatus = messages.TruncateOverallStatus(resp.Job.OverallStatus)
	}

	switch {
	case err == nil && resp.Job != nil && resp.Job.Abort:
		result.Status = messages.StatusCanceled
	case err == nil:
		result.Status = messages.StatusFailed
		result.Error = &messages.Error{Code: messages.CodeAbortNotSet, Message: abortNotSetMessage(resp)}
	default:
		facts := factsOf(err)
		if ctx.Err() != nil || (facts.retryable && !d.final) {
			// A transient failure, or the worker is stopping: no result yet.
			out.verdict = verdictRetry
			out.retryAfter = facts.retryAfter
			return out
		}
		result.Status = messages.StatusFailed
		result.Error = facts.resultError("")
		out.deadLetter = facts.retryable
	}
	result.CompletedAt = messages.NewTimestamp(now())
	out.result = result
	return out
}

// checkEarlierCancel handles a 409 on a redelivered request: an earlier
// delivery may have canceled the job and died before its result was
// published, and the job has finished since. A GET that shows the job with
// abort true makes the request canceled, with the job as the GET returned
// it. Otherwise the 409 stands. A first delivery's 409 is never turned
// around: that job was not canceled by this request.
func checkEarlierCancel(ctx context.Context, canceler Canceler, kind messages.Kind, id string,
	cancelResp cckmclient.Response, cancelErr error) (cckmclient.Response, error) {
	getResp, err := canceler.Get(ctx, kind, id)
	if err != nil || getResp.Job == nil || !getResp.Job.Abort {
		cancelResp.Attempts += getResp.Attempts
		return cancelResp, cancelErr
	}
	getResp.Attempts += cancelResp.Attempts
	return getResp, nil
}
