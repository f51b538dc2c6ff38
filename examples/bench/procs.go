package main

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// stopGrace is how long a process may take to exit after SIGTERM before
// the harness kills it.
const stopGrace = 5 * time.Second

// procs is the set of processes the harness started, stopped when it
// exits, also on Ctrl-C; the kernel kills them if the harness dies
// (tokbin starts them with Pdeathsig).
type procs struct {
	mu   sync.Mutex
	list []*tokbin.Proc
}

// start runs bin with args in dir, its output going to dir/name.log.
func (ps *procs) start(dir, name, bin string, args ...string) (*tokbin.Proc, error) {
	return ps.startEnv(dir, name, bin, nil, args...)
}

// startEnv is start with the environment env (nil: tokbin.Env()).
func (ps *procs) startEnv(dir, name, bin string, env []string, args ...string) (*tokbin.Proc, error) {
	p, err := tokbin.Start(tokbin.Cmd{Name: name, Bin: bin, Args: args, Dir: dir, Env: env,
		Log: filepath.Join(dir, name+".log")})
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll stops every process, newest first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		select {
		case <-list[i].Exited():
		default:
			_ = list[i].Stop(stopGrace)
		}
	}
}

// freePort returns a loopback address to start a target on; see
// freeport.Addr.
var freePort = freeport.Addr
