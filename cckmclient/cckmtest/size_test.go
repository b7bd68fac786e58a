package cckmtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJobSizePadsTheJobToExactlyThatSize(t *testing.T) {
	const size = 300 << 10 // past the 256 KiB a worker keeps of a job
	server := newTestServer(t, Options{SettleAfter: -1})
	server.AddJob(Refresh, refreshID)
	server.Script(refreshID, Step{JobSize: size}, Step{JobSize: size})

	for _, answer := range []response{
		cancelJob(t, server, Refresh, refreshID, testStatic),
		getJob(t, server, Refresh, refreshID, testStatic),
	} {
		require.Equal(t, http.StatusOK, answer.status)
		require.Len(t, answer.body, size)
		require.True(t, json.Valid(answer.body))
		job := answer.object(t)
		require.Equal(t, refreshID, job["id"])
		require.Equal(t, true, job["abort"], "the cancel's real abort")
		require.Equal(t, StatusRefreshRunning, job["overall_status"])
		require.NotEmpty(t, job["detailed_status"])
		require.Equal(t, strings.Repeat("x", len(job["padding"].(string))), job["padding"])
	}
	normal := getJob(t, server, Refresh, refreshID, testStatic)
	require.NotContains(t, string(normal.body), "padding", "normal again after the script")
}

func TestJobSizeKeepsTheOtherStepSemantics(t *testing.T) {
	server := newTestServer(t, Options{})
	server.AddJob(BulkJob, bulkID)
	server.Script(bulkID, Step{JobSize: 10000, NoAbort: true}, Step{JobSize: 10})

	answer := cancelJob(t, server, BulkJob, bulkID, testStatic)
	require.Len(t, answer.body, 10000)
	require.Equal(t, false, answer.object(t)["abort"], "NoAbort still answers the job unchanged")

	answer = getJob(t, server, BulkJob, bulkID, testStatic)
	require.NotContains(t, answer.object(t), "padding", "a job already larger than JobSize is not padded")

	server.Script(bulkID, Step{JobSize: 10000})
	require.Equal(t, http.StatusUnauthorized, getJob(t, server, BulkJob, bulkID, "").status, "a token is still needed")
}

func TestMessageSizeMakesTheErrorMessageThatLong(t *testing.T) {
	const size = 100000
	server := newTestServer(t, Options{})
	server.AddFinishedJob(Refresh, refreshID, StatusCompleted)
	server.Script(refreshID,
		Step{Status: http.StatusConflict, MessageSize: size},
		Step{MessageSize: size},                                       // the real 409 of a finished job
		Step{MessageSize: 7},                                          // the real 401 without a token
		Step{Status: 409, Body: `{"message":"m"}`, MessageSize: size}, // Body wins
	)
	for i, answer := range []response{
		cancelJob(t, server, Refresh, refreshID, testStatic),
		cancelJob(t, server, Refresh, refreshID, testStatic),
	} {
		body := answer.object(t)
		require.Equal(t, http.StatusConflict, answer.status, "answer %d", i)
		require.Len(t, body["message"], size, "answer %d", i)
		require.True(t, strings.HasPrefix(body["message"].(string), "job is not in progress x"), "answer %d", i)
		require.Equal(t, "NCERRConflict: job is not in progress", body["codeDesc"], "answer %d", i)
	}
	answer := cancelJob(t, server, Refresh, refreshID, "")
	require.Equal(t, http.StatusUnauthorized, answer.status)
	require.Equal(t, "Unautho", answer.object(t)["message"])
	require.JSONEq(t, `{"message":"m"}`, string(cancelJob(t, server, Refresh, refreshID, testStatic).body))

	unknown := newUUID()
	server.Script(unknown, Step{MessageSize: 50})
	answer = getJob(t, server, Refresh, unknown, testStatic)
	requireCMError(t, answer, http.StatusNotFound, 16, "")
	require.Equal(t, "Resource not found "+strings.Repeat("x", 31), answer.object(t)["message"])
}

func TestSizedMessage(t *testing.T) {
	for size, want := range map[int]string{
		0: "conflict", -1: "conflict", 3: "con", 8: "conflict", 9: "conflict ", 12: "conflict xxx",
	} {
		require.Equal(t, want, sizedMessage("conflict", size), "size %d", size)
	}
}
