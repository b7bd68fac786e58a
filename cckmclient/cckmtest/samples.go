package cckmtest

import "time"

// SampleJob is one of the jobs dev mode (cckm-cancel-worker --dev) and
// cmd/cckm-fake-cm start with, so that `make run` and `docker compose up`
// offer the same jobs.
type SampleJob struct {
	Kind     Kind
	ID       string
	Finished bool // completed already: a cancel answers 409
}

// SampleJobs are three running jobs and one finished job of each kind.
var SampleJobs = []SampleJob{
	{Refresh, "8155fe39-570a-4132-92ca-e40b7640c7dc", false},
	{Refresh, "2f0a3a5e-6d1b-4c2e-9a4f-3b8d7c6e5f41", false},
	{Refresh, "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f", false},
	{Refresh, "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b", true},
	{BulkJob, "5b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e", false},
	{BulkJob, "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b", false},
	{BulkJob, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", false},
	{BulkJob, "f0e1d2c3-b4a5-4968-8776-655443322110", true},
}

// The credentials and settle time of dev mode and cmd/cckm-fake-cm.
const (
	SampleUsername    = "dev"
	SamplePassword    = "dev-password"
	SampleSettleAfter = 15 * time.Second
)

// AddSampleJobs registers SampleJobs.
func (s *Server) AddSampleJobs() {
	for _, job := range SampleJobs {
		if job.Finished {
			s.AddFinishedJob(job.Kind, job.ID, StatusCompleted)
		} else {
			s.AddJob(job.Kind, job.ID)
		}
	}
}

// State describes a sample job for a listing.
func (j SampleJob) State() string {
	if j.Finished {
		return "completed (cancel answers 409 conflict)"
	}
	return "in progress"
}
