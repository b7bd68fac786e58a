package cckmtest

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
)

// requireTimestamp checks an RFC 3339 timestamp with fractional seconds in UTC.
func requireTimestamp(t *testing.T, value any) time.Time {
	t.Helper()
	text, ok := value.(string)
	require.True(t, ok, "timestamp %v", value)
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$`, text)
	parsed, err := time.Parse(time.RFC3339Nano, text)
	require.NoError(t, err)
	return parsed
}

// familyShape is what a job of one family looks like from outside.
type familyShape struct {
	cloud, scope, uriPrefix, operation, running, itemDone string
}

// documentedShapes are the job shapes of the CipherTrust Manager documentation, family by
// family.
var documentedShapes = map[Kind]familyShape{
	Refresh:                  {"externalCM", "domains", "kylo:kylo:cckm:synchronize:", "", "in progress", "domain synchronized successfully"},
	BulkJob:                  {"aws", "keys", "kylo:kylo:cckm:bulkjob:", "disablekey", "in_progress", "Success"},
	"aws-sync":               {"aws", "kms", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"aws-cks-sync":           {"aws", "custom_key_stores", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"azure-sync":             {"AzureCloud", "key_vaults", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"azure-certificate-sync": {"AzureCloud", "key_vaults", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"azure-secret-sync":      {"AzureCloud", "key_vaults", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"azure-bulkjob":          {"AzureCloud", "keys", "kylo:kylo:cckm:azure-bulkjob:", "delete-key-backups", "in_progress", "Success"},
	"google-sync":            {"gcp", "key_rings", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"oci-sync":               {"oci", "vaults", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"sap-sync":               {"sap", "groups", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"sfdc-key-sync":          {"sfdc", "organizations", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"sfdc-certificate-sync":  {"sfdc", "organizations", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"luna-refresh":           {"luna", "partitions", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"luna-sync":              {"luna", "partitions", "kylo:kylo:cckm:synchronize:", "", "in_progress", "Success"},
	"dsm-refresh":            {"dsm", "domains", "kylo:kylo:cckm:synchronize:", "", "in_progress", "domain synchronized successfully"},
}

// scopeArrays are every family's scope array name; a job has exactly its own.
var scopeArrays = []string{"domains", "keys", "kms", "custom_key_stores", "key_vaults", "key_rings", "vaults", "groups", "organizations", "partitions"}

func TestJobsHaveTheDocumentedShape(t *testing.T) {
	require.Len(t, documentedShapes, len(messages.Kinds), "a shape for every kind")
	for _, kind := range messages.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			want, documented := documentedShapes[kind]
			require.True(t, documented, "no documented shape for %s", kind)
			info, _ := kind.Info()
			require.Equal(t, want.running, info.Running, "the kinds table spells running as the family does")
			server := newTestServer(t, Options{})
			added := server.AddJob(kind, refreshID)
			require.Equal(t, want.running, added.OverallStatus)
			require.True(t, added.Running())

			body := getJob(t, server, kind, refreshID, testStatic).object(t)
			require.Equal(t, refreshID, body["id"])
			require.Equal(t, want.uriPrefix+refreshID, body["uri"])
			require.Equal(t, want.cloud, body["cloud"])
			require.Equal(t, want.running, body["overall_status"])
			require.Equal(t, false, body["abort"])
			require.Equal(t, "kylo:kylo:admin:accounts:kylo", body["account"])
			require.Equal(t, "ncryptify:gemalto:admin:apps:kylo", body["application"])
			require.Equal(t, "ncryptify:gemalto:admin:accounts:gemalto", body["devAccount"])
			requireTimestamp(t, body["createdAt"])
			requireTimestamp(t, body["updatedAt"])
			require.NotContains(t, body, "completed_at")
			items := body[want.scope].([]any)
			require.Len(t, items, 2)
			detailed := body["detailed_status"].(map[string]any)
			require.Len(t, detailed, 2)
			for _, item := range items {
				require.Equal(t, "in_progress", detailed[item.(string)])
			}
			for _, other := range scopeArrays {
				if other != want.scope {
					require.NotContains(t, body, other, "only the family's own scope array")
				}
			}
			if want.operation != "" {
				require.Equal(t, want.operation, body["operation"])
			} else {
				require.NotContains(t, body, "operation")
			}

			finishedID := "0f8c1a9e-0000-4000-8000-000000000001"
			finished := server.AddFinishedJob(kind, finishedID, "")
			require.Equal(t, StatusCompleted, finished.OverallStatus)
			body = getJob(t, server, kind, finishedID, testStatic).object(t)
			require.Equal(t, "completed", body["overall_status"])
			requireTimestamp(t, body["completed_at"])
			for _, status := range body["detailed_status"].(map[string]any) {
				require.Equal(t, want.itemDone, status)
			}
		})
	}
}

func TestCancelSetsAbortAndLeavesTheJobRunning(t *testing.T) {
	for _, kind := range messages.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			server := newTestServer(t, Options{SettleAfter: -1})
			added := server.AddJob(kind, refreshID)
			token := login(t, server).JWT

			answer := cancelJob(t, server, kind, refreshID, token)
			require.Equal(t, http.StatusOK, answer.status, "body %s", answer.body)
			body := answer.object(t)
			require.Equal(t, true, body["abort"])
			require.Equal(t, runningStatus(kind), body["overall_status"])
			require.True(t, requireTimestamp(t, body["updatedAt"]).After(added.UpdatedAt))

			again := cancelJob(t, server, kind, refreshID, token)
			require.Equal(t, http.StatusOK, again.status, "a second cancel is idempotent")
			require.Equal(t, true, again.object(t)["abort"])

			job, found := server.Job(kind, refreshID)
			require.True(t, found)
			require.True(t, job.Abort)
			require.True(t, job.Running(), "SettleAfter < 0 never settles")
			require.Equal(t, 2, job.Cancels)
			require.False(t, job.CanceledAt.IsZero())
		})
	}
}

func TestCanceledJobCompletesAfterSettleAfter(t *testing.T) {
	server := newTestServer(t, Options{SettleAfter: 50 * time.Millisecond})
	server.AddJob(BulkJob, bulkID)
	require.Equal(t, http.StatusOK, cancelJob(t, server, BulkJob, bulkID, testStatic).status)

	var body map[string]any
	require.Eventually(t, func() bool {
		body = getJob(t, server, BulkJob, bulkID, testStatic).object(t)
		return body["overall_status"] == "completed"
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, true, body["abort"])
	requireTimestamp(t, body["completed_at"])
	for _, status := range body["detailed_status"].(map[string]any) {
		require.Equal(t, "aborted", status)
	}
	job, _ := server.Job(BulkJob, bulkID)
	require.Equal(t, job.CanceledAt.Add(50*time.Millisecond), job.CompletedAt)

	answer := cancelJob(t, server, BulkJob, bulkID, testStatic)
	requireCMError(t, answer, http.StatusConflict, 10, "job is not in progress")
	require.Equal(t, "NCERRConflict: job is not in progress", answer.object(t)["codeDesc"])
}

func TestJobNotCanceledKeepsRunning(t *testing.T) {
	server := newTestServer(t, Options{SettleAfter: time.Nanosecond})
	server.AddJob(Refresh, refreshID)
	job, _ := server.Job(Refresh, refreshID)
	require.True(t, job.Running())
	require.False(t, job.Abort)
}

func TestCancelOfATerminalJobConflicts(t *testing.T) {
	for _, status := range []string{StatusCompleted, StatusFailed} {
		t.Run(status, func(t *testing.T) {
			server := newTestServer(t, Options{})
			server.AddFinishedJob(Refresh, refreshID, status)
			requireCMError(t, cancelJob(t, server, Refresh, refreshID, testStatic), http.StatusConflict, 10, "")
			job, _ := server.Job(Refresh, refreshID)
			require.False(t, job.Abort)
			require.Equal(t, status, job.OverallStatus)
		})
	}
}

func TestUnknownJobsAreNotFound(t *testing.T) {
	cases := []struct {
		name   string
		anyJob bool
		kind   Kind
		id     string
	}{
		{"an id never registered", false, Refresh, "6f1b3c1e-1111-4222-8333-944455566677"},
		{"a refresh id asked for as a bulk job", false, BulkJob, refreshID},
		{"a non-UUID id even with AnyJob", true, BulkJob, "not-a-uuid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := newTestServer(t, Options{AnyJob: tc.anyJob})
			server.AddJob(Refresh, refreshID)
			answers := []response{
				cancelJob(t, server, tc.kind, tc.id, testStatic),
				getJob(t, server, tc.kind, tc.id, testStatic),
			}
			for _, answer := range answers {
				requireCMError(t, answer, http.StatusNotFound, 16, "Resource not found")
				require.Equal(t, "NCERRResourceNotFound: Resource not found", answer.object(t)["codeDesc"])
			}
		})
	}
}

func TestAnyJobCreatesJobsOnFirstReference(t *testing.T) {
	server := newTestServer(t, Options{AnyJob: true, SettleAfter: -1})
	upper := "8155FE39-570A-4132-92CA-E40B7640C7DC"
	require.Equal(t, "in progress", getJob(t, server, Refresh, upper, testStatic).object(t)["overall_status"])
	answer := cancelJob(t, server, BulkJob, bulkID, testStatic)
	require.Equal(t, http.StatusOK, answer.status)
	require.Equal(t, "in_progress", answer.object(t)["overall_status"])

	jobs := server.Jobs()
	require.Len(t, jobs, 2)
	require.Equal(t, BulkJob, jobs[0].Kind, "sorted by kind")
	require.True(t, jobs[0].Abort)
	require.Equal(t, Refresh, jobs[1].Kind)
	require.Equal(t, upper, jobs[1].ID)
	_, found := server.Job(Refresh, bulkID)
	require.False(t, found, "the bulk job is not a refresh")
}

func TestJobsAreSortedAndSnapshotsAreCopies(t *testing.T) {
	server := newTestServer(t, Options{})
	for _, id := range []string{"c", "a", "b"} {
		server.AddJob(Refresh, id)
		server.AddJob(BulkJob, id)
	}
	var order []string
	for _, job := range server.Jobs() {
		order = append(order, string(job.Kind)+"/"+job.ID)
	}
	require.Equal(t, []string{"bulkjob/a", "bulkjob/b", "bulkjob/c", "refresh/a", "refresh/b", "refresh/c"}, order)

	job, _ := server.Job(Refresh, "a")
	for item := range job.DetailedStatus {
		job.DetailedStatus[item] = "changed"
	}
	again, _ := server.Job(Refresh, "a")
	for _, status := range again.DetailedStatus {
		require.Equal(t, "in_progress", status)
	}
}

func TestOtherPathsAndMethods(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(Refresh, refreshID)
	cases := []struct {
		name   string
		method string
		path   string
		status int
	}{
		{"an unknown path is not found", "GET", "/api/v1/cckm/aws/keys/" + refreshID, 404},
		{"a collection's own path is not served", "GET", "/api/v1/cckm/google/synchronization-jobs", 404},
		{"the root is not found", "GET", "/", 404},
		{"a GET of a cancel path is not allowed", "GET", "/api/v1/cckm/external-cm/refresh/" + refreshID + "/cancel", 405},
		{"a DELETE of a job is not allowed", "DELETE", "/api/v1/cckm/external-cm/refresh/" + refreshID, 405},
		{"a GET of the token endpoint is not allowed", "GET", "/api/v1/auth/tokens/", 405},
		{"a path below the token endpoint is not found", "POST", "/api/v1/auth/tokens/x", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := mustSend(t, server.Client(), tc.method, server.URL()+tc.path, testStatic, nil)
			require.Equal(t, tc.status, answer.status, "body %s", answer.body)
			require.Contains(t, answer.object(t)["codeDesc"], "NCERR")
			if tc.status == http.StatusMethodNotAllowed {
				require.NotEmpty(t, answer.header.Get("Allow"))
			}
		})
	}
	for _, call := range server.Calls() {
		require.Equal(t, "other", call.Op)
	}
}
