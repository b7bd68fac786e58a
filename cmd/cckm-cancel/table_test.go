package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// requireFits checks that no line of out is wider than the table width,
// in terminal columns.
func requireFits(t *testing.T, out string) {
	t.Helper()
	for line := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		assert.LessOrEqual(t, width(line), tableWidth, "a line wider than %d columns: %q", tableWidth, line)
	}
}

func TestTheTableFitsOneHundredColumnsWithTheMessageLastAndCut(t *testing.T) {
	longMessage := "NCERRInternalServerError: " + strings.Repeat("the connector did not answer in time; ", 30) + "end"
	longRequestID := strings.Repeat("incident-2291-", 10) + "7"
	outcomes := []outcome{
		{
			request: request{kind: messages.Kind("azure-certificate-sync"), id: jobA, requestID: longRequestID},
			result: messages.Result{Status: messages.StatusFailed, HTTPStatus: 500, OverallStatus: strings.Repeat("in progress ", 10),
				Error: &messages.Error{Code: messages.CodeServerError, Message: longMessage}},
			raw: []byte(`{}`), followed: false,
		},
		{
			request: request{kind: messages.KindRefresh, id: jobB, requestID: "3f9a1c2b-2"},
			result: messages.Result{Status: messages.StatusFailed, HTTPStatus: 0,
				Error: &messages.Error{Code: messages.CodeUnreachable, Message: "dial tcp 10.0.0.1:443: i/o timeout\nand a second line"}},
			raw: []byte(`{}`),
		},
		{
			request: request{kind: messages.KindRefresh, id: jobC, requestID: "3f9a1c2b-3"},
			result:  messages.Result{Status: messages.StatusCanceled, HTTPStatus: 200, OverallStatus: "in progress"},
			raw:     []byte(`{}`), followed: true,
			settled: messages.Result{Status: messages.StatusCanceled, OverallStatus: "completed", Settled: new(true)}, settledRaw: []byte(`{}`),
		},
	}
	for _, follow := range []bool{false, true} {
		if follow {
			outcomes[0].kind = messages.KindRefresh // a followed run has one kind
		}
		var stdout, stderr bytes.Buffer
		r := newReporter(&stdout, &stderr, false, follow, progressPlan{}, len(outcomes))
		r.finish(outcomes)

		requireFits(t, stdout.String())
		rows := tableRows(t, stdout.String())
		require.Len(t, rows, 3, stdout.String())
		assert.True(t, strings.HasPrefix(rows[0]["ERROR"], "server_"), "the start of the code shows: %q", rows[0]["ERROR"])
		assert.True(t, strings.HasSuffix(rows[0]["ERROR"], "…"), "the message is cut with …: %q", rows[0]["ERROR"])
		assert.True(t, strings.HasPrefix(rows[0]["REQUEST_ID"], "incident-"), rows[0]["REQUEST_ID"])
		assert.True(t, strings.HasSuffix(rows[0]["REQUEST_ID"], "…"), rows[0]["REQUEST_ID"])
		if !follow {
			assert.True(t, strings.HasPrefix(rows[0]["KIND"], "azure-"), "two kinds: a KIND column: %q", rows[0]["KIND"])
			assert.Equal(t, "refresh", rows[1]["KIND"])
		}
		assert.Equal(t, jobA, rows[0]["ID"], "the job id is whole")
		assert.Equal(t, "500", rows[0]["HTTP"])
		assert.Equal(t, "-", rows[1]["HTTP"], "no answer from CipherTrust Manager")
		assert.Equal(t, "200", rows[2]["HTTP"])
		assert.NotContains(t, stdout.String(), "second line", "a line break in a message does not start a line")
		if follow {
			assert.Equal(t, "true", rows[2]["SETTLED"])
			assert.True(t, strings.HasPrefix(rows[2]["OVERALL"], "compl"), rows[2]["OVERALL"])
		}
	}
}

func TestTheMessageKeepsRoomWhenOtherColumnsCanBeNarrowed(t *testing.T) {
	var stdout, stderr bytes.Buffer
	r := newReporter(&stdout, &stderr, false, false, progressPlan{}, 1)
	r.finish([]outcome{{
		request: request{kind: messages.KindRefresh, id: jobA, requestID: strings.Repeat("r", 40)},
		result: messages.Result{Status: messages.StatusFailed, HTTPStatus: 404, OverallStatus: strings.Repeat("o", 40),
			Error: &messages.Error{Code: messages.CodeNotFound, Message: strings.Repeat("m", 200)}},
		raw: []byte(`{}`),
	}})

	requireFits(t, stdout.String())
	rows := tableRows(t, stdout.String())
	require.Len(t, rows, 1)
	assert.GreaterOrEqual(t, utf8.RuneCountInString(rows[0]["ERROR"]), lastColumnMin, rows[0]["ERROR"])
	assert.Equal(t, jobA, rows[0]["ID"])
}

func TestLongRequestIDsAndMessagesFromAWorkerFitOneHundredColumns(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	long := `{"code":10,"codeDesc":"NCERRConflict: ` + strings.Repeat("the job is not in progress any more; ", 20) + `","message":"x"}`
	cm.Script(jobA, cckmtest.Step{Status: 409, Body: long})
	cm.AddJob(cckmtest.Refresh, jobB)
	startWorker(t, ns, cm, worker.ModeJetStream)

	res := newCLI(t, ns).run(t, "refresh", "--request-prefix", strings.Repeat("incident-", 20), jobA, jobB)

	assert.Equal(t, exitNotCanceled, res.code, res.stderr)
	requireFits(t, res.stdout)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, 2, res.stdout)
	assert.Equal(t, "409", rows[0]["HTTP"])
	assert.True(t, strings.HasPrefix(rows[0]["ERROR"], "conflict: "), rows[0]["ERROR"])
	assert.True(t, strings.HasSuffix(rows[0]["ERROR"], "…"), rows[0]["ERROR"])
	assert.True(t, strings.HasSuffix(rows[0]["REQUEST_ID"], "…"), rows[0]["REQUEST_ID"])
	assert.Equal(t, "canceled", rows[1]["STATUS"])
	assert.Equal(t, "-", rows[1]["ERROR"])
}

func TestCutKeepsWholeCharacters(t *testing.T) {
	assert.Equal(t, "abc", cut("abc", 3))
	assert.Equal(t, "ab…", cut("abcd", 3))
	assert.Equal(t, "éé…", cut("éééé", 3))
	assert.Equal(t, "abcd", cut("abcd", 0), "no limit")
}

func TestACipherTrustManagerErrorWithEscapesAndWideCharactersStaysInItsCell(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cm := fakeCM(t)
	hostile := "作业\x1b]0;owned\a\x1b[2J\u009b31m\u202e" + strings.Repeat("已完成，无法取消。", 10)
	body, err := json.Marshal(map[string]any{"code": 10, "codeDesc": "NCERRConflict: " + hostile, "message": hostile})
	require.NoError(t, err)
	cm.Script(jobA, cckmtest.Step{Status: 409, Body: string(body)})
	startWorker(t, ns, cm, worker.ModeJetStream)

	res := newCLI(t, ns).run(t, "refresh", jobA)

	assert.Equal(t, exitNotCanceled, res.code, res.stderr)
	requireNoTerminalControls(t, res.stdout+res.stderr)
	requireFits(t, res.stdout)
	assert.Contains(t, res.stdout, "作业", "the message is shown, only cut")
	assert.Contains(t, res.stdout, "…")
}

func TestAWideCharacterTakesTwoColumns(t *testing.T) {
	assert.Equal(t, 2, width("作"))
	assert.Equal(t, 2, width("ｘ"), "fullwidth")
	assert.Equal(t, 1, width("é"))
	assert.Equal(t, 1, width("e\u0301"), "a combining mark takes none")
	assert.Equal(t, "作业…", cut("作业已完成", 5))
	assert.Equal(t, "作…", cut("作业已完成", 4), "a wide character that does not fit whole is left out")
	assert.Equal(t, 4, width(cut("作业已完成", 4))+1, "the cut one leaves its column blank")
}
