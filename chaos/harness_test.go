// Package chaos holds the chaos tests: the worker binary under load while
// its process, NATS, its link to NATS, a cluster node or CipherTrust
// Manager misbehave. Each test reports requests sent, results, lost and
// duplicate results in CCKM_CANCEL_RESULTS; lost and duplicates must be 0.
// They run with `make chaos` (CCKM_CHAOS=1); `make test` skips them to stay
// near a minute.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/syncbuf"
	"github.com/cckm/cckm-cancel-worker/messages"
)

var binaryPath string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	if os.Getenv("CCKM_CHAOS") == "" {
		fmt.Println("chaos tests skipped: run them with make chaos (CCKM_CHAOS=1)")
		return m.Run() // each test skips itself
	}
	dir, err := os.MkdirTemp("", "cckm-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binaryPath = filepath.Join(dir, "cckm-cancel-worker")
	build := exec.Command("go", "build", "-o", binaryPath, "../cmd/cckm-cancel-worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the worker: %v\n", err)
		return 1
	}
	return m.Run()
}

func requireChaos(t *testing.T) {
	t.Helper()
	if binaryPath == "" {
		t.Skip("chaos tests run with make chaos (CCKM_CHAOS=1)")
	}
}

// syncBuffer captures output written from several goroutines.
type syncBuffer = syncbuf.Buffer

// workerProcess is one run of the worker binary.
type workerProcess struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
}

// startWorker runs the binary with env (plus HTTP_ADDR on a free port) and
// waits for its log to say it consumes requests.
func startWorker(t *testing.T, env map[string]string) *workerProcess {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := listener.Addr().String()
	require.NoError(t, listener.Close())

	cmd := exec.Command(binaryPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HTTP_ADDR=" + addr, "LOG_LEVEL=info"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &workerProcess{cmd: cmd, output: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("worker output:\n%s", p.output.String())
		}
	})
	require.Eventually(t, func() bool {
		return strings.Contains(p.output.String(), "consuming requests")
	}, 30*time.Second, 10*time.Millisecond, "worker did not start consuming")
	return p
}

// kill ends the process with SIGKILL: no drain, no ack, nothing flushed.
func (p *workerProcess) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

// load publishes requests through JetStream at a steady pace and remembers
// every request_id whose publish the stream acknowledged.
type load struct {
	mu   sync.Mutex
	sent []string
	done chan struct{}
}

// startLoad publishes n requests, each with a Nats-Msg-Id, spread over
// about d. A publish that fails (NATS trouble) is retried for up to 30 s;
// only acknowledged requests count as sent.
func startLoad(t *testing.T, js jetstream.JetStream, n int, d time.Duration) *load {
	t.Helper()
	l := &load{done: make(chan struct{})}
	interval := d / time.Duration(n)
	go func() {
		defer close(l.done)
		next := time.Now()
		for i := range n {
			requestID := t.Name() + "-" + strconv.Itoa(i)
			kind := messages.Kinds[i%2]
			msg := &nats.Msg{Subject: kind.RequestSubject(), Data: []byte(messages.NewRequestID()),
				Header: nats.Header{messages.HeaderMsgID: {requestID}}}
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := js.PublishMsg(ctx, msg)
				cancel()
				if err == nil {
					l.mu.Lock()
					l.sent = append(l.sent, requestID)
					l.mu.Unlock()
					break
				}
			}
			next = next.Add(interval)
			time.Sleep(time.Until(next)) // pacing the load, not waiting for a condition
		}
	}()
	t.Cleanup(func() { <-l.done })
	return l
}

// sentCount is how many requests the stream has acknowledged so far.
func (l *load) sentCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

// wait waits for the publisher to finish and returns the sent request_ids.
func (l *load) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("load did not finish in 3 minutes")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sent...)
}

// tally is what a chaos test reports.
type tally struct {
	sent, results, lost, duplicates int
	statuses                        map[messages.Status]int
}

// checkResults waits until CCKM_CANCEL_RESULTS holds a result for every
// sent request (or 2 minutes pass), reports the tally, and requires no
// loss and no duplicate.
func checkResults(t *testing.T, js jetstream.JetStream, sent []string) tally {
	t.Helper()
	var got map[string]int
	var results []messages.Result
	deadline := time.Now().Add(2 * time.Minute)
	for {
		results = storedResults(t, js)
		got = map[string]int{}
		for _, r := range results {
			got[r.RequestID]++
		}
		missing := 0
		for _, id := range sent {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the stream
	}
	tl := tally{sent: len(sent), results: len(results), statuses: map[messages.Status]int{}}
	for _, id := range sent {
		if got[id] == 0 {
			tl.lost++
		}
	}
	for _, n := range got {
		if n > 1 {
			tl.duplicates += n - 1
		}
	}
	for _, r := range results {
		status := r.Status
		if r.Error != nil {
			status += messages.Status("/" + r.Error.Code)
		}
		tl.statuses[status]++
	}
	report := fmt.Sprintf("chaos %s: sent %d, results %d, lost %d, duplicates %d, statuses %v",
		t.Name(), tl.sent, tl.results, tl.lost, tl.duplicates, tl.statuses)
	t.Log(report)
	fmt.Println(report)
	assert.Zero(t, tl.lost, "lost requests")
	assert.Zero(t, tl.duplicates, "duplicate results in CCKM_CANCEL_RESULTS")
	return tl
}

// storedResults reads every message of CCKM_CANCEL_RESULTS. While the
// cluster elects a new leader the stream may not answer: then it returns
// nil, and the caller, which polls, reads again.
func storedResults(t *testing.T, js jetstream.JetStream) []messages.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "CCKM_CANCEL_RESULTS")
	if err != nil {
		return nil
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil
	}
	var results []messages.Result
	for len(results) < total {
		batch, err := cons.Fetch(min(total-len(results), 5000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil
		}
		n := 0
		for msg := range batch.Messages() {
			var r messages.Result
			require.NoError(t, json.Unmarshal(msg.Data(), &r))
			results = append(results, r)
			n++
		}
		if batch.Error() != nil {
			return nil
		}
		if n == 0 {
			break
		}
	}
	return results
}
