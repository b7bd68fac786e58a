package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
	version, revision := "", ""
	for _, line := range strings.Split(string(meta), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[0] == "mod":
			version = fields[2]
		case len(fields) >= 2 && strings.HasPrefix(fields[1], "vcs.revision="):
			revision = strings.TrimPrefix(fields[1], "vcs.revision=")
		}
	}
	require.NotEmpty(t, version, "go version -m names no module version:\n%s", meta)
	assert.True(t, strings.HasPrefix(out, "cckm-cancel-worker "+version), "%q, from:\n%s", out, meta)
	if revision != "" {
		assert.Contains(t, out, "revision "+revision[:12], "from:\n%s", meta)
	}
}
