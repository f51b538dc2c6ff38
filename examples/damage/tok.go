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

// startTimeout bounds how long a started tok may take to be ready, or to
// exit refusing.
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
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	mu        sync.Mutex
	addrs     map[string]string // listener name → host:port
	lines     []string          // its log lines
	listening chan struct{}
}

// startTok starts bin serve -config cfg (plus extra flags) in dir, with an
// environment from which every TOK_ variable was removed.
func startTok(bin, dir, cfg string, extra ...string) (*tokProc, error) {
	cmd := exec.Command(bin, append([]string{"serve", "-config", cfg}, extra...)...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	// Its own process group, so a Ctrl-C reaches the harness alone;
	// Pdeathsig, so tok dies with a killed harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	p := &tokProc{cmd: cmd, exited: make(chan struct{}), addrs: map[string]string{}, listening: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tok: %w", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		p.scan(stderr)
	}()
	go func() {
		<-scanned
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// cleanEnv is the environment without TOK_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOK_") {
			env = append(env, kv)
		}
	}
	return env
}

// scan keeps tok's log lines and records the listener addresses.
func (p *tokProc) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	announced := false
	for sc.Scan() {
		line := sc.Text()
		var m struct {
			Msg      string `json:"msg"`
			Listener string `json:"listener"`
			Addr     string `json:"addr"`
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "listening" {
			p.addrs[m.Listener] = m.Addr
			if !announced && len(p.addrs) >= 3 {
				announced = true
				close(p.listening)
			}
		}
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

func (p *tokProc) addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[name]
}

// log returns tok's log so far.
func (p *tokProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// outcome is how a start ended.
type outcome struct {
	ready    bool   // /readyz answered 200
	exitCode int    // if it exited: its code
	refusal  string // if it exited: the "tok stopped" error, or its log's last lines
	panicked bool   // it exited with a Go panic or a fatal runtime error
}

// wait waits until tok is ready or has exited.
func (p *tokProc) wait(ctx context.Context) outcome {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	select {
	case <-p.listening:
	case <-p.exited:
		return p.exitOutcome()
	case <-ctx.Done():
		return outcome{refusal: ctx.Err().Error()}
	case <-deadline.C:
		return outcome{refusal: "did not listen within " + startTimeout.String()}
	}
	client := &http.Client{Timeout: 3 * time.Second}
	for {
		if code, err := get(ctx, client, "http://"+p.addr("admin")+"/readyz"); err == nil && code == http.StatusOK {
			return outcome{ready: true}
		}
		select {
		case <-p.exited:
			return p.exitOutcome()
		case <-ctx.Done():
			return outcome{refusal: ctx.Err().Error()}
		case <-deadline.C:
			return outcome{refusal: "/readyz not 200 within " + startTimeout.String()}
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (p *tokProc) exitOutcome() outcome {
	o := outcome{exitCode: -1}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		o.exitCode = ee.ExitCode()
	} else if p.waitErr == nil {
		o.exitCode = 0
	}
	log := p.log()
	o.panicked = o.exitCode == 2 || strings.Contains(log, "panic:") || strings.Contains(log, "fatal error:") || strings.Contains(log, "goroutine ")
	for _, line := range strings.Split(log, "\n") {
		var m struct {
			Msg string `json:"msg"`
			Err string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "tok stopped" {
			o.refusal = m.Err
		}
	}
	if o.refusal == "" {
		lines := strings.Split(log, "\n")
		o.refusal = strings.Join(lines[max(0, len(lines)-5):], " | ")
	}
	return o
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *tokProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *tokProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(30 * time.Second):
		p.kill()
		return errors.New("tok did not exit within 30s of SIGTERM")
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

// tokCmd runs a tok subcommand (vault recover, vault restore) and returns
// its output.
func tokCmd(ctx context.Context, bin, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}
