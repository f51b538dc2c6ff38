package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// server is a redis-server this test started on a free port.
type server struct {
	port int
	args []string
	dir  string
	cmd  *exec.Cmd
}

// startServer starts redis-server with args (in a temp dir, on a free
// port) and stops it when the test ends. It skips the test if
// redis-server is not installed or TOK_TEST_REDIS_URL is unset.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	testURL(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &server{port: port, args: args, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *server) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *server) start(t *testing.T) {
	t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %d", s.port)
		}
	}
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// TestOutage stops the server under a store: its calls fail with
// ErrUnavailable (the 503 the proxy answers), and the store serves again
// once the server is back, with no reopen. What the restart lost (every
// record, as Redis keeps nothing on disk) is not found.
func TestOutage(t *testing.T) {
	srv := startServer(t, "--save", "", "--appendonly", "no")
	ctx := context.Background()
	s := open(t, Options{URL: srv.url(), JanitorInterval: -1})
	keys := newKeys(t)
	now := time.Now()
	if _, err := s.Insert(ctx, []vault.Record{record(keys, "123", "737", now, now.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	if _, err := s.Insert(ctx, []vault.Record{record(keys, "124", "737", now, now.Add(time.Hour))}); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Insert with the server down = %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(ctx, "123"); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Get with the server down = %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Ping with the server down = %v, want ErrUnavailable", err)
	}
	srv.start(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once the server is back = %v, want nil", err)
	}
	if _, err := s.Get(ctx, "123"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get of a record the restart lost = %v, want ErrNotFound", err)
	}
	// The scripts are gone from the restarted server's cache too: EVALSHA
	// falls back to EVAL.
	if outs, err := s.Insert(ctx, []vault.Record{record(keys, "125", "737", now, now.Add(time.Hour))}); err != nil || outs[0].Status != vault.Stored {
		t.Errorf("Insert once the server is back = %v, %v; want Stored", outs, err)
	}
}

// TestPersistence checks that a server that snapshots or logs to disk is
// reported, and one that does not is not.
func TestPersistence(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--save", "", "--appendonly", "no"}, false},
		{[]string{"--save", "900 1", "--appendonly", "no"}, true},
		{[]string{"--save", "", "--appendonly", "yes"}, true},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			srv := startServer(t, tc.args...)
			s := open(t, Options{URL: srv.url(), JanitorInterval: -1})
			p := s.Persistence(context.Background())
			if !p.Checked || p.Persists() != tc.want {
				t.Errorf("Persistence() = %+v, Persists %v; want checked, %v", p, p.Persists(), tc.want)
			}
		})
	}
	t.Run("config disabled", func(t *testing.T) {
		srv := startServer(t, "--save", "", "--rename-command", "CONFIG", "")
		s := open(t, Options{URL: srv.url(), JanitorInterval: -1})
		if p := s.Persistence(context.Background()); p.Checked || p.Err == nil {
			t.Errorf("Persistence() with CONFIG disabled = %+v, want not checked, with the reason", p)
		}
	})
}

// TestURLPassword checks that a password in the URL never reaches an
// error, and that a CA file needs TLS.
func TestURLPassword(t *testing.T) {
	_, err := Open(context.Background(), Options{URL: "redis://user:hunter2@127.0.0.1:1/0"})
	if err == nil {
		t.Fatal("Open(unreachable server) = nil, want an error")
	}
	if got := err.Error(); strings.Contains(got, "hunter2") {
		t.Errorf("the error %q echoes the password", got)
	}
	if _, err := Open(context.Background(), Options{URL: "redis://127.0.0.1:1/0", CAFile: "/nonexistent"}); err == nil {
		t.Error("Open(redis:// with a CA file) = nil, want an error (a CA file needs rediss://)")
	}
}
