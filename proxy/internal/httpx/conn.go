package httpx

import (
	"io"
	"log"
	"log/slog"
	"net"
	"sync"
)

// ErrorLog adapts the structured logger for net/http's ErrorLog fields
// (servers and reverse proxies), tagged with component. Their lines (TLS
// handshake errors, client resets) are noise at Info: they log at Debug.
func ErrorLog(l *slog.Logger, component string) *log.Logger {
	return slog.NewLogLogger(l.With("component", component).Handler(), slog.LevelDebug)
}

// PrefixedConn returns c reading first what buffered holds: the bytes a
// hijacked connection's reader had read ahead (a client that sent its TLS
// ClientHello with its CONNECT).
func PrefixedConn(c net.Conn, buffered io.Reader) net.Conn {
	return &prefixedConn{Conn: c, r: io.MultiReader(buffered, c)}
}

type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// OneConnListener serves one connection with an [http.Server]: it hands
// out the connection once, then blocks until it or the listener is closed.
type OneConnListener struct {
	conn     net.Conn
	once     sync.Once
	closed   chan struct{} // the listener or the connection is closed
	connOnce sync.Once
	connDone chan struct{} // the connection is closed
	taken    bool
	mu       sync.Mutex
}

// NewOneConnListener returns the listener of c alone.
func NewOneConnListener(c net.Conn) *OneConnListener {
	l := &OneConnListener{closed: make(chan struct{}), connDone: make(chan struct{})}
	l.conn = &notifyConn{Conn: c, done: func() {
		l.connOnce.Do(func() { close(l.connDone) })
		l.once.Do(func() { close(l.closed) })
	}}
	return l
}

// Wait returns once the server that was handed the connection has closed
// it; at once if it never took it.
func (l *OneConnListener) Wait() {
	l.mu.Lock()
	taken := l.taken
	l.mu.Unlock()
	if taken {
		<-l.connDone
	}
}

func (l *OneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.taken {
		l.taken = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *OneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *OneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// notifyConn calls done when it is closed.
type notifyConn struct {
	net.Conn
	done func()
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.done()
	return err
}
