package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// stopGrace is how long tok may take to exit after SIGTERM.
const stopGrace = 30 * time.Second

// startTok starts bin serve -config cfg in dir, with an environment from
// which every TOK_ variable was removed; its standard output is dropped, as
// the log that tells why it refused is on standard error.
func startTok(bin, dir, cfg string) (*tokbin.Proc, error) {
	return tokbin.Start(tokbin.Cmd{Name: "tok", Bin: bin, Args: []string{"serve", "-config", cfg}, Dir: dir, Stdout: io.Discard})
}

// outcome is how a start ended.
type outcome struct {
	ready    bool   // /readyz answered 200
	exitCode int    // if it exited: its code
	refusal  string // if it exited: the "tok stopped" error, or its log's last lines
	panicked bool   // it exited with a Go panic or a fatal runtime error
}

// wait waits until tok is ready or has exited.
func wait(ctx context.Context, p *tokbin.Proc) outcome {
	_, err := p.WaitReady(ctx)
	if err == nil {
		return outcome{ready: true}
	}
	select {
	case <-p.Exited():
		return exitOutcome(p)
	default:
		return outcome{refusal: err.Error()}
	}
}

// exitOutcome reads why an exited tok stopped from its log.
func exitOutcome(p *tokbin.Proc) outcome {
	o := outcome{exitCode: p.ExitCode()}
	log := p.Log()
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
