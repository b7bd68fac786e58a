package main

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRoundTripsTimesEachEchoedByte(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			echo(c)
		}
	}()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer func() {
		_ = conn.Close()
		<-echoed // the echo ends when the connection does
	}()

	const gap = 2 * time.Millisecond
	start := time.Now()
	times, err := roundTrips(conn, gap, 5)
	require.NoError(t, err)
	require.Len(t, times, 5)
	elapsed := time.Since(start)
	var sum time.Duration
	for i, d := range times {
		require.Positive(t, d)
		sum += d
		if i > 0 {
			require.GreaterOrEqual(t, d, times[i-1], "sorted for percentile")
		}
	}

	require.LessOrEqual(t, sum, elapsed-5*gap, "the gaps before the round trips are not timed")

	_ = conn.Close()
	_, err = roundTrips(conn, 0, 1)
	require.Error(t, err, "a closed connection is an error, not a time")
}
