package cckmclient

import (
	"context"
	"slices"
	"time"
)

// Gate decides when an HTTP attempt on a job endpoint (cancel or GET,
// retries and the repeat after a 401 included) may be sent, and hears how
// each went: the place for a rate limit, or a back-off that every call of
// a process shares. The token endpoint does not pass it.
//
// It is given plain HTTP facts; what they mean for CipherTrust Manager's
// health is the Gate's to judge.
type Gate interface {
	// Wait blocks until an attempt may be sent, and returns the function
	// the client calls exactly once when that attempt is over, with its
	// HTTP status (GateNoAnswer, or GateAbandoned) and the Retry-After it
	// carried (0 when none). It returns an error, and no function, when
	// ctx ends first, or earlier when it knows the attempt could not be
	// sent before ctx's deadline (as a rate limit does): the call then
	// fails without being sent.
	Wait(ctx context.Context) (done func(status int, retryAfter time.Duration), err error)
}

// Statuses a Gate hears besides HTTP's.
const (
	// GateNoAnswer: no answer came (a network error, or the attempt's own
	// time-out, CCKM_TIMEOUT).
	GateNoAnswer = 0
	// GateAbandoned: the call's context or retry budget ended while the
	// attempt was under way; it says nothing of CipherTrust Manager.
	GateAbandoned = -1
)

// admit waits for the Gate; without one it lets the attempt go at once.
func (c *Client) admit(ctx context.Context) (func(status int, retryAfter time.Duration), error) {
	if c.cfg.Gate == nil {
		return func(int, time.Duration) {}, nil
	}
	return c.cfg.Gate.Wait(ctx)
}

// Chain is a Gate that waits for each of gates in turn, so that an attempt
// held by one (a back-off, a rate limit) holds nothing of the next (a
// bound on calls shared with other processes). Each hears how the attempt
// went; one that ends the wait with an error has the ones before it told
// GateAbandoned.
func Chain(gates ...Gate) Gate { return chain(gates) }

type chain []Gate

func (c chain) Wait(ctx context.Context) (func(status int, retryAfter time.Duration), error) {
	dones := make([]func(int, time.Duration), 0, len(c))
	for _, g := range c {
		done, err := g.Wait(ctx)
		if err != nil {
			for _, d := range slices.Backward(dones) {
				d(GateAbandoned, 0)
			}
			return nil, err
		}
		dones = append(dones, done)
	}
	return func(status int, retryAfter time.Duration) {
		for _, d := range slices.Backward(dones) {
			d(status, retryAfter)
		}
	}, nil
}
