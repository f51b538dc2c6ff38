package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/internal/commitq"
)

// Concurrent inserts share round trips and script runs: a few committers
// each take every insert queued (up to maxInsertBatch) and send them as ONE
// run of insertScript, one write, one read and one script call for the lot
// instead of one each, as bbolt and PostgreSQL share a commit. The script
// judges each insert on its own, in order, so its outcome is what it would
// be alone (all or nothing against the cap). A lone insert finds a
// committer idle and goes at once.
//
// One script call per insert cost the server about 20 µs of Lua set-up and
// reply per call besides its commands (INFO commandstats: evalsha 44 µs
// per call, its commands about 25), the largest part of Redis's CPU per
// checkout (examples/bench -volatile-url, the bench README).
const (
	insertCommitters = 4
	maxInsertBatch   = 128
	insertOverlap    = 8
)

// insertCall is one Insert waiting for a committer.
type insertCall struct {
	ctx  context.Context
	args []any
	res  []any
	err  error
	done chan struct{}
}

// insert queues args (an Insert's part of insertScript's arguments: its
// number of records, then four per record) and waits for its reply. If
// ctx ends first it returns ctx's error; the script may still run (a
// record stored then is never handed out, and expires).
func (s *Store) insert(ctx context.Context, args []any) ([]any, error) {
	c := &insertCall{ctx: ctx, args: args, done: make(chan struct{})}
	select {
	case s.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.stop:
		return nil, goredis.ErrClosed
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.stop:
		// Close waits for the committers: a call one took is answered.
		<-s.done
		select {
		case <-c.done:
			return c.res, c.err
		default:
			return nil, goredis.ErrClosed
		}
	}
}

// committer runs the committers until the store closes; a batch in
// flight finishes first, and the inserts held for the next batch are
// dropped unsent (their callers see the store closed).
func (s *Store) committer() {
	defer s.committers.Done()
	commitq.Dispatch[*insertCall]{
		Queue:   s.calls,
		Stop:    s.stop,
		Size:    func(*insertCall) int { return 1 },
		Max:     maxInsertBatch,
		Overlap: insertOverlap,
		Workers: insertCommitters,
		Commit:  s.runInserts,
	}.Run()
}

// runInserts sends the inserts of batch as one run of insertScript and
// answers each call. A call whose context has ended is answered with its
// error unsent.
func (s *Store) runInserts(batch []*insertCall) {
	live := make([]*insertCall, 0, len(batch))
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	s.scriptRuns.Add(1)
	n := 3
	for _, c := range live {
		n += len(c.args)
	}
	args := make([]any, 0, n)
	args = append(args, s.prefix, s.now().UnixMilli(), s.max)
	for _, c := range live {
		args = append(args, c.args...)
	}
	// Run sends EVALSHA, and EVAL if the server lost its script cache (a
	// restart): the script did not run then, so this is no second insert.
	res, err := insertScript.Run(ctx, s.c, s.indexes(), args...).Slice()
	if err == nil && len(res) != len(live) {
		err = fmt.Errorf("%w: insert script answered %d of %d inserts", vault.ErrUnavailable, len(res), len(live))
	}
	for i, c := range live {
		c.err = err
		if err == nil {
			var ok bool
			if c.res, ok = res[i].([]any); !ok {
				c.err = fmt.Errorf("%w: insert script answered %T", vault.ErrUnavailable, res[i])
			}
		}
		close(c.done)
	}
}
