package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"
)

// Concurrent inserts share round trips: a few committers each take every
// insert queued (up to maxInsertBatch) and send their scripts in one
// pipeline, one write and one read for the lot instead of one each, as
// bbolt and PostgreSQL share a commit. Each insert is still its own script,
// atomic on the server, so its outcome is what it would be alone. A lone
// insert finds a committer idle and goes at once.
const (
	insertCommitters = 4
	maxInsertBatch   = 128
)

// insertCall is one Insert waiting for a committer.
type insertCall struct {
	ctx  context.Context
	args []any
	res  []any
	err  error
	done chan struct{}
}

// insert queues args for insertScript and waits for its reply. If ctx ends
// first it returns ctx's error; the script may still run (a record stored
// then is never handed out, and expires).
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

// committer runs queued inserts until the store closes.
func (s *Store) committer() {
	defer s.committers.Done()
	batch := make([]*insertCall, 0, maxInsertBatch)
	for {
		select {
		case <-s.stop:
			return
		case c := <-s.calls:
			batch = append(batch[:0], c)
		}
	fill:
		for len(batch) < maxInsertBatch {
			select {
			case c := <-s.calls:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		s.runInserts(batch)
		clear(batch)
	}
}

// runInserts sends the scripts of batch in one pipeline and answers each
// call. A call whose context has ended is answered with its error unsent.
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
	s.pipelines.Add(1)
	keys := s.indexes()
	cmds := make([]*goredis.Cmd, len(live))
	// Pipelined's error is the first command's; each command carries its own.
	_, _ = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, c := range live {
			cmds[i] = insertScript.EvalSha(ctx, p, keys, c.args...)
		}
		return nil
	})
	for i, c := range live {
		res, err := cmds[i].Slice()
		if err != nil && isNoScript(err) {
			// The server lost its script cache (a restart): Run loads
			// the script again. The script did not run, so this is no
			// second insert.
			res, err = insertScript.Run(ctx, s.c, keys, c.args...).Slice()
		}
		c.res, c.err = res, err
		close(c.done)
	}
}

// isNoScript reports whether err is the server's NOSCRIPT: the script is
// not in its cache.
func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}
