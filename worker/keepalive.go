package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keeper tells the server that messages the worker holds are still being
// worked on (InProgress), so that none is redelivered to another instance
// while it waits for a slot, is being called about, published, or
// followed. One goroutine looks over every held message, requests and
// follow tasks alike; a timer per message cost about 3% of the worker's
// CPU at 0 ms CM latency (make bench).
//
// A message is reported once a third of its consumer's ack wait has passed
// since it was delivered or last reported; the sweep runs every quarter of
// the shortest such interval seen, so a report is never later than 5/12 of
// the ack wait.
type keeper struct {
	mu       sync.Mutex
	held     map[jetstream.Msg]heldMsg
	shortest time.Duration // the shortest report interval seen
	wake     chan struct{} // shortest got shorter
}

// heldMsg is when a message was last reported, and how often it must be.
type heldMsg struct {
	last     time.Time
	interval time.Duration
}

// Bounds of the keeper's sweep.
const (
	// idleSweep is how often the keeper looks before any message came.
	idleSweep = time.Second
	// minSweep keeps a tiny ack wait from turning the sweep into a spin.
	minSweep = 10 * time.Millisecond
)

func newKeeper() *keeper {
	return &keeper{held: map[jetstream.Msg]heldMsg{}, shortest: 4 * idleSweep, wake: make(chan struct{}, 1)}
}

// hold keeps msg alive from now until release; ackWait is the ack wait of
// the consumer it came from.
func (k *keeper) hold(msg jetstream.Msg, ackWait time.Duration, now time.Time) {
	interval := ackWait / 3
	if interval <= 0 {
		return
	}
	k.mu.Lock()
	k.held[msg] = heldMsg{last: now, interval: interval}
	shorter := interval < k.shortest
	if shorter {
		k.shortest = interval
	}
	k.mu.Unlock()
	if shorter {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
}

// retime has every message held reported at the pace of ackWait from now
// on, the ack wait of their consumer having changed; one last reported
// longer ago than a third of it is reported at the next sweep.
func (k *keeper) retime(ackWait time.Duration) {
	interval := ackWait / 3
	if interval <= 0 {
		return
	}
	k.mu.Lock()
	for msg, h := range k.held {
		h.interval = interval
		k.held[msg] = h
	}
	shorter := interval < k.shortest
	if shorter {
		k.shortest = interval
	}
	k.mu.Unlock()
	if shorter {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
}

// release stops keeping msg alive.
func (k *keeper) release(msg jetstream.Msg) {
	k.mu.Lock()
	delete(k.held, msg)
	k.mu.Unlock()
}

// run sweeps until ctx ends.
func (k *keeper) run(ctx context.Context) {
	for {
		k.mu.Lock()
		every := max(k.shortest/4, minSweep)
		k.mu.Unlock()
		timer := time.NewTimer(every)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-k.wake:
			timer.Stop()
		case now := <-timer.C:
			k.sweep(now)
		}
	}
}

// sweep reports every message that is due.
func (k *keeper) sweep(now time.Time) {
	var due []jetstream.Msg
	k.mu.Lock()
	for msg, h := range k.held {
		if now.Sub(h.last) >= h.interval {
			due = append(due, msg)
			h.last = now
			k.held[msg] = h
		}
	}
	k.mu.Unlock()
	for _, msg := range due {
		_ = msg.InProgress()
	}
}

// count is the number of messages held.
func (k *keeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}
