package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// requestStreamConfig is CCKM_CANCEL: a work queue of both request
// subjects, kept until a worker acknowledges or terminates each request.
func requestStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        RequestStream,
		Description: "Requests to cancel CipherTrust Manager CCKM jobs",
		Subjects:    []string{messages.SubjectRefresh, messages.SubjectBulkJob},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
	}
}

// resultStreamConfig is CCKM_CANCEL_RESULTS: every result, de-duplicated
// by Nats-Msg-Id within the duplicate window.
func (c *Config) resultStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ResultStream,
		Description: "Results of cancel requests",
		Subjects:    []string{messages.SubjectResults},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      c.ResultRetention,
		Duplicates:  c.DuplicateWindow,
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
// letter after MaxDeliveries, so a request whose result cannot be
// published is never dropped.
func (c *Config) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "cckm-cancel-worker instances",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 4*c.Concurrency),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ensureStream returns whether the named stream exists, creating it from
// cfg when provisioning is on.
func (w *Worker) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (bool, error) {
	_, err := w.js.Stream(ctx, cfg.Name)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	if !w.cfg.Provision {
		return false, nil
	}
	_, err = w.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return true, nil // another instance made it first
	}
	if err != nil {
		return false, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	w.log.Info().Str("stream", cfg.Name).Strs("subjects", cfg.Subjects).Msg("created stream")
	return true, nil
}

// setUpOutputs finds (or creates) the result and dead-letter streams, so
// that publishes wait for the stream's acknowledgement where one exists.
func (w *Worker) setUpOutputs(ctx context.Context) error {
	stored, err := w.ensureStream(ctx, w.cfg.resultStreamConfig())
	if err != nil {
		return err
	}
	if !stored {
		w.log.Warn().Str("stream", ResultStream).Msg("no result stream: results are published on core NATS only")
	}
	w.resultsStored.Store(stored)
	stored, err = w.ensureStream(ctx, deadLetterStreamConfig())
	if err != nil {
		return err
	}
	w.deadStored.Store(stored)
	// A JetStream publish to a subject no stream holds waits for its time-out
	// when anyone subscribes to the subject, so whether each stream exists is
	// settled here, once, not found out by publishing.
	stored, err = w.ensureStream(ctx, followStreamConfig())
	if err != nil {
		return err
	}
	w.followStored.Store(stored)
	stored, err = w.ensureStream(ctx, w.cfg.settledStreamConfig())
	if err != nil {
		return err
	}
	w.settledStored.Store(stored)
	return nil
}

// bindConsumer finds (or creates) CCKM_CANCEL and the durable consumer.
func (w *Worker) bindConsumer(ctx context.Context) (jetstream.Consumer, error) {
	exists, err := w.ensureStream(ctx, requestStreamConfig())
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("stream %s does not exist and WORKER_PROVISION is false", RequestStream)
	}
	if err := w.setUpOutputs(ctx); err != nil {
		return nil, err
	}
	cons, err := w.js.Consumer(ctx, RequestStream, ConsumerName)
	if err == nil {
		return cons, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("look up consumer %s: %w", ConsumerName, err)
	}
	if !w.cfg.Provision {
		return nil, fmt.Errorf("consumer %s on %s does not exist and WORKER_PROVISION is false", ConsumerName, RequestStream)
	}
	cons, err = w.js.CreateConsumer(ctx, RequestStream, w.cfg.consumerConfig())
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return w.js.Consumer(ctx, RequestStream, ConsumerName)
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	w.log.Info().Str("consumer", ConsumerName).Str("stream", RequestStream).Msg("created consumer")
	return cons, nil
}
