package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Protecting CipherTrust Manager. A Guard sits in front of every HTTP
// attempt on a job endpoint that this process makes (cancels and GETs,
// retries included): a rate limit, and a back-off every call shares. When
// CipherTrust Manager says it is overloaded (429, 503) or keeps failing
// (failuresToHold 5xx or unanswered attempts in a row), every new attempt
// is held: for the Retry-After it asked for, else for a delay that starts
// at FirstHold and doubles up to MaxHold. Then one attempt at a time goes
// through as a probe; a probe that gets any other answer ends the hold for
// all, one that fails holds again, for longer.
//
// A held attempt waits inside its delivery's handling, so the keeper keeps
// its message alive; an attempt whose call runs out of time while held
// fails without being sent, a transient failure like any other.

// DefaultRateBurst is the burst of the rate limit when none is set.
const DefaultRateBurst = 1

// defaultFailuresToHold is how many 5xx or unanswered attempts in a row
// start a hold: one failure is a bad request's luck, five in a row is
// CipherTrust Manager in trouble.
const defaultFailuresToHold = 5

// HTTP statuses the guard judges by.
const (
	statusTooManyRequests    = 429
	statusServiceUnavailable = 503
)

// GuardConfig configures a Guard. Zero values take the defaults named on
// each field.
type GuardConfig struct {
	// RateLimit is the attempts per second this process may make; 0 means
	// no limit.
	RateLimit float64
	// RateBurst is how many attempts may go at once above the rate.
	// Default DefaultRateBurst.
	RateBurst int
	// FirstHold is the first hold after a failure that gave no
	// Retry-After; it doubles with every failed probe. Default
	// DefaultRetryDelay.
	FirstHold time.Duration
	// MaxHold caps every hold, a Retry-After's too. Default
	// DefaultMaxRetryDelay.
	MaxHold time.Duration
	// failuresToHold is defaultFailuresToHold but in tests.
	failuresToHold int
}

func (c *GuardConfig) setDefaults() {
	if c.RateBurst <= 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.FirstHold <= 0 {
		c.FirstHold = DefaultRetryDelay
	}
	if c.MaxHold <= 0 {
		c.MaxHold = DefaultMaxRetryDelay
	}
	c.FirstHold = min(c.FirstHold, c.MaxHold)
	if c.failuresToHold <= 0 {
		c.failuresToHold = defaultFailuresToHold
	}
}

// Guard rate-limits and holds this process's calls to CipherTrust Manager.
// It is a cckmclient.Gate: set it as the client's Config.Gate. It is safe
// for concurrent use.
type Guard struct {
	cfg     GuardConfig
	limiter *rate.Limiter // nil: no limit
	log     zerolog.Logger
	metrics *Metrics
	now     func() time.Time

	mu       sync.Mutex
	changed  chan struct{} // closed, and replaced, when the state below changes
	holding  bool          // new attempts are held
	until    time.Time     // while holding: no probe before then
	probing  bool          // while holding: a probe is out
	nextHold time.Duration // the hold after the next failure without Retry-After
	failures int           // 5xx or unanswered attempts in a row, while not holding
	since    time.Time     // when the hold began
	probes   int           // probes sent in this hold
}

// NewGuard returns a Guard. metrics may be nil.
func NewGuard(cfg GuardConfig, log zerolog.Logger, metrics *Metrics) *Guard {
	cfg.setDefaults()
	g := &Guard{cfg: cfg, log: log, metrics: metrics, now: time.Now, changed: make(chan struct{}), nextHold: cfg.FirstHold}
	if cfg.RateLimit > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	return g
}

// Held reports whether new calls are being held.
func (g *Guard) Held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holding
}

// Wait blocks until an attempt may be sent: after any hold, as the probe
// or once a probe has succeeded, and then within the rate limit. It
// returns the function to call with the attempt's status and Retry-After.
// It returns an error when ctx ends first, and at once when the rate limit
// would make the attempt wait past ctx's deadline.
func (g *Guard) Wait(ctx context.Context) (func(status int, retryAfter time.Duration), error) {
	probe, err := g.waitForHold(ctx)
	if err != nil {
		return nil, err
	}
	if g.limiter != nil {
		if err := g.limiter.Wait(ctx); err != nil {
			if probe {
				g.abandonProbe()
			}
			return nil, fmt.Errorf("rate limit (CCKM_RATE_LIMIT %g per second): %w", g.cfg.RateLimit, err)
		}
	}
	return func(status int, retryAfter time.Duration) { g.done(probe, status, retryAfter) }, nil
}

// waitForHold returns when no hold keeps the attempt back; probe is true
// when the attempt goes as the hold's probe.
func (g *Guard) waitForHold(ctx context.Context) (probe bool, err error) {
	for {
		g.mu.Lock()
		if !g.holding {
			g.mu.Unlock()
			return false, nil
		}
		wait := g.until.Sub(g.now())
		if wait <= 0 && !g.probing {
			g.probing = true
			g.probes++
			g.mu.Unlock()
			return true, nil
		}
		changed := g.changed
		g.mu.Unlock()

		if err := waitForChange(ctx, changed, wait); err != nil {
			return false, fmt.Errorf("calls to CipherTrust Manager are held while it recovers: %w", err)
		}
	}
}

// waitForChange waits until changed is closed, wait has passed (when
// positive), or ctx ends, which it returns.
func waitForChange(ctx context.Context, changed <-chan struct{}, wait time.Duration) error {
	var timeUp <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timeUp = timer.C
	}
	select {
	case <-changed:
	case <-timeUp:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// done hears how an attempt went. While holding, only the probe's answer
// counts: the others were sent before the hold began.
func (g *Guard) done(probe bool, status int, retryAfter time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if status < 0 { // abandoned: says nothing of CipherTrust Manager
		if probe {
			g.probing = false
			g.notify()
		}
		return
	}
	failed, overloaded := judge(status)
	switch {
	case probe && failed:
		g.probing = false
		g.holdFor(retryAfter)
		g.log.Debug().Int("http_status", status).Time("until", g.until).Msg("the probe failed; holding calls to CipherTrust Manager longer")
	case probe:
		g.resume(status)
	case g.holding:
		// sent before the hold: its answer is old news
	case overloaded:
		g.startHold(status, retryAfter)
	case failed:
		g.failures++
		if g.failures >= g.cfg.failuresToHold {
			g.startHold(status, retryAfter)
		}
	default:
		g.failures = 0
	}
}

// judge says whether an answer counts as a failure of CipherTrust Manager
// (a 5xx, 429, or no answer), and whether it asked to be left alone at
// once (429, 503).
func judge(status int) (failed, overloaded bool) {
	overloaded = status == statusTooManyRequests || status == statusServiceUnavailable
	return overloaded || status == 0 || status >= 500, overloaded
}

// startHold begins holding calls; the caller holds g.mu.
func (g *Guard) startHold(status int, retryAfter time.Duration) {
	g.holding = true
	g.since = g.now()
	g.probes = 0
	g.failures = 0
	g.holdFor(retryAfter)
	g.metrics.setHeld(true)
	event := g.log.Warn().Int("http_status", status).Dur("first_hold", g.until.Sub(g.since))
	if retryAfter > 0 {
		event = event.Dur("retry_after", retryAfter)
	}
	event.Msg("CipherTrust Manager is overloaded or failing: holding every new call, then probing with one at a time")
}

// holdFor sets when the next probe may go: after retryAfter (capped at
// MaxHold) when CipherTrust Manager asked for it, else after the next
// growing delay. The caller holds g.mu.
func (g *Guard) holdFor(retryAfter time.Duration) {
	hold := g.nextHold
	if retryAfter > 0 {
		hold = min(retryAfter, g.cfg.MaxHold)
	} else {
		g.nextHold = min(2*g.nextHold, g.cfg.MaxHold)
	}
	g.until = g.now().Add(hold)
	g.notify()
}

// resume ends the hold; the caller holds g.mu.
func (g *Guard) resume(status int) {
	g.holding = false
	g.probing = false
	g.nextHold = g.cfg.FirstHold
	g.metrics.setHeld(false)
	g.log.Info().Int("http_status", status).Dur("held_for", g.now().Sub(g.since)).Int("probes", g.probes).
		Msg("CipherTrust Manager answered the probe: calls resume")
	g.notify()
}

// abandonProbe lets another attempt be the probe.
func (g *Guard) abandonProbe() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
	g.notify()
}

// notify wakes every waiter; the caller holds g.mu.
func (g *Guard) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}
