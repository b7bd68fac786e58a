package cckmtest

import (
	"sort"
	"time"
)

// AddJob registers an in-progress job of kind with two sample items in its family's scope
// array (domains of a refresh, keys of a bulk job, key vaults of an Azure synchronization
// and so on), replacing any job of the same kind and id, and returns it. The id need not
// be a UUID.
func (s *Server) AddJob(kind Kind, id string) Job {
	return s.jobs.put(newRunningJob(kind, id, time.Now()))
}

// AddFinishedJob registers a terminal job of kind whose overall status is overallStatus
// (StatusCompleted when empty; normally StatusCompleted or StatusFailed), replacing any job
// of the same kind and id, and returns it. A cancel of it answers 409.
func (s *Server) AddFinishedJob(kind Kind, id string, overallStatus string) Job {
	if overallStatus == "" {
		overallStatus = StatusCompleted
	}
	now := time.Now()
	job := newRunningJob(kind, id, now.Add(-time.Minute))
	job.finish(overallStatus, now)
	return s.jobs.put(job)
}

// MarkUnknown makes the ids jobs the fake does not have, of any kind: every job with one of
// them is removed, and a cancel or get of one answers 404 even with Options.AnyJob, until
// AddJob or AddFinishedJob registers a job with that id. Ids compare in either case.
func (s *Server) MarkUnknown(ids ...string) { s.jobs.markUnknown(ids) }

// Job returns the job of kind with id, settled as of now, and whether it exists.
func (s *Server) Job(kind Kind, id string) (Job, bool) {
	s.jobs.mu.Lock()
	defer s.jobs.mu.Unlock()
	job, found := s.jobs.jobs[jobKey{kind, id}]
	if !found {
		return Job{}, false
	}
	s.jobs.settleLocked(job, time.Now())
	return job.clone(), true
}

// Jobs returns every job, settled as of now, sorted by kind and then id.
func (s *Server) Jobs() []Job {
	now := time.Now()
	s.jobs.mu.Lock()
	jobs := make([]Job, 0, len(s.jobs.jobs))
	for _, job := range s.jobs.jobs {
		s.jobs.settleLocked(job, now)
		jobs = append(jobs, job.clone())
	}
	s.jobs.mu.Unlock()
	sort.Slice(jobs, func(i, k int) bool {
		if jobs[i].Kind != jobs[k].Kind {
			return jobs[i].Kind < jobs[k].Kind
		}
		return jobs[i].ID < jobs[k].ID
	})
	return jobs
}
