package httpx

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestOneConnListener: the connection is handed out once; the next Accept
// blocks until the connection is closed, and Wait returns only then.
func TestOneConnListener(t *testing.T) {
	c, peer := net.Pipe()
	defer peer.Close()
	l := NewOneConnListener(c)
	got, err := l.Accept()
	if err != nil {
		t.Fatalf("first Accept: %v", err)
	}
	accepted := make(chan error, 1)
	go func() { _, err := l.Accept(); accepted <- err }()
	waited := make(chan struct{})
	go func() { l.Wait(); close(waited) }()
	select {
	case err := <-accepted:
		t.Fatalf("second Accept returned %v while the connection is open", err)
	case <-waited:
		t.Fatal("Wait returned while the connection is open")
	case <-time.After(50 * time.Millisecond):
	}
	got.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept = %v, want net.ErrClosed", err)
	}
	<-waited
}

// TestOneConnListenerNeverTaken: Wait returns at once if no server took
// the connection.
func TestOneConnListenerNeverTaken(t *testing.T) {
	c, peer := net.Pipe()
	defer peer.Close()
	defer c.Close()
	l := NewOneConnListener(c)
	l.Close()
	done := make(chan struct{})
	go func() { l.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait blocks on a connection no server took")
	}
}

func TestPrefixedConn(t *testing.T) {
	c, peer := net.Pipe()
	defer peer.Close()
	pc := PrefixedConn(c, strings.NewReader("hello "))
	go func() { peer.Write([]byte("world")); peer.Close() }()
	buf := make([]byte, 0, 16)
	tmp := make([]byte, 4)
	for {
		n, err := pc.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			break
		}
	}
	if string(buf) != "hello world" {
		t.Errorf("read %q, want the buffered bytes first: %q", buf, "hello world")
	}
}
