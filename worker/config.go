// Package worker consumes cancel requests from NATS, has them carried out
// by a Canceler, and publishes their results. It holds the delivery
// semantics: JetStream at-least-once with redelivery and dead
// letters, or core NATS at most once; bounded concurrency; draining
// shutdown. It knows nothing of HTTP.
package worker

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Mode is how requests are consumed.
type Mode string

// The two delivery modes: JetStream at least once, core NATS at most once.
const (
	ModeJetStream Mode = "jetstream"
	ModeCore      Mode = "core"
)

// Names of the JetStream assets the worker uses.
const (
	// RequestStream holds the requests.
	RequestStream = "CCKM_CANCEL"
	// ResultStream holds the results.
	ResultStream = "CCKM_CANCEL_RESULTS"
	// DeadLetterStream holds copies of requests whose last delivery failed.
	DeadLetterStream = "CCKM_CANCEL_DEAD"
	// ConsumerName is the durable pull consumer every instance shares.
	ConsumerName = "cckm-cancel-worker"
	// QueueGroup is the core-mode queue group.
	QueueGroup = "cckm-cancel-worker"
)

// Headers a dead-letter copy carries besides the request's own.
const (
	HeaderDeadReason     = "Cckm-Dead-Reason"
	HeaderDeadCode       = "Cckm-Dead-Code"
	HeaderDeadDeliveries = "Cckm-Dead-Deliveries"
	HeaderDeadAttempts   = "Cckm-Dead-Attempts"
	HeaderRequestID      = "Cckm-Request-Id"
	HeaderStreamSequence = "Cckm-Stream-Sequence"
	HeaderOrigSubject    = "Cckm-Original-Subject"
	// HeaderDeadPayloadOmitted is "true" on a dead letter that could only
	// be published without the request's payload.
	HeaderDeadPayloadOmitted = "Cckm-Dead-Payload-Omitted"
)

// Config configures a Worker. Zero values take the defaults below.
type Config struct {
	// Mode is jetstream (default) or core.
	Mode Mode
	// Concurrency bounds the calls to CipherTrust Manager in flight.
	Concurrency int
	// MaxInFlight bounds the cancel and GET calls in flight across every
	// instance that shares the consumers (jetstream mode), whatever their
	// number and Concurrency: the stream CCKM_CANCEL_INFLIGHT holds one
	// permit per call (see permits). At least MinMaxInFlight.
	MaxInFlight int
	// Provision creates missing streams and the consumer.
	Provision bool
	// AckWait is the consumer's ack wait when the worker creates it; calls
	// that outlive it are kept alive with InProgress.
	AckWait time.Duration
	// MaxDeliveries is the delivery after which a transient failure becomes
	// a failed result and a dead letter.
	MaxDeliveries int
	// RetryDelay is the redelivery delay after the first transient failure;
	// it doubles with every delivery, up to MaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// ShutdownTimeout bounds how long work in flight may finish after a
	// stop; calls still running then are abandoned (and redelivered in
	// jetstream mode).
	ShutdownTimeout time.Duration
	// ResultRetention is how long the result stream keeps results when the
	// worker creates it.
	ResultRetention time.Duration
	// DuplicateWindow is the results stream's de-duplication window when
	// the worker creates it: copies of a result published within it are
	// dropped.
	DuplicateWindow time.Duration
	// Follow follows every canceled job to its end (a settled event); a JSON
	// request can ask for it with "follow": true.
	Follow bool
	// FollowTimeout is how long a follow polls before it publishes
	// settled: false.
	FollowTimeout time.Duration
	// FollowInterval is the wait before the second poll; it doubles with
	// every poll, up to FollowMaxInterval.
	FollowInterval time.Duration
	// FollowMaxInterval caps the wait between two polls of a follow, so
	// that the end of a job is noticed at most this long after it.
	FollowMaxInterval time.Duration
	// CallBudget is the longest one call to CipherTrust Manager may take,
	// all its attempts included (the client's retry budget). With the
	// delays and the ack wait it bounds how long a redelivery can take,
	// which the results stream's duplicate window must cover.
	CallBudget time.Duration
	// TracerProvider, if set to a real provider, traces every request as a
	// consumer span (a child of its traceparent), every publish as a
	// producer span and every follow poll as a consumer span; the result
	// then carries the request span's traceparent. Give the Canceler the
	// same provider for its calls to be children of the request's span.
	// Default: no tracing, at no cost.
	TracerProvider trace.TracerProvider
	// Permits, if set, is the CCKM_MAX_IN_FLIGHT bound that the Canceler
	// already waits for before every HTTP attempt (its client's Gate,
	// after any back-off or rate limit, see NewPermits): the worker binds
	// it to JetStream. Without it the worker bounds each call of the
	// Canceler itself, retries and waits included.
	Permits *Permits

	// publishBudget bounds the tries of one publish within a delivery;
	// defaultPublishBudget but in tests.
	publishBudget time.Duration
}

// Defaults for Config.
const (
	DefaultConcurrency     = 64
	DefaultMaxInFlight     = 256
	DefaultAckWait         = 10 * time.Second
	DefaultMaxDeliveries   = 5
	DefaultRetryDelay      = time.Second
	DefaultMaxRetryDelay   = 30 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultResultRetention = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultFollowTimeout   = 15 * time.Minute
	DefaultFollowInterval  = 2 * time.Second
	DefaultCallBudget      = 30 * time.Second
)

// DefaultFollowMaxInterval is Config.FollowMaxInterval's default: each
// followed job polled at least twice a minute, one GET each, costs
// CipherTrust Manager little.
const DefaultFollowMaxInterval = 30 * time.Second

func (c *Config) setDefaults() {
	if c.Mode == "" {
		c.Mode = ModeJetStream
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	c.MaxInFlight = max(c.MaxInFlight, MinMaxInFlight)
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ResultRetention <= 0 {
		c.ResultRetention = DefaultResultRetention
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.FollowTimeout <= 0 {
		c.FollowTimeout = DefaultFollowTimeout
	}
	if c.FollowInterval <= 0 {
		c.FollowInterval = DefaultFollowInterval
	}
	if c.FollowMaxInterval <= 0 {
		c.FollowMaxInterval = DefaultFollowMaxInterval
	}
	if c.CallBudget <= 0 {
		c.CallBudget = DefaultCallBudget
	}
	if c.publishBudget <= 0 {
		c.publishBudget = defaultPublishBudget
	}
}

// MinMaxInFlight is the least MaxInFlight: one call at a time.
const MinMaxInFlight = 1

// requestsPending is the request consumer's MaxAckPending: twice
// MaxInFlight, the calls the permits allow and as many again waiting for a
// permit or having their result stored. The permits bound the calls; this
// only keeps the instances from taking in requests they could not start
// soon, which are better left in the stream for an instance that starts
// later.
func (c *Config) requestsPending() int { return 2 * c.maxInFlight() }

// followsPending is the follow consumer's MaxAckPending: MaxInFlight
// follows in progress at once. A task waiting between polls stays pending,
// so this bounds the follows, not the GETs, which hold permits like the
// cancels.
func (c *Config) followsPending() int { return c.maxInFlight() }

// maxInFlight is MaxInFlight, defaulted for a Config not yet defaulted.
func (c *Config) maxInFlight() int {
	if c.MaxInFlight <= 0 {
		return DefaultMaxInFlight
	}
	return max(c.MaxInFlight, MinMaxInFlight)
}

func (c *Config) validate() error {
	if c.Mode != ModeJetStream && c.Mode != ModeCore {
		return fmt.Errorf("WORKER_MODE %q is not jetstream or core", c.Mode)
	}
	return nil
}

// redeliveryDelay is the delay before delivery n+1 after a transient
// failure on delivery n: RetryDelay doubled per delivery, capped at
// MaxRetryDelay, and never shorter than the wait CipherTrust Manager asked
// for (Retry-After), up to MaxRetryDelay too: a Retry-After of a day must
// not park a request and hold a slot of the consumer's MaxAckPending.
func (c *Config) redeliveryDelay(delivered int, retryAfter time.Duration) time.Duration {
	return max(doubled(c.RetryDelay, delivered, c.MaxRetryDelay), min(retryAfter, c.MaxRetryDelay))
}

// doubled is first doubled n-1 times, at most ceiling: first for n = 1,
// ceiling for n < 1. It never overflows: first shifted left overflows a
// time.Duration for a first of a minute by n = 29 (of an hour by n = 23),
// and the overflowed delay was negative, so a setting such as
// WORKER_RETRY_DELAY=1h made late deliveries or polls come at once.
func doubled(first time.Duration, n int, ceiling time.Duration) time.Duration {
	if n < 1 || first <= 0 || first > ceiling>>min(n-1, 63) {
		return ceiling
	}
	return first << (n - 1)
}

// redeliveryHorizon is the longest a request can take from its first
// delivery to its last under ackWait: on each delivery a call, the tries
// of a publish, an ack that may be lost (the ack wait), and the delay
// before the next delivery. A results stream must drop copies of a result
// for at least this long, or a redelivery stores a second result.
func (c *Config) redeliveryHorizon(ackWait time.Duration) time.Duration {
	var total time.Duration
	for n := 1; n <= c.MaxDeliveries; n++ {
		total += c.CallBudget + c.publishBudget + ackWait + c.redeliveryDelay(n, 0)
	}
	return total
}
