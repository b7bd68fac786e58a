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
	"syscall"
	"time"
)

// workerLog, when set (-worker-log), receives the workers' output, logged
// at workerLogLevel (-worker-log-level).
var workerLog, workerLogLevel = "", "info"

// tracePrefix, when set (-trace), is where Go execution traces of both
// processes during the first traceTime of each low-load run are written:
// tracePrefix-{bench,worker}-<mode>-<latency>.trace. Their timestamps share
// the machine's monotonic clock, so one request can be followed across
// the two.
var (
	tracePrefix string
	traceTime   = 2 * time.Second
)

// workerEnv (-worker-env) is added to the workers' environment.
var workerEnv []string

// timeline (-timeline) prints the progress of each throughput run.
var timeline bool

// workerProfile, when set (-worker-cpuprofile), is where the worker's CPU
// profile of the first workerProfileTime of each throughput run is written,
// as workerProfile-<mode>-<latency>.pprof; the worker runs with HTTP_PPROF.
var (
	workerProfile     string
	workerProfileTime = 3 * time.Second
)

// workerProcess is a worker binary, or the floor, that the benchmark
// started.
type workerProcess struct {
	addr      string // HTTP_ADDR
	cmd       *exec.Cmd
	logPath   string // the worker's stdout and stderr
	removeLog bool   // logPath is a temporary file
	done      chan error
	stopped   bool
	// inProcess, when set, is the worker's code running in this process
	// (a -inproc mode) and there is no child process: its CPU counts in
	// this process's, it has no RSS of its own, and this process's
	// profiles and traces hold it.
	inProcess *inProcessWorker
}

// startWorker runs the worker binary against the benchmark's NATS and CM
// and waits until /readyz answers 200.
func startWorker(bin, natsURL, cmURL, mode string, concurrency int) (*workerProcess, error) {
	return startProcess("worker", bin, []string{"WORKER_MODE=" + mode}, natsURL, cmURL, concurrency)
}

// startProcess runs bin (the worker binary, or this program as the floor)
// with the worker's environment plus extraEnv and waits until /readyz on
// its HTTP_ADDR answers 200. name says which in errors.
func startProcess(name, bin string, extraEnv []string, natsURL, cmURL string, concurrency int) (*workerProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"NATS_URL=" + natsURL,
		"CCKM_URL=" + cmURL,
		"CCKM_USERNAME=" + benchUser,
		"CCKM_PASSWORD=" + benchPassword,
		"WORKER_CONCURRENCY=" + strconv.Itoa(concurrency),
		"HTTP_ADDR=" + addr,
		"LOG_LEVEL=" + workerLogLevel, // info by default: one line per request, as in production
	}, extraEnv...)
	if workerProfile != "" || tracePrefix != "" {
		cmd.Env = append(cmd.Env, "HTTP_PPROF=true")
	}
	cmd.Env = append(cmd.Env, workerEnv...)
	// The worker writes its log to a file, as a container runtime would
	// take it: reading it through a pipe cost this process (and so the
	// measurement) CPU for every line.
	logPath, removeLog := workerLog, false
	if logPath == "" {
		f, err := os.CreateTemp("", "cckm-bench-worker-*.log")
		if err != nil {
			return nil, err
		}
		logPath, removeLog = f.Name(), true
		_ = f.Close()
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		if removeLog {
			_ = os.Remove(logPath)
		}
		return nil, err
	}
	p := &workerProcess{addr: addr, cmd: cmd, logPath: logPath, removeLog: removeLog, done: make(chan error, 1)}
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
			p.stopped = true
			tail := p.logTail()
			p.removeLogFile()
			return nil, fmt.Errorf("%s exited: %v\n%s", name, err, tail)
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stopProcess()
	tail := p.logTail()
	p.removeLogFile()
	return nil, fmt.Errorf("%s not ready in 30s:\n%s", name, tail)
}

// logTail is the end of the worker's log: what explains a failure.
func (p *workerProcess) logTail() string {
	const tailSize = 64 << 10
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
	}
	return string(b)
}

func (p *workerProcess) removeLogFile() {
	if p.removeLog {
		_ = os.Remove(p.logPath)
	}
}

// stop sends SIGTERM, waits for the worker to exit and removes a temporary log.
func (p *workerProcess) stop() {
	p.stopProcess()
	p.removeLogFile()
}

func (p *workerProcess) stopProcess() {
	if p.stopped {
		return
	}
	p.stopped = true
	if p.inProcess != nil {
		p.inProcess.stop()
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// profileCPU starts fetching a CPU profile of the next d into file; the
// returned function waits for it.
func (p *workerProcess) profileCPU(file string, d time.Duration) (wait func() error) {
	return p.fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), file)
}

// traceExecution starts fetching a Go execution trace of the next d into
// file; the returned function waits for it.
func (p *workerProcess) traceExecution(file string, d time.Duration) (wait func() error) {
	return p.fetch(fmt.Sprintf("/debug/pprof/trace?seconds=%d", int(d.Seconds())), file)
}

// fetch starts copying the worker's HTTP_PPROF endpoint path into file;
// the returned function waits for it.
func (p *workerProcess) fetch(path, file string) (wait func() error) {
	if p.inProcess != nil {
		return func() error { return nil } // in this process's own profile or trace
	}
	done := make(chan error, 1)
	go func() {
		url := "http://" + p.addr + path
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
	if p.inProcess != nil {
		return 0
	}
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
	if p.inProcess != nil {
		return 0
	}
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
