package cckmtest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestEveryKindIsServedAtItsCollection(t *testing.T) {
	for _, info := range messages.KindTable() {
		t.Run(string(info.Kind), func(t *testing.T) {
			server := newTestServer(t, Options{SettleAfter: -1})
			server.AddJob(info.Kind, refreshID)
			jobPath := info.Collection + "/" + refreshID

			get := mustSend(t, server.Client(), http.MethodGet, server.URL()+jobPath, testStatic, nil)
			require.Equal(t, http.StatusOK, get.status, "body %s", get.body)
			cancel := mustSend(t, server.Client(), http.MethodPost, server.URL()+jobPath+"/cancel", testStatic, nil)
			require.Equal(t, http.StatusOK, cancel.status, "body %s", cancel.body)
			require.Equal(t, true, cancel.object(t)["abort"])
			require.Equal(t, info.Running, cancel.object(t)["overall_status"])

			calls := server.CallsFor(refreshID)
			require.Len(t, calls, 2)
			for i, want := range []struct{ method, op, target string }{
				{http.MethodGet, "get", jobPath},
				{http.MethodPost, "cancel", jobPath + "/cancel"},
			} {
				require.Equal(t, want.method, calls[i].Method)
				require.Equal(t, want.op, calls[i].Op)
				require.Equal(t, want.target, calls[i].RequestURI)
				require.Equal(t, want.target, calls[i].Path)
				require.Equal(t, info.Kind, calls[i].Kind)
				require.Equal(t, http.StatusOK, calls[i].Status)
				require.Zero(t, calls[i].BodySize)
			}

			for _, wrong := range []struct{ method, path, allow string }{
				{http.MethodPost, jobPath, http.MethodGet},
				{http.MethodGet, jobPath + "/cancel", http.MethodPost},
			} {
				answer := mustSend(t, server.Client(), wrong.method, server.URL()+wrong.path, testStatic, nil)
				requireCMError(t, answer, http.StatusMethodNotAllowed, 9, "")
				require.Equal(t, wrong.allow, answer.header.Get("Allow"))
			}
			job, _ := server.Job(info.Kind, refreshID)
			require.Equal(t, 1, job.Cancels, "only the POST of the cancel path cancels")
		})
	}
}

func TestTheSameIDUnderAnotherKindIsAnotherJob(t *testing.T) {
	server := newTestServer(t, Options{SettleAfter: -1})
	server.AddJob("google-sync", refreshID)
	require.Equal(t, http.StatusOK, cancelJob(t, server, "google-sync", refreshID, testStatic).status)
	for _, kind := range messages.Kinds {
		if kind != "google-sync" {
			requireCMError(t, cancelJob(t, server, kind, refreshID, testStatic), http.StatusNotFound, 16, "")
		}
	}
}

func TestScriptingWorksForEveryKind(t *testing.T) {
	for _, kind := range messages.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			server := newTestServer(t, Options{SettleAfter: 50 * time.Millisecond})
			server.AddJob(kind, refreshID)
			server.Script(refreshID,
				Step{Status: http.StatusServiceUnavailable, RetryAfter: "1"},
				Step{NoAbort: true},
				Step{JobSize: 4096},
			)
			answer := cancelJob(t, server, kind, refreshID, "")
			require.Equal(t, http.StatusServiceUnavailable, answer.status)
			require.Equal(t, "1", answer.header.Get("Retry-After"))
			answer = cancelJob(t, server, kind, refreshID, testStatic)
			require.Equal(t, http.StatusOK, answer.status)
			require.Equal(t, false, answer.object(t)["abort"], "NoAbort")
			answer = cancelJob(t, server, kind, refreshID, testStatic)
			require.Len(t, answer.body, 4096, "JobSize")
			require.Equal(t, true, answer.object(t)["abort"])

			var body map[string]any
			require.Eventually(t, func() bool {
				body = getJob(t, server, kind, refreshID, testStatic).object(t)
				return body["overall_status"] == StatusCompleted
			}, 5*time.Second, 10*time.Millisecond, "SettleAfter ends the canceled job")
			require.Equal(t, true, body["abort"])
			requireTimestamp(t, body["completed_at"])

			server.SetFault(func(call Call) *Step {
				if call.Kind == kind {
					return &Step{Status: http.StatusBadGateway}
				}
				return nil
			})
			require.Equal(t, http.StatusBadGateway, getJob(t, server, kind, refreshID, testStatic).status, "Fault sees the kind")
		})
	}
}

func TestAnyJobMakesAnyUUIDARunningJobOfEveryKind(t *testing.T) {
	server := newTestServer(t, Options{AnyJob: true, SettleAfter: -1})
	for _, info := range messages.KindTable() {
		id := newUUID()
		answer := cancelJob(t, server, info.Kind, id, testStatic)
		require.Equal(t, http.StatusOK, answer.status, "%s: body %s", info.Kind, answer.body)
		body := answer.object(t)
		require.Equal(t, true, body["abort"], info.Kind)
		require.Equal(t, info.Running, body["overall_status"], info.Kind)
		require.Equal(t, familyOf(info.Kind).uriPrefix+id, body["uri"], info.Kind)
	}
	require.Len(t, server.Jobs(), len(messages.Kinds))
}

func TestMarkUnknownAnswers404EvenWithAnyJob(t *testing.T) {
	server := newTestServer(t, Options{AnyJob: true})
	server.AddJob("oci-sync", bulkID)
	server.MarkUnknown(bulkID, strings.ToUpper(refreshID))

	for _, kind := range messages.Kinds {
		for _, id := range []string{bulkID, strings.ToUpper(bulkID), refreshID} {
			requireCMError(t, cancelJob(t, server, kind, id, testStatic), http.StatusNotFound, 16, "Resource not found")
			requireCMError(t, getJob(t, server, kind, id, testStatic), http.StatusNotFound, 16, "Resource not found")
		}
	}
	_, found := server.Job("oci-sync", bulkID)
	require.False(t, found, "a job registered before is removed")
	require.Empty(t, server.Jobs(), "AnyJob created none of them")

	other := newUUID()
	require.Equal(t, http.StatusOK, cancelJob(t, server, "sap-sync", other, testStatic).status, "other ids are still running jobs")

	server.AddJob("oci-sync", bulkID)
	require.Equal(t, http.StatusOK, cancelJob(t, server, "oci-sync", bulkID, testStatic).status, "a job added later exists")
}

func TestARequestBodyIsCounted(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob("dsm-refresh", refreshID)
	mustSend(t, server.Client(), http.MethodPost, jobURL(server, "dsm-refresh", refreshID, true), testStatic,
		map[string]any{"reason": "none needed"})
	cancelJob(t, server, "dsm-refresh", refreshID, testStatic)
	calls := server.CallsFor(refreshID)
	require.Len(t, calls, 2)
	require.EqualValues(t, len(`{"reason":"none needed"}`), calls[0].BodySize)
	require.Zero(t, calls[1].BodySize)
}

func TestAKindWithoutAFamilyRowIsShapedLikeASynchronization(t *testing.T) {
	for kind := range families {
		require.True(t, kind.Valid(), "families names %q, which is not in the kinds table", kind)
	}
	saved := families["oci-sync"]
	delete(families, "oci-sync")
	t.Cleanup(func() { families["oci-sync"] = saved })

	server := newTestServer(t, Options{})
	server.AddJob("oci-sync", refreshID)
	body := getJob(t, server, "oci-sync", refreshID, testStatic).object(t)
	require.Equal(t, "oci", body["cloud"], "the collection's first segment")
	require.Equal(t, "kylo:kylo:cckm:synchronize:"+refreshID, body["uri"])
	require.Equal(t, StatusRunning, body["overall_status"])
	require.Len(t, body["keys"], 2)
	require.NotContains(t, body, "operation")
}
