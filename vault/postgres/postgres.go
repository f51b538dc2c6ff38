// Package postgres is a [vault.Store] on PostgreSQL, for several tok
// replicas sharing one vault. Every replica opens the same
// database; the schema is created and migrated by [Open] itself, and the
// unique index on the fingerprint makes tokenization convergent across
// processes: however many replicas race on the same card number, exactly one
// token wins and every caller is told that token.
//
// A write returns only after its transaction has committed. When the server
// cannot be reached, calls fail with errors wrapping [vault.ErrUnavailable]
// and the connection pool reconnects by itself once it is back.
package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/internal/commitq"
)

// Errors of this package that no retry can cure; see unavailable.
var (
	// errCorrupt: a row holds a value no tok wrote.
	errCorrupt = errors.New("corrupt row")
	// errOutOfRange: a value does not fit its column.
	errOutOfRange = errors.New("value out of range")
)

// DefaultTimeout bounds a call whose context has no earlier deadline, so a
// server that stops answering (rather than refusing connections) fails the
// request instead of hanging it.
const DefaultTimeout = 5 * time.Second

// openTimeout bounds Open (connecting and migrating) when its context has no
// earlier deadline and Options.Timeout is shorter.
const openTimeout = 30 * time.Second

// maxAttempts bounds how often one call runs when PostgreSQL reports a
// deadlock or serialization failure, or a pooled connection turns out dead
// before the request was sent. Each attempt is a whole transaction.
const maxAttempts = 3

// Options configures [Open]. The zero value is ready to use.
type Options struct {
	// Schema is the PostgreSQL schema holding tok's tables; Open creates it
	// if it is missing. If empty, tables are created in the first schema
	// of the connection's search_path (normally public).
	Schema string
	// MaxConns caps the connection pool. If zero, the URL's pool_max_conns
	// applies, else pgxpool's default (the larger of 4 and the CPU count).
	MaxConns int32
	// Timeout bounds each call whose context has no earlier deadline. If
	// zero, DefaultTimeout.
	Timeout time.Duration
	// Init lets Open create tok's tables although Traces show that a vault
	// lived here before (tok serve -init-vault).
	Init bool
	// Traces are files whose existence (not empty) shows that a vault
	// lived here before: tok passes the audit log. If the schema holds no
	// vault and one of them exists, Open refuses with [ErrVaultMissing]
	// unless Init: the tables were dropped, or tok points at the wrong
	// database or schema, and a new empty vault would answer every known
	// card with a new token.
	Traces []string
	// MaxBatches caps the group-commit transactions in flight at once
	// (see committer.go). If zero, DefaultMaxBatches.
	MaxBatches int
	// MaxBatchRecords caps the records of one group commit; a single
	// Insert of more still commits alone. If zero, DefaultMaxBatchRecords.
	MaxBatchRecords int
	// OnCommit, if set, is called after each group commit with its
	// duration and the number of Insert calls it answered (for the
	// tok_store_commit_* metrics). It must not block.
	OnCommit func(d time.Duration, ops int)
}

// ErrVaultMissing: the schema holds no vault, but files of an older vault
// (Options.Traces) exist.
var ErrVaultMissing = errors.New("vault missing")

// Store is a [vault.Store] on PostgreSQL. It is safe for concurrent use by
// many goroutines and by many processes sharing the database. Close it when
// done; later calls return [vault.ErrClosed].
type Store struct {
	pool    *pgxpool.Pool
	q       queries
	timeout time.Duration
	closed  atomic.Bool
	id      string // the vault id, hex
	created bool   // Open created the vault

	// Group commit (committer.go): Inserts queue on queue, which Close
	// closes under mu once no submit holds mu's read lock; workers are
	// the committer goroutines.
	queue           chan *request
	writes          commitq.Queue[*request] // queue as Insert and the committers use it
	mu              sync.RWMutex
	workers         sync.WaitGroup
	overlapRecords  int
	held            atomic.Int64 // requests in dispatch's next batch (see queued)
	maxBatchRecords int
	onCommit        func(time.Duration, int)
	commits         atomic.Uint64
	ops             atomic.Uint64
	records         atomic.Uint64
}

var (
	_ vault.Store        = (*Store)(nil)
	_ vault.SessionStore = (*Store)(nil)
)

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value connection string, as pgx accepts), creates or migrates tok's
// schema, and returns the store. Errors never repeat the URL, which may hold
// a password.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn redacts passwords in its message only on a best-effort
		// basis, so the connection string is left out altogether.
		return nil, errors.New("open postgres: cannot parse the connection url")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	// Insert relies on READ COMMITTED: a statement that waited on a
	// concurrent insert of the same fingerprint must see that row in the
	// next statement. Pin it in case the database defaults to another level.
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	s := &Store{
		q:       newQueries(opts.Schema),
		timeout: opts.Timeout,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	// Migrating may take longer than one call, but a silent server must
	// not hang a starting tok either.
	ctx, cancel := s.boundBy(ctx, max(s.timeout, openTimeout))
	defer cancel()
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, classify("open postgres", err)
	}
	id, created, err := migrate(ctx, s.pool, opts.Schema, func() error { return allowCreate(opts) })
	if err != nil {
		s.pool.Close()
		return nil, classify("open postgres", err)
	}
	s.id, s.created = hex.EncodeToString(id), created
	s.start(opts)
	return s, nil
}

// start starts the committer goroutines.
func (s *Store) start(opts Options) {
	batches := opts.MaxBatches
	if batches <= 0 {
		batches = DefaultMaxBatches
	}
	s.maxBatchRecords = opts.MaxBatchRecords
	if s.maxBatchRecords <= 0 {
		s.maxBatchRecords = DefaultMaxBatchRecords
	}
	s.onCommit = opts.OnCommit
	s.queue = make(chan *request, 4*s.maxBatchRecords)
	s.writes = s.writeQueue()
	s.overlapRecords = min(overlapRecords, s.maxBatchRecords)
	s.workers.Add(1)
	go s.dispatch(batches)
}

// allowCreate refuses to create a vault where Traces exist, unless Init.
func allowCreate(opts Options) error {
	var found []string
	for _, p := range opts.Traces {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			found = append(found, p)
		}
	}
	if len(found) == 0 || opts.Init {
		return nil
	}
	return fmt.Errorf("%w: the database schema holds no tok vault, but %s shows that one was used here: its tables were dropped, or tok points at the wrong database or schema. Point tok at the vault (restore it from a PostgreSQL backup), or, to start a NEW empty vault and give up the old tokens, run tok once with -init-vault",
		ErrVaultMissing, strings.Join(found, ", "))
}

// VaultID returns the vault's id (hex), recorded at its creation.
func (s *Store) VaultID() string { return s.id }

// Created reports whether Open created the vault.
func (s *Store) Created() bool { return s.created }

// Size returns the bytes the tokens table takes with its indexes: what
// limits.vault_bytes bounds ([vault.Sizer]).
func (s *Store) Size(ctx context.Context) (int64, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, s.q.sizeTokens, s.q.tokensTable).Scan(&n); err != nil {
		return 0, s.fail(ctx, "size", err)
	}
	return n, nil
}

var _ vault.Sizer = (*Store)(nil)

// Ping reports whether the database answers. It is what /readyz asks.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close commits the Inserts already queued, then closes the pool, waiting
// for connections in use to be returned. Calls after Close return
// [vault.ErrClosed], and so does a second Close.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed.CompareAndSwap(false, true) {
		s.mu.Unlock()
		return vault.ErrClosed
	}
	close(s.queue)
	s.mu.Unlock()
	s.workers.Wait()
	s.pool.Close()
	return nil
}

// begin checks that s is open and ctx is live, and bounds ctx by s.timeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, vault.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := s.bound(ctx)
	return ctx, cancel, nil
}

// bound returns ctx with s.timeout applied unless ctx ends sooner.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return s.boundBy(ctx, s.timeout)
}

// boundBy returns ctx ending after d at the latest.
func (s *Store) boundBy(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// retry runs fn until it succeeds, fails for good, or maxAttempts are spent.
// fn must be a whole transaction, so running it again is safe.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for range maxAttempts {
		if err = fn(); err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// retryable reports whether err left nothing behind and may well pass on a
// second try: a deadlock or serialization failure (the transaction was
// rolled back), or a dead pooled connection noticed before anything was sent.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return pgconn.SafeToRetry(err)
}

// fail wraps err from operation op ("insert") for the caller. The caller's own
// cancellation stays recognisable (errors.Is(err, context.Canceled)); a call
// racing Close reports vault.ErrClosed.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	op = "postgres " + op
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, vault.ErrClosed)
	}
	if errors.Is(ctx.Err(), context.Canceled) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w: %w", op, ctx.Err(), err)
	}
	if connectionLost(err) {
		// The server went away or dropped us: every pooled connection is
		// probably dead too. Drop them all now so that the first call after
		// the server is back dials afresh instead of finding a stale
		// connection (pgxpool only pings connections idle for a second).
		s.pool.Reset()
	}
	return classify(op, err)
}

// connectionLost reports whether err means the connection (and likely the
// server) is gone, as opposed to a slow answer or a refused statement.
func connectionLost(err error) bool {
	if !unavailable(err) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P02"
	}
	return true
}

// classify wraps err with op, adding vault.ErrUnavailable when the failure
// is about reaching or using the server rather than about the request: the
// proxy then answers 503 and the client may retry.
func classify(op string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, vault.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, errSchemaNewer) || errors.Is(err, ErrVaultMissing) ||
		errors.Is(err, errCorrupt) || errors.Is(err, errOutOfRange) {
		return false // the caller gave up, or no retry can help
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		// Not an answer from the server: dial, I/O, timeout or pool
		// errors, all of which mean the server is out of reach.
		return true
	}
	switch pgErr.Code[:2] {
	case "08", // connection exception
		"40", // serialization failure or deadlock, after retries
		"53", // insufficient resources: too many connections, disk full
		"57", // operator intervention: shutdown, statement timeout
		"58": // system error: I/O
		return true
	}
	// read_only_sql_transaction: a failover left us on a standby;
	// lock_not_available: lock_timeout fired.
	return pgErr.Code == "25006" || pgErr.Code == "55P03"
}

// lockKey is the pg_advisory_xact_lock key that serializes migrations of
// one schema across every process sharing the database.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tok migrate\x00" + schema))
	return int64(h.Sum64())
}

// queries are the SQL statements of a Store, with table names qualified by
// its schema.
type queries struct {
	insertTokens, findWinners                           string
	findFingerprint, getToken, deleteToken              string
	scanTokens, resealToken                             string
	countReveal, uncountReveal, reveals                 string
	keyChecks, addKeyCheck, deleteKeyCheck              string
	putSession, getSession, deleteSession, touchSession string
	purgeSessions                                       string
	sizeTokens, tokensTable                             string
	lockLockout, ensureLockout, setLockout, dropLockout string
}

// qualify replaces "{schema}." in sql with the quoted schema name and a dot,
// or with nothing if schema is empty.
func qualify(schema, sql string) string {
	prefix := ""
	if schema != "" {
		prefix = pgx.Identifier{schema}.Sanitize() + "."
	}
	return strings.ReplaceAll(sql, "{schema}.", prefix)
}

// recordColumns are the columns of a record every version has; a
// RecordV3 record also has a policy (policyColumns, read and written
// after them).
const (
	recordColumns = `token, key_id, ciphertext, fingerprint, created, expires, format, version`
	policyColumns = recordColumns + `, policy`
)

func newQueries(schema string) queries {
	q := func(sql string) string { return qualify(schema, sql) }
	return queries{
		// No conflict target: both unique indexes (token and fingerprint)
		// are arbiters, and a conflict on either writes nothing.
		// Rows are inserted in the arrays' order.
		insertTokens: q(`INSERT INTO {schema}.tokens (` + policyColumns + `)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[],
				$5::timestamptz[], $6::timestamptz[], $7::smallint[], $8::smallint[], $9::bytea[])
			ON CONFLICT DO NOTHING RETURNING token`),
		// The records that beat a batch's rows to their fingerprints: the
		// rows with them that this transaction did not write (a row's
		// xmin is the transaction that inserted it; comparing it is one
		// step per row, where token <> ALL(batch) would be one per row
		// and batch record). _if_assigned: a transaction that wrote
		// nothing (every card known) has no id, and must not be given
		// one, which would make its commit wait on a WAL flush.
		findWinners: q(`SELECT ` + policyColumns + ` FROM {schema}.tokens
			WHERE fingerprint = ANY($1::bytea[])
				AND xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid`),
		findFingerprint: q(`SELECT ` + policyColumns + ` FROM {schema}.tokens WHERE fingerprint = $1`),
		getToken:        q(`SELECT ` + policyColumns + ` FROM {schema}.tokens WHERE token = $1`),
		deleteToken:     q(`DELETE FROM {schema}.tokens WHERE token = $1`),
		// The primary key's index serves both the range and the order.
		scanTokens: q(`SELECT ` + policyColumns + ` FROM {schema}.tokens
			WHERE token > $1 ORDER BY token LIMIT $2`),
		// vault.ResealApplies, in SQL.
		resealToken: q(`UPDATE {schema}.tokens SET key_id = $2, ciphertext = $3, version = $5
			WHERE token = $1 AND key_id = $4 AND (key_id <> $2 OR version < $5)`),
		// vault.RevealCounter: one statement each. The UPDATE takes the
		// row's lock, and under READ COMMITTED re-checks reveals < max on
		// the row as the last committed reveal left it, so concurrent
		// reveals on any replica never pass max. The CTE tells a missing
		// token (no row) from a spent one (a row, nothing updated).
		countReveal: q(`WITH u AS (
				UPDATE {schema}.tokens SET reveals = reveals + 1
				WHERE token = $1 AND reveals < $2 RETURNING reveals)
			SELECT (SELECT reveals FROM u), (SELECT reveals FROM {schema}.tokens WHERE token = $1)`),
		uncountReveal: q(`UPDATE {schema}.tokens SET reveals = reveals - 1 WHERE token = $1 AND reveals > 0`),
		reveals:       q(`SELECT reveals FROM {schema}.tokens WHERE token = $1`),
		// The tokens table with its indexes and TOAST, for limits.vault_bytes.
		sizeTokens:     `SELECT pg_total_relation_size($1::regclass)`,
		tokensTable:    q(`{schema}.tokens`),
		keyChecks:      q(`SELECT name, value FROM {schema}.key_checks`),
		addKeyCheck:    q(`INSERT INTO {schema}.key_checks (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING`),
		deleteKeyCheck: q(`DELETE FROM {schema}.key_checks WHERE name = $1`),

		putSession: q(`INSERT INTO {schema}.sessions (key, id, client, created, last_seen)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (key) DO UPDATE SET id = EXCLUDED.id, client = EXCLUDED.client,
				created = EXCLUDED.created, last_seen = EXCLUDED.last_seen`),
		getSession:    q(`SELECT id, client, created, last_seen FROM {schema}.sessions WHERE key = $1`),
		deleteSession: q(`DELETE FROM {schema}.sessions WHERE key = $1`),
		touchSession:  q(`UPDATE {schema}.sessions SET last_seen = $2 WHERE key = $1`),
		// A sequential scan: the janitor runs once a minute and sessions
		// are few (at most a few per client and 8 hours).
		purgeSessions: q(`DELETE FROM {schema}.sessions WHERE last_seen <= $1 OR created <= $2`),

		lockLockout:   q(`SELECT failures, locked_until FROM {schema}.lockouts WHERE client = $1 FOR UPDATE`),
		ensureLockout: q(`INSERT INTO {schema}.lockouts (client, failures) VALUES ($1, 0) ON CONFLICT DO NOTHING`),
		setLockout:    q(`UPDATE {schema}.lockouts SET failures = $2, locked_until = $3 WHERE client = $1`),
		dropLockout:   q(`DELETE FROM {schema}.lockouts WHERE client = $1`),
	}
}

// ms returns t at millisecond precision in UTC, as every store keeps times;
// the zero time stays zero.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// nullTime is t for a nullable timestamptz column: nil for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromNull is the inverse of nullTime, at millisecond precision in UTC.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return ms(*t)
}
