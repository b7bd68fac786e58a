package cckmtest

import (
	"net/http"
	"sync"
	"time"
)

// Step scripts one response to a cancel or get. Zero fields mean normal behaviour for that
// aspect; several may be combined (Delay with Status, RetryAfter with anything answered).
type Step struct {
	// Status, when not zero, is answered instead of normal handling (no token is checked),
	// with Body or a CM error body fitting the status (503: code 14 NCERRServiceUnavailable).
	Status int
	// Body is the raw JSON body sent instead of normal handling, with Status, or with 200
	// when Status is zero.
	Body string
	// RetryAfter is a Retry-After header value to send with the answer.
	RetryAfter string
	// Delay is waited before answering (on top of Options.Latency). When the client goes
	// away or the server closes first, the connection is closed without an answer.
	Delay time.Duration
	// Hang never answers: the connection is closed when the client goes away or the server
	// closes.
	Hang bool
	// NoAbort makes a cancel answer 200 with the job as it is, abort unchanged.
	NoAbort bool
	// Drop closes the connection without any response, a network error for the client.
	// Caveat: Go's transport retries an idempotent request (GET) once when a reused
	// connection closes like this, so a dropped GET may be seen as the next request.
	Drop bool
	// JobSize, when not zero, pads a job answered normally (a cancel or get answering 200)
	// to at least that many bytes with a "padding" string field after the job's own
	// fields, so that the body stays a valid job object with its real abort and
	// overall_status.
	JobSize int
	// MessageSize, when not zero, makes the message of an error body exactly that many
	// bytes: of a scripted Status, and of an error answered normally (401, 404, 409). Body
	// wins over it.
	MessageSize int
}

// replaces reports whether the step answers instead of normal handling.
func (step Step) replaces() bool { return step.Status != 0 || step.Body != "" }

// scriptQueue holds the scripted steps per job id.
type scriptQueue struct {
	mu    sync.Mutex
	steps map[string][]Step
}

// newScriptQueue returns an empty queue.
func newScriptQueue() *scriptQueue {
	return &scriptQueue{steps: make(map[string][]Step)}
}

// Script queues steps for the following cancels and gets of the job id (of any kind),
// one step per request in order, after any steps queued before. Once they are used up the
// job behaves normally again.
func (s *Server) Script(id string, steps ...Step) {
	s.scripts.mu.Lock()
	defer s.scripts.mu.Unlock()
	s.scripts.steps[id] = append(s.scripts.steps[id], steps...)
}

// pop removes and returns the next step for id.
func (q *scriptQueue) pop(id string) (Step, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	steps := q.steps[id]
	if len(steps) == 0 {
		return Step{}, false
	}
	if len(steps) == 1 {
		delete(q.steps, id)
	} else {
		q.steps[id] = steps[1:]
	}
	return steps[0], true
}

// nextStep returns the step for call: the next scripted one, else what the fault hook
// returns, else the zero Step (normal behaviour).
func (s *Server) nextStep(call Call) Step {
	if step, scripted := s.scripts.pop(call.ID); scripted {
		return step
	}
	if fault := s.fault.Load(); fault != nil {
		if step := (*fault)(call); step != nil {
			return *step
		}
	}
	return Step{}
}

// writeScripted answers a step that replaces normal handling, with status (200 when zero)
// and body, or else a CM error body whose message is messageSize bytes (the default message
// when zero). It returns the status.
func writeScripted(w http.ResponseWriter, status int, body string, messageSize int) int {
	if status == 0 {
		status = http.StatusOK
	}
	if body != "" {
		return writeRaw(w, status, []byte(body))
	}
	return writeCMError(w, status, sizedMessage(cmErrorFor(status, "").Message, messageSize))
}

// hang blocks until the client goes away or the server closes.
func (s *Server) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.closing:
	}
}

// drop closes the request's connection without writing a response.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // net/http closes the connection silently
	}
	_ = conn.Close()
}
