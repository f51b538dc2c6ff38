package main

import (
	"fmt"
	"time"

	"github.com/prometheus/procfs"
)

// proc reads a process's statistics from /proc; tests point it at a
// directory of fixtures.
type proc struct{ fs procfs.FS }

// sysProc reads the system's /proc.
var sysProc = proc{must(procfs.NewDefaultFS())}

func must(fs procfs.FS, err error) procfs.FS {
	if err != nil {
		// Only where /proc is missing (not Linux): every read then fails
		// with a clear error from procfs.
		return procfs.FS{}
	}
	return fs
}

// stat reads /proc/PID/stat.
func (r proc) stat(pid int) (procfs.ProcStat, error) {
	p, err := r.fs.Proc(pid)
	if err != nil {
		return procfs.ProcStat{}, fmt.Errorf("read /proc stat: %w", err)
	}
	st, err := p.Stat()
	if err != nil {
		return procfs.ProcStat{}, fmt.Errorf("read /proc stat: %w", err)
	}
	return st, nil
}

// cpuTime returns the user plus system CPU time the process has used.
func (r proc) cpuTime(pid int) (time.Duration, error) {
	st, err := r.stat(pid)
	if err != nil {
		return 0, err
	}
	return cpuOf(st), nil
}

// cpuOf is the user plus system CPU time in st.
func cpuOf(st procfs.ProcStat) time.Duration {
	return time.Duration(st.CPUTime() * float64(time.Second)).Round(time.Millisecond)
}

// memUsage is a process's resident memory from /proc/PID/status.
type memUsage struct {
	RSS     int64 // VmRSS, bytes
	RSSAnon int64 // RssAnon, bytes: the heap and stacks, without mapped files
}

// memoryUsage reads the process's resident memory.
func (r proc) memoryUsage(pid int) (memUsage, error) {
	p, err := r.fs.Proc(pid)
	if err != nil {
		return memUsage{}, fmt.Errorf("read memory usage: %w", err)
	}
	s, err := p.NewStatus()
	if err != nil {
		return memUsage{}, fmt.Errorf("read memory usage: %w", err)
	}
	if s.VmRSS == 0 {
		return memUsage{}, fmt.Errorf("read memory usage of %d: no VmRSS", pid)
	}
	return memUsage{RSS: int64(s.VmRSS), RSSAnon: int64(s.RssAnon)}, nil
}

// idle is the time the machine's CPUs have spent idle or waiting for I/O
// since boot, summed over the CPUs (/proc/stat).
func (r proc) idle() (time.Duration, error) {
	st, err := r.fs.Stat()
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return time.Duration((st.CPUTotal.Idle + st.CPUTotal.Iowait) * float64(time.Second)).Round(time.Millisecond), nil
}

// cpuTime and memoryUsage read the system's /proc.
func cpuTime(pid int) (time.Duration, error) { return sysProc.cpuTime(pid) }
func memoryUsage(pid int) (memUsage, error)  { return sysProc.memoryUsage(pid) }

// treeCPU is the user plus system CPU time of the process root and of its
// children. A child that exits between two readings takes its time with
// it.
func (r proc) treeCPU(root int) (time.Duration, error) {
	procs, err := r.fs.AllProcs()
	if err != nil {
		return 0, fmt.Errorf("list /proc: %w", err)
	}
	var sum time.Duration
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // exited meanwhile
		}
		if p.PID == root || st.PPID == root {
			sum += cpuOf(st)
		}
	}
	return sum, nil
}
