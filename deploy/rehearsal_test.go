package deploy_test

// Rehearsals without Docker or Kubernetes: the binaries the image holds,
// built here, run with the settings docker-compose.yml and the Kubernetes
// manifests give them. Only the addresses change (an embedded NATS server, a
// free port for the fake CM and for HTTP_ADDR, a temporary directory for the
// Secret's files); every other value is the file's own, so a value the
// worker refuses, or credentials the fake does not accept, fail here.

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/natstest"
	"github.com/cckm/cckm-cancel-worker/internal/syncbuf"
	"github.com/cckm/cckm-cancel-worker/messages"
)

// The binaries, built once for every rehearsal.
var (
	buildOnce  sync.Once
	binDir     string
	buildError error
)

// binary returns the path of a command of ./cmd built for the tests.
func binary(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	buildOnce.Do(func() {
		binDir, buildError = os.MkdirTemp("", "cckm-deploy-test-")
		if buildError != nil {
			return
		}
		build := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"./cmd/cckm-cancel-worker", "./cmd/cckm-fake-cm")
		build.Dir = repoRoot
		build.Stderr = os.Stderr
		buildError = build.Run()
	})
	require.NoError(t, buildError, "building the binaries")
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// lockedBuffer collects a process's output for the failure message.
type lockedBuffer = syncbuf.Buffer

// startFakeCM runs cckm-fake-cm with args, its --addr replaced by a free
// loopback port, and returns its base URL.
func startFakeCM(t *testing.T, args []string) string {
	t.Helper()
	args = withFlag(args, "addr", "127.0.0.1:0")
	cmd := exec.Command(binary(t, "cckm-fake-cm"), args...)
	cmd.Env = []string{}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "cckm-fake-cm printed nothing")
	baseURL := regexp.MustCompile(`https?://[0-9.:]+`).FindString(lines.Text())
	require.NotEmpty(t, baseURL, "no URL in %q", lines.Text())
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return baseURL
}

// withFlag returns args with --name set to value, replacing a given one.
func withFlag(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+2)
	for i := 0; i < len(args); i++ {
		switch trimmed := strings.TrimLeft(args[i], "-"); {
		case trimmed == name && trimmed != args[i]:
			i++ // skip the value
		case strings.HasPrefix(trimmed, name+"=") && trimmed != args[i]:
		default:
			out = append(out, args[i])
		}
	}
	return append(out, "--"+name, value)
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// rehearse runs the worker with exactly env (and no other variable) against
// nc's server, waits until /readyz answers 200, cancels a sample job of the
// fake through NATS, and stops the worker with SIGTERM.
func rehearse(t *testing.T, env map[string]string, nc *nats.Conn) {
	t.Helper()
	cmd := exec.Command(binary(t, "cckm-cancel-worker"))
	cmd.Env = []string{}
	names := make([]string, 0, len(env))
	for name := range env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cmd.Env = append(cmd.Env, name+"="+env[name])
	}
	var output lockedBuffer
	cmd.Stdout, cmd.Stderr = &output, &output
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker output:\n%s", output.String())
		}
	})

	readyz := "http://" + env["HTTP_ADDR"] + "/readyz"
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case err := <-exited:
			t.Fatalf("the worker exited at start (%v):\n%s", err, output.String())
		default:
		}
		if resp, err := (&http.Client{Timeout: time.Second}).Get(readyz); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "GET %s did not answer 200 within 20s", readyz)
		time.Sleep(50 * time.Millisecond)
	}

	results, err := nc.SubscribeSync(messages.KindRefresh.ResultSubject())
	require.NoError(t, err)
	const sampleJob = "8155fe39-570a-4132-92ca-e40b7640c7dc" // the first dev-mode sample job
	require.NoError(t, nc.Publish(messages.SubjectRefresh, []byte(sampleJob)))
	msg, err := results.NextMsg(20 * time.Second)
	require.NoError(t, err, "no result")
	var result struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(msg.Data, &result))
	assert.Equal(t, sampleJob, result.ID)
	assert.Equal(t, "canceled", result.Status, "result: %s", msg.Data)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s of SIGTERM")
	}
}

func TestRehearseDockerCompose(t *testing.T) {
	c := loadCompose(t)
	ns := natstest.RunServer(t, nil)
	nc := natstest.Connect(t, ns)

	env := map[string]string{}
	for name, value := range c.Services[workerService].Environment {
		env[name] = value
	}
	env["NATS_URL"] = ns.ClientURL()
	env["CCKM_URL"] = startFakeCM(t, c.Services[cmService].Command)
	env["HTTP_ADDR"] = freeAddr(t)
	rehearse(t, env, nc)
}

func TestRehearseTheKubernetesDeployment(t *testing.T) {
	m := loadManifests(t)
	ns := natstest.RunServer(t, nil)
	nc := natstest.Connect(t, ns)

	secretValue := func(key string) string {
		if v, ok := m.secret.StringData[key]; ok {
			return v
		}
		t.Fatalf("secret.example.yaml: no stringData key %s", key)
		return ""
	}
	env := map[string]string{}
	for name, value := range m.configMap.Data {
		env[name] = value
	}
	// The Secret's files, where the pod would see them, moved to a
	// temporary directory.
	secretDir := t.TempDir()
	for key, value := range m.secret.StringData {
		require.NoError(t, os.WriteFile(filepath.Join(secretDir, key), []byte(value+"\n"), 0o600))
	}
	for _, e := range m.worker().Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secretValue(e.ValueFrom.SecretKeyRef.Key)
		case strings.HasSuffix(e.Name, "_FILE"):
			env[e.Name] = filepath.Join(secretDir, filepath.Base(e.Value))
		default:
			env[e.Name] = e.Value
		}
	}
	env["NATS_URL"] = ns.ClientURL()
	env["CCKM_URL"] = startFakeCM(t, []string{
		"--username", env["CCKM_USERNAME"], "--password", secretValue("password"),
	})
	env["HTTP_ADDR"] = freeAddr(t)
	rehearse(t, env, nc)
}
