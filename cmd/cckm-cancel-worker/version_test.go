package main

import (
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormatVersionNamesTheModuleVersionAndTheRevision(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.modified", Value: "true"},
	}}
	assert.Equal(t, "cckm-cancel-worker v1.4.0 (revision 0123456789abcdef0123456789abcdef01234567, modified)",
		formatVersion("cckm-cancel-worker", info, true))
	assert.Equal(t, "cckm-cancel-worker (devel) (revision unknown)",
		formatVersion("cckm-cancel-worker", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true))
	assert.Equal(t, "cckm-cancel-worker unknown (revision unknown)", formatVersion("cckm-cancel-worker", nil, false))
}

func TestTheBinaryPrintsItsVersionAndRevision(t *testing.T) {
	p := startBinary(t, nil, "--version")
	assert.Equal(t, 0, p.exitCode(t, 10*time.Second))
	assert.Empty(t, p.stderr.String(), "stderr")
	out := p.stdout.String()
	assert.Equal(t, 1, strings.Count(out, "\n"), "one line: %q", out)
	assert.True(t, strings.HasPrefix(out, "cckm-cancel-worker "), out)
	// What the Go toolchain says the binary carries (go version -m).
	meta, err := exec.Command("go", "version", "-m", binaryPath).Output()
	require.NoError(t, err)
	version, revision := "unknown", "unknown"
	for _, line := range strings.Split(string(meta), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[0] == "mod":
			version = fields[2]
		case len(fields) >= 2 && strings.HasPrefix(fields[1], "vcs.revision="):
			revision = strings.TrimPrefix(fields[1], "vcs.revision=")
		}
	}
	assert.True(t, strings.HasPrefix(out, "cckm-cancel-worker "+version+" (revision "+revision), "%q, from:\n%s", out, meta)
}
