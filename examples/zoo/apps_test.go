package zoo

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// An app is one recording app of the zoo and how to start it.
type app struct {
	name string
	// command returns the command that serves the app on 127.0.0.1:port,
	// or why it cannot run here (its runtime is missing).
	command func(zoo, port string) (*exec.Cmd, error)
}

// apps are the zoo's apps, in the order the report lists them.
var apps = []app{
	{"flask", flaskCommand},
	{"express", expressCommand},
	{"php-router", phpCommand("router")},
	{"php-docroot", phpCommand("docroot")},
	{"sinatra", sinatraCommand},
	{"go-pattern", goCommand("pattern")},
	{"go-any", goCommand("any")},
}

// works reports whether name runs with args and exits 0.
func works(name string, args ...string) bool {
	return exec.Command(name, args...).Run() == nil
}

func flaskCommand(zoo, port string) (*exec.Cmd, error) {
	// Debian's python3-flask (Flask 2.2 on bookworm), which .ci/run
	// installs, comes first so that runs agree with CI; a python3 in PATH
	// (pyenv, a venv) with a Flask of its own is the fallback. Versions
	// differ: Werkzeug 2.2 hands X_Card_Number to the app as X-Card-Number,
	// and decodes a multipart part by its charset; 3.x does neither.
	// The probe imports Flask's class, not the module: run from
	// examples/zoo, a bare "import flask" finds the app's own flask/
	// directory as a namespace package and succeeds without Flask.
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if works(py, "-c", "from flask import Flask") {
			cmd := exec.Command(py, "app.py", port)
			cmd.Dir = filepath.Join(zoo, "flask")
			return cmd, nil
		}
	}
	return nil, fmt.Errorf("no python3 with Flask (Debian: python3-flask)")
}

func expressCommand(zoo, port string) (*exec.Cmd, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("no node (Debian: nodejs)")
	}
	dir := filepath.Join(zoo, "express")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express")); err != nil {
		return nil, fmt.Errorf("Express is not installed: run npm ci in examples/zoo/express (.ci/run does)")
	}
	cmd := exec.Command("node", "server.js", port)
	cmd.Dir = dir
	return cmd, nil
}

func phpCommand(mode string) func(zoo, port string) (*exec.Cmd, error) {
	return func(zoo, port string) (*exec.Cmd, error) {
		if _, err := exec.LookPath("php"); err != nil {
			return nil, fmt.Errorf("no php (Debian: php-cli)")
		}
		args := []string{"-S", "127.0.0.1:" + port, "router.php"}
		if mode == "docroot" {
			args = []string{"-S", "127.0.0.1:" + port, "-t", "docroot"}
		}
		cmd := exec.Command("php", args...)
		cmd.Dir = filepath.Join(zoo, "php")
		return cmd, nil
	}
}

func sinatraCommand(zoo, port string) (*exec.Cmd, error) {
	if _, err := exec.LookPath("ruby"); err != nil {
		return nil, fmt.Errorf("no ruby (Debian: ruby, ruby-sinatra, puma)")
	}
	if !works("ruby", "-e", `require "sinatra/base"; require "puma"`) {
		return nil, fmt.Errorf("ruby lacks Sinatra or Puma (Debian: ruby-sinatra, puma)")
	}
	cmd := exec.Command("ruby", "app.rb", port)
	cmd.Dir = filepath.Join(zoo, "sinatra")
	return cmd, nil
}

// goBin is the Go app, built once for both of its muxes.
var goBin struct {
	once sync.Once
	path string
	err  error
}

func goCommand(mux string) func(zoo, port string) (*exec.Cmd, error) {
	return func(zoo, port string) (*exec.Cmd, error) {
		goBin.once.Do(func() {
			goBin.path = filepath.Join(binDir, "goapp")
			out, err := exec.Command("go", "build", "-o", goBin.path, "./goapp").CombinedOutput()
			if err != nil {
				goBin.err = fmt.Errorf("go build ./goapp: %v\n%s", err, out)
			}
		})
		if goBin.err != nil {
			return nil, goBin.err
		}
		return exec.Command(goBin.path, "-mux", mux, port), nil
	}
}

// startApp starts a on a free loopback port and returns its address once
// it accepts connections. It skips the test, saying which runtime is
// missing, if a cannot run here.
func startApp(t *testing.T, a app, zoo string) (addr string) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := a.command(zoo, port)
	if err != nil {
		t.Skipf("%s skipped: %v", a.name, err)
	}
	p, err := tokbin.Start(tokbin.Cmd{Name: a.name, Bin: cmd.Path, Args: cmd.Args[1:], Dir: cmd.Dir,
		Env: append(os.Environ(), "PORT="+port)})
	if err != nil {
		t.Skipf("%s skipped: %v", a.name, err)
	}
	p.StopAtEnd(t)
	addr = "127.0.0.1:" + port
	if err := p.Poll(context.Background(), tokbin.TCPReady(addr)); err != nil {
		t.Fatal(err)
	}
	return addr
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (string, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(addr)
	return port, err
}
