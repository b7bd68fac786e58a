package cckmtest

import (
	"maps"
	"slices"
	"time"
)

// Kind names a kind of CipherTrust Manager job the worker can cancel.
type Kind string

// The job kinds the fake serves.
const (
	// Refresh is a refresh of external CipherTrust Manager domains
	// (/api/v1/cckm/external-cm/refresh/{id}).
	Refresh Kind = "refresh"
	// BulkJob is an AWS KMS bulk job (/api/v1/cckm/aws/bulkjob/{id}).
	BulkJob Kind = "bulkjob"
)

// Values of Job.OverallStatus. A running refresh job is spelled with a space, as in the
// CipherTrust Manager documentation's refresh examples; a running bulk job with an underscore.
const (
	StatusRefreshRunning = "in progress"
	StatusBulkJobRunning = "in_progress"
	StatusCompleted      = "completed"
	StatusFailed         = "failed"
)

// Job is a snapshot of one job as the fake holds it.
type Job struct {
	// ID is the job id.
	ID string
	// Kind is the kind of job; the same id under the other kind is another job.
	Kind Kind
	// OverallStatus is the overall_status as answered: StatusRefreshRunning or
	// StatusBulkJobRunning while running, then StatusCompleted or StatusFailed.
	OverallStatus string
	// Abort is the abort flag, set by the first accepted cancel.
	Abort bool
	// DetailedStatus maps each domain (refresh) or key (bulk job) to its status text.
	DetailedStatus map[string]string
	// Items are the job's domain ids (refresh) or key ids (bulk job).
	Items []string
	// Operation is the bulk job's operation ("disablekey"); empty for a refresh.
	Operation string
	// CreatedAt, UpdatedAt and CompletedAt are the job's timestamps; CompletedAt is zero
	// while the job runs.
	CreatedAt, UpdatedAt, CompletedAt time.Time
	// CanceledAt is when the first accepted cancel set Abort; zero when none did.
	CanceledAt time.Time
	// Cancels counts the cancel requests answered 200 for this job (NoAbort ones included).
	Cancels int
}

// Running reports whether the job's overall status is one of the running spellings.
func (j Job) Running() bool {
	return j.OverallStatus == StatusRefreshRunning || j.OverallStatus == StatusBulkJobRunning
}

// clone returns a copy of j that shares no map or slice with it.
func (j Job) clone() Job {
	j.DetailedStatus = maps.Clone(j.DetailedStatus)
	j.Items = slices.Clone(j.Items)
	return j
}

// runningStatus returns how overall_status is spelled for a running job of kind.
func runningStatus(kind Kind) string {
	if kind == Refresh {
		return StatusRefreshRunning
	}
	return StatusBulkJobRunning
}

// newRunningJob returns an in-progress job of kind with two sample domains or keys.
func newRunningJob(kind Kind, id string, now time.Time) *Job {
	job := &Job{
		ID:             id,
		Kind:           kind,
		OverallStatus:  runningStatus(kind),
		Items:          []string{newUUID(), newUUID()},
		DetailedStatus: make(map[string]string),
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	if kind == BulkJob {
		job.Operation = "disablekey"
	}
	for _, item := range job.Items {
		job.DetailedStatus[item] = "in_progress"
	}
	return job
}

// finish makes job terminal with status at the given time, setting each item's text.
func (job *Job) finish(status string, at time.Time) {
	job.OverallStatus = status
	job.CompletedAt = at
	job.UpdatedAt = at
	for _, item := range job.Items {
		job.DetailedStatus[item] = itemStatus(job.Kind, status, job.Abort)
	}
}

// itemStatus is the detailed_status text of one item of a finished job.
func itemStatus(kind Kind, overallStatus string, aborted bool) string {
	switch {
	case aborted:
		return "aborted"
	case overallStatus == StatusFailed && kind == Refresh:
		return "domain synchronization failed"
	case overallStatus == StatusFailed:
		return "Failed"
	case kind == Refresh:
		return "domain synchronized successfully"
	default:
		return "Success"
	}
}
