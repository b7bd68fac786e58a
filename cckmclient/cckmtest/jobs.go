package cckmtest

import (
	"maps"
	"slices"
	"time"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// Kind names a kind of CipherTrust Manager job the worker can cancel: the kinds of
// package messages, one vocabulary for the worker and the fake. The fake serves every kind
// in messages.KindTable, at the kind's collection.
type Kind = messages.Kind

// The kinds existing tests name; every other kind is spelled as in messages.Kinds, such as
// Kind("google-sync").
const (
	// Refresh is a refresh of external CipherTrust Manager domains
	// (/api/v1/cckm/external-cm/refresh/{id}).
	Refresh = messages.KindRefresh
	// BulkJob is an AWS KMS bulk job (/api/v1/cckm/aws/bulkjob/{id}).
	BulkJob = messages.KindBulkJob
)

// Values of Job.OverallStatus. A running external-CM refresh is spelled with a space, as in
// the CipherTrust Manager documentation's refresh examples; a running job of any other
// family with an underscore.
const (
	StatusRunning        = "in_progress"
	StatusRefreshRunning = "in progress"
	StatusBulkJobRunning = StatusRunning
	StatusCompleted      = "completed"
	StatusFailed         = "failed"
)

// Job is a snapshot of one job as the fake holds it.
type Job struct {
	// ID is the job id.
	ID string
	// Kind is the kind of job; the same id under another kind is another job.
	Kind Kind
	// OverallStatus is the overall_status as answered: the kind's running spelling
	// (StatusRefreshRunning for a refresh, StatusRunning for the others) while running,
	// then StatusCompleted or StatusFailed.
	OverallStatus string
	// Abort is the abort flag, set by the first accepted cancel.
	Abort bool
	// DetailedStatus maps each item to its status text.
	DetailedStatus map[string]string
	// Items are the ids in the job's scope array: domains of a refresh, keys of a bulk
	// job, key vaults of an Azure synchronization, key rings of a Google one, and so on.
	Items []string
	// Operation is a bulk job's operation ("disablekey" for AWS, "delete-key-backups" for
	// Azure); empty for synchronizations and refreshes.
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
	return j.OverallStatus == StatusRefreshRunning || j.OverallStatus == StatusRunning
}

// clone returns a copy of j that shares no map or slice with it.
func (j Job) clone() Job {
	j.DetailedStatus = maps.Clone(j.DetailedStatus)
	j.Items = slices.Clone(j.Items)
	return j
}

// newRunningJob returns an in-progress job of kind with two sample items.
func newRunningJob(kind Kind, id string, now time.Time) *Job {
	job := &Job{
		ID:             id,
		Kind:           kind,
		OverallStatus:  runningStatus(kind),
		Items:          []string{newUUID(), newUUID()},
		DetailedStatus: make(map[string]string),
		Operation:      familyOf(kind).operation,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	for _, item := range job.Items {
		job.DetailedStatus[item] = itemRunning
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
		return itemAborted
	case overallStatus == StatusFailed:
		return familyOf(kind).itemFailed
	default:
		return familyOf(kind).itemDone
	}
}
