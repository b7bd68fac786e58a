package cckmtest

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// jobKey identifies a job in the store.
type jobKey struct {
	kind Kind
	id   string
}

// jobStore holds the jobs. A canceled job settles lazily, when it is next looked at.
type jobStore struct {
	settleAfter time.Duration // < 0: never

	mu      sync.Mutex
	jobs    map[jobKey]*Job
	unknown map[string]bool // lower-case ids that AnyJob does not create
}

// newJobStore returns an empty store whose canceled jobs settle after settleAfter.
func newJobStore(settleAfter time.Duration) *jobStore {
	return &jobStore{settleAfter: settleAfter, jobs: make(map[jobKey]*Job), unknown: make(map[string]bool)}
}

// settleLocked completes job if it was canceled at least settleAfter ago. The caller holds
// the store's lock.
func (s *jobStore) settleLocked(job *Job, now time.Time) {
	if !job.Abort || !job.Running() || s.settleAfter < 0 {
		return
	}
	settledAt := job.CanceledAt.Add(s.settleAfter)
	if !now.Before(settledAt) {
		job.finish(StatusCompleted, settledAt)
	}
}

// put stores job, replacing any job of the same kind and id, and returns a snapshot.
func (s *jobStore) put(job *Job) Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[jobKey{job.Kind, job.ID}] = job
	return job.clone()
}

// jobOutcome is the result of a cancel or get: the status to answer and the job, when
// there is one.
type jobOutcome struct {
	status int
	job    Job
}

// markUnknown removes every job with one of ids, of any kind and in either case, and keeps
// AnyJob from creating them again.
func (s *jobStore) markUnknown(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.unknown[strings.ToLower(id)] = true
	}
	for key := range s.jobs {
		if s.unknown[strings.ToLower(key.id)] {
			delete(s.jobs, key)
		}
	}
}

// lookupLocked finds the job of kind with id, creating it when anyJob is set, id is a
// UUID and it was not marked unknown, and settles it as of now. The caller holds s.mu.
func (s *jobStore) lookupLocked(kind Kind, id string, anyJob bool, now time.Time) (*Job, bool) {
	key := jobKey{kind, id}
	job, found := s.jobs[key]
	if !found {
		if !anyJob || !isUUID(id) || s.unknown[strings.ToLower(id)] {
			return nil, false
		}
		job = newRunningJob(kind, id, now)
		s.jobs[key] = job
	}
	s.settleLocked(job, now)
	return job, true
}

// get answers a read of a job.
func (s *jobStore) get(kind Kind, id string, anyJob bool) jobOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, found := s.lookupLocked(kind, id, anyJob, time.Now())
	if !found {
		return jobOutcome{status: http.StatusNotFound}
	}
	return jobOutcome{status: http.StatusOK, job: job.clone()}
}

// cancel answers a cancel of a job: 404 when unknown, 409 when terminal, else 200 with abort
// set (unless noAbort, which answers the job unchanged).
func (s *jobStore) cancel(kind Kind, id string, anyJob, noAbort bool) jobOutcome {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	job, found := s.lookupLocked(kind, id, anyJob, now)
	switch {
	case !found:
		return jobOutcome{status: http.StatusNotFound}
	case !job.Running():
		return jobOutcome{status: http.StatusConflict, job: job.clone()}
	}
	job.Cancels++
	if !noAbort && !job.Abort {
		job.Abort = true
		job.CanceledAt = now
		job.UpdatedAt = now
	}
	return jobOutcome{status: http.StatusOK, job: job.clone()}
}
