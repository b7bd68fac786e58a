package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// workerLog, when set (-worker-log), receives the workers' output, logged
// at workerLogLevel (-worker-log-level).
var workerLog, workerLogLevel = "", "info"

// timeline (-timeline) prints the progress of each throughput run.
var timeline bool

// workerProfile, when set (-worker-cpuprofile), is where the worker's CPU
// profile of the first workerProfileTime of each throughput run is written,
// as workerProfile-<mode>-<latency>.pprof; the worker runs with HTTP_PPROF.
var (
	workerProfile     string
	workerProfileTime = 3 * time.Second
)

// workerProcess is a worker binary the benchmark started.
type workerProcess struct {
	addr    string // HTTP_ADDR
	cmd     *exec.Cmd
	output  *tailBuffer
	done    chan error
	stopped bool
}

// startWorker runs the worker binary against the benchmark's NATS and CM
// and waits until /readyz answers 200.
func startWorker(bin, natsURL, cmURL, mode string, concurrency int) (*workerProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"NATS_URL=" + natsURL,
		"CCKM_URL=" + cmURL,
		"CCKM_USERNAME=" + benchUser,
		"CCKM_PASSWORD=" + benchPassword,
		"WORKER_MODE=" + mode,
		"WORKER_CONCURRENCY=" + strconv.Itoa(concurrency),
		"HTTP_ADDR=" + addr,
		"LOG_LEVEL=" + workerLogLevel, // info by default: one line per request, as in production
	}
	if workerProfile != "" {
		cmd.Env = append(cmd.Env, "HTTP_PPROF=true")
	}
	output := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = output, output
	if workerLog != "" {
		f, err := os.OpenFile(workerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own copy of the descriptor
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &workerProcess{addr: addr, cmd: cmd, output: output, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("worker exited: %v\n%s", err, output.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop()
	return nil, fmt.Errorf("worker not ready in 30s:\n%s", output.String())
}

// tailBuffer keeps the last 64 KiB written to it: the worker logs a line
// per request, and only the end matters when it fails.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 64 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*tailSize {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// stop sends SIGTERM and waits for the worker to exit.
func (p *workerProcess) stop() {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// profileCPU starts fetching a CPU profile of the next d into file; the
// returned function waits for it and reports how it went.
func (p *workerProcess) profileCPU(file string, d time.Duration) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.addr, int(d.Seconds()))
		resp, err := http.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(file)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return func() error { return <-done }
}

// peakRSS is the worker's peak resident set size (VmHWM), in bytes.
func (p *workerProcess) peakRSS() int64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kib, _ := strconv.ParseInt(fields[1], 10, 64)
				return kib << 10
			}
		}
	}
	return 0
}

// cpuTime is the CPU time the worker process has used so far.
func (p *workerProcess) cpuTime() time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count fields after ")".
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// selfCPUTime is the CPU time of the benchmark process: the NATS server,
// the fake CipherTrust Manager and the load driver.
func selfCPUTime() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
