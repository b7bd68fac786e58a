package cckmclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/cckmclient"
	"github.com/cckm/cckm-cancel-worker/cckmclient/cckmtest"
)

// Credentials the fake CipherTrust Manager accepts in these tests. They are
// long and distinctive so that a leak is found by a plain substring search.
const (
	testUser     = "cckm-worker"
	testPassword = "pw-Vq8rT3xZ-never-print"
	testDomain   = "engineering"
	testStatic   = "static-token-Jk29fWq-never-print"
	testRefresh  = "refresh-token-Hn47pLc-never-print"
)

// callTimeout bounds every client call made by these tests.
const callTimeout = 15 * time.Second

// newServer starts a fake CipherTrust Manager, closed when the test ends.
func newServer(t *testing.T, opts cckmtest.Options) *cckmtest.Server {
	t.Helper()
	server := cckmtest.NewServer(opts)
	t.Cleanup(server.Close)
	return server
}

// passwordServer accepts testUser and testPassword, and testRefresh.
func passwordServer(t *testing.T, opts cckmtest.Options) *cckmtest.Server {
	t.Helper()
	opts.Username, opts.Password = testUser, testPassword
	if opts.RefreshToken == "" {
		opts.RefreshToken = testRefresh
	}
	return newServer(t, opts)
}

// newClient returns a client of server configured by cfg, with back-off
// waits of a few milliseconds unless cfg sets them.
func newClient(t *testing.T, server *cckmtest.Server, cfg cckmclient.Config) *cckmclient.Client {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = server.URL()
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RetryBudget == 0 {
		cfg.RetryBudget = 10 * time.Second
	}
	client, err := cckmclient.New(cfg)
	require.NoError(t, err)
	return client
}

// staticCreds and passwordCreds are the usual credentials.
var (
	staticCreds   = cckmclient.Credentials{Token: testStatic}
	passwordCreds = cckmclient.Credentials{Username: testUser, Password: testPassword}
)

// testContext is a context that ends before the test's own time-out would.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newID returns a random job id in UUID form.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// addJob registers a running job of kind with a new id and returns the id.
func addJob(server *cckmtest.Server, kind cckmtest.Kind) string {
	id := newID()
	server.AddJob(kind, id)
	return id
}

// writeSecretFile writes value and a final newline to a new file, as a
// Kubernetes or Docker secret is mounted, and returns its path.
func writeSecretFile(t *testing.T, name, value string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, writeFile(path, []byte(value+"\n")))
	return path
}

// writeFile writes data to a new file readable only by its owner.
func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }

// resolve is cckmclient.ResolveSecret from a file that must succeed.
func resolve(t *testing.T, name, path string) cckmclient.Secret {
	t.Helper()
	secret, err := cckmclient.ResolveSecret(name, "", path)
	require.NoError(t, err)
	return secret
}

// callsOf returns the recorded requests of one op: "token", "cancel" or "get".
func callsOf(server *cckmtest.Server, op string) []cckmtest.Call {
	var calls []cckmtest.Call
	for _, call := range server.Calls() {
		if call.Op == op {
			calls = append(calls, call)
		}
	}
	return calls
}

// statuses lists the status answered to each call.
func statuses(calls []cckmtest.Call) []int {
	out := make([]int, len(calls))
	for i, call := range calls {
		out[i] = call.Status
	}
	return out
}

// issuedJWTs returns every bearer token the client sent to a job endpoint.
func issuedJWTs(server *cckmtest.Server) []string {
	seen := map[string]bool{}
	var tokens []string
	for _, call := range server.Calls() {
		token, ok := strings.CutPrefix(call.Header.Get("Authorization"), "Bearer ")
		if ok && token != "" && !seen[token] {
			seen[token] = true
			tokens = append(tokens, token)
		}
	}
	return tokens
}

// logBuffer is a bytes.Buffer that the client may log to from several
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// debugLogger returns a debug-level JSON logger writing to a new buffer.
func debugLogger() (*zerolog.Logger, *logBuffer) {
	buffer := &logBuffer{}
	logger := zerolog.New(buffer).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	return &logger, buffer
}

// statusOf is the HTTP status of the *APIError in err (the job endpoint's,
// or the token endpoint's), or 0.
func statusOf(err error) int {
	var apiErr *cckmclient.APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// isUnreachable reports whether err says that no answer came.
func isUnreachable(err error) bool {
	var unreachable *cckmclient.UnreachableError
	return errors.As(err, &unreachable)
}
