package cckmtest

import (
	"net/http"
	"time"
)

// handleJob returns the handler of a cancel or get of a job of kind.
func (s *Server) handleJob(op string, kind Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call, index := s.begin(r, Call{Op: op, Kind: kind, ID: r.PathValue("id"), BodySize: countBody(r)})
		answered := s.jobCallBegins()
		status := s.answerJob(w, r, call, s.nextStep(call))
		answered()
		s.finish(r, index, status)
		if status == 0 {
			drop(w)
		}
	}
}

// answerJob applies step and otherwise answers the request normally. It returns the status
// answered, or 0 when the connection is to be closed without an answer.
func (s *Server) answerJob(w http.ResponseWriter, r *http.Request, call Call, step Step) int {
	if !s.sleep(r, s.opts.Latency+step.Delay) {
		return 0
	}
	if step.Hang {
		s.hang(r)
		return 0
	}
	if step.Drop {
		return 0
	}
	if step.RetryAfter != "" {
		w.Header().Set("Retry-After", step.RetryAfter)
	}
	if step.replaces() {
		return writeScripted(w, step.Status, step.Body, step.MessageSize)
	}
	if message := s.tokens.authorize(r.Header.Get("Authorization"), time.Now()); message != "" {
		return writeCMError(w, http.StatusUnauthorized, sizedMessage(message, step.MessageSize))
	}
	var outcome jobOutcome
	if call.Op == opCancel {
		outcome = s.jobs.cancel(call.Kind, call.ID, s.opts.AnyJob, step.NoAbort)
	} else {
		outcome = s.jobs.get(call.Kind, call.ID, s.opts.AnyJob)
	}
	if outcome.status != http.StatusOK {
		return writeCMError(w, outcome.status, sizedMessage(cmErrorFor(outcome.status, "").Message, step.MessageSize))
	}
	return writeJob(w, outcome.job.body(), step.JobSize)
}
