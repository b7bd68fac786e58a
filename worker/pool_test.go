package worker

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGoPoolReusesAnIdleGoroutine(t *testing.T) {
	p := newGoPool(4)
	defer p.close()
	for range 100 {
		done := make(chan struct{})
		p.run(func() { close(done) })
		<-done
		// The goroutine counts itself idle just after fn returns: wait for
		// it, so that the next run finds it.
		require.Eventually(t, func() bool { return p.idle.Load() == 1 }, 5*time.Second, time.Millisecond)
	}
	assert.EqualValues(t, 1, p.started.Load(), "one request after another needs one goroutine")
}

func TestGoPoolStartsAGoroutinePerBusyOneAndKeepsAtMostMaxIdle(t *testing.T) {
	p := newGoPool(3)
	defer p.close()
	gate := make(chan struct{})
	var running sync.WaitGroup
	for range 10 {
		running.Add(1)
		p.run(func() {
			running.Done()
			<-gate
		})
	}
	running.Wait() // all 10 run at once: none waited for another
	assert.EqualValues(t, 10, p.started.Load())

	close(gate)
	require.Eventually(t, func() bool { return p.idle.Load() == 3 }, 5*time.Second, time.Millisecond,
		"of 10 goroutines, 3 stay for the next work and 7 end")
}

func TestGoPoolCloseEndsIdleGoroutines(t *testing.T) {
	p := newGoPool(2)
	var ran sync.WaitGroup
	ran.Add(2)
	gate := make(chan struct{})
	for range 2 {
		p.run(func() { ran.Done(); <-gate })
	}
	ran.Wait()
	close(gate)
	require.Eventually(t, func() bool { return p.idle.Load() == 2 }, 5*time.Second, time.Millisecond)
	p.close()
	require.Eventually(t, func() bool { return p.idle.Load() == 0 }, 5*time.Second, time.Millisecond,
		"closed, the idle goroutines end")
}
