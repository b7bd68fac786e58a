package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// The bound on calls in flight across instances (CCKM_MAX_IN_FLIGHT).
//
// The stream CCKM_CANCEL_INFLIGHT holds exactly MaxInFlight messages, the
// permits, read by every instance through one durable consumer,
// cckm-cancel-inflight. An HTTP attempt on a job (a cancel or GET) runs
// only while its instance holds a permit, that is, a message it was
// delivered and has not acknowledged. The server delivers each message to
// one consumer at a time, so the calls in flight across the instances do
// not outnumber the permits, whatever the number of instances, as long as
// each holder keeps its lease (reports progress within the ack wait). An
// instance that dies gives its permits back by not reporting progress on
// them: they are delivered again after the ack wait. One whose connection
// was lost drops the permits it held instead of giving them back, since
// the server may have handed them on (see lapsedLocked).
//
// A permit is not given back after every call, which would cost a round
// trip to the server per call: the instance keeps it for its next call,
// gives it back (Nak, so another instance can have it at once) after
// permitIdle without one, and after a call once it has held it for
// permitRotation while other instances wait for permits, so that
// instances that all stay busy still share them. Twice a second the
// instance asks the consumer whether anyone else waits (watch); while no
// one does, a busy instance keeps its permits for up to permitMaxHold,
// since giving one back would only make its own next call wait for it to
// come back (at C = 64 and 20 ms calls, one instance gave back and waited
// for 64 permits a second: 230-350 waits of over 1 ms in 20,000 calls,
// against none now past the first 64). A permit held is kept alive
// (InProgress) by a keeper of its own, apart from the requests'.
//
// Only the attempts hold permits: a request waiting for its result to be
// stored holds none, so a bound that the calls do not reach costs nothing.
// The client takes them through its Gate (Permits), before the shared
// back-off and the rate limit, so that an attempt the guard lets through
// is sent at once: a hold cannot be passed by attempts that were waiting
// for permits when it began. An attempt waiting out a hold or the rate
// limit holds its permit meanwhile; the backoff between retries holds
// none. A Canceler without that Gate has the worker take one per call
// (permitted), retries and waits included.
// (The consumers' MaxAckPending bounds the messages held, at twice the
// bound for requests, never the calls.)

// Names of the bound's assets.
const (
	// InFlightStream holds the permits.
	InFlightStream = "CCKM_CANCEL_INFLIGHT"
	// InFlightConsumer hands the permits out.
	InFlightConsumer = "cckm-cancel-inflight"
	// inFlightSubject is the permits' subject.
	inFlightSubject = messages.SubjectPrefix + "inflight.permit"
)

// How long an instance keeps a permit.
const (
	// permitIdle is how long an instance keeps a permit no call needs.
	permitIdle = 250 * time.Millisecond
	// permitRotation is how long an instance keeps a permit while its
	// calls keep needing it and other instances wait for permits (or
	// whether they do cannot be told); then it is given back after the
	// call.
	permitRotation = time.Second
	// permitMaxHold is how long an instance keeps a permit while its calls
	// keep needing it and no other instance waits. Giving it back then
	// checks that it is still a permit: one deleted on its own by hand,
	// which watch cannot always tell (see goneLocked), is gone from the
	// server, and calls under it do not count against the bound.
	permitMaxHold = 10 * time.Second
	// permitWatchEvery is how often an instance holding permits asks
	// whether other instances wait for them (watch): twice a
	// permitRotation, so that it knows before its first permits are due.
	permitWatchEvery = permitRotation / 2
	// permitFetchWait is how long one request for permits waits at the
	// server; it is asked again while calls still wait.
	permitFetchWait = time.Second
	// permitFetchErrorWait is the pause after a request for permits that
	// failed.
	permitFetchErrorWait = time.Second
	// maxPermitPulls bounds the requests for permits an instance has out
	// at once (each asks for every call then waiting): a request per call
	// would put up to WORKER_CONCURRENCY of them on the consumer per
	// instance, past the server's limit (max_waiting, 512 by default) at
	// about ten instances.
	maxPermitPulls = 4
	// permitCheckEvery is how often requests for permits that bring none
	// have the worker check that the permits are all there.
	permitCheckEvery = 10 * time.Second
)

func (c *Config) inFlightStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        InFlightStream,
		Description: "One message per call to CipherTrust Manager that may be in flight across the instances (CCKM_MAX_IN_FLIGHT)",
		Subjects:    []string{inFlightSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgs:     int64(c.MaxInFlight),
		Discard:     jetstream.DiscardNew,
	}
}

// inFlightConsumerConfig: no MaxDeliver (a permit is delivered again and
// again, for ever) and no MaxAckPending (the stream holds the bound).
func (c *Config) inFlightConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       InFlightConsumer,
		Description:   "cckm-cancel-worker instances taking turns at calling CipherTrust Manager",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// permit is one permit an instance holds.
type permit struct {
	msg  jetstream.Msg
	got  time.Time // when it was delivered
	idle time.Time // while unused: since when
	// link is the connection's reconnect count when it was delivered: after
	// a reconnect its InProgress reports may have been lost and the server
	// may have handed it to another instance.
	link uint64
	// seq is its stream sequence (0: unknown), and made when the consumer
	// that delivered it was created, as this instance knew then: watch
	// tells by them a permit gone from the server (see goneLocked).
	seq  uint64
	made time.Time
}

// permits are the permits this instance holds, and the calls waiting for
// one. It is safe for concurrent use.
type permits struct {
	keep    *keeper
	log     zerolog.Logger
	metrics *Metrics
	now     func() time.Time

	mu      sync.Mutex
	cons    jetstream.Consumer // nil until bound
	links   func() uint64      // the connection's reconnects so far; nil: none
	ackWait time.Duration
	closed  bool
	off     bool           // core mode: every call goes, holding nothing
	free    []permit       // held and unused, the most recently used last
	inUse   int            // held by a call
	waiters []chan permit  // calls waiting, first come first served
	asked   int            // permits asked for and not yet delivered
	pulls   int            // requests for permits under way
	pulling sync.WaitGroup // their goroutines, which close waits for
	checked time.Time      // when a request that brought none last had the worker look
	// keepFor is how long a permit in use is kept before it is given back
	// after its call: permitRotation, or permitMaxHold while watch sees no
	// other instance waiting.
	keepFor time.Duration
	// made is when the permit consumer was created, and floor its ack
	// floor (the stream sequence below which no permit is out), as watch
	// (or bind) last read them.
	made    time.Time
	floor   uint64
	lastErr time.Time // when a failed request for permits was last logged

	// lost is signalled when a request for permits failed or brought
	// none, to have the consumer and stream looked up, and bound again.
	lost chan struct{}
}

func newPermits(log zerolog.Logger, metrics *Metrics, now func() time.Time) *permits {
	return &permits{keep: newKeeper(), log: log, metrics: metrics, now: now, lost: make(chan struct{}, 1), keepFor: permitRotation}
}

// bind starts handing out permits of cons; calls wait until then. It may be
// called again with the consumer bound anew.
func (p *permits) bind(cons jetstream.Consumer, ackWait time.Duration, links func() uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cons, p.ackWait, p.links = cons, ackWait, links
	if info := cons.CachedInfo(); info != nil {
		p.seenLocked(info)
	}
	p.askLocked()
}

// linkLocked is the connection's reconnect count; the caller holds p.mu.
func (p *permits) linkLocked() uint64 {
	if p.links == nil {
		return 0
	}
	return p.links()
}

// lapsed reports whether held may have been handed to another instance
// since it was delivered: the connection was lost in between. Such a
// permit is dropped, not given back: a Nak of a permit the server has
// handed on would make it deliverable a second time while its new holder
// still calls under it, one call over the bound for good. The server
// hands it out again after the ack wait. The caller holds p.mu.
func (p *permits) lapsedLocked(held permit) bool { return held.link != p.linkLocked() }

// goneLocked reports whether held is no longer out at the server, as far
// as watch last saw: delivered by a permit consumer since deleted (and
// maybe made anew), or below the consumer's ack floor, where a purge puts
// it (a permit is never acknowledged). Such a permit is dropped, not
// given back: a consumer made anew (or one of a stream made anew, whose
// sequences start again at 1) takes a Nak by stream and delivery
// sequence alone, and would deliver a second time a permit it has handed
// to another instance since. A permit delivered while the consumer's
// creation was not known (made zero) is judged by its sequence alone.
// The caller holds p.mu.
func (p *permits) goneLocked(held permit) bool {
	return (!held.made.IsZero() && !held.made.Equal(p.made)) || (held.seq != 0 && held.seq <= p.floor)
}

// seenLocked takes the consumer's creation time and ack floor from info;
// the caller holds p.mu.
func (p *permits) seenLocked(info *jetstream.ConsumerInfo) {
	p.made, p.floor = info.Created, info.AckFloor.Stream
}

// dropLocked stops keeping alive a permit that is not to be given back
// (lapsed or gone); the caller holds p.mu.
func (p *permits) dropLocked(held permit) {
	p.keep.release(held.msg)
}

// turnOff lets every call go without a permit, for good: core mode.
func (p *permits) turnOff() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.off = true
	for _, handed := range p.waiters {
		handed <- permit{}
	}
	p.waiters = nil
}

// acquire waits for a permit until ctx ends. With permits off it returns
// none (a permit without a message), at once.
func (p *permits) acquire(ctx context.Context) (permit, error) {
	p.mu.Lock()
	if p.off {
		p.mu.Unlock()
		return permit{}, nil
	}
	if p.closed {
		p.mu.Unlock()
		return permit{}, errPermitsClosed
	}
	for n := len(p.free); n > 0; n = len(p.free) {
		held := p.free[n-1]
		p.free = p.free[:n-1]
		if p.lapsedLocked(held) || p.goneLocked(held) {
			p.dropLocked(held)
			p.gaugeLocked()
			continue
		}
		p.inUse++
		p.mu.Unlock()
		return held, nil
	}
	handed := make(chan permit, 1)
	p.waiters = append(p.waiters, handed)
	p.askLocked()
	p.gaugeLocked()
	p.mu.Unlock()

	select {
	case held := <-handed:
		return held, nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, handed); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.gaugeLocked()
		p.mu.Unlock()
		return permit{}, ctx.Err()
	}
	p.mu.Unlock()
	p.release(<-handed) // handed over as ctx ended
	return permit{}, ctx.Err()
}

var errPermitsClosed = errors.New("the worker is stopping")

// release is called when the call that held held is over.
func (p *permits) release(held permit) {
	if held.msg == nil { // none was held: permits off
		return
	}
	now := p.now()
	p.mu.Lock()
	p.inUse--
	if p.lapsedLocked(held) || p.goneLocked(held) {
		p.askLocked()
		p.gaugeLocked()
		p.dropLocked(held)
		p.mu.Unlock()
		return
	}
	if p.closed || now.Sub(held.got) >= p.keepFor {
		p.askLocked() // a local waiter asks the server, with every other instance
		p.gaugeLocked()
		p.mu.Unlock()
		p.giveBack(held)
		return
	}
	p.placeLocked(held, now)
	p.mu.Unlock()
}

// placeLocked gives a permit to the first call waiting, or keeps it unused.
// The caller holds p.mu.
func (p *permits) placeLocked(held permit, now time.Time) {
	if len(p.waiters) > 0 {
		handed := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.inUse++
		handed <- held // buffered: never blocks
		p.gaugeLocked()
		return
	}
	held.idle = now
	p.free = append(p.free, held)
	p.gaugeLocked()
}

// giveBack returns a permit to the server for any instance to take.
func (p *permits) giveBack(held permit) {
	p.keep.release(held.msg)
	if err := held.msg.Nak(); err != nil {
		p.log.Debug().Err(err).Msg("cannot give a CCKM_MAX_IN_FLIGHT permit back; it returns after the ack wait")
	}
}

// askLocked asks the server for as many permits as calls wait for and
// have not been asked for. The caller holds p.mu.
func (p *permits) askLocked() {
	want := len(p.waiters) - p.asked
	if want <= 0 || p.cons == nil || p.closed || p.pulls >= maxPermitPulls {
		return
	}
	p.asked += want
	p.pulls++
	cons := p.cons
	p.pulling.Go(func() { p.fetch(cons, want) })
}

// fetch asks cons for n permits and places each as it comes.
func (p *permits) fetch(cons jetstream.Consumer, n int) {
	got := 0
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(permitFetchWait))
	if err == nil {
		for msg := range batch.Messages() {
			got++
			now := p.now()
			p.mu.Lock()
			p.keep.hold(msg, p.ackWait, now) // as watch last read it
			p.asked--
			if p.closed {
				p.mu.Unlock()
				p.giveBack(permit{msg: msg})
				continue
			}
			held := permit{msg: msg, got: now, link: p.linkLocked(), made: p.made}
			if meta, err := msg.Metadata(); err == nil {
				held.seq = meta.Sequence.Stream
			}
			p.placeLocked(held, now)
			p.mu.Unlock()
		}
		err = batch.Error()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked -= n - got
	p.pulls--
	now := p.now()
	// The consumer or its stream may be gone (the errors say so in more
	// ways than one: not found, deleted, no responders): have the worker
	// look and put them right. A request that brought none may mean the
	// permits were purged, which no error says, or only that every one is
	// in use: that is looked at once per permitCheckEvery.
	if err != nil || (got == 0 && now.Sub(p.checked) >= permitCheckEvery) {
		if err == nil {
			p.checked = now
		}
		select {
		case p.lost <- struct{}{}:
		default:
		}
	}
	if err == nil {
		p.askLocked() // calls still waiting: ask again
		return
	}
	if now.Sub(p.lastErr) >= time.Minute {
		p.lastErr = now
		p.log.Warn().Err(err).Str("consumer", InFlightConsumer).Msg("cannot get CCKM_MAX_IN_FLIGHT permits; calls wait")
	}
	time.AfterFunc(permitFetchErrorWait, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.askLocked()
	})
}

// run keeps the permits held alive, gives back those no call used for
// permitIdle, and watches whether other instances wait, until ctx ends.
func (p *permits) run(ctx context.Context) {
	var helpers sync.WaitGroup
	helpers.Go(func() { p.keep.run(ctx) })
	helpers.Go(func() { p.watch(ctx) })
	defer helpers.Wait()
	every(ctx, permitIdle/2, p.giveBackIdle)
}

// giveBackIdle gives back the permits no call has used for permitIdle,
// and drops those of them that are lapsed or gone.
func (p *permits) giveBackIdle() {
	p.mu.Lock()
	cutoff := p.now().Add(-permitIdle)
	var idle []permit
	n := len(p.free)
	p.free = slices.DeleteFunc(p.free, func(held permit) bool {
		switch {
		case held.idle.After(cutoff):
			return false
		case p.lapsedLocked(held) || p.goneLocked(held):
			p.dropLocked(held)
		default:
			idle = append(idle, held)
		}
		return true
	})
	if len(p.free) != n {
		p.gaugeLocked()
	}
	p.mu.Unlock()
	for _, held := range idle {
		p.giveBack(held)
	}
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	ticker := time.NewTicker(d)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		fn()
	}
}

// watch looks at the permit consumer every permitWatchEvery while this
// instance holds permits, and sets how long it keeps one in use (keepFor):
// permitRotation when other instances may be waiting, permitMaxHold when
// none is. Pull requests waiting at the server beyond this instance's
// own are other instances waiting. Fewer permits out at the server than
// this instance holds means some it holds are gone: they are given back
// soon, and the stream filled again. The permits it knows gone by their
// own sequence and consumer (goneLocked) it drops at once. A consumer
// that cannot be read is taken as waited on.
func (p *permits) watch(ctx context.Context) {
	every(ctx, permitWatchEvery, func() { p.look(ctx) })
}

// look reads the permit consumer once, for watch.
func (p *permits) look(ctx context.Context) {
	p.mu.Lock()
	cons, held, pulls := p.cons, p.inUse+len(p.free), p.pulls
	p.mu.Unlock()
	if cons == nil || held == 0 {
		return
	}
	infoCtx, cancel := context.WithTimeout(ctx, permitWatchEvery)
	info, err := cons.Info(infoCtx)
	cancel()
	keepFor := permitRotation
	if err == nil && info.NumWaiting <= pulls && info.NumAckPending >= held {
		keepFor = permitMaxHold
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keepFor = keepFor
	if err != nil {
		return
	}
	p.sweepGoneLocked(info)
	// An ack wait shortened under the permits held (by hand, or by an
	// instance putting another setting right) would have them time out
	// at the server, and be handed to another instance, between two
	// reports at the old pace.
	if ackWait := info.Config.AckWait; ackWait > 0 && ackWait != p.ackWait {
		p.ackWait = ackWait
		p.keep.retime(ackWait)
	}
}

// sweepGoneLocked takes in what info says of the consumer and drops the
// unused permits now known gone; those in use are dropped as their calls
// end (release). The number of permits out at the server cannot tell
// them while other instances hold permits too, nor a consumer made anew
// that has handed every permit out again. The caller holds p.mu.
func (p *permits) sweepGoneLocked(info *jetstream.ConsumerInfo) {
	p.seenLocked(info)
	n := len(p.free)
	p.free = slices.DeleteFunc(p.free, func(held permit) bool {
		if !p.goneLocked(held) {
			return false
		}
		p.dropLocked(held)
		return true
	})
	if len(p.free) != n {
		p.gaugeLocked()
	}
}

// close gives back every unused permit, and each one in use when its call
// ends; no call gets one after. It returns once the requests for permits
// still out have ended (at most permitFetchWait).
func (p *permits) close() {
	p.mu.Lock()
	p.closed = true
	free := slices.DeleteFunc(p.free, func(held permit) bool {
		drop := p.lapsedLocked(held) || p.goneLocked(held)
		if drop {
			p.dropLocked(held)
		}
		return drop
	})
	p.free = nil
	p.gaugeLocked()
	p.mu.Unlock()
	for _, held := range free {
		p.giveBack(held)
	}
	// Requests for permits still out end within permitFetchWait; what they
	// bring is given back while the connection is still there to do it.
	p.pulling.Wait()
}

// held is the number of permits this instance holds.
func (p *permits) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse + len(p.free)
}

// gaugeLocked shows the permits held and the calls waiting; the caller
// holds p.mu.
func (p *permits) gaugeLocked() {
	p.metrics.setPermits(p.inUse+len(p.free), len(p.waiters))
}

// Permits is the CCKM_MAX_IN_FLIGHT bound as a cckmclient.Gate: an HTTP
// attempt waits for a permit and holds it until it is over. Make the
// client's Gate cckmclient.Chain(permits, guard), so that an attempt the
// guard lets through is sent at once, and give the worker the same
// Permits (Config.Permits): attempts wait until the worker has bound it, in
// jetstream mode, and go freely in core mode, which has no permits.
type Permits struct{ p *permits }

// NewPermits returns Permits for one worker. metrics may be nil.
func NewPermits(log zerolog.Logger, metrics *Metrics) *Permits {
	return &Permits{p: newPermits(log, metrics, time.Now)}
}

// Wait implements cckmclient.Gate.
func (g *Permits) Wait(ctx context.Context) (func(status int, retryAfter time.Duration), error) {
	held, err := g.p.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("no CCKM_MAX_IN_FLIGHT permit was free: %w", err)
	}
	return func(int, time.Duration) { g.p.release(held) }, nil
}

// permitted is a Canceler whose every call runs under a permit.
type permitted struct {
	Canceler
	permits *permits
}

func (c permitted) Cancel(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error) {
	held, err := c.permits.acquire(ctx)
	if err != nil {
		return cckmclient.Response{}, notSent("cancel", kind, id, err)
	}
	defer c.permits.release(held)
	return c.Canceler.Cancel(ctx, kind, id)
}

func (c permitted) Get(ctx context.Context, kind messages.Kind, id string) (cckmclient.Response, error) {
	held, err := c.permits.acquire(ctx)
	if err != nil {
		return cckmclient.Response{}, notSent("get", kind, id, err)
	}
	defer c.permits.release(held)
	return c.Canceler.Get(ctx, kind, id)
}

// notSent is the error of a call that found no permit in time: nothing
// was sent, and a later delivery may succeed.
func notSent(op string, kind messages.Kind, id string, err error) error {
	return &cckmclient.UnreachableError{Op: fmt.Sprintf("%s %s %s", op, kind, id),
		Err: fmt.Errorf("%w: no CCKM_MAX_IN_FLIGHT permit was free (%w)", cckmclient.ErrNotSent, err)}
}

// bindInFlight finds (or creates) CCKM_CANCEL_INFLIGHT and its consumer,
// checks both, and fills the stream to MaxInFlight permits.
func (p *provisioner) bindInFlight(ctx context.Context) (jetstream.Consumer, error) {
	want := p.cfg.inFlightStreamConfig()
	exists, err := p.ensureStream(ctx, want)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("stream %s does not exist and WORKER_PROVISION is false: CCKM_MAX_IN_FLIGHT cannot be kept", InFlightStream)
	}
	if err := p.checkInFlightStream(ctx); err != nil {
		return nil, err
	}
	return p.inFlightConsumer(ctx, true)
}

// restoreInFlight makes again what is missing of the permits, without
// checking settings: the consumer, and the permits up to the stream's
// limit, which another instance may have set to its own bound.
func (p *provisioner) restoreInFlight(ctx context.Context) (jetstream.Consumer, error) {
	exists, err := p.ensureStream(ctx, p.cfg.inFlightStreamConfig())
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("stream %s does not exist and WORKER_PROVISION is false: CCKM_MAX_IN_FLIGHT cannot be kept", InFlightStream)
	}
	return p.inFlightConsumer(ctx, false)
}

// inFlightConsumer finds (or creates) the permit consumer, checks it when
// check is true, and fills the stream.
func (p *provisioner) inFlightConsumer(ctx context.Context, check bool) (jetstream.Consumer, error) {
	cons, err := p.js.Consumer(ctx, InFlightStream, InFlightConsumer)
	switch {
	case err == nil && check:
		cons, err = p.checkInFlightConsumer(ctx, cons)
	case err == nil:
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		err = fmt.Errorf("look up consumer %s: %w", InFlightConsumer, err)
	case !p.cfg.Provision:
		err = fmt.Errorf("consumer %s on %s does not exist and WORKER_PROVISION is false: CCKM_MAX_IN_FLIGHT cannot be kept", InFlightConsumer, InFlightStream)
	default:
		cons, err = p.js.CreateConsumer(ctx, InFlightStream, p.cfg.inFlightConsumerConfig())
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = p.js.Consumer(ctx, InFlightStream, InFlightConsumer)
		}
	}
	if err != nil {
		return nil, err
	}
	return cons, p.fillInFlight(ctx)
}

// checkInFlightStream puts right an existing CCKM_CANCEL_INFLIGHT: it holds
// MaxInFlight permits, and refuses more. A stream made for another bound
// is brought to this one: the last instance to start sets the bound for
// all, and says so.
func (p *provisioner) checkInFlightStream(ctx context.Context) error {
	stream, err := p.js.Stream(ctx, InFlightStream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", InFlightStream, err)
	}
	cfg := stream.CachedInfo().Config
	want := int64(p.cfg.MaxInFlight)
	var fixes []correction
	if cfg.MaxMsgs != want {
		fixes = append(fixes, correction{setting: "max_msgs",
			problem: fmt.Sprintf("of %d is not CCKM_MAX_IN_FLIGHT (%d): it holds one permit per call that may be in flight", cfg.MaxMsgs, want),
			apply:   func() { cfg.MaxMsgs = want }})
	}
	if cfg.Discard != jetstream.DiscardNew {
		fixes = append(fixes, correction{setting: "discard",
			problem: "is not new: a permit published beyond the bound would push out one in use",
			apply:   func() { cfg.Discard = jetstream.DiscardNew }})
	}
	if cfg.MaxAge != 0 {
		fixes = append(fixes, correction{setting: "max_age",
			problem: "is set: permits would expire while calls hold them, and be made again beside them",
			apply:   func() { cfg.MaxAge = 0 }})
	}
	if cfg.MaxMsgsPerSubject > 0 && cfg.MaxMsgsPerSubject < want {
		fixes = append(fixes, correction{setting: "max_msgs_per_subject",
			problem: fmt.Sprintf("of %d is below CCKM_MAX_IN_FLIGHT (%d): each permit made beyond it would delete one a call may hold", cfg.MaxMsgsPerSubject, want),
			apply:   func() { cfg.MaxMsgsPerSubject = -1 }})
	}
	if !slices.Equal(cfg.Subjects, []string{inFlightSubject}) {
		fixes = append(fixes, correction{setting: "subjects",
			problem: "is not " + inFlightSubject + " alone: other messages would be taken for permits",
			apply:   func() { cfg.Subjects = []string{inFlightSubject} }})
	}
	// A discard-new stream keeps what it holds when its max_msgs is
	// lowered (by an instance of a smaller bound whose purge failed, or by
	// hand): more permits than the bound, for good, until purged.
	held := stream.CachedInfo().State.Msgs
	excess := held > uint64(want)
	if excess {
		fixes = append(fixes, correction{setting: "max_msgs",
			problem: fmt.Sprintf("is met by %d permits, more than CCKM_MAX_IN_FLIGHT (%d): as many calls could run", held, want),
			apply:   func() {}})
	}
	if err := p.correct("stream "+InFlightStream, fixes); err != nil || len(fixes) == 0 {
		return err
	}
	if len(fixes) > 1 || !excess {
		if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("update stream %s: %w", InFlightStream, err)
		}
	}
	// Calls under the permits purged end as they would; the instances
	// holding them drop them within permitWatchEvery (below the ack floor).
	if !excess {
		return nil
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeKeep(uint64(want))); err != nil {
		return fmt.Errorf("purge stream %s to %d permits: %w", InFlightStream, want, err)
	}
	return nil
}

// checkInFlightConsumer puts right an existing permit consumer: explicit
// acks, pulled, never giving up on a permit, and no filter.
func (p *provisioner) checkInFlightConsumer(ctx context.Context, cons jetstream.Consumer) (jetstream.Consumer, error) {
	cfg := cons.CachedInfo().Config
	recreate := false
	fixes := pullConsumerFixes(cfg, &recreate, "a permit would be taken once and lost")
	if cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		fixes = append(fixes, correction{setting: "deliver_policy",
			problem: "is not all: permits stored before it (new), or all but one (last), would never be handed out",
			apply:   func() { recreate = true }})
	}
	if cfg.MaxDeliver > 0 {
		fixes = append(fixes, correction{setting: "max_deliver", problem: "is limited: a permit delivered that often would be lost",
			apply: func() { cfg.MaxDeliver = -1 }})
	}
	if cfg.MaxAckPending > 0 && cfg.MaxAckPending < p.cfg.MaxInFlight {
		fixes = append(fixes, correction{setting: "max_ack_pending",
			problem: fmt.Sprintf("of %d is below CCKM_MAX_IN_FLIGHT (%d): fewer calls would run than the bound allows", cfg.MaxAckPending, p.cfg.MaxInFlight),
			apply:   func() { cfg.MaxAckPending = -1 }})
	}
	if cfg.FilterSubject != "" || len(cfg.FilterSubjects) > 0 {
		fixes = append(fixes, correction{setting: "filter_subjects", problem: "leaves permits out",
			apply: func() { cfg.FilterSubject, cfg.FilterSubjects = "", nil }})
	}
	if len(cfg.BackOff) > 0 {
		// The server times a redelivered permit out after the back-off
		// step of its delivery count, not the ack wait the keeper reports
		// against: a permit given back once could be handed to another
		// instance while this one still calls under it.
		fixes = append(fixes, correction{setting: "backoff",
			problem: "is set: a permit delivered again would time out before its holder reports it in progress, and be handed to a second instance",
			apply:   func() { cfg.BackOff, cfg.AckWait = nil, p.cfg.AckWait }})
	}
	if cfg.MaxRequestBatch > 0 {
		// An instance asks for a permit per call waiting, as many as its
		// WORKER_CONCURRENCY, in one request.
		fixes = append(fixes, correction{setting: "max_batch",
			problem: fmt.Sprintf("of %d refuses a request for more permits: the calls waiting for them would wait for ever", cfg.MaxRequestBatch),
			apply:   func() { cfg.MaxRequestBatch = 0 }})
	}
	if cfg.MaxRequestExpires > 0 && cfg.MaxRequestExpires < permitFetchWait {
		fixes = append(fixes, correction{setting: "max_expires",
			problem: fmt.Sprintf("of %v refuses the worker's requests for permits, which wait %v: calls would wait for ever", cfg.MaxRequestExpires, permitFetchWait),
			apply:   func() { cfg.MaxRequestExpires = 0 }})
	}
	asset := "consumer " + InFlightConsumer
	if err := p.correct(asset, fixes); err != nil || len(fixes) == 0 {
		return cons, err
	}
	if recreate {
		if err := p.js.DeleteConsumer(ctx, InFlightStream, InFlightConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", InFlightConsumer, err)
		}
		created, err := p.js.CreateConsumer(ctx, InFlightStream, p.cfg.inFlightConsumerConfig())
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return p.js.Consumer(ctx, InFlightStream, InFlightConsumer)
		}
		return created, err
	}
	updated, err := p.js.UpdateConsumer(ctx, InFlightStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", InFlightConsumer, err)
	}
	return updated, nil
}

// fillInFlight publishes permits until the stream holds as many as its
// max_msgs, the bound (MaxInFlight once checked). The stream refuses any
// beyond (discard new), so instances filling it at once still make
// exactly that many.
func (p *provisioner) fillInFlight(ctx context.Context) error {
	stream, err := p.js.Stream(ctx, InFlightStream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", InFlightStream, err)
	}
	info := stream.CachedInfo()
	bound := info.Config.MaxMsgs
	if bound <= 0 {
		bound = int64(p.cfg.MaxInFlight)
	}
	missing := bound - int64(info.State.Msgs)
	for range missing {
		if _, err := p.js.Publish(ctx, inFlightSubject, nil); err != nil {
			if strings.Contains(err.Error(), "maximum messages exceeded") {
				break // another instance filled it
			}
			return fmt.Errorf("publish a permit to %s: %w", InFlightStream, err)
		}
	}
	if missing > 0 {
		p.log.Info().Str("stream", InFlightStream).Int64("permits", missing).Int64("max_in_flight", bound).
			Msg("added CCKM_MAX_IN_FLIGHT permits")
	}
	return nil
}
