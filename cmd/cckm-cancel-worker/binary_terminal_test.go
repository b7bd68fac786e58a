package main

import (
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// terminalRows is the screen a newcomer's banner must fit on.
const terminalRows = 40

// `cckm-cancel-worker --dev` as a person runs it, at a terminal of 40
// rows and 100 columns: console logs, the banner printed last and within
// the first screen, and Ctrl-C ends it with exit status 0.
func TestDevModeAtATerminalShowsTheBannerOnTheFirstScreenAndCtrlCExitsZero(t *testing.T) {
	cmd := exec.Command(binaryPath, "--dev")
	// Any free port for NATS and HTTP: the test runs beside anything.
	cmd.Env = []string{"HTTP_ADDR=127.0.0.1:0", "DEV_NATS_PORT=0", "TERM=xterm"}
	terminal, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: terminalRows, Cols: 100})
	require.NoError(t, err)
	exited := make(chan struct{}) // closed once the process has exited; then waitErr is set
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	var screen syncBuffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&screen, terminal) // ends with an error once the process is gone
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = terminal.Close()
		<-copied
		if t.Failed() {
			t.Logf("the terminal showed:\n%s", screen.String())
		}
	})

	const bannerTitle = "cckm-cancel-worker dev mode (jetstream mode)"
	const bannerEnd = "not-a-uuid\r\n" // the banner's last command
	require.Eventually(t, func() bool { return strings.Contains(screen.String(), bannerEnd) },
		30*time.Second, 20*time.Millisecond, "the banner is printed")

	lines := strings.Split(screen.String(), "\n")
	title, end := -1, -1
	for i, line := range lines {
		if strings.Contains(line, bannerTitle) && title < 0 {
			title = i
		}
		if strings.Contains(line, "not-a-uuid") {
			end = i
		}
	}
	require.GreaterOrEqual(t, title, 0, "the banner's title")
	assert.Less(t, title, terminalRows, "the banner begins within the first %d lines", terminalRows)
	assert.LessOrEqual(t, end-title+1, terminalRows, "the whole banner fits on one screen")
	before := strings.Join(lines[:title], "\n")
	assert.Contains(t, before, "INF", "console logs at a terminal")
	assert.NotContains(t, before, `{"level"`, "no JSON at a terminal")
	assert.Contains(t, before, "logged in to CipherTrust Manager", "the login comes before the banner")
	assert.Contains(t, before, "consuming requests", "the banner comes once the worker consumes")

	_, err = terminal.Write([]byte{0x03}) // Ctrl-C
	require.NoError(t, err)
	select {
	case <-exited:
		var exitErr *exec.ExitError
		if errors.As(waitErr, &exitErr) {
			t.Fatalf("Ctrl-C: exit status %d, want 0", exitErr.ExitCode())
		}
		require.NoError(t, waitErr, "Ctrl-C ends the worker with exit status 0")
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s of Ctrl-C")
	}
}
