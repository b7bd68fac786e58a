package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"time"
)

// echoEnv, when set to an address, makes this program an echo child for
// measureHops instead of a benchmark.
const echoEnv = "CCKM_BENCH_ECHO"

// Every request in jetstream mode crosses processes four times more than a
// direct call does (producer's server to worker, worker to CM and back,
// worker to server), and at low load each crossing wakes a process that
// has been idle. measureHops prints what one crossing costs on this
// machine: a one-byte TCP round trip over loopback, back to back and after
// the idle gap, between two goroutines of one process and between two
// processes.
func measureHops(idle time.Duration, n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()

	fmt.Printf("\n## What a hop costs on this machine: a 1-byte TCP round trip over loopback, p50 (p90) of %d\n\n", n)
	fmt.Printf("| between | back to back | after %v idle |\n|---|---:|---:|\n", idle)
	for _, between := range []string{"two goroutines of one process", "two processes"} {
		var child *exec.Cmd
		echoed := make(chan struct{}) // the in-process echo has ended
		if between == "two processes" {
			close(echoed)
			self, err := os.Executable()
			if err != nil {
				return err
			}
			child = exec.Command(self)
			child.Env = append(os.Environ(), echoEnv+"="+ln.Addr().String())
			child.Stderr = os.Stderr
			if err := child.Start(); err != nil {
				return err
			}
		} else {
			go func() {
				defer close(echoed)
				c, err := net.Dial("tcp", ln.Addr().String())
				if err == nil {
					echo(c)
				}
			}()
		}
		// A child that cannot connect exits; do not wait for it forever.
		if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			return err
		}
		conn, err := ln.Accept()
		if err != nil {
			if child != nil {
				_ = child.Process.Kill()
				_ = child.Wait()
			}
			return err
		}
		busy, err := roundTrips(conn, 0, n)
		var idled []time.Duration
		if err == nil {
			idled, err = roundTrips(conn, idle, n)
		}
		_ = conn.Close() // ends the echo
		<-echoed
		if child != nil {
			_ = child.Wait()
		}
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %s | %s |\n", between, p50p90(busy), p50p90(idled))
	}
	return nil
}

// roundTrips times n one-byte round trips on conn, each after gap.
func roundTrips(conn net.Conn, gap time.Duration, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	b := make([]byte, 1)
	for range n {
		if gap > 0 {
			time.Sleep(gap)
		}
		start := time.Now()
		if _, err := conn.Write(b); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(conn, b); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out, nil
}

func p50p90(sorted []time.Duration) string {
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
	return us(percentile(sorted, .5)) + " (" + us(percentile(sorted, .9)) + ")"
}

// echo writes back every byte it reads until conn closes. (A plain loop:
// io.Copy between sockets may splice, which is not what is measured.)
func echo(conn net.Conn) {
	defer conn.Close()
	b := make([]byte, 64)
	for {
		n, err := conn.Read(b)
		if err != nil {
			return
		}
		if _, err := conn.Write(b[:n]); err != nil {
			return
		}
	}
}

// echoChild is the program when echoEnv is set.
func echoChild(addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	echo(conn)
}
