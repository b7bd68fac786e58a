package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// SettingError says that an existing stream or consumer has a setting that
// would break one of the worker's promises, and WORKER_PROVISION=false
// forbids correcting it. It names the asset and the setting in one line.
type SettingError struct {
	Asset   string // "stream CCKM_CANCEL", "consumer cckm-cancel-worker"
	Setting string // e.g. "max_deliver"
	Problem string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s: %s %s (WORKER_PROVISION=false: not corrected)", e.Asset, e.Setting, e.Problem)
}

// provisioner finds, creates and checks the streams and consumers the
// worker uses: the only part that changes JetStream assets.
type provisioner struct {
	js  jetstream.JetStream
	cfg *Config
	log zerolog.Logger
	out *outputs
}

// requestSubjects lists the request subject of every kind.
func requestSubjects() []string {
	subjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		subjects = append(subjects, kind.RequestSubject())
	}
	return subjects
}

// requestStreamConfig is CCKM_CANCEL: a work queue of every request
// subject, kept until a worker acknowledges or terminates each request,
// refusing payloads over messages.MaxRequestSize.
func requestStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        RequestStream,
		Description: "Requests to cancel CipherTrust Manager CCKM jobs",
		Subjects:    requestSubjects(),
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
		MaxMsgSize:  messages.MaxRequestSize,
	}
}

// resultStreamConfig is CCKM_CANCEL_RESULTS: every result, de-duplicated
// by Nats-Msg-Id within the duplicate window, which covers the longest a
// redelivery can take.
func (c *Config) resultStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ResultStream,
		Description: "Results of cancel requests",
		Subjects:    []string{messages.SubjectResults},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      c.ResultRetention,
		Duplicates:  max(c.DuplicateWindow, c.redeliveryHorizon(c.AckWait)),
	}
}

// deadLetterStreamConfig is CCKM_CANCEL_DEAD: copies of requests whose last
// delivery failed, kept for 30 days.
func deadLetterStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Cancel requests whose last delivery failed",
		Subjects:    deadLetterSubjects(),
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		Duplicates:  2 * time.Minute,
	}
}

// deadLetterSubjects lists cckm.cancel.dead.<kind> for every kind. A
// wildcard would overlap cckm.cancel.*.result (think "dead.result").
func deadLetterSubjects() []string {
	subjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		subjects = append(subjects, kind.DeadLetterSubject())
	}
	return subjects
}

// consumerConfig is the durable pull consumer all instances share. The
// server never gives up on a request (MaxDeliver -1): the worker counts
// deliveries itself and ends a request with a failed result and a dead
// letter after MaxDeliveries, so a request whose last result could not be
// published is still delivered once more to publish it. MaxAckPending is
// requestsPending: the permits, not the consumer, bound the calls.
func (c *Config) consumerConfig() jetstream.ConsumerConfig {
	requests := c.requestsPending()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "cckm-cancel-worker instances",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: requests,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ensureStream returns whether the named stream exists, creating it from
// cfg when provisioning is on.
func (p *provisioner) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (bool, error) {
	_, err := p.js.Stream(ctx, cfg.Name)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	if !p.cfg.Provision {
		return false, nil
	}
	_, err = p.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return true, nil // another instance made it first
	}
	if err != nil {
		return false, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	p.log.Info().Str("stream", cfg.Name).Strs("subjects", cfg.Subjects).Msg("created stream")
	return true, nil
}

// correction is one setting of an existing stream or consumer that breaks
// a promise, and how to put it right.
type correction struct {
	setting, problem string
	apply            func()
}

// correct applies corrections when provisioning is on, or returns a
// *SettingError naming the first.
func (p *provisioner) correct(asset string, fixes []correction) error {
	if len(fixes) == 0 {
		return nil
	}
	if !p.cfg.Provision {
		return &SettingError{Asset: asset, Setting: fixes[0].setting, Problem: fixes[0].problem}
	}
	for _, fix := range fixes {
		fix.apply()
		p.log.Warn().Str("asset", asset).Str("setting", fix.setting).Msg("correcting a setting that " + fix.problem)
	}
	return nil
}

// checkRequestStream puts right an existing CCKM_CANCEL: every request
// subject held (missing ones are added in place, the messages kept), and
// payloads over messages.MaxRequestSize refused.
func (p *provisioner) checkRequestStream(ctx context.Context) error {
	stream, err := p.js.Stream(ctx, RequestStream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", RequestStream, err)
	}
	cfg := stream.CachedInfo().Config
	var fixes []correction
	if missing := uncovered(cfg.Subjects, requestSubjects()); len(missing) > 0 {
		fixes = append(fixes, correction{setting: "subjects", problem: "lacks " + strings.Join(missing, ", "),
			apply: func() { cfg.Subjects = append(cfg.Subjects, missing...) }})
	}
	// A stream that takes larger requests breaks no promise (they are
	// rejected all the same), but lets a pull's memory grow: corrected when
	// provisioning is on, left as it is otherwise.
	if p.cfg.Provision && (cfg.MaxMsgSize <= 0 || cfg.MaxMsgSize > messages.MaxRequestSize) {
		fixes = append(fixes, correction{setting: "max_msg_size", problem: "takes requests over 64 KiB",
			apply: func() { cfg.MaxMsgSize = messages.MaxRequestSize }})
	}
	if err := p.correct("stream "+RequestStream, fixes); err != nil || len(fixes) == 0 {
		return err
	}
	if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", RequestStream, err)
	}
	return nil
}

// minResultMsgSize is the least max_msg_size a results stream may have:
// the largest result without its job (request_id, id, overall_status and
// error message at their bounds, each at most six bytes a byte once
// JSON-escaped, the other fields and the headers) is well under 16 KiB.
const minResultMsgSize = 16 << 10

// checkStreamSubjects puts right an existing output stream made by an
// older worker (or by hand) that lacks subjects of want, those of kinds
// added since: they are added in place, its messages kept. Without them a
// dead letter, follow task or settled event of a new kind would find no
// stream.
func (p *provisioner) checkStreamSubjects(ctx context.Context, want jetstream.StreamConfig) error {
	stream, err := p.js.Stream(ctx, want.Name)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	cfg := stream.CachedInfo().Config
	missing := uncovered(cfg.Subjects, want.Subjects)
	if len(missing) == 0 {
		return nil
	}
	fix := correction{setting: "subjects", problem: "lacks " + strings.Join(missing, ", "),
		apply: func() { cfg.Subjects = append(cfg.Subjects, missing...) }}
	if err := p.correct("stream "+want.Name, []correction{fix}); err != nil {
		return err
	}
	if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return nil
}

// checkResultStream puts right an existing CCKM_CANCEL_RESULTS: it holds
// every result subject, drops copies for at least as long as a
// redelivery can take, and takes every result.
func (p *provisioner) checkResultStream(ctx context.Context, ackWait time.Duration) error {
	stream, err := p.js.Stream(ctx, ResultStream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", ResultStream, err)
	}
	cfg := stream.CachedInfo().Config
	var fixes []correction
	resultSubjects := make([]string, 0, len(messages.Kinds))
	for _, kind := range messages.Kinds {
		resultSubjects = append(resultSubjects, kind.ResultSubject())
	}
	if missing := uncovered(cfg.Subjects, resultSubjects); len(missing) > 0 {
		fixes = append(fixes, correction{setting: "subjects", problem: "lacks " + strings.Join(missing, ", "),
			apply: func() { cfg.Subjects = append(cfg.Subjects, missing...) }})
	}
	if horizon := p.cfg.redeliveryHorizon(ackWait); cfg.Duplicates < horizon {
		fixes = append(fixes, correction{setting: "duplicate_window",
			problem: fmt.Sprintf("of %v is shorter than a redelivery can take (%v): a redelivered request would store a second result", cfg.Duplicates, horizon),
			apply: func() {
				cfg.Duplicates = horizon
				if cfg.MaxAge > 0 && cfg.MaxAge < horizon {
					cfg.MaxAge = horizon
				}
			}})
	}
	// A stream that refuses results ends requests without one (too small),
	// or has them delivered again for ever (full, refusing new ones).
	if cfg.MaxMsgSize > 0 && cfg.MaxMsgSize < minResultMsgSize {
		fixes = append(fixes, correction{setting: "max_msg_size",
			problem: fmt.Sprintf("of %d bytes is smaller than a result can be (%d): a request would end without one", cfg.MaxMsgSize, minResultMsgSize),
			apply:   func() { cfg.MaxMsgSize = -1 }})
	}
	if cfg.Discard == jetstream.DiscardNew && (cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxMsgsPerSubject > 0) {
		fixes = append(fixes, correction{setting: "discard",
			problem: "is new with a limit: once full the stream stores no result, and requests would be delivered again for ever",
			apply:   func() { cfg.Discard, cfg.DiscardNewPerSubject = jetstream.DiscardOld, false }})
	}
	if err := p.correct("stream "+ResultStream, fixes); err != nil || len(fixes) == 0 {
		return err
	}
	if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", ResultStream, err)
	}
	return nil
}

// checkConsumer puts right an existing request consumer: explicit acks, a
// pull consumer, MaxDeliver unlimited or at least MaxDeliveries,
// MaxAckPending requestsPending, and a filter that
// leaves out no request subject. Settings the server cannot
// change in place (ack policy, push delivery) are corrected by creating
// the consumer again; the work queue keeps every request meanwhile.
func (p *provisioner) checkConsumer(ctx context.Context, cons jetstream.Consumer) (jetstream.Consumer, error) {
	cfg := cons.CachedInfo().Config
	asset := "consumer " + ConsumerName
	recreate := false
	fixes := pullConsumerFixes(cfg, &recreate, "a request would be taken as done before its result is stored")
	if cfg.MaxDeliver > 0 && cfg.MaxDeliver < p.cfg.MaxDeliveries {
		fixes = append(fixes, correction{setting: "max_deliver",
			problem: fmt.Sprintf("%d is below WORKER_MAX_DELIVERIES (%d): a request would be dropped with no result", cfg.MaxDeliver, p.cfg.MaxDeliveries),
			apply:   func() { cfg.MaxDeliver = -1 }})
	}
	if fix, ok := p.maxAckPendingFix(&cfg, p.cfg.requestsPending(), "requests held", "twice "); ok {
		fixes = append(fixes, fix)
	}
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) > 0 {
		if missing := uncovered(filters, requestSubjects()); len(missing) > 0 {
			fixes = append(fixes, correction{setting: "filter_subjects", problem: "leaves out " + strings.Join(missing, ", "),
				apply: func() { cfg.FilterSubject, cfg.FilterSubjects = "", append(filters, missing...) }})
		}
	}
	if err := p.correct(asset, fixes); err != nil || len(fixes) == 0 {
		return cons, err
	}
	if recreate {
		if err := p.js.DeleteConsumer(ctx, RequestStream, ConsumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", ConsumerName, err)
		}
		return p.createConsumer(ctx)
	}
	updated, err := p.js.UpdateConsumer(ctx, RequestStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", ConsumerName, err)
	}
	return updated, nil
}

// pullConsumerFixes are the corrections of a consumer that is not a pull
// consumer with explicit acks, which only creating it again can make:
// they set *recreate. lost says what an ack policy other than explicit
// loses.
func pullConsumerFixes(cfg jetstream.ConsumerConfig, recreate *bool, lost string) []correction {
	var fixes []correction
	if cfg.AckPolicy != jetstream.AckExplicitPolicy {
		fixes = append(fixes, correction{setting: "ack_policy", problem: "is not explicit: " + lost,
			apply: func() { *recreate = true }})
	}
	if cfg.DeliverSubject != "" {
		fixes = append(fixes, correction{setting: "deliver_subject", problem: "makes it a push consumer; the worker pulls",
			apply: func() { *recreate = true }})
	}
	return fixes
}

// maxAckPendingFix corrects a consumer's MaxAckPending that is not want,
// times CCKM_MAX_IN_FLIGHT: a smaller one holds the calls below the bound
// (a request or follow that holds a message and waits counts against it),
// a larger one lets the instances take in more than they can start. what
// names the messages it bounds, times how want is the bound ("twice ").
// Neither breaks a promise (the permits bound the calls), so with
// provisioning off it is only logged: a consumer made from an older
// worker's files (224, 32) keeps working until it is edited.
func (p *provisioner) maxAckPendingFix(cfg *jetstream.ConsumerConfig, want int, what, times string) (correction, bool) {
	if cfg.MaxAckPending == want {
		return correction{}, false
	}
	if !p.cfg.Provision {
		p.log.Warn().Str("consumer", cfg.Durable).Int("max_ack_pending", cfg.MaxAckPending).Int("expected", want).
			Msg("max_ack_pending is not " + times + "CCKM_MAX_IN_FLIGHT; left as it is (WORKER_PROVISION=false)")
		return correction{}, false
	}
	return correction{setting: "max_ack_pending",
		problem: fmt.Sprintf("%d is not %sCCKM_MAX_IN_FLIGHT (%d), the most %s across the instances",
			cfg.MaxAckPending, times, p.cfg.MaxInFlight, what),
		apply: func() { cfg.MaxAckPending = want }}, true
}

// checkFollowConsumer puts right an existing follow consumer:
// MaxAckPending followsPending.
func (p *provisioner) checkFollowConsumer(ctx context.Context, cons jetstream.Consumer) (jetstream.Consumer, error) {
	cfg := cons.CachedInfo().Config
	fix, ok := p.maxAckPendingFix(&cfg, p.cfg.followsPending(), "follows in progress", "")
	if !ok {
		return cons, nil
	}
	if err := p.correct("consumer "+FollowConsumer, []correction{fix}); err != nil {
		return nil, err
	}
	updated, err := p.js.UpdateConsumer(ctx, FollowStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", FollowConsumer, err)
	}
	return updated, nil
}

// uncovered lists the subjects that no pattern of patterns matches.
func uncovered(patterns, subjects []string) []string {
	var missing []string
	for _, subject := range subjects {
		if !slices.ContainsFunc(patterns, func(p string) bool { return subjectMatches(p, subject) }) {
			missing = append(missing, subject)
		}
	}
	return missing
}

// subjectMatches reports whether the NATS subject pattern (with * and >)
// matches the literal subject.
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, token := range pt {
		if token == ">" {
			return len(st) > i
		}
		if i >= len(st) || (token != "*" && token != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// setUpOutputs finds (or creates) the result, dead-letter, follow and
// settled streams, so that publishes wait for the stream's acknowledgement
// where one exists. A JetStream publish to a subject no stream holds waits
// for its time-out when anyone subscribes to the subject, so whether each
// stream exists is settled here, once, not found out by publishing.
func (p *provisioner) setUpOutputs(ctx context.Context) error {
	for _, out := range p.out.all() {
		want := out.stream()
		stored, err := p.ensureStream(ctx, want)
		if err != nil {
			return err
		}
		if stored {
			if err := p.checkStreamSubjects(ctx, want); err != nil {
				return err
			}
		}
		out.stored.Store(stored)
	}
	if !p.out.results.stored.Load() {
		p.log.Warn().Str("stream", ResultStream).Msg("no result stream: results are published on core NATS only")
	}
	return nil
}

// bindConsumer finds (or creates) CCKM_CANCEL and the durable consumer,
// and checks both, and the results stream, against the worker's promises.
func (p *provisioner) bindConsumer(ctx context.Context) (jetstream.Consumer, error) {
	exists, err := p.ensureStream(ctx, requestStreamConfig())
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("stream %s does not exist and WORKER_PROVISION is false", RequestStream)
	}
	if err := p.checkRequestStream(ctx); err != nil {
		return nil, err
	}
	if err := p.setUpOutputs(ctx); err != nil {
		return nil, err
	}
	cons, err := p.js.Consumer(ctx, RequestStream, ConsumerName)
	switch {
	case err == nil:
		if cons, err = p.checkConsumer(ctx, cons); err != nil {
			return nil, err
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("look up consumer %s: %w", ConsumerName, err)
	case !p.cfg.Provision:
		return nil, fmt.Errorf("consumer %s on %s does not exist and WORKER_PROVISION is false", ConsumerName, RequestStream)
	default:
		if cons, err = p.createConsumer(ctx); err != nil {
			return nil, err
		}
	}
	if p.out.results.stored.Load() {
		if err := p.checkResultStream(ctx, cons.CachedInfo().Config.AckWait); err != nil {
			return nil, err
		}
	}
	return cons, nil
}

func (p *provisioner) createConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := p.js.CreateConsumer(ctx, RequestStream, p.cfg.consumerConfig())
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return p.js.Consumer(ctx, RequestStream, ConsumerName)
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	p.log.Info().Str("consumer", ConsumerName).Str("stream", RequestStream).Msg("created consumer")
	return cons, nil
}

// bindFollowConsumer finds (or creates) CCKM_CANCEL_FOLLOW and its
// consumer, and checks the consumer's MaxAckPending.
func (p *provisioner) bindFollowConsumer(ctx context.Context) (jetstream.Consumer, error) {
	exists, err := p.ensureStream(ctx, followStreamConfig())
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("stream %s does not exist and WORKER_PROVISION is false", FollowStream)
	}
	cons, err := p.js.Consumer(ctx, FollowStream, FollowConsumer)
	if err == nil {
		return p.checkFollowConsumer(ctx, cons)
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) || !p.cfg.Provision {
		return cons, err
	}
	cons, err = p.js.CreateConsumer(ctx, FollowStream, p.cfg.followConsumerConfig())
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return p.js.Consumer(ctx, FollowStream, FollowConsumer)
	}
	return cons, err
}
