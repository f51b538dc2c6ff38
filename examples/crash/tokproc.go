package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a started tok may take to listen and then
// to answer /readyz with 200.
const startTimeout = 60 * time.Second

// buildTok builds the tok binary from the module that holds the current
// directory into dir and returns its path.
func buildTok(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/tokproxy/tok\n")) {
		return "", fmt.Errorf("run from inside the tok module (found go.mod at %q)", root)
	}
	bin := filepath.Join(dir, "tok")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// tokProc is one running tok process.
type tokProc struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	listening chan struct{} // closed once the three listeners are known
	addrsMu   sync.Mutex
	addrs     map[string]string // listener name → host:port
}

// startTok starts bin serve -config cfg in dir with env (on top of an
// environment from which every TOK_ variable was removed). Its stderr (JSON
// logs) is appended to logPath and scanned for the listening lines.
func startTok(bin, dir, cfg, logPath string, env []string) (*tokProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-config", cfg)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout = logf
	// Its own process group, so a Ctrl-C reaches the harness alone (which
	// stops tok itself); Pdeathsig, so tok dies with a killed harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p := &tokProc{cmd: cmd, exited: make(chan struct{}), listening: make(chan struct{}), addrs: map[string]string{}}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start tok: %w", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		p.scan(stderr, logf)
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// cleanEnv is the harness's environment without TOK_ variables: a
// TOK_POSTGRES_URL in the caller's shell must not switch a bolt run to
// PostgreSQL.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOK_") {
			env = append(env, kv)
		}
	}
	return env
}

// scan copies tok's log lines to w and records the listener addresses.
func (p *tokProc) scan(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	announced := false
	for sc.Scan() {
		line := sc.Bytes()
		w.Write(append(line, '\n'))
		var m struct {
			Msg      string `json:"msg"`
			Listener string `json:"listener"`
			Addr     string `json:"addr"`
		}
		if json.Unmarshal(line, &m) != nil || m.Msg != "listening" {
			continue
		}
		p.addrsMu.Lock()
		p.addrs[m.Listener] = m.Addr
		n := len(p.addrs)
		p.addrsMu.Unlock()
		if !announced && n >= 3 {
			announced = true
			close(p.listening)
		}
	}
	io.Copy(io.Discard, r)
}

// addr returns the address of the named listener ("" if unknown yet).
func (p *tokProc) addr(listener string) string {
	p.addrsMu.Lock()
	defer p.addrsMu.Unlock()
	return p.addrs[listener]
}

// waitReady waits for the listeners and then polls /readyz on the admin
// listener until it answers 200. It returns the time from the process's
// start to that answer.
func (p *tokProc) waitReady(ctx context.Context, logPath string) (time.Duration, error) {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	select {
	case <-p.listening:
	case <-p.exited:
		return 0, fmt.Errorf("tok exited during startup (%v); its log:\n%s", p.waitErr, logTail(logPath))
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-deadline.C:
		return 0, fmt.Errorf("tok did not listen within %v; its log:\n%s", startTimeout, logTail(logPath))
	}
	client := &http.Client{Timeout: 3 * time.Second}
	url := "http://" + p.addr("admin") + "/readyz"
	for {
		if code, err := get(ctx, client, url); err == nil && code == http.StatusOK {
			return time.Since(p.started), nil
		}
		select {
		case <-p.exited:
			return 0, fmt.Errorf("tok exited during startup (%v); its log:\n%s", p.waitErr, logTail(logPath))
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline.C:
			return 0, fmt.Errorf("tok's /readyz not 200 within %v; its log:\n%s", startTimeout, logTail(logPath))
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *tokProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit, killing tok after 10 s.
// It returns an error unless tok exited 0 in time.
func (p *tokProc) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("tok had already exited: %v", p.waitErr)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(10 * time.Second):
		p.kill()
		return errors.New("tok did not exit within 10s of SIGTERM")
	}
}

// get returns the status code of GET url.
func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// logTail returns the last lines of a log file, for error reports.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
