// Package bolt is the embedded, default [vault.Store]: one bbolt file on
// local disk, fronted by a write-ahead log. Every write is durable when it
// returns (its WAL frame was written and fdatasync'd), and concurrent
// writers share commits through a single committer goroutine (see
// committer.go), so throughput grows with concurrency instead of being
// capped by the disk's fsync rate. Checkpoints move the logged writes into
// bbolt in the background, many at a time, in transactions of sorted key
// ranges (see wal.go and checkpoint.go).
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/internal/commitq"
)

// Defaults for [Options] fields left zero.
const (
	// DefaultTimeout is how long Open waits for the file lock before it
	// decides another process holds the vault.
	DefaultTimeout = time.Second
	// DefaultMaxBatchOps caps the callers answered by one commit.
	DefaultMaxBatchOps = 1024
	// DefaultMaxBatchRecords caps the records written by one commit (one
	// caller's Insert is never split, so a commit may exceed it once).
	DefaultMaxBatchRecords = 8192
	// DefaultCommitTimeout bounds how long a write waits for its commit:
	// a stalled disk gets callers an error, not a hang.
	DefaultCommitTimeout = 5 * time.Second
)

// schemaVersion is the layout of the buckets below, kept in the meta bucket.
const schemaVersion = 1

// Bucket names and meta keys.
var (
	bucketTokens       = []byte("tokens")       // token → vault.MarshalRecord value
	bucketFingerprints = []byte("fingerprints") // fingerprint → token
	bucketSessions     = []byte("sessions")     // session key → encoded session
	bucketLockouts     = []byte("lockouts")     // client name → encoded lockout
	bucketReveals      = []byte("reveals")      // token → uvarint reveal count (tokens with a max_reveals policy)
	bucketMeta         = []byte("meta")         // "schema" → uvarint version
	keySchema          = []byte("schema")
)

// Errors returned by [Open], besides the [vault] sentinels the Store methods use.
var (
	// ErrLocked: another process (or another Store in this one) has the
	// vault file open.
	ErrLocked = errors.New("vault file locked")
	// ErrNotVault: the file is not a bbolt database, or not one tok wrote.
	ErrNotVault = errors.New("not a tok vault file")
	// ErrVaultMissing: the vault file is missing, empty or new, but an
	// older vault left files beside it: creating a vault there
	// takes Options.Init.
	ErrVaultMissing = errors.New("vault missing")
	// ErrForeignVault: the vault file, its id marker and its WAL segments
	// do not all name the same vault: one was swapped.
	ErrForeignVault = errors.New("files of another vault")
	// ErrWALDamaged: the write-ahead log cannot be replayed whole (see
	// [WALError]).
	ErrWALDamaged = errors.New("write-ahead log damaged")
	// ErrVaultDamaged: the vault file is damaged (see [DamageError]).
	ErrVaultDamaged = errors.New("vault file damaged")
)

// Options configures [Open]. The zero value gives the documented defaults.
type Options struct {
	// Timeout bounds the wait for the file lock. If zero, DefaultTimeout.
	Timeout time.Duration
	// MaxBatchOps caps the callers sharing one commit. If zero, DefaultMaxBatchOps.
	MaxBatchOps int
	// MaxBatchRecords caps the records written by one commit. If zero,
	// DefaultMaxBatchRecords.
	MaxBatchRecords int
	// OnCommit, if set, is called by the committer after every successful
	// group commit with its duration (including the WAL fdatasync) and the
	// number of callers it answered. It must be fast: commits wait for it.
	OnCommit func(d time.Duration, ops int)
	// Init lets Open create a new vault although an older one left files
	// beside path (its WAL segments, its id marker, Traces): they are
	// renamed aside, never deleted or replayed. Only an operator's
	// explicit choice (tok serve -init-vault) sets it.
	Init bool
	// Traces are more files whose existence (not empty) shows that a
	// vault lived here before, so that a missing vault file is refused:
	// tok passes the audit log.
	Traces []string
	// Faults injects WAL and checkpoint failures: tests and chaos drills
	// only, never production. Nil injects nothing. See [Faults].
	Faults *Faults
	// CommitTimeout bounds how long a write waits, queued and committing,
	// before it returns an error wrapping [vault.ErrUnavailable] and
	// [vault.ErrStalled]; Ping fails the same way while a commit has
	// been in flight for longer. If zero, DefaultCommitTimeout.
	CommitTimeout time.Duration

	// Unexported knobs for tests; zero means the default.
	segmentSize       int64         // bytes per WAL segment
	checkpointEntries int           // active memtable size that triggers a checkpoint
	checkpointChunk   int           // entries per checkpoint transaction
	checkpointEvery   time.Duration // checkpoint interval when anything is pending
	idleAfter         time.Duration // no commit for this long: checkpoints stop pacing
}

// Stats counts the committer's and the checkpointer's work since Open.
type Stats struct {
	Commits uint64 // successful group commits (one WAL fdatasync each, none if nothing changed)
	Ops     uint64 // calls (Insert, Delete, PutSession, ...) they answered
	Records uint64 // records they wrote (Insert outcomes with Status Stored)

	Checkpoints       uint64        // memtables written to bbolt
	CheckpointEntries uint64        // puts and deletes those checkpoints wrote
	CheckpointChunks  uint64        // bbolt transactions they took (failed ones not counted)
	CheckpointTime    time.Duration // time spent in those transactions, fsyncs included, pauses between them not
}

// Store is a [vault.Store] on one bbolt file and its WAL. It is safe for
// concurrent use. Reads look in the memtables, then in their own bbolt read
// transactions, concurrently with the committer; writes go through the
// committer.
type Store struct {
	db   *bbolt.DB
	path string
	opts Options

	// mu guards closed and the send side of queue: senders hold it for
	// reading, Close takes it for writing before it closes the queue.
	mu     sync.RWMutex
	closed bool
	queue  chan *request
	writes commitq.Queue[*request] // queue as writers and the committer use it
	done   chan struct{}           // closed when the committer has exited

	commits, ops, records atomic.Uint64

	// memMu guards active and frozen (the pointers and the active
	// memtable's contents; a frozen memtable is never modified). The
	// committer writes active, the checkpointer drops frozen, readers read
	// both. See checkpoint.go.
	memMu          sync.RWMutex
	active, frozen *memtable

	// Owned by the committer (and by Close once it has exited).
	wal        *wal
	cp         *checkpointRun // latest checkpoint, nil once collected
	freezes    uint64         // freezes so far: the seq of the latest checkpoint
	lastFreeze time.Time
	payload    []byte // frame payload being encoded, reused
	batchMem   *memtable
	opMem      *memtable

	checkpoints, checkpointEntries, checkpointChunks, checkpointNanos atomic.Uint64

	// boundary is held (its one slot filled) while bbolt may hold part of
	// a checkpoint: from a freeze until the frozen memtable is dropped,
	// and during Close's flush. Backup takes it to begin its snapshot at
	// a checkpoint boundary (see backup.go); a freeze waits for that.
	boundary chan struct{}
	// hurry, when not zero, makes a running checkpoint skip its pauses:
	// someone (Backup, Scan, Close) waits for it.
	hurry atomic.Int32
	// bulk is set by BulkLoad (see bulk.go).
	bulk atomic.Bool
	// activeEntries and walOffset are the committer's load, published
	// for the checkpointer's pacing (see noteLoad).
	activeEntries, walOffset atomic.Int64
	// lastCommit is when the committer last finished a batch (UnixNano),
	// for the checkpointer: with no commits to disturb, it need not pace.
	lastCommit atomic.Int64
	// committing is when the commit in progress began (UnixNano), 0 if
	// none: Ping reports a commit stuck past CommitTimeout.
	committing atomic.Int64

	// barriers carries Backup's checkpoint requests to the committer
	// (sent under mu, like queue). See backup.go.
	barriers chan barrierRequest
	// logFailed is set when a commit could not write or sync the WAL (or
	// make room in it), and cleared by the next frame written or probe
	// passed; cpFailed is set while the latest checkpoint has failed. Ping
	// reports the store not ready while either is set and a probe fails.
	logFailed, cpFailed atomic.Bool

	report OpenReport // what Open found and did
}

var (
	_ vault.Store         = (*Store)(nil)
	_ vault.SessionStore  = (*Store)(nil)
	_ vault.RevealCounter = (*Store)(nil)
)

// Open opens the vault file at path, creating it only where no older vault
// left anything: the file is missing or empty (or a bbolt file without
// tok's buckets) and none of its WAL segments, its id marker
// (path+".id") or opts.Traces exist, or opts.Init is set (see identity.go).
// The parent directory is created with mode 0700 and the files with 0600.
// If another process holds the file, Open fails after opts.Timeout with an
// error wrapping [ErrLocked]; a file that is not a tok vault gives
// [ErrNotVault].
//
// Before bbolt reads the file, Open checks it (see check.go): damage gives
// a [*DamageError] wrapping [ErrVaultDamaged], never a panic.
//
// The write-ahead log lives next to the file, in path+".wal.0" and
// path+".wal.1" (mode 0600, 32 MiB each, created zero-filled). Open
// replays into bbolt whatever acknowledged writes the log holds (a process
// that was killed left them there) before it returns, and refuses, with a
// [*WALError] wrapping [ErrWALDamaged], a log it cannot replay whole (see
// walscan.go). [Store.OpenReport] says what it found and did.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open vault %q: %w", path, err)
	}
	var rep OpenReport
	fresh := false
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fresh = true
		if err := rep.allowCreate(path, "missing", opts); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("open vault %q: %w", path, err)
	case fi.Size() == 0:
		fresh = true
		if err := rep.allowCreate(path, "empty (0 bytes)", opts); err != nil {
			return nil, err
		}
	default:
		start := time.Now()
		fc, err := checkFile(path)
		rep.CheckTime = time.Since(start)
		if err != nil {
			return nil, err
		}
		rep.Check = fc
		if fc.DamagedMeta >= 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("meta page %d of %s is damaged (%s); bbolt uses meta page %d (transaction %d), and the next commit rewrites the damaged one. If it held the newer transaction, the write-ahead log's epoch check refuses to start",
				fc.DamagedMeta, path, fc.MetaProblem, 1-fc.DamagedMeta, fc.TxID))
		}
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	s, err := open(db, path, opts, fresh, &rep)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open vault %q: %w", path, err)
	}
	return s, nil
}

// allowCreate decides whether a vault may be created at path, whose file is
// in state ("missing", "empty"): only if no older vault left traces, or
// opts.Init, in which case they are moved aside.
func (rep *OpenReport) allowCreate(path, state string, opts Options) error {
	found := traces(path, opts.Traces)
	if len(found) == 0 {
		return nil
	}
	if !opts.Init {
		return missingError(path, state, found)
	}
	moved, err := moveAside(path, found)
	rep.MovedAside = moved
	if err != nil {
		return fmt.Errorf("open vault %q: %w", path, err)
	}
	return nil
}

// openBolt opens the bbolt file, mapping its errors.
func openBolt(path string, opts Options) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: opts.Timeout,
		// The freelist is rebuilt by scanning at open instead of being
		// written by every commit: less to write and fsync, and data
		// durability is unaffected.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("vault file %q is in use by another process (no lock within %v): %w", path, opts.Timeout, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open vault %q: %w: %w", path, ErrNotVault, err)
	case err != nil:
		// bbolt reports some foreign files with unexported errors (for
		// example one shorter than a page); name the likely cause.
		return nil, fmt.Errorf("open vault %q (is it a tok vault file?): %w", path, err)
	}
	return db, nil
}

// open is Open once bbolt has the file: buckets and identity, the WAL
// segments, the replay.
func open(db *bbolt.DB, path string, opts Options, fresh bool, rep *OpenReport) (*Store, error) {
	var id [16]byte
	var legacy, walOpen bool
	err := db.Update(func(tx *bbolt.Tx) error {
		created, err := initBuckets(tx)
		if err != nil {
			return err
		}
		if created && !fresh {
			// A bbolt file without tok's buckets is a new vault too.
			if err := rep.allowCreate(path, "a bbolt file without a vault in it", opts); err != nil {
				return err
			}
		}
		rep.Created = created
		if created {
			id = newID()
			return tx.Bucket(bucketMeta).Put(keyVaultID, bytes.Clone(id[:]))
		}
		id, legacy, walOpen, err = identify(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.VaultID, rep.Upgraded = formatID(id), legacy
	if err := checkMarker(path, id, rep.Created); err != nil {
		return nil, err
	}
	start := int64(segHeaderSize)
	if legacy {
		start = 0 // segments from before headers existed: none
	}
	if !rep.Created && !legacy {
		if err := rep.checkLog(path, opts, id, walOpen); err != nil {
			return nil, err
		}
	}
	w, err := openWAL(path, opts.segmentSize, start, id)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:   db,
		path: path,
		opts: opts,
		// Room for two batches: one forming while one commits.
		queue:      make(chan *request, 2*opts.MaxBatchOps),
		done:       make(chan struct{}),
		active:     newMemtable(),
		wal:        w,
		lastFreeze: time.Now(),
		barriers:   make(chan barrierRequest),
		boundary:   make(chan struct{}, 1),
	}
	s.writes = s.writeQueue()
	w.faults = opts.Faults
	if rep.Replay, err = s.recover(rep.base); err != nil {
		w.close()
		return nil, err
	}
	s.report = *rep
	go s.commitLoop()
	return s, nil
}

// checkMarker compares the id marker beside the vault with its id, and
// writes the marker if it is missing.
func checkMarker(path string, id [16]byte, created bool) error {
	marked, ok, err := readIDFile(path)
	if err != nil {
		return err
	}
	if ok && marked != id && !created {
		return fmt.Errorf("%w: %s is vault %s, but %s says this directory holds vault %s: the vault file was replaced by another vault's. Put the right file back; if this vault is the one you mean to run, remove %s and its write-ahead log (%s.wal.*) only after checking they belong to no vault you need",
			ErrForeignVault, path, formatID(id), path+idSuffix, formatID(marked), path+idSuffix, path)
	}
	if ok && marked == id {
		return nil
	}
	return writeIDFile(path, id)
}

// checkLog checks the WAL segments of an existing vault before they are
// opened: a segment of another vault is refused; one that is missing, cut
// short or without its header is refused while the WAL may hold
// acknowledged writes (walOpen), and recreated, with a warning, after a
// clean stop (the old one moved aside). It records the segments' base
// epoch in rep for recover.
func (rep *OpenReport) checkLog(path string, opts Options, id [16]byte, walOpen bool) error {
	base, issues := checkSegments(path, opts.segmentSize, id)
	rep.base = base
	for _, is := range issues {
		switch {
		case is.foreign:
			return fmt.Errorf("%w: write-ahead log segment %s: %s", ErrForeignVault, is.path, is.problem)
		case walOpen:
			return &WALError{File: is.path, Offset: -1, Problem: is.problem + ", and the vault was not stopped cleanly: the segment may have held acknowledged writes"}
		}
		if _, err := os.Lstat(is.path); err == nil {
			moved, err := moveAside(path, []string{is.path})
			if err != nil {
				return err
			}
			rep.MovedAside = append(rep.MovedAside, moved...)
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("write-ahead log segment %s was %s after a clean stop: nothing was lost (bbolt holds everything); a new segment replaces it", is.path, is.problem))
	}
	return nil
}

// OpenReport says what [Open] found and did: for the start-up log.
type OpenReport struct {
	VaultID    string   // the vault's id (hex)
	Created    bool     // a new vault was created
	Upgraded   bool     // a vault from before vault ids got its id
	MovedAside []string // files of an older vault, or bad WAL segments after a clean stop, renamed aside
	Replay     ReplayReport
	Check      FileCheck     // the integrity check of the file (zero for a new vault)
	CheckTime  time.Duration // how long it took
	Warnings   []string      // damage Open recovered from

	base uint64 // the WAL segments' base epoch
}

// OpenReport returns what Open found and did.
func (s *Store) OpenReport() OpenReport { return s.report }

// initBuckets creates the buckets of a new vault, reporting created, or
// checks an existing vault's schema version.
func initBuckets(tx *bbolt.Tx) (created bool, err error) {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		v, n := binary.Uvarint(meta.Get(keySchema))
		if n <= 0 {
			return false, fmt.Errorf("%w: no schema version", ErrNotVault)
		}
		if v != schemaVersion {
			return false, fmt.Errorf("%w: schema version %d, this build reads %d", ErrNotVault, v, schemaVersion)
		}
		for _, name := range [][]byte{bucketTokens, bucketFingerprints, bucketSessions, bucketLockouts} {
			if tx.Bucket(name) == nil {
				return false, fmt.Errorf("%w: bucket %s is missing", ErrVaultDamaged, name)
			}
		}
		// Vaults written before reveal policies have no reveals bucket:
		// it is added, empty, which is what it would hold (no token of
		// theirs has a policy). Older builds ignore it.
		if _, err := tx.CreateBucketIfNotExists(bucketReveals); err != nil {
			return false, fmt.Errorf("create bucket %s: %w", bucketReveals, err)
		}
		return false, nil
	}
	// A bbolt file with buckets but no meta belongs to another program.
	if err := tx.ForEach(func([]byte, *bbolt.Bucket) error { return ErrNotVault }); err != nil {
		return false, fmt.Errorf("%w: bbolt file with foreign buckets", ErrNotVault)
	}
	for _, name := range [][]byte{bucketTokens, bucketFingerprints, bucketSessions, bucketLockouts, bucketReveals, bucketMeta} {
		if _, err := tx.CreateBucket(name); err != nil {
			return false, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return true, tx.Bucket(bucketMeta).Put(keySchema, binary.AppendUvarint(nil, schemaVersion))
}

// withDefaults fills in the zero fields of o.
func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBatchOps <= 0 {
		o.MaxBatchOps = DefaultMaxBatchOps
	}
	if o.MaxBatchRecords <= 0 {
		o.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = DefaultCommitTimeout
	}
	if o.segmentSize <= 0 {
		o.segmentSize = defaultSegmentSize
	}
	if o.checkpointEntries <= 0 {
		o.checkpointEntries = defaultCheckpointEntries
	}
	if o.checkpointChunk <= 0 {
		o.checkpointChunk = defaultCheckpointChunk
	}
	if o.checkpointEvery <= 0 {
		o.checkpointEvery = defaultCheckpointEvery
	}
	if o.idleAfter <= 0 {
		o.idleAfter = defaultIdleAfter
	}
	return o
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits: s.commits.Load(), Ops: s.ops.Load(), Records: s.records.Load(),
		Checkpoints:       s.checkpoints.Load(),
		CheckpointEntries: s.checkpointEntries.Load(),
		CheckpointChunks:  s.checkpointChunks.Load(),
		CheckpointTime:    time.Duration(s.checkpointNanos.Load()),
	}
}

// get returns a copy of the current value of key in bucket b: from the
// memtables if they know the key, else from bbolt. The memtables are
// consulted first, and the read transaction opened after (see
// checkpoint.go). A missing key gives ErrNotFound.
func (s *Store) get(ctx context.Context, b bucket, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock() // held throughout, so Close waits for this read
	defer s.mu.RUnlock()
	if s.closed {
		return nil, vault.ErrClosed
	}
	if v, ok := s.memGet(b, key); ok {
		if v == nil {
			return nil, vault.ErrNotFound
		}
		return v, nil // memtable values are never modified
	}
	var v []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketNames[b]).Get(key))
		return nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: read vault: %w", vault.ErrUnavailable, err)
	case v == nil:
		return nil, vault.ErrNotFound
	}
	return v, nil
}

// view runs fn in a read transaction, mapping a closed store to ErrClosed
// and other bbolt failures to ErrUnavailable.
func (s *Store) view(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return vault.ErrClosed
	}
	err := s.db.View(fn)
	if err != nil && isBoltErr(err) {
		return fmt.Errorf("%w: read vault: %w", vault.ErrUnavailable, err)
	}
	return err
}

// isBoltErr reports whether err came from bbolt rather than from the
// store's own logic (ErrNotFound, corrupt records).
func isBoltErr(err error) bool {
	return errors.Is(err, berrors.ErrDatabaseNotOpen) || errors.Is(err, berrors.ErrTxClosed) ||
		errors.Is(err, berrors.ErrBucketNotFound)
}

// Ping implements [vault.Store]: it opens a read transaction and checks
// that the vault's buckets are there. If the last commit could not write
// the WAL, or the latest checkpoint failed, it also probes the store
// through the committer (a write and fdatasync of the WAL; a restart of the
// failed checkpoint) and fails, wrapping [vault.ErrUnavailable], until the
// probe passes and the checkpoint has succeeded. So readiness follows a
// failing disk down and back up even when no traffic arrives to notice.
//
// A commit in flight for longer than CommitTimeout (a stalled disk: the
// WAL's fdatasync does not return) fails Ping at once, wrapping
// [vault.ErrStalled], until that commit returns.
func (s *Store) Ping(ctx context.Context) error {
	if d, ok := s.stalled(); ok {
		return fmt.Errorf("%w: %w: a commit has been in flight for %v, past the %v deadline (a stalled disk?)",
			vault.ErrUnavailable, vault.ErrStalled, d.Round(time.Millisecond), s.opts.CommitTimeout)
	}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketTokens) == nil {
			return fmt.Errorf("%w: tokens bucket missing", vault.ErrUnavailable)
		}
		return nil
	})
	if err != nil || (!s.logFailed.Load() && !s.cpFailed.Load()) {
		return err
	}
	err = s.write(ctx, func(*txn) error {
		// Runs on the committer, which owns the WAL and the checkpoints.
		s.settle(false) // restarts a failed checkpoint
		if err := s.wal.probe(); err != nil {
			return fmt.Errorf("%w: vault cannot write its log: %w", vault.ErrUnavailable, err)
		}
		s.logFailed.Store(false)
		return nil
	})
	if err != nil {
		return err
	}
	if s.cpFailed.Load() {
		return fmt.Errorf("%w: vault cannot checkpoint its log into %s", vault.ErrUnavailable, filepath.Base(s.path))
	}
	return nil
}

// stalled reports how long the commit in progress has taken, if longer
// than CommitTimeout.
func (s *Store) stalled() (time.Duration, bool) {
	start := s.committing.Load()
	if start == 0 {
		return 0, false
	}
	d := time.Since(time.Unix(0, start))
	return d, d > s.opts.CommitTimeout
}

// Close waits for writes already queued to commit, stops the committer,
// checkpoints what the WAL holds into bbolt and closes the files. Later
// calls return [vault.ErrClosed]. If the final checkpoint fails, the
// writes stay in the WAL and the next Open replays them.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return vault.ErrClosed
	}
	s.closed = true
	close(s.queue) // no sender holds mu, so none is mid-send
	s.mu.Unlock()
	<-s.done
	err := s.flush()
	err = errors.Join(err, s.wal.close(), s.db.Close())
	if err != nil {
		return fmt.Errorf("close vault %q: %w", s.path, err)
	}
	return nil
}

// Size returns the bytes the vault takes on disk: the bbolt file and its
// write-ahead log segments (allocated ahead, so a constant 64 MiB more).
// It is what limits.vault_bytes bounds ([vault.Sizer]).
func (s *Store) Size(context.Context) (int64, error) {
	var n int64
	for _, p := range []string{s.path, s.path + ".wal.0", s.path + ".wal.1"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("size: %w", err)
		}
		n += st.Size()
	}
	return n, nil
}

var _ vault.Sizer = (*Store)(nil)
