// Package redis is a [vault.Store] for volatile values (CVCs) on a Redis
// server, so that several tok replicas share them: a checkout taken by one
// replica is paid through another. It keeps the memory store's semantics:
// records expire (by a Redis TTL, and tok's own clock judges expiry on every
// read), the number of records is capped ([Options.MaxRecords]) and a full
// store refuses new records with [ErrFull].
//
// Values arrive sealed by the vault (AES-256-GCM): Redis only ever holds
// ciphertext. Still, a CVC must not reach a disk, even encrypted: run Redis
// without persistence (save "", appendonly no). [Store.Persistence] reports
// what the server does.
//
// The server is one Redis (a primary, not a Cluster: the scripts touch keys
// they do not declare, all under one hash tag).
//
// Every write that must be atomic across replicas (insert-if-absent with
// the cap, delete, the session purge) is one Lua script run by EVALSHA, so
// concurrent replicas converge as goroutines of one process do on the
// memory store. Keys (all under [Options.Prefix]):
//
//	r:<token>  hash: v the sealed record, f its fingerprint; expires with it
//	f:<fp>     the token of the record with that fingerprint; expires with it
//	idx        sorted set of every token (score 0: byte order), for Scan
//	exp        sorted set token → expiry in Unix ms (0: none); its size is
//	           the count the cap is judged on
//	s:<key>    hash of one session; sessions: set of session keys
//	l:<client> hash of one client's lockout
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// DefaultPrefix is the key prefix unless [Options.Prefix] says otherwise.
// The braces are a hash tag: on a Redis Cluster every key of the store
// hashes to one slot, as the multi-key scripts need.
const DefaultPrefix = "tok:{volatile}:"

// DefaultJanitorInterval is how often each replica removes expired records
// from the store's indexes (their values are already gone by TTL) unless
// [Options.JanitorInterval] says otherwise: the count the cap is judged on
// then follows the live records within about a second.
const DefaultJanitorInterval = time.Second

// janitorBatch bounds the expired records one janitor script removes, so
// that no script holds the server for long.
const janitorBatch = 1000

// Timeouts of the client: a Redis that does not answer fails the request
// (503) rather than holding it.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
)

// minPoolSize is the fewest connections a store keeps to the server.
const minPoolSize = 64

// ErrFull is returned (wrapped) by [Store.Insert] when the new records would
// take the store past its cap even after expired records are reclaimed. It
// wraps [memory.ErrFull] (and so [vault.ErrUnavailable]): callers answer it
// as they answer a full memory store, 503 volatile_store_full.
var ErrFull = fmt.Errorf("redis store: %w", memory.ErrFull)

var _ vault.Store = (*Store)(nil)

// Options configures [Open].
type Options struct {
	// URL is redis://[user[:password]@]host:port/db or rediss://… for
	// TLS. It is never logged or put in an error (config keeps passwords
	// out of the file: they come from the environment).
	URL string
	// Password, if set, authenticates (AUTH) the connections, in place of
	// the URL's.
	Password string
	// CAFile, if set, is a PEM file of the CAs that sign the server's
	// certificate (rediss:// only); if empty, the system's.
	CAFile string
	// Prefix is prepended to every key. If empty, [DefaultPrefix].
	Prefix string
	// MaxRecords caps the records held (by all replicas together); 0: none.
	MaxRecords int
	// Now replaces time.Now as the clock that judges expiry (tests).
	Now func() time.Time
	// JanitorInterval is how often expired records leave the indexes. If
	// zero, [DefaultJanitorInterval]; negative turns the janitor off.
	JanitorInterval time.Duration
}

// Store is a [vault.Store] on a Redis server. It is safe for concurrent use,
// by goroutines and by replicas sharing the server and prefix.
type Store struct {
	c      *goredis.Client
	prefix string
	max    int
	now    func() time.Time
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{} // closed once the janitor and the committers have stopped
	// calls queues inserts for the committers (committer.go).
	calls      chan *insertCall
	committers sync.WaitGroup
	scriptRuns atomic.Int64 // runs of insertScript sent, for tests
}

// Open connects to the Redis server opts.URL names and checks that it
// answers. It does not fail on a server that persists to disk: call
// [Store.Persistence] and warn.
func Open(ctx context.Context, opts Options) (*Store, error) {
	o, err := clientOptions(opts)
	if err != nil {
		return nil, err
	}
	s := &Store{
		c:      goredis.NewClient(o),
		prefix: opts.Prefix,
		max:    max(opts.MaxRecords, 0),
		now:    opts.Now,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		calls:  make(chan *insertCall, maxInsertBatch),
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		s.c.Close()
		return nil, fmt.Errorf("redis: ping %s: %w: %w", safeAddr(o), vault.ErrUnavailable, err)
	}
	every := opts.JanitorInterval
	if every == 0 {
		every = DefaultJanitorInterval
	}
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		s.janitor(every)
	}()
	s.committers.Add(1)
	go s.committer()
	go func() {
		<-janitorDone
		s.committers.Wait()
		close(s.done)
	}()
	return s, nil
}

// clientOptions turns opts into the client's options. Errors never hold
// the password.
func clientOptions(opts Options) (*goredis.Options, error) {
	if !strings.HasPrefix(opts.URL, "redis://") && !strings.HasPrefix(opts.URL, "rediss://") {
		return nil, errors.New("redis: the URL must start with redis:// or rediss://")
	}
	o, err := goredis.ParseURL(opts.URL)
	if err != nil {
		return nil, errors.New("redis: the URL does not parse; write redis://host:6379/0")
	}
	if opts.Password != "" {
		o.Password = opts.Password
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	// A checkout holds a connection for each of its one or two round
	// trips; go-redis's default pool (10 per CPU) makes 64 concurrent
	// checkouts on 2 CPUs queue for one.
	o.PoolSize = max(o.PoolSize, minPoolSize)
	// One retry on a broken connection (a server restarted under an idle
	// pool), not go-redis's three: a Redis that is gone answers 503 within
	// a few seconds rather than holding the request through four dials.
	o.MaxRetries = 1
	o.ContextTimeoutEnabled = true
	if opts.CAFile != "" {
		if o.TLSConfig == nil {
			return nil, errors.New("redis: a CA file needs a rediss:// URL")
		}
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: CA file %s holds no PEM certificate", opts.CAFile)
		}
		o.TLSConfig.RootCAs = pool
	}
	if o.TLSConfig != nil {
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return o, nil
}

// safeAddr is the server's address for errors and logs: never the password.
func safeAddr(o *goredis.Options) string { return o.Addr }

// begin checks ctx and that the store is open.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return vault.ErrClosed
	}
	return nil
}

// fail wraps an error of the client for op: a context's error stays
// itself, a closed client is [vault.ErrClosed], and anything else (a
// connection refused, a timeout, a server error) is [vault.ErrUnavailable],
// which callers answer with 503 and retry later.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("redis %s: %w", op, ctx.Err())
	case errors.Is(err, goredis.ErrClosed), s.closed.Load():
		return fmt.Errorf("redis %s: %w", op, vault.ErrClosed)
	}
	return fmt.Errorf("redis %s: %w: %w", op, vault.ErrUnavailable, err)
}

// key returns the key of kind (r, f, s, l) and name.
func (s *Store) key(kind, name string) string { return s.prefix + kind + ":" + name }

// Ping implements [vault.Store].
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close stops the janitor and the committers (an insert they hold is
// answered first) and closes the connections. The records stay on
// the server for the other replicas. Later calls return [vault.ErrClosed].
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return vault.ErrClosed
	}
	close(s.stop)
	<-s.done
	return s.c.Close()
}

// Stats is a snapshot of what the store holds, for metrics.
type Stats = vault.VolatileStats

// VolatileStats is [Store.Stats], for the proxy's /metrics.
func (s *Store) VolatileStats(ctx context.Context) (vault.VolatileStats, error) {
	return s.Stats(ctx)
}

// Stats returns what the store holds now: one round trip.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.begin(ctx); err != nil {
		return Stats{}, err
	}
	n, err := s.c.ZCard(ctx, s.prefix+"exp").Result()
	if err != nil {
		return Stats{}, s.fail(ctx, "stats", err)
	}
	return Stats{Records: int(n), MaxRecords: s.max, Shared: true}, nil
}

// Persistence is what the server said of its persistence to disk.
type Persistence struct {
	Checked    bool   // false: the server refused CONFIG GET (disabled or not permitted)
	Save       string // the save schedule ("" : no RDB snapshots)
	AppendOnly bool   // the AOF is on
	Err        error  // why it could not be checked
}

// Persists reports whether the server writes its data to disk.
func (p Persistence) Persists() bool { return p.Save != "" || p.AppendOnly }

// Persistence asks the server whether it writes its data to disk (CONFIG
// GET save and appendonly): a CVC must never reach a disk, even sealed.
func (s *Store) Persistence(ctx context.Context) Persistence {
	save, err := s.c.ConfigGet(ctx, "save").Result()
	if err != nil {
		return Persistence{Err: err}
	}
	aof, err := s.c.ConfigGet(ctx, "appendonly").Result()
	if err != nil {
		return Persistence{Err: err}
	}
	if _, ok := save["save"]; !ok {
		return Persistence{Err: errors.New("CONFIG GET save returned nothing")}
	}
	return Persistence{Checked: true, Save: strings.TrimSpace(save["save"]), AppendOnly: aof["appendonly"] == "yes"}
}

func (s *Store) janitor(every time.Duration) {
	if every < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			s.Purge(ctx) // a Redis that is down is retried on the next tick
			cancel()
		}
	}
}

// Purge removes expired records from the indexes (and their values, if
// Redis has not yet) and returns how many, in scripts of at most
// janitorBatch records each.
func (s *Store) Purge(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := purgeScript.Run(ctx, s.c, s.indexes(), s.prefix, s.now().UnixMilli(), janitorBatch).Int()
		if err != nil {
			return total, s.fail(ctx, "purge", err)
		}
		total += n
		if n < janitorBatch {
			return total, nil
		}
	}
}

// indexes are the keys every record script declares.
func (s *Store) indexes() []string { return []string{s.prefix + "idx", s.prefix + "exp"} }
