package worker

import "sync/atomic"

// goPool runs functions on goroutines it keeps for the next one. A
// request's goroutine grows its stack to what an HTTP call, JSON and a
// publish need; with a fresh goroutine per request, growing (and copying)
// it again was about 5% of the worker's CPU at 0 ms CipherTrust Manager
// latency (make bench, pprof). Up to maxIdle goroutines wait for work;
// more are started when none is idle and end after their function.
type goPool struct {
	work    chan func()
	stop    chan struct{}
	maxIdle int32
	// idle counts the goroutines waiting for work that no caller of run
	// has claimed yet.
	idle    atomic.Int32
	started atomic.Int64 // goroutines started, for tests
}

func newGoPool(maxIdle int) *goPool {
	return &goPool{work: make(chan func()), stop: make(chan struct{}), maxIdle: int32(maxIdle)}
}

// run runs fn on an idle goroutine, or on a new one.
func (p *goPool) run(fn func()) {
	for {
		n := p.idle.Load()
		if n <= 0 {
			p.started.Add(1)
			go p.loop(fn)
			return
		}
		if p.idle.CompareAndSwap(n, n-1) {
			// Claimed: a waiting goroutine is in, or about to enter, the
			// receive.
			p.work <- fn
			return
		}
	}
}

func (p *goPool) loop(fn func()) {
	for {
		fn()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		select {
		case fn = <-p.work: // the sender took it off idle
		case <-p.stop:
			p.idle.Add(-1)
			return
		}
	}
}

// close ends the idle goroutines. Functions already running finish; run
// must not be called afterwards.
func (p *goPool) close() { close(p.stop) }
