package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// Following a canceled job to its end: polling its GET endpoint until
// overall_status is terminal or WORKER_FOLLOW_TIMEOUT passes.
//
// A cancel only sets abort: true; the job stops later. To follow it, the
// worker stores a follow task in the stream CCKM_CANCEL_FOLLOW before it
// acknowledges the request: the canceled result as the payload, the follow
// deadline and the reply subject as headers. The durable consumer
// cckm-cancel-follow polls: each delivery GETs the job once; a job still
// running is handed back with NakWithDelay (growing delays), so the wait
// between polls costs nothing and lives in JetStream, not in a process. A
// follow therefore survives the worker being killed, and is shared by every
// instance. When the job is terminal, or the deadline passes, the settled
// event is published (and stored in CCKM_CANCEL_SETTLED) and the task
// acknowledged.

// Names of the follow assets.
const (
	// FollowStream holds the follow tasks.
	FollowStream = "CCKM_CANCEL_FOLLOW"
	// FollowConsumer polls the follow tasks.
	FollowConsumer = "cckm-cancel-follow"
	// SettledStream holds the settled events.
	SettledStream = "CCKM_CANCEL_SETTLED"
	// followSubjectPrefix begins cckm.cancel.follow.<kind>.
	followSubjectPrefix = messages.SubjectPrefix + "follow."
	// HeaderFollowDeadline is when a follow gives up, RFC 3339.
	HeaderFollowDeadline = "Cckm-Follow-Deadline"
)

// followSubject is where follow tasks of kind are stored.
func followSubject(kind messages.Kind) string { return followSubjectPrefix + string(kind) }

func followStreamConfig() jetstream.StreamConfig {
	subjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		subjects = append(subjects, followSubject(kind))
	}
	return jetstream.StreamConfig{
		Name:        FollowStream,
		Description: "Canceled jobs being followed to their end",
		Subjects:    subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
	}
}

func (c *Config) settledStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        SettledStream,
		Description: "Settled events of followed cancels",
		Subjects:    []string{messages.SubjectSettled},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      c.ResultRetention,
		Duplicates:  c.DuplicateWindow,
	}
}

// followConsumerConfig is the durable pull consumer of the follow tasks.
// MaxAckPending is followsPending: a task waiting between polls
// (NakWithDelay) stays pending, so it bounds the follows in progress; the
// others wait in the stream. The GETs hold permits like the cancels.
func (c *Config) followConsumerConfig() jetstream.ConsumerConfig {
	follows := c.followsPending()
	return jetstream.ConsumerConfig{
		Durable:       FollowConsumer,
		Description:   "cckm-cancel-worker instances following canceled jobs",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: follows,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// follower follows canceled jobs to their end: it stores follow tasks,
// polls them, and publishes settled events.
type follower struct {
	cfg      *Config
	canceler Canceler
	out      *outputs
	assets   *provisioner
	log      zerolog.Logger
	now      func() time.Time
	trace    tracing
}

// HeaderSettledMsgID carries, on a follow task, the Nats-Msg-Id its
// settled event is published with: <result id>.settled, so that two
// requests that share a request_id settle apart.
const HeaderSettledMsgID = "Cckm-Settled-Msg-Id"

// wantsFollow reports whether a result should be followed.
func (f *follower) wantsFollow(out outcome) bool {
	return out.result.Status == messages.StatusCanceled && (f.cfg.Follow || out.request.Follow)
}

// settledMsgID is the settled event's Nats-Msg-Id for a result stored
// under resultMsgID.
func settledMsgID(resultMsgID string) string {
	return strings.TrimSuffix(resultMsgID, ".result") + ".settled"
}

// startFollow stores the follow task of a canceled result, whose
// Nats-Msg-Id makes a redelivered request's second task a duplicate. A
// task that cannot be stored (no stream, or NATS does not take it in time)
// is not retried by delivering the request again, which would call
// CipherTrust Manager again: the follow ends at once with settled: false.
func (f *follower) startFollow(ctx context.Context, out outcome, resultMsgID string) {
	base := strings.TrimSuffix(resultMsgID, ".result")
	msg := nats.NewMsg(followSubject(out.result.Kind))
	msg.Data = out.result.AppendJSON(nil)
	msg.Header.Set(messages.HeaderMsgID, base+".follow")
	msg.Header.Set(HeaderSettledMsgID, settledMsgID(resultMsgID))
	msg.Header.Set(HeaderFollowDeadline, f.now().Add(f.cfg.FollowTimeout).UTC().Format(time.RFC3339Nano))
	if out.request.ReplyTo != "" {
		msg.Header.Set(messages.HeaderReplyTo, out.request.ReplyTo)
	}
	if out.request.Traceparent != "" {
		msg.Header.Set(messages.HeaderTraceparent, out.request.Traceparent)
	}
	err := errNoFollowStream
	if f.out.follows.stored.Load() {
		err = f.publishFollowTask(ctx, msg, &out)
	}
	if err != nil {
		f.cannotFollow(ctx, out, msg.Header, err)
	}
}

// publishFollowTask publishes a follow task; one too large is sent again
// without the job.
func (f *follower) publishFollowTask(ctx context.Context, msg *nats.Msg, out *outcome) error {
	_, _, err := f.out.publish(ctx, &f.out.follows, msg)
	if isPermanent(err) && len(out.result.Job) > 0 {
		task := out.result
		task.Job, task.JobOmitted = nil, true
		msg.Data = task.AppendJSON(nil)
		_, _, err = f.out.publish(ctx, &f.out.follows, msg)
	}
	return err
}

// errNoFollowStream says that no stream holds the follow tasks.
var errNoFollowStream = errors.New("no stream " + FollowStream + " (or NATS has no JetStream)")

// cannotFollow handles a follow task that could not be stored: it logs why
// and publishes settled: false at once, so that a producer waiting for the
// settled event is not left waiting.
func (f *follower) cannotFollow(ctx context.Context, out outcome, taskHeader nats.Header, err error) {
	f.log.Warn().Err(err).Str("request_id", out.result.RequestID).Msg("cannot follow the job")
	no := false
	settled := out.result
	settled.Settled = &no
	if err := f.publishSettled(ctx, settled, taskHeader); err != nil {
		f.log.Warn().Err(err).Str("request_id", out.result.RequestID).Msg("cannot publish the settled event")
	}
}

// runFollow binds the follow consumer and polls follow tasks until ctx
// ends. It retries binding in the background; following is not needed for
// readiness. A follow consumer whose settings break a promise, under
// WORKER_PROVISION=false, ends it with a *SettingError.
func (w *Worker) runFollow(ctx, workCtx context.Context) error {
	slots := make(chan struct{}, max(4, w.cfg.Concurrency/4))
	b := budget{slots: slots, holds: make(chan struct{}, heldPerSlot*cap(slots))}
	wait := minBindRetry
	for ctx.Err() == nil {
		cons, err := w.assets.bindFollowConsumer(ctx)
		if settingErr := (*SettingError)(nil); errors.As(err, &settingErr) {
			return err
		}
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot bind the follow consumer; follows wait")
				sleepCtx(ctx, wait)
				wait = min(2*wait, maxBindRetry)
			}
			continue
		}
		wait = minBindRetry
		ackWait := w.cfg.AckWait
		if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
			ackWait = info.Config.AckWait
		}
		err = w.pull(ctx, cons, b, ackWait, &w.followReady, func(msg jetstream.Msg, release func()) settlement {
			defer release()
			return w.follow.handleFollow(workCtx, msg)
		})
		if err != nil && ctx.Err() == nil {
			w.log.Error().Err(err).Msg("following stopped; binding again")
			sleepCtx(ctx, wait)
		}
	}
	return nil
}

// handleFollow polls one follow task once and decides how the delivery
// ends: handed back to poll again later, or acked once the settled event
// is out. Past the deadline, the follow ends whatever fails.
func (f *follower) handleFollow(ctx context.Context, msg jetstream.Msg) settlement {
	var result messages.Result
	if err := json.Unmarshal(msg.Data(), &result); err != nil || !result.Kind.Valid() || !messages.IsUUID(result.ID) {
		f.log.Error().Str("subject", msg.Subject()).Msg("malformed follow task; terminating it")
		return terminate("malformed follow task")
	}
	deadline, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(HeaderFollowDeadline))
	if err != nil {
		deadline = f.now() // no deadline: look once
	}
	polls := 1
	if meta, err := msg.Metadata(); err == nil {
		polls = int(meta.NumDelivered)
		// Anyone who may publish requests may publish a task, with a
		// deadline years away: none is honoured past FollowTimeout after
		// the task was stored.
		if limit := meta.Timestamp.Add(f.cfg.FollowTimeout); deadline.After(limit) {
			deadline = limit
		}
	}

	ctx, span := f.trace.startConsumer(ctx, msg.Subject(), messages.Header(msg.Headers()), result.Kind, polls)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("cckm.request_id", result.RequestID), attribute.String("cckm.job_id", result.ID))
	}
	tp := msg.Headers().Get(messages.HeaderTraceparent)
	if !messages.ValidTraceparent(tp) {
		tp = ""
	}
	resp, err := f.canceler.Get(cckmclient.WithTraceparent(ctx, tp), result.Kind, result.ID)
	if ctx.Err() != nil {
		return retryIn(0) // stopping: another instance takes it
	}
	pastDeadline := !f.now().Before(deadline)
	settled, final := followStep(result, resp, err, pastDeadline, f.now())
	if !final {
		delay := f.cfg.followDelay(polls)
		if untilDeadline := deadline.Sub(f.now()); untilDeadline < delay {
			delay = max(untilDeadline, 0)
		}
		return retryIn(delay)
	}
	if err := f.publishSettled(ctx, settled, msg.Headers()); err != nil {
		if !isPermanent(err) && !pastDeadline {
			f.log.Error().Err(err).Msg("cannot publish the settled event; trying again")
			return retryIn(f.cfg.RetryDelay)
		}
		f.log.Error().Err(err).Str("request_id", settled.RequestID).Msg("cannot publish the settled event; the follow ends without one")
		return terminate("the settled event cannot be published")
	}
	f.log.Info().Str("request_id", settled.RequestID).Str("kind", string(settled.Kind)).Str("id", settled.ID).
		Bool("settled", *settled.Settled).Str("overall_status", settled.OverallStatus).Int("polls", polls).
		Msg("follow done")
	return ack()
}

// followStep decides one poll of a follow: the settled event and true when
// the follow is over (the job is terminal, it cannot be read any more, or
// the deadline has passed), else false to poll again. It is pure.
func followStep(result messages.Result, resp cckmclient.Response, err error, pastDeadline bool, now time.Time) (messages.Result, bool) {
	settled := result
	settled.CompletedAt = messages.NewTimestamp(now)
	if resp.Job != nil {
		settled.SetJob(resp.Job.Raw)
		settled.Abort = resp.Job.Abort
		settled.OverallStatus = messages.TruncateOverallStatus(resp.Job.OverallStatus)
		settled.HTTPStatus = resp.HTTPStatus
	}
	yes, no := true, false
	switch {
	case err == nil && resp.Job != nil && resp.Job.Terminal():
		settled.Settled = &yes
		return settled, true
	case err != nil && !cckmclient.Retryable(err):
		settled.Settled = &no
		settled.HTTPStatus = resp.HTTPStatus
		settled.Error = factsOf(err).resultError("following the job: ")
		return settled, true
	case pastDeadline:
		settled.Settled = &no
		return settled, true
	}
	return messages.Result{}, false
}

// publishSettled publishes a settled event, stored where a stream holds
// the settled subjects, and sends it to the request's reply subject.
func (f *follower) publishSettled(ctx context.Context, settled messages.Result, taskHeader nats.Header) error {
	msgID := taskHeader.Get(HeaderSettledMsgID)
	if msgID == "" {
		msgID = messages.SettledMsgID(settled.RequestID)
	}
	tp := taskHeader.Get(messages.HeaderTraceparent)
	if !messages.ValidTraceparent(tp) {
		tp = ""
	}
	msg, _, _, err := f.out.publishEvent(ctx, &f.out.settled, settled.Kind.SettledSubject(), &settled, msgID, tp)
	if err != nil {
		return fmt.Errorf("publish settled %s: %w", settled.RequestID, err)
	}
	reply := taskHeader.Get(messages.HeaderReplyTo)
	if messages.CheckReplySubject(reply) != nil {
		reply = ""
	}
	f.out.sendReplies(msg, settled.RequestID, reply)
	return nil
}

// followDelay is the wait before poll n+1: FollowInterval doubled per
// poll, at most FollowMaxInterval.
func (c *Config) followDelay(polls int) time.Duration {
	return doubled(c.FollowInterval, polls, c.FollowMaxInterval)
}
