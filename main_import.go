package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokproxy/tok/config"
	auditlog "github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
)

// Defaults of tok import's flags.
const (
	// defaultImportBatch is how many cards one vault call tokenizes: one
	// commit, shared with the other workers' calls by bbolt's group commit
	// (which takes up to 8192 records a commit).
	defaultImportBatch = 2048
	// defaultImportCheckpoint is how often the mapping is synced and the
	// checkpoint advanced: at most this much work is redone after a kill.
	defaultImportCheckpoint = time.Second
	// maxImportRetryWait is the longest wait before tokenizing a batch
	// again after the store was unavailable (1 s, doubling: 6 tries over
	// about a minute), before the import stops (and can be resumed).
	maxImportRetryWait = 32 * time.Second
	// maxStderrBadLines is how many bad lines are named on stderr; the
	// errors file lists all.
	maxStderrBadLines = 100
)

// importOptions are tok import's flags, checked.
type importOptions struct {
	in, out, errorsPath string
	format              inputFormat
	spec                vault.Spec
	specName            string // what -format or -field named, for messages
	batch, workers      int
	strict, luhn        bool
	checkpointEvery     time.Duration
	progressEvery       time.Duration
	operator            string
}

// importCmd runs tok import: card numbers from a JSON Lines or CSV file
// into the vault, and the id → token mapping out.
func importCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("import", stderr)
	cfgPath := fs.String("config", "", "config `FILE` naming the vault and keyring (default ./tok.yaml if present, else demo defaults)")
	in := fs.String("in", "", "input `FILE`: JSON Lines ({\"id\":...,\"pan\":...}) or CSV with a header row")
	out := fs.String("out", "", "mapping `FILE` to write: one {\"id\",\"token\",\"line\"} per card (never the card number)")
	errPath := fs.String("errors", "", "`FILE` listing the bad lines (default: the -out file with .errors appended)")
	inFormat := fs.String("input-format", "", "jsonl or csv (default: csv for a .csv file, else jsonl)")
	format := fs.String("format", "pan", "token format: pan (same length, first 6 and last 4 kept) or opaque, as a default field of that format mints")
	field := fs.String("field", "", "mint as the configured inbound field `ROUTE:SELECTOR` does (e.g. checkout:json:card.number), instead of -format")
	auditPath := fs.String("audit", "", "audit log `FILE` for this run (default: the config's; needed when a running tok holds it)")
	batch := fs.Int("batch", defaultImportBatch, "cards per vault commit")
	workers := fs.Int("workers", 2*runtime.GOMAXPROCS(0), "vault calls in flight at once (they share group commits)")
	strict := fs.Bool("strict", false, "stop at the first bad line (the checkpoint stays before it: fix the line, run again)")
	noLuhn := fs.Bool("no-luhn", false, "accept card numbers that fail the Luhn check")
	checkpoint := fs.Duration("checkpoint", defaultImportCheckpoint, "how often the mapping is synced and the checkpoint advanced")
	progress := fs.Duration("progress", 0, "how often progress is printed (default: 200ms on a terminal, else 10s)")
	operator := fs.String("operator", operatorName(), "who runs the import, for the audit log")
	// Not in the usage: for measuring the command, not for running it.
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole command to `FILE`")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *in == "" || *out == "" {
		return usageError(stderr, "tok import: -in and -out are required")
	}
	opts := importOptions{in: *in, out: *out, errorsPath: *errPath, batch: *batch, workers: *workers, strict: *strict,
		checkpointEvery: *checkpoint, progressEvery: *progress, operator: *operator}
	if opts.errorsPath == "" {
		opts.errorsPath = *out + ".errors"
	}
	if opts.batch < 1 || opts.workers < 1 || opts.checkpointEvery <= 0 {
		return usageError(stderr, "tok import: -batch, -workers and -checkpoint must be positive")
	}
	var err error
	if opts.format, err = inputFormatOf(*inFormat, *in); err != nil {
		return usageError(stderr, "tok import: %v", err)
	}

	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "tok import:", err)
			return exitFail
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tv, err := openToolVault(ctx, "import", *cfgPath, *auditPath, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "tok import:", err)
		return exitFail
	}
	defer func() {
		if err := tv.Close(); err != nil {
			fmt.Fprintln(stderr, "tok import:", err)
		}
	}()
	// The import is the store's only client and waits for nothing but
	// durability: the store may trade request latency for throughput
	// (bbolt: see vault/bolt/bulk.go).
	if b, ok := tv.store.(bulkLoader); ok {
		b.BulkLoad()
	}
	if opts.spec, opts.specName, err = importSpec(tv.cfg, *format, *field); err != nil {
		fmt.Fprintln(stderr, "tok import:", err)
		return exitUsage
	}
	opts.luhn = !*noLuhn
	return runImport(ctx, tv, opts, stdout, stderr)
}

// bulkLoader is a store that can be told that one client loads records
// and no request waits behind its commits.
type bulkLoader interface{ BulkLoad() }

// startCPUProfile writes a CPU profile to path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// importSpec returns how the import mints tokens: as a default field of
// format does, or as the configured inbound field ROUTE:SELECTOR does.
// Only durable, convergent specs are imported: the same card gets the
// token the running server gives it on that field.
func importSpec(cfg *config.Config, format, field string) (vault.Spec, string, error) {
	if field == "" {
		f, err := vault.ParseFormat(format)
		if err != nil {
			return vault.Spec{}, "", err
		}
		if f == vault.FormatDigits {
			return vault.Spec{}, "", errors.New("-format digits is for short values, not card numbers: use pan or opaque")
		}
		return vault.Spec{Format: f}, "format " + f.String(), nil
	}
	route, sel, ok := strings.Cut(field, ":")
	if !ok {
		return vault.Spec{}, "", fmt.Errorf("-field %q: want ROUTE:SELECTOR, e.g. checkout:json:card.number", field)
	}
	for _, r := range cfg.Inbound {
		if r.Name != route {
			continue
		}
		for _, f := range r.Fields {
			if f.Selector() != sel && f.JSON != sel {
				continue
			}
			spec, err := f.Spec()
			if err != nil {
				return vault.Spec{}, "", fmt.Errorf("-field %s: %w", field, err)
			}
			switch {
			case spec.Volatile || spec.Bound:
				return vault.Spec{}, "", fmt.Errorf("-field %s: the field is held in memory (a CVC?): import writes card numbers to the vault", field)
			case spec.Unique || spec.TTL > 0:
				return vault.Spec{}, "", fmt.Errorf("-field %s: the field mints a fresh or expiring token each time (unique or ttl): import mints convergent tokens only", field)
			case spec.Format == vault.FormatDigits:
				return vault.Spec{}, "", fmt.Errorf("-field %s: a digits field is for short values, not card numbers", field)
			}
			return spec, "field " + field, nil
		}
		return vault.Spec{}, "", fmt.Errorf("-field %s: route %s has no field %s", field, route, sel)
	}
	return vault.Spec{}, "", fmt.Errorf("-field %s: no inbound route named %s", field, route)
}

// importStats are the counts of one run, with those of the runs it resumes.
type importStats struct {
	imported, created, bad int64
}

// runImport imports opts.in, resuming where a checkpoint says an earlier
// run stopped, and returns the exit code.
func runImport(ctx context.Context, tv *toolVault, opts importOptions, stdout, stderr io.Writer) int {
	start := time.Now()
	run, err := openImportRun(opts)
	if err != nil {
		fmt.Fprintln(stderr, "tok import:", err)
		return exitFail
	}
	defer run.close()
	if run.resumed {
		fmt.Fprintf(stderr, "tok import: resuming %s at line %d (%d cards imported before; checkpoint %s)\n",
			opts.in, run.cp.Line+1, run.cp.Imported, run.cpPath)
	}
	// No audit line, no import: the run starts only once the log holds it.
	ev := auditlog.Event{Event: "import", Client: opts.operator, File: opts.in, Outcome: "started"}
	if err := tv.record(ev); err != nil {
		fmt.Fprintln(stderr, "tok import: the audit log cannot be written; refusing to import:", err)
		return exitFail
	}
	before := run.cp.Imported
	stats, runErr := run.pipeline(ctx, tv.vault, opts, stderr)

	ev.Count = int(stats.imported - before)
	switch {
	case runErr != nil && ctx.Err() != nil:
		ev.Outcome = "interrupted"
	case runErr != nil:
		ev.Outcome = "failed"
	case stats.bad > 0:
		ev.Outcome = "bad_lines"
	default:
		ev.Outcome = "ok"
	}
	if err := tv.record(ev); err != nil {
		fmt.Fprintln(stderr, "tok import: writing the audit log's closing line failed:", err)
	}
	took := time.Since(start)
	if runErr != nil {
		if ctx.Err() != nil {
			runErr = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "tok import: stopped after line %d: %v\n", run.cp.Line, runErr)
		fmt.Fprintf(stderr, "tok import: %d cards are imported and mapped in %s; run the same command again to resume after line %d\n",
			stats.imported, opts.out, run.cp.Line)
		return exitFail
	}
	if err := run.finish(); err != nil {
		fmt.Fprintln(stderr, "tok import:", err)
		return exitFail
	}
	// The records are durable already (bbolt: in its write-ahead log);
	// closing writes what the log holds into the vault file, which is part
	// of the command's time.
	closeStart := time.Now()
	if err := tv.Close(); err != nil {
		fmt.Fprintln(stderr, "tok import: close the vault:", err)
		return exitFail
	}
	total := time.Since(start)
	fmt.Fprintf(stdout, "imported %d cards from %s (%s): %d new tokens, %d already in the vault; mapping in %s\n",
		stats.imported, opts.in, opts.specName, stats.created, stats.imported-stats.created, opts.out)
	fmt.Fprintf(stdout, "this run: %d cards in %v (%.0f cards/s), of which closing the vault took %v; %.0f cards/s until the last was committed\n",
		stats.imported-before, total.Round(time.Millisecond), float64(stats.imported-before)/total.Seconds(),
		time.Since(closeStart).Round(time.Millisecond), float64(stats.imported-before)/took.Seconds())
	if stats.bad > 0 {
		fmt.Fprintf(stdout, "%d bad lines, listed in %s\n", stats.bad, opts.errorsPath)
		return exitFail
	}
	return exitOK
}

// importJob is one batch of input lines on its way through the vault.
type importJob struct {
	seq     int
	lines   []cardLine
	tokens  []string // per line; "" for a bad line
	created int
	err     error
}

// pipeline reads the input from the checkpoint on, tokenizes it in
// batches on opts.workers goroutines, and writes the mapping in input
// order, advancing the checkpoint every opts.checkpointEvery. It returns
// the counts, including those of the runs it resumes.
func (run *importRun) pipeline(ctx context.Context, v *vault.Vault, opts importOptions, stderr io.Writer) (importStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lr, err := run.reader(opts)
	if err != nil {
		return run.stats(), err
	}
	prog := newProgress(stderr, opts.progressEvery, run.size)
	defer prog.stop()
	prog.set(run.cp.Offset, run.cp.Imported)

	jobs := make(chan *importJob, opts.workers)
	done := make(chan *importJob, opts.workers)
	var readErr error
	go func() { // the reader: lines in input order, cut into batches
		defer close(jobs)
		readErr = readJobs(ctx, lr, opts, jobs)
	}()
	var wg sync.WaitGroup
	for range opts.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				tokenizeJob(ctx, v, opts.spec, j)
				done <- j
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	// The writer: jobs come back in any order and are written in sequence.
	pending := map[int]*importJob{}
	next := 0
	lastCheckpoint := time.Now()
	var jobErr error
	for j := range done {
		if jobErr != nil {
			continue // draining after a failure
		}
		pending[j.seq] = j
		for pending[next] != nil {
			j := pending[next]
			delete(pending, next)
			next++
			if j.err != nil {
				jobErr = j.err
				cancel()
				break
			}
			if err := run.write(j, opts, prog); err != nil {
				jobErr = err
				cancel()
				break
			}
			prog.set(run.offset, run.imported)
			if time.Since(lastCheckpoint) >= opts.checkpointEvery {
				if err := run.checkpoint(); err != nil {
					jobErr = err
					cancel()
					break
				}
				lastCheckpoint = time.Now()
			}
		}
	}
	prog.stop()
	// What was written is kept, whatever stopped the run.
	if err := run.checkpoint(); err != nil && jobErr == nil {
		jobErr = err
	}
	switch {
	case jobErr != nil:
		return run.stats(), jobErr
	case readErr != nil:
		return run.stats(), readErr
	}
	return run.stats(), ctx.Err()
}

// readJobs cuts the lines of lr into jobs of up to opts.batch cards (bad
// lines ride along, to be reported in order). With opts.strict it stops
// after the first bad line.
func readJobs(ctx context.Context, lr *lineReader, opts importOptions, jobs chan<- *importJob) error {
	seq := 0
	j := &importJob{}
	cards := 0
	send := func() bool {
		if len(j.lines) == 0 {
			return true
		}
		j.seq = seq
		seq++
		select {
		case jobs <- j:
		case <-ctx.Done():
			return false
		}
		j, cards = &importJob{}, 0
		return true
	}
	for {
		cl, err := lr.next()
		if errors.Is(err, io.EOF) {
			send()
			return nil
		}
		if err != nil {
			send()
			return fmt.Errorf("read %s: %w", opts.in, err)
		}
		j.lines = append(j.lines, cl)
		if cl.Bad == "" {
			cards++
		} else if opts.strict {
			send()
			return nil
		}
		if cards >= opts.batch && !send() {
			return ctx.Err()
		}
	}
}

// tokenizeJob tokenizes the cards of j in one vault call.
func tokenizeJob(ctx context.Context, v *vault.Vault, spec vault.Spec, j *importJob) {
	reqs := make([]vault.Request, 0, len(j.lines))
	for _, l := range j.lines {
		if l.Bad == "" {
			reqs = append(reqs, vault.Request{Value: l.PAN, Spec: spec})
		}
	}
	j.tokens = make([]string, len(j.lines))
	if len(reqs) == 0 {
		return
	}
	if err := ctx.Err(); err != nil {
		j.err = err
		return
	}
	tokens, created, err := v.TokenizeCount(ctx, reqs)
	// A commit that stalled or a store that is briefly down (a loaded
	// disk, a PostgreSQL failover) is waited out: the call is safe to
	// repeat, since the cards of a commit that did land are found by
	// fingerprint and keep their tokens.
	for wait := time.Second; err != nil && errors.Is(err, vault.ErrUnavailable) && wait <= maxImportRetryWait; wait *= 2 {
		select {
		case <-ctx.Done():
			j.err = ctx.Err()
			return
		case <-time.After(wait):
		}
		tokens, created, err = v.TokenizeCount(ctx, reqs)
	}
	if err != nil {
		j.err = fmt.Errorf("tokenize lines %d to %d: %w", j.lines[0].Line, j.lines[len(j.lines)-1].Line, err)
		return
	}
	k := 0
	for i, l := range j.lines {
		if l.Bad == "" {
			j.tokens[i] = tokens[k]
			k++
		}
	}
	j.created = created
}
