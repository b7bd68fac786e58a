package worker

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go/micro"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Discovery as a NATS micro service, so that `nats micro ls`,
// `nats micro info` and `nats micro stats cckm-cancel-worker` show every
// running instance, its mode and its counts.
//
// The request subjects are deliberately not micro endpoints: micro's Stop
// drains its subscriptions without a way to learn when the drain is over,
// so a SIGTERM could not wait for the requests already delivered, and its
// processing-time stats would time the hand-off to a goroutine, not the
// call. The service has one endpoint of its own, status, and its stats carry
// the worker's counts.

// Service identity.
const (
	ServiceName    = "cckm-cancel-worker"
	ServiceVersion = "0.1.0"
	// StatusSubject answers with the worker's Status.
	StatusSubject = messages.SubjectPrefix + "worker.status"
)

// Status is what the status endpoint answers and what `nats micro stats`
// shows as the endpoint's data.
type Status struct {
	Mode        Mode   `json:"mode"`
	Ready       bool   `json:"ready"`
	NotReady    string `json:"not_ready,omitempty"`
	Concurrency int    `json:"concurrency"`
	InFlight    int64  `json:"in_flight"`
	Canceled    int64  `json:"canceled"`
	Failed      int64  `json:"failed"`
	Rejected    int64  `json:"rejected"`
	Redelivered int64  `json:"redelivered"`
	DeadLetters int64  `json:"dead_letters"`
}

// counters are the worker's own counts, kept whether or not Prometheus
// metrics are configured.
type counters struct {
	inFlight, canceled, failed, rejected, redelivered, deadLetters atomic.Int64
}

func (c *counters) result(status messages.Status) {
	switch status {
	case messages.StatusCanceled:
		c.canceled.Add(1)
	case messages.StatusFailed:
		c.failed.Add(1)
	case messages.StatusRejected:
		c.rejected.Add(1)
	}
}

// Status reports the worker's state and counts.
func (w *Worker) Status() Status {
	s := Status{
		Mode:        w.cfg.Mode,
		Concurrency: w.cfg.Concurrency,
		InFlight:    w.counts.inFlight.Load(),
		Canceled:    w.counts.canceled.Load(),
		Failed:      w.counts.failed.Load(),
		Rejected:    w.counts.rejected.Load(),
		Redelivered: w.counts.redelivered.Load(),
		DeadLetters: w.counts.deadLetters.Load(),
	}
	if err := w.Ready(); err != nil {
		s.NotReady = err.Error()
	} else {
		s.Ready = true
	}
	return s
}

// registerService adds the micro service; the caller stops it.
func (w *Worker) registerService() (micro.Service, error) {
	return micro.AddService(w.nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "Cancels CipherTrust Manager CCKM jobs requested on cckm.cancel.refresh and cckm.cancel.bulkjob",
		Metadata: map[string]string{
			"mode":        string(w.cfg.Mode),
			"concurrency": strconv.Itoa(w.cfg.Concurrency),
			"requests":    strings.Join(requestSubjects(), ","),
		},
		StatsHandler: func(*micro.Endpoint) any { return w.Status() },
		Endpoint: &micro.EndpointConfig{
			Subject: StatusSubject,
			Handler: micro.HandlerFunc(func(req micro.Request) { _ = req.RespondJSON(w.Status()) }),
			// Every instance answers: a status request reaches one at random
			// otherwise, and nats micro addresses instances by id anyway.
			QueueGroup: "",
		},
		QueueGroupDisabled: true,
	})
}
