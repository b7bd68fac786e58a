package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestCollectIDsReadsEverySource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ids.txt")
	require.NoError(t, os.WriteFile(file, []byte("# incident 2291\n\n  "+jobB+"  \r\n"+jobC+" # the bulk one\n   # "+jobA+"\n"), 0o600))

	tests := []struct {
		name  string
		args  []string
		file  string
		stdin string
		want  []string
	}{
		{name: "ids come from the arguments", args: []string{jobA, jobB}, want: []string{jobA, jobB}},
		{name: "a file skips blank lines and comments", file: file, want: []string{jobB, jobC}},
		{name: "arguments come before the file's ids", args: []string{jobA}, file: file, want: []string{jobA, jobB, jobC}},
		{name: "stdin is read when nothing else names ids", stdin: jobA + "\n# note\n" + jobC + "\n", want: []string{jobA, jobC}},
		{name: "stdin is not read when arguments name ids", args: []string{jobB}, stdin: jobA + "\n", want: []string{jobB}},
		{name: "--file - reads stdin", args: []string{jobA}, file: "-", stdin: jobC, want: []string{jobA, jobC}},
		{name: "an id given twice, in any case, is sent once", args: []string{jobA, strings.ToUpper(jobA), jobB}, want: []string{jobA, jobB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := collectIDs(tt.args, tt.file, strings.NewReader(tt.stdin), &stderr)
			require.NoError(t, err, stderr.String())
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCollectIDsRefusesBadInput(t *testing.T) {
	var stderr bytes.Buffer
	_, err := collectIDs([]string{jobA, "not-a-uuid", jobB + "/cancel"}, "", nil, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 of 3 job ids are not UUIDs; nothing was sent")
	assert.Contains(t, stderr.String(), `argument 2: "not-a-uuid" is not a job id`)
	assert.Contains(t, stderr.String(), `argument 3: "`+jobB+`/cancel" is not a job id`)

	_, err = collectIDs(nil, "", strings.NewReader("\n# nothing\n"), &stderr)
	assert.ErrorContains(t, err, "no job ids")

	_, err = collectIDs(nil, filepath.Join(t.TempDir(), "missing.txt"), nil, &stderr)
	assert.ErrorContains(t, err, "--file")
}

func TestAnInvalidIDSendsNothingAndExitsTwo(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	watch := watchRequests(t, ns, messages.KindRefresh)
	connectionsBefore := totalConnections(t, ns)

	dir := t.TempDir()
	file := filepath.Join(dir, "ids.txt")
	require.NoError(t, os.WriteFile(file, []byte(jobB+"\n"+"8155fe39-570a-4132-92ca\n"), 0o600))

	res := newCLI(t, ns).run(t, "refresh", "--file", file, jobA)

	assert.Equal(t, exitUsage, res.code)
	assert.Empty(t, res.stdout)
	assert.Contains(t, res.stderr, file+`:2: "8155fe39-570a-4132-92ca" is not a job id`)
	assert.Contains(t, res.stderr, "1 of 3 job ids are not UUIDs; nothing was sent")
	assert.Equal(t, connectionsBefore, totalConnections(t, ns), "the command connected to NATS")
	_, err := watch.NextMsg(50 * time.Millisecond)
	assert.Error(t, err, "a request was published")
}

func totalConnections(t *testing.T, ns *server.Server) uint64 {
	t.Helper()
	varz, err := ns.Varz(nil)
	require.NoError(t, err)
	return varz.TotalConnections
}

func TestRequestIDsArePrefixedPositions(t *testing.T) {
	requests, err := newRequests(messages.KindBulkJob, []string{jobA, jobB}, "ir-2291-")
	require.NoError(t, err)
	assert.Equal(t, []request{
		{index: 0, kind: messages.KindBulkJob, id: jobA, requestID: "ir-2291-1"},
		{index: 1, kind: messages.KindBulkJob, id: jobB, requestID: "ir-2291-2"},
	}, requests)

	requests, err = newRequests(messages.KindRefresh, []string{jobA, jobB}, "")
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9a-f]{8}-1$`, requests[0].requestID, "a run prefix of random digits")
	run, _, _ := strings.Cut(requests[0].requestID, "-")
	assert.Equal(t, run+"-2", requests[1].requestID, "one run prefix for the run")
	again, err := newRequests(messages.KindRefresh, []string{jobA}, "")
	require.NoError(t, err)
	assert.NotEqual(t, requests[0].requestID, again[0].requestID, "each run has its own prefix")

	_, err = newRequests(messages.KindRefresh, []string{jobA}, " ir-")
	assert.ErrorContains(t, err, "--request-prefix")
}

func TestUsageErrorsExitTwoWithOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no kind", args: nil, want: "missing the kind of job"},
		{name: "an unknown kind", args: []string{"rotate", jobA}, want: `unknown kind of job "rotate"`},
		{name: "an unknown flag", args: []string{"--frobnicate", "refresh", jobA}, want: "flag provided but not defined"},
		{name: "a zero concurrency", args: []string{"--concurrency", "0", "refresh", jobA}, want: "--concurrency must be at least 1"},
		{name: "a negative timeout", args: []string{"refresh", "--timeout", "-1s", jobA}, want: "--timeout must be positive"},
		{name: "a bad progress mode", args: []string{"refresh", "--progress", "sometimes", jobA}, want: "--progress"},
		{name: "no ids at all", args: []string{"refresh"}, want: "no job ids"},
		{name: "a bad request prefix", args: []string{"--request-prefix", " x", "refresh", jobA}, want: "--request-prefix"},
		{name: "a missing nats context", args: []string{"--context", "nowhere", "refresh", jobA}, want: `nats context "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := newCLI(t, nil).run(t, tt.args...)
			assert.Equal(t, exitUsage, res.code)
			assert.Empty(t, res.stdout)
			lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
			assert.Contains(t, lines[len(lines)-1], tt.want)
			assert.True(t, strings.HasPrefix(lines[len(lines)-1], "cckm-cancel: "), lines[len(lines)-1])
			assert.Len(t, lines, 1, "one line: %s", res.stderr)
		})
	}
}

func TestFlagsMayFollowTheKindAndIDs(t *testing.T) {
	cfg, err := parseArgs([]string{"bulkjob", jobA, "--json", "-s", "nats://a:4222", jobB, "--timeout", "5s", "--", "--weird"})
	require.NoError(t, err)
	assert.Equal(t, messages.KindBulkJob, cfg.kind)
	assert.Equal(t, []string{jobA, jobB, "--weird"}, cfg.ids)
	assert.True(t, cfg.json)
	assert.Equal(t, "nats://a:4222", cfg.conn.URL)
	assert.Equal(t, 5*time.Second, cfg.send.timeout)
	assert.Equal(t, defaultConcurrency, cfg.send.concurrency)
}

func TestAConnectionFailureExitsTwoWithOneLine(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	url := ns.ClientURL()
	ns.Shutdown()
	ns.WaitForShutdown()

	hostPort := strings.TrimPrefix(url, "nats://")
	for _, tc := range []struct{ url, shown string }{
		{"nats://ops:secret@" + hostPort, "nats://****@127.0.0.1:"},
		{"ops:secret@" + hostPort, "nats://****@127.0.0.1:"},     // no scheme: read as nats://
		{"nats://ops:sec%zzret@" + hostPort, "<unparsable URL>"}, // a bad escape
		{"nats://ops:sec#ret@" + hostPort + ",nats://x:secret@h:1", "<unparsable URL>"},
	} {
		c := newCLI(t, nil)
		c.env["NATS_URL"] = tc.url
		res := c.run(t, "refresh", jobA)

		assert.Equal(t, exitUsage, res.code, tc.url)
		assert.Empty(t, res.stdout)
		assert.Equal(t, 1, strings.Count(res.stderr, "\n"), res.stderr)
		assert.Contains(t, res.stderr, "cckm-cancel: cannot connect to NATS at "+tc.shown, tc.url)
		for _, secret := range []string{"secret", "sec%zzret", "zzret", "sec#ret"} {
			assert.NotContains(t, res.stderr, secret, tc.url)
		}
	}
}
