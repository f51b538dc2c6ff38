package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// errNoPG means a private PostgreSQL cannot be run here; the scenario is
// skipped.
var errNoPG = errors.New("no private PostgreSQL")

// privatePG is a throwaway PostgreSQL cluster in a temporary directory,
// listening on 127.0.0.1 only, with trust authentication. As root it runs
// as the postgres OS user (PostgreSQL refuses root) through runuser.
type privatePG struct {
	dir    string // owned by the cluster's user; holds data/, the socket and the log
	bin    string // directory of initdb and pg_ctl
	asUser []string
	port   int
}

// pgBinDir finds the directory holding initdb and pg_ctl.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		d := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	for i := len(matches) - 1; i >= 0; i-- { // the newest version last in lexical order
		d := filepath.Dir(matches[i])
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: initdb and pg_ctl not found", errNoPG)
}

// startPrivatePG creates and starts a cluster. Errors wrapping errNoPG
// mean the tools are missing.
func startPrivatePG(ctx context.Context) (*privatePG, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	pg := &privatePG{bin: bin}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root and runuser is missing", errNoPG)
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root and there is no postgres user", errNoPG)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		pg.asUser = []string{runuser, "-u", "postgres", "--"}
	}
	if pg.dir, err = os.MkdirTemp("", "tok-crash-pg-"); err != nil {
		return nil, err
	}
	if uid >= 0 {
		if err := os.Chown(pg.dir, uid, gid); err != nil {
			pg.close()
			return nil, err
		}
	}
	if err := pg.run(ctx, "initdb", "-D", pg.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		pg.close()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pg.close()
		return nil, err
	}
	pg.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := pg.start(ctx); err != nil {
		pg.close()
		return nil, err
	}
	return pg, nil
}

func (pg *privatePG) data() string { return filepath.Join(pg.dir, "data") }

// url is the connection URL of the cluster's postgres database.
func (pg *privatePG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// run runs one of PostgreSQL's programs as the cluster's user.
func (pg *privatePG) run(ctx context.Context, prog string, args ...string) error {
	argv := append(append(append([]string(nil), pg.asUser...), filepath.Join(pg.bin, prog)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = pg.dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", prog, err, out)
	}
	return nil
}

// start starts the server and waits until it accepts connections.
func (pg *privatePG) start(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s", pg.port, pg.dir)
	return pg.run(ctx, "pg_ctl", "-D", pg.data(), "-l", filepath.Join(pg.dir, "postgres.log"), "-w", "-t", "60", "-o", opts, "start")
}

// stop stops the server; mode "immediate" is a crash: no checkpoint, open
// connections cut.
func (pg *privatePG) stop(ctx context.Context, mode string) error {
	return pg.run(ctx, "pg_ctl", "-D", pg.data(), "-m", mode, "-w", "-t", "60", "stop")
}

// close stops the server if it runs and removes its directory.
func (pg *privatePG) close() {
	if _, err := os.Stat(filepath.Join(pg.data(), "postmaster.pid")); err == nil {
		pg.stop(context.Background(), "immediate")
	}
	os.RemoveAll(pg.dir)
}

// outageStat is what one PostgreSQL outage looked like from outside.
type outageStat struct {
	down          time.Duration // from the stop to the start of PostgreSQL
	requests      int           // sent and answered while it was down
	status503     int
	status2xx     int           // must be 0
	other         int           // other statuses and requests without an answer: must be 0
	readyz503     time.Duration // from the stop to /readyz answering 503
	readyz200     time.Duration // from the start to /readyz answering 200
	first2xx      time.Duration // from the start to the first 2xx of a request sent after it
	after503      int           // 503s to requests sent after /readyz answered 200 again
	upstreamWhile int           // upstream receipts while it was down (requests tokenized before)
}

// runPGRestart is the PostgreSQL outage scenario: tok on a private
// cluster under load; the cluster is stopped (immediate) and started again,
// o.outages times, without restarting tok.
func runPGRestart(ctx context.Context, o options) *result {
	res := &result{scenario: "pg-restart"}
	pg, err := startPrivatePG(ctx)
	if errors.Is(err, errNoPG) {
		res.skipped = err.Error()
		return res
	}
	if err != nil {
		res.problem("private PostgreSQL: %v", err)
		return res
	}
	defer func() {
		markInterrupted(ctx, res)
		if o.keep || (!res.ok() && !res.interrupted) {
			pg.stop(context.Background(), "fast")
			fmt.Fprintf(o.out, "pg-restart: kept the private cluster's directory %s\n", pg.dir)
			return
		}
		pg.close()
	}()
	h, err := newHarness(o, res, []string{"TOK_POSTGRES_URL=" + pg.url()}, true)
	if h != nil {
		defer h.close()
		defer markInterrupted(ctx, res)
	}
	if err != nil {
		res.problem("setup: %v", err)
		return res
	}
	if _, err := h.start(ctx); err != nil {
		res.problem("start: %v", err)
		return res
	}
	p := h.cur.Load()
	readyz := "http://" + p.Addr("admin") + "/readyz"
	lctx, cancel := context.WithCancel(ctx)
	ld := newLoad(h.led, &h.cur, &h.cycle, o.workers)
	ld.start(lctx, o.workers)
	stopLoad := func() { cancel(); ld.wait() }
	sleep(ctx, time.Second)
	for i := 1; i <= o.outages && ctx.Err() == nil; i++ {
		h.cycle.Store(int64(i))
		var st outageStat
		if err := pg.stop(ctx, "immediate"); err != nil {
			stopLoad()
			res.problem("outage %d: stop PostgreSQL: %v", i, err)
			return res
		}
		stopped := time.Now()
		d, err := pollStatus(ctx, readyz, 503, 15*time.Second)
		if err != nil {
			res.problem("outage %d: /readyz did not go 503: %v", i, err)
		}
		st.readyz503 = d
		sleep(ctx, time.Until(stopped.Add(o.outage)))
		restart := time.Now()
		if err := pg.start(ctx); err != nil {
			stopLoad()
			res.problem("outage %d: start PostgreSQL: %v", i, err)
			return res
		}
		st.down = restart.Sub(stopped)
		if st.readyz200, err = pollStatus(ctx, readyz, 200, 60*time.Second); err != nil {
			res.problem("outage %d: tok did not recover: %v", i, err)
		}
		ready := restart.Add(st.readyz200)
		// Wait for requests to succeed again (up to 30 s), then let the
		// load go on for a second.
		for wait := time.Now(); time.Since(wait) < 30*time.Second && ctx.Err() == nil && !h.led.okSince(restart); {
			sleep(ctx, 20*time.Millisecond)
		}
		sleep(ctx, time.Second)
		h.led.mu.Lock()
		first := time.Duration(-1)
		for _, oc := range h.led.outcomes {
			switch {
			case !oc.sent.Before(stopped) && !oc.done.After(restart):
				st.requests++
				switch {
				case oc.status == 503:
					st.status503++
				case oc.status/100 == 2:
					st.status2xx++
				default:
					st.other++
				}
			case oc.sent.After(restart) && oc.status/100 == 2:
				if d := oc.done.Sub(restart); first < 0 || d < first {
					first = d
				}
			}
			if oc.sent.After(ready) && oc.status == 503 {
				st.after503++
			}
		}
		h.led.mu.Unlock()
		st.first2xx = first
		rs, _ := h.up.receiptsSince(0)
		for _, r := range rs {
			if !r.at.Before(stopped) && !r.at.After(restart) {
				st.upstreamWhile++
			}
		}
		switch {
		case st.requests == 0:
			res.problem("outage %d: no request was sent and answered while PostgreSQL was down (make -outage longer)", i)
		case st.status2xx > 0 || st.other > 0:
			res.problem("outage %d: of %d requests while PostgreSQL was down, %d got a 2xx and %d neither 2xx nor 503", i, st.requests, st.status2xx, st.other)
		}
		if first < 0 || first > 30*time.Second {
			res.problem("outage %d: no 2xx within 30s of PostgreSQL coming back", i)
		}
		res.outages = append(res.outages, st)
		res.cycles++
		fmt.Fprintf(o.out, "pg-restart outage %d/%d: PostgreSQL down %v; %d requests meanwhile: %d×503, %d×2xx, %d other; /readyz 503 after %v, 200 again %v after the start\n",
			i, o.outages, st.down.Round(time.Millisecond), st.requests, st.status503, st.status2xx, st.other, st.readyz503.Round(time.Millisecond), st.readyz200.Round(time.Millisecond))
	}
	stopLoad()
	select {
	case <-p.Exited():
		res.problem("tok exited during the outages: %v", p.Err())
	default:
		if h.cur.Load() != p {
			res.problem("tok was restarted")
		}
	}
	if err := h.cur.Swap(nil).Stop(stopGrace); err != nil {
		res.problem("SIGTERM: %v", err)
	}
	acks, _ := h.led.acksSince(0)
	rs, _ := h.up.receiptsSince(0)
	fails, err := verifyPostgresOffline(ctx, pg.url(), h.keys, mustWants(h, acks, rs), o.verifyParallel)
	if err != nil {
		res.problem("offline: %v", err)
	}
	for _, f := range fails {
		h.failed[f.token] = f
	}
	fmt.Fprintf(o.out, "pg-restart: offline check of all %d acked tokens and %d upstream receipts: %d failed\n", len(acks), len(rs), len(fails))
	h.finish()
	return res
}
