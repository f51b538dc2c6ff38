package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress intervals of tok import when -progress is not given.
const (
	progressTerminal = 200 * time.Millisecond // one line, rewritten in place
	progressPlain    = 10 * time.Second       // one line each time (a log, a pipe)
)

// progress prints how far an import is: on a terminal one line rewritten
// in place (\r), else a line every interval. Its methods are safe for
// concurrent use.
type progress struct {
	w        io.Writer
	tty      bool
	size     int64 // of the input file
	start    time.Time
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}

	mu                 sync.Mutex
	offset, imported   int64
	offset0, imported0 int64 // where this run started
	started            bool
	shown              bool // a line is on the terminal, not yet ended
}

// newProgress starts printing to w every interval (0: the default for w).
func newProgress(w io.Writer, every time.Duration, size int64) *progress {
	p := &progress{w: w, tty: isTerminal(w), size: size, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	if every <= 0 {
		every = progressPlain
		if p.tty {
			every = progressTerminal
		}
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return p
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// set records where the import stands: the input offset read through and
// the cards imported (both including earlier runs').
func (p *progress) set(offset, imported int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.offset0, p.imported0, p.started = offset, imported, true
	}
	p.offset, p.imported = offset, imported
}

// println prints a message line, clearing the progress line first.
func (p *progress) println(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
	fmt.Fprintln(p.w, "tok import:", msg)
}

// print prints the progress line.
func (p *progress) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.start).Seconds()
	rate := float64(p.imported-p.imported0) / elapsed
	line := fmt.Sprintf("%d cards imported", p.imported)
	if p.size > 0 {
		line += fmt.Sprintf(", %.1f%% of the file", 100*float64(p.offset)/float64(p.size))
	}
	line += fmt.Sprintf(", %.0f cards/s", rate)
	if byteRate := float64(p.offset-p.offset0) / elapsed; byteRate > 0 && p.size > p.offset {
		eta := time.Duration(float64(p.size-p.offset) / byteRate * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[Ktok import: "+line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, "tok import: "+line)
}

// stop stops printing; on a terminal it prints the last state and ends
// the line.
func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.quit)
		<-p.done
		if p.tty {
			p.print()
			fmt.Fprintln(p.w)
		}
	})
}
