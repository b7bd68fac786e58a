package cckmtest

import "time"

// SampleJob is one of the jobs dev mode (cckm-cancel-worker --dev) and cmd/cckm-fake-cm
// start with and print as examples, so that `make run` and `docker compose up` offer the
// same jobs.
type SampleJob struct {
	Kind Kind
	ID   string
	// Finished is a job that completed already: a cancel answers 409.
	Finished bool
	// Unknown is an id the fake has no job of, of any kind, even when it answers any other
	// UUID as a running job (Options.AnyJob): a cancel answers 404.
	Unknown bool
}

// SampleJobs are a few jobs of a handful of kinds: running ones, finished ones, and an
// unknown id. Each shows an outcome; with Options.AnyJob every other UUID is a running
// job of whatever kind it is asked for as.
var SampleJobs = []SampleJob{
	{Kind: Refresh, ID: "8155fe39-570a-4132-92ca-e40b7640c7dc"},
	{Kind: BulkJob, ID: "5b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"},
	{Kind: "azure-bulkjob", ID: "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b"},
	{Kind: Refresh, ID: "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b", Finished: true},
	{Kind: "aws-sync", ID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", Finished: true},
	{Kind: "luna-sync", ID: "00000000-0000-4000-8000-000000000000", Unknown: true},
}

// SampleFreshKind is the kind dev mode shows a fresh UUID ($(uuidgen)) with: a kind none of
// SampleJobs has, to show that the fake knows every kind.
const SampleFreshKind Kind = "google-sync"

// The credentials and settle time of dev mode and cmd/cckm-fake-cm.
const (
	SampleUsername    = "dev"
	SamplePassword    = "dev-password"
	SampleSettleAfter = 15 * time.Second
)

// AddSampleJobs registers SampleJobs: the running and finished jobs, and marks the unknown
// ids unknown.
func (s *Server) AddSampleJobs() {
	for _, job := range SampleJobs {
		switch {
		case job.Unknown:
			s.MarkUnknown(job.ID)
		case job.Finished:
			s.AddFinishedJob(job.Kind, job.ID, StatusCompleted)
		default:
			s.AddJob(job.Kind, job.ID)
		}
	}
}

// State describes a sample job for a listing.
func (j SampleJob) State() string {
	switch {
	case j.Unknown:
		return "unknown (cancel answers 404 not found)"
	case j.Finished:
		return "completed (cancel answers 409 conflict)"
	}
	return "in progress"
}
