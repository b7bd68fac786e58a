package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
	"github.com/cckm/cckm-cancel-worker/worker"
)

// The number of CCKM job families CipherTrust Manager can cancel, written
// out so that a row lost from the kinds table fails here.
const allKinds = 16

// deadNATS is a NATS URL where nothing listens: a command that needs no
// connection must not try it.
const deadNATS = "nats://127.0.0.1:1"

func TestKindsListsEveryKindWithItsSubjectAndWhatItCancels(t *testing.T) {
	c := newCLI(t, nil)
	c.env["NATS_URL"] = deadNATS

	res := c.run(t, "kinds")

	require.Equal(t, exitCanceled, res.code, res.stderr)
	assert.Empty(t, res.stderr)
	rows := tableRows(t, res.stdout)
	require.Len(t, rows, allKinds)
	for i, info := range messages.KindTable() {
		assert.Equal(t, map[string]string{
			"KIND":    string(info.Kind),
			"SUBJECT": "cckm.cancel." + string(info.Kind),
			"CANCELS": info.Job,
		}, rows[i], "row %d is the table's row %d", i+1, i+1)
	}
	// A few rows as a user reads them, not as the table spells them.
	byKind := map[string]map[string]string{}
	for _, row := range rows {
		byKind[row["KIND"]] = row
	}
	assert.Equal(t, "cckm.cancel.sap-sync", byKind["sap-sync"]["SUBJECT"])
	assert.Equal(t, "an SAP Data Custodian key synchronization", byKind["sap-sync"]["CANCELS"])
	assert.Equal(t, "an Azure bulk job", byKind["azure-bulkjob"]["CANCELS"])
	assert.Equal(t, "a refresh of external CipherTrust Manager domains", byKind["refresh"]["CANCELS"])

	res = c.run(t, "--json", "kinds")
	require.Equal(t, exitCanceled, res.code, res.stderr)
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	require.Len(t, lines, allKinds)
	var sap struct{ Kind, Subject, Cancels, Collection string }
	for _, line := range lines {
		require.NoError(t, json.Unmarshal([]byte(line), &sap), line)
		if sap.Kind == "sap-sync" {
			break
		}
	}
	assert.Equal(t, "sap-sync", sap.Kind)
	assert.Equal(t, "cckm.cancel.sap-sync", sap.Subject)
	assert.Equal(t, "an SAP Data Custodian key synchronization", sap.Cancels)
	assert.Equal(t, "/api/v1/cckm/sap/synchronization-jobs", sap.Collection)
}

func TestTheUsageNamesEveryKind(t *testing.T) {
	res := newCLI(t, nil).run(t, "-h")

	assert.Equal(t, exitCanceled, res.code)
	assert.Contains(t, res.stdout, "Usage: cckm-cancel [flags] KIND [id...]")
	assert.Contains(t, res.stdout, "cckm-cancel kinds")
	for _, info := range messages.KindTable() {
		assert.Regexp(t, `\n  `+string(info.Kind)+` +`+info.Job+`\n`, res.stdout, "the usage shows %s and what it cancels", info.Kind)
	}
}

func TestNoKindIsNamedAsASubcommand(t *testing.T) {
	for _, name := range []string{kindsCommand, deadCommand, helpCommand} {
		assert.False(t, messages.Kind(name).Valid(), "a kind named %q could not be canceled from the command line", name)
	}
}

func TestAnUnknownKindExitsTwoNamingTheCloseMatches(t *testing.T) {
	var syncKinds []string
	for _, kind := range messages.Kinds {
		if strings.HasSuffix(string(kind), "-sync") {
			syncKinds = append(syncKinds, string(kind))
		}
	}
	require.Len(t, syncKinds, 11)

	for _, tc := range []struct {
		name  string
		given string
		want  []string // the kinds named, in order; nil: none
		anyOf bool     // want in any order
	}{
		{name: "a kind cut short", given: "azure-bulk", want: []string{"azure-bulkjob"}},
		{name: "a word of many kinds", given: "sync", want: syncKinds, anyOf: true},
		{name: "a misspelt kind", given: "refesh", want: []string{"refresh"}},
		{name: "two letters swapped", given: "sap-snyc", want: []string{"sap-sync"}},
		{name: "a plural", given: "azure-bulkjobs", want: []string{"azure-bulkjob", "bulkjob"}},
		{name: "upper case", given: "LUNA-SYNC", want: []string{"luna-sync"}},
		{name: "a vendor named in what the kind cancels", given: "oracle", want: []string{"oci-sync"}},
		{name: "a cloud", given: "aws", want: []string{"aws-sync", "aws-cks-sync", "bulkjob"}},
		{name: "nothing close", given: "rotate"},
		{name: "one letter", given: "s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t, nil)
			c.env["NATS_URL"] = deadNATS // refused before any connection: nothing is sent

			res := c.run(t, tc.given, jobA)

			assert.Equal(t, exitUsage, res.code)
			assert.Empty(t, res.stdout)
			require.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %s", res.stderr)
			line := strings.TrimSuffix(res.stderr, "\n")
			assert.True(t, strings.HasPrefix(line, `cckm-cancel: unknown kind of job "`+tc.given+`"`), line)
			assert.True(t, strings.HasSuffix(line, "(cckm-cancel kinds lists all 16)"), line)
			named := suggested(line)
			if tc.anyOf {
				assert.ElementsMatch(t, tc.want, named, line)
			} else {
				assert.Equal(t, tc.want, named, line)
			}
		})
	}
}

// suggested returns the kinds an unknown-kind line names after "did you
// mean", or nil.
func suggested(line string) []string {
	_, after, found := strings.Cut(line, "; did you mean ")
	if !found {
		return nil
	}
	list, _, _ := strings.Cut(after, "? (")
	return strings.Split(list, ", ")
}

func TestKindsTakesNoArguments(t *testing.T) {
	res := newCLI(t, nil).run(t, "kinds", "sap-sync")

	assert.Equal(t, exitUsage, res.code)
	assert.Empty(t, res.stdout)
	assert.Equal(t, "cckm-cancel: kinds takes no arguments, got \"sap-sync\"\n", res.stderr)
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"sync", "sync", 0},
		{"", "sync", 4},
		{"refesh", "refresh", 1},
		{"snyc", "sync", 1},
		{"gcp-sync", "oci-sync", 2},
		{"azure-bulk", "azure-bulkjob", 3},
	} {
		assert.Equal(t, tc.want, editDistance(tc.a, tc.b), "%q to %q", tc.a, tc.b)
		assert.Equal(t, tc.want, editDistance(tc.b, tc.a), "%q to %q", tc.b, tc.a)
	}
}

// cmCall is one HTTP request the stand-in CipherTrust Manager received.
type cmCall struct {
	method, rawPath, authorization, accept string
	body                                   string
}

// standInCM is a CipherTrust Manager where every UUID is a running job of
// every kind in the kinds table: a cancel answers 200 with abort true;
// anything else is 404. It accepts one static bearer token.
type standInCM struct {
	*httptest.Server
	mu    sync.Mutex
	calls []cmCall
}

// standInToken is the bearer token the stand-in expects.
const standInToken = "cli-test-token"

func newStandInCM(t *testing.T) *standInCM {
	t.Helper()
	cm := &standInCM{}
	mux := http.NewServeMux()
	for _, info := range messages.KindTable() {
		mux.HandleFunc("POST "+info.Collection+"/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
			cm.record(r)
			if r.Header.Get("Authorization") != "Bearer "+standInToken {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"id": r.PathValue("id"), "abort": true, "overall_status": info.Running,
			})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		cm.record(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":5,"codeDesc":"NCERRResourceNotFound: Resource not found"}`))
	})
	cm.Server = httptest.NewServer(mux)
	t.Cleanup(cm.Close)
	return cm
}

func (cm *standInCM) record(r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10)) // a cancel has none; a little shows one
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.calls = append(cm.calls, cmCall{
		method: r.Method, rawPath: r.URL.EscapedPath(), authorization: r.Header.Get("Authorization"),
		accept: r.Header.Get("Accept"), body: string(body),
	})
}

// callsTo returns the calls whose path holds id.
func (cm *standInCM) callsTo(id string) []cmCall {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	var calls []cmCall
	for _, call := range cm.calls {
		if strings.Contains(call.rawPath, id) {
			calls = append(calls, call)
		}
	}
	return calls
}

func TestEveryKindIsCanceledThroughAWorker(t *testing.T) {
	// The paths of a few kinds as CipherTrust Manager spells them, the
	// irregular ones among them, written out rather than read from the table.
	paths := map[messages.Kind]string{
		"sap-sync":      "/api/v1/cckm/sap/synchronization-jobs/",
		"azure-bulkjob": "/api/v1/cckm/azure/bulkjobs/",
		"bulkjob":       "/api/v1/cckm/aws/bulkjob/",
		"luna-sync":     "/api/v1/cckm/hsm/luna/synchronize/",
		"refresh":       "/api/v1/cckm/external-cm/refresh/",
	}
	for _, mode := range []worker.Mode{worker.ModeJetStream, worker.ModeCore} {
		t.Run(string(mode), func(t *testing.T) {
			ns := natstest.RunServer(t, nil)
			cm := newStandInCM(t)
			startWorkerAt(t, ns, cm.URL, cckmclient.Credentials{Token: standInToken}, mode)
			c := newCLI(t, ns)
			kinds := messages.Kinds
			if mode == worker.ModeCore {
				// Core mode differs in how the command publishes, not in
				// the kind: two new kinds show it.
				kinds = []messages.Kind{"sap-sync", "azure-bulkjob"}
			}
			for _, kind := range kinds {
				t.Run(string(kind), func(t *testing.T) {
					id := messages.NewRequestID()

					res := c.run(t, string(kind), "--json", id)

					require.Equal(t, exitCanceled, res.code, res.stderr)
					assert.Empty(t, res.stderr)
					results := jsonLines(t, res.stdout)
					require.Len(t, results, 1)
					r := results[0]
					assert.Equal(t, kind, r.Kind)
					assert.Equal(t, id, r.ID)
					assert.Equal(t, messages.StatusCanceled, r.Status)
					assert.True(t, r.Abort)
					assert.Equal(t, 200, r.HTTPStatus)
					info, _ := kind.Info()
					assert.Equal(t, info.Running, r.OverallStatus)

					calls := cm.callsTo(id)
					require.Len(t, calls, 1, "one cancel call")
					assert.Equal(t, cmCall{
						method: http.MethodPost, rawPath: info.Collection + "/" + id + "/cancel",
						authorization: "Bearer " + standInToken, accept: "application/json",
					}, calls[0])
					if prefix, ok := paths[kind]; ok {
						assert.Equal(t, prefix+id+"/cancel", calls[0].rawPath)
					}
				})
			}
		})
	}
}

// The README's table of kinds says what the kinds table says, row for row,
// so that a family added to the table is documented too.
func TestTheREADMETableOfKindsIsTheKindsTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	const header = "| kind | subject | cancels | CipherTrust Manager collection |"
	_, table, found := strings.Cut(string(data), header+"\n|---|---|---|---|\n")
	require.True(t, found, "README.md has no table headed %s", header)
	table, _, _ = strings.Cut(table, "\n\n")
	var rows [][]string
	for line := range strings.SplitSeq(table, "\n") {
		var cells []string
		for cell := range strings.SplitSeq(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.Trim(strings.TrimSpace(cell), "`"))
		}
		rows = append(rows, cells)
	}
	var want [][]string
	for _, info := range messages.KindTable() {
		want = append(want, []string{string(info.Kind), info.Kind.RequestSubject(), info.Job, info.Collection})
	}
	assert.Equal(t, want, rows)
}
