package chaos

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxyBufferSize is the chunk the proxy copies at a time; held replies
// beyond one chunk stay in the kernel's socket buffers.
const proxyBufferSize = 32 * 1024

// linkProxy is a TCP proxy between a worker and its NATS server that can
// hold what the server sends back: the worker's publishes still arrive and
// are stored, but it hears neither their acknowledgements nor anything
// else. That is the link of a worker whose network stalls one way, the
// state it is in when it is killed for hanging.
type linkProxy struct {
	listener net.Listener
	upstream string

	mu     sync.Mutex
	held   chan struct{} // closed when the proxy closes; nil while replies flow
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// startProxy listens on loopback and forwards every connection to upstream
// (host:port) until the test ends.
func startProxy(t *testing.T, upstream string) *linkProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &linkProxy{listener: listener, upstream: upstream}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the NATS URL that goes through the proxy.
func (p *linkProxy) URL() string { return "nats://" + p.listener.Addr().String() }

// holdReplies stops forwarding from the server to the clients, on every
// connection, until the proxy closes.
func (p *linkProxy) holdReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// gate returns the channel to wait on before forwarding a reply, nil when
// replies flow.
func (p *linkProxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_, _ = client.Close(), server.Close()
			return
		}
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			_ = server.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forwardReplies(client, server)
			_ = client.Close()
		}()
	}
}

// forwardReplies copies from server to client, waiting while replies are
// held.
func (p *linkProxy) forwardReplies(client, server net.Conn) {
	buf := make([]byte, proxyBufferSize)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if held := p.gate(); held != nil {
				<-held
				return // the proxy closed while holding: drop what was held
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops accepting, ends every connection and waits for the copying
// goroutines.
func (p *linkProxy) close() {
	_ = p.listener.Close()
	p.mu.Lock()
	p.closed = true
	if p.held != nil {
		close(p.held)
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
