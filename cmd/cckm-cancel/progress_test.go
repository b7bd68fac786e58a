package main

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cckm/cckm-cancel-worker/internal/syncbuf"
	"github.com/cckm/cckm-cancel-worker/messages"
)

func TestTheProgressLineIsDrawnOnATerminalOnceTheRunWaitsASecond(t *testing.T) {
	assert.Equal(t, progressPlan{show: true, after: time.Second}, showProgress("auto", true))
	assert.Equal(t, progressPlan{show: false, after: time.Second}, showProgress("auto", false), "not on a file or a pipe")
	assert.Equal(t, progressPlan{show: true}, showProgress("always", false), "always: from the start, anywhere")
	assert.Equal(t, progressPlan{}, showProgress("never", true))

	assert.False(t, isTerminal(&bytes.Buffer{}))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	assert.False(t, isTerminal(w), "a pipe is no terminal")
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTheProgressLineWaitsASecondThenCountsTheAnswers(t *testing.T) {
	for _, follow := range []bool{false, true} {
		clock := &fakeClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
		var stdout bytes.Buffer
		var stderr syncbuf.Buffer
		rep := newReporter(&stdout, &stderr, false, follow, showProgress("auto", true), 3)
		rep.now = clock.Now
		rep.start()

		canceled := &outcome{request: request{kind: messages.KindRefresh, id: jobA, requestID: "p-1"},
			result: messages.Result{Status: messages.StatusCanceled}, raw: []byte(`{}`)}
		rep.result(canceled)
		clock.advance(500 * time.Millisecond)
		assert.Empty(t, stderr.String(), "a run that is over within a second shows no progress line")

		clock.advance(1200 * time.Millisecond)
		rep.result(&outcome{request: request{kind: messages.KindRefresh, id: jobB, requestID: "p-2"},
			result: messages.Result{Status: messages.StatusFailed}, raw: []byte(`{}`)})
		want := "\r\033[Kcckm-cancel: 2/3 answered, 1 canceled, 1 not (waiting 1s)"
		if follow {
			canceled.followed, canceled.settled = true, messages.Result{Settled: new(true)}
			rep.settled(canceled)
			want = "\r\033[Kcckm-cancel: 2/3 answered, 1 canceled, 1 not, 1 settled (waiting 1s)"
		}
		assert.Contains(t, stderr.String(), want)

		rep.finish(nil)
		assert.Contains(t, stderr.String(), want+"\r\033[K", "the line is erased before the table")
	}
}

func TestWithoutATerminalTheProgressLineIsNeverDrawn(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	var stdout, stderr bytes.Buffer
	rep := newReporter(&stdout, &stderr, false, false, showProgress("auto", isTerminal(&stderr)), 1)
	rep.now = clock.Now
	rep.start()
	clock.advance(time.Minute)
	rep.result(&outcome{request: request{kind: messages.KindRefresh, id: jobA, requestID: "p-1"},
		result: messages.Result{Status: messages.StatusCanceled}, raw: []byte(`{}`)})
	rep.finish(nil)

	assert.Empty(t, stderr.String())
}
