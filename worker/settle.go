package worker

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// action is what the broker is told about a delivery.
type action int

const (
	// actionAck: the delivery is done; its outputs are published.
	actionAck action = iota
	// actionRetry: deliver it again after a delay.
	actionRetry
	// actionTerm: never deliver it again (rejected, dead-lettered, or a
	// message that is not a request).
	actionTerm
)

// settlement is the end of one delivery, request or follow task.
type settlement struct {
	action action
	delay  time.Duration // actionRetry
	reason string        // actionTerm
}

func ack() settlement { return settlement{action: actionAck} }
func retryIn(delay time.Duration) settlement {
	return settlement{action: actionRetry, delay: max(delay, 0)}
}
func terminate(reason string) settlement { return settlement{action: actionTerm, reason: reason} }
func (s settlement) String() string      { return [...]string{"ack", "retry", "term"}[s.action] }
func (s settlement) is(a action) bool    { return s.action == a }

// maxTermReason bounds the reason a Term carries: the server puts it in an
// advisory.
const maxTermReason = 256

// settle tells the broker how a delivery ended. It is the only place a
// request or follow task is acknowledged, handed back or terminated.
func settle(msg jetstream.Msg, s settlement) error {
	switch s.action {
	case actionRetry:
		return msg.NakWithDelay(s.delay)
	case actionTerm:
		reason := s.reason
		if len(reason) > maxTermReason {
			reason = reason[:maxTermReason]
		}
		return msg.TermWithReason(headerSafe(reason))
	default:
		return msg.Ack()
	}
}
