package main

import (
	"bufio"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logFlushInterval bounds how long an info line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

// logWriter buffers log lines so that one line per request does not cost
// one write system call per request: it writes when 32 KiB have gathered,
// every logFlushInterval, at once for warnings and errors, and at Close.
type logWriter struct {
	mu      sync.Mutex
	buf     *bufio.Writer
	done    chan struct{}
	stopped chan struct{}
}

func newLogWriter(out io.Writer) *logWriter {
	l := &logWriter{buf: bufio.NewWriterSize(out, 32<<10), done: make(chan struct{}), stopped: make(chan struct{})}
	go l.flushLoop()
	return l
}

// Write buffers p.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// WriteLevel buffers p and flushes at once from warn up (zerolog.LevelWriter).
func (l *logWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if err == nil && level >= zerolog.WarnLevel {
		err = l.buf.Flush()
	}
	return n, err
}

func (l *logWriter) flushLoop() {
	defer close(l.stopped)
	ticker := time.NewTicker(logFlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			l.flush()
		case <-l.done:
			l.flush()
			return
		}
	}
}

func (l *logWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.buf.Flush()
}

// Close flushes what is buffered and stops the flushing goroutine.
func (l *logWriter) Close() error {
	close(l.done)
	<-l.stopped
	return nil
}
