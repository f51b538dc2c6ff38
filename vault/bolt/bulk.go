package bolt

import "github.com/tokproxy/tok/vault"

// Bulk loading.
//
// tok import writes a million records from one process whose only wait is
// for each batch to be durable: no request stands behind its commits. Four
// of the store's habits protect the latency of such requests, and cost a
// bulk load its time instead:
//
//   - The vault looks every value up (Find) before it inserts it, so that a
//     known card costs a read and no commit. For a load of new cards the
//     lookup is wasted, and Insert looks the fingerprint up again anyway.
//   - A checkpoint paces itself over the filling of the next memtable, so
//     that its page writes do not crowd the WAL's fdatasyncs. Nothing waits
//     on those but the loader, and a paced checkpoint still running at the
//     end is work left for Close.
//   - A checkpoint transaction writes at most checkpointChunk entries,
//     for short bursts of page writes. Each costs two fsyncs, and a bulk
//     load's checkpoints are large.
//   - The active memtable is frozen at checkpointEntries, for the server's
//     memory budget. A checkpoint of random keys rewrites much of the tree
//     however few it carries, so a bulk load, which is bound by its
//     checkpoints, goes faster with fewer, larger ones: bulkEntriesFactor
//     times as large, for up to (hardCapFactor+1) × bulkEntriesFactor ×
//     checkpointEntries entries in memory (about 55 MiB by default), in a
//     process that holds little else.
//
// [Store.BulkLoad] drops all four. What a caller is told is unchanged: it
// is answered once its WAL frame is fdatasync'd, a frozen memtable is
// dropped only once its last chunk committed, and Open replays the WAL the
// same way, so a crash during a bulk load loses nothing acknowledged.

// bulkChunkFactor × checkpointChunk is the entries per checkpoint
// transaction while bulk loading: fewer fsyncs, and a few more MiB of
// bbolt's dirty pages on the heap per transaction, which a loading process
// can spare.
const bulkChunkFactor = 8

// bulkEntriesFactor × checkpointEntries is the active memtable size that
// makes a checkpoint due while bulk loading. Measured with tok import (1M
// cards, quiet 2-core machine, alternating runs): 1× 110k and 122k cards/s,
// 2× 124k and 141k, 0.5× 74k and 76k. Larger ones are capped by the WAL
// segment anyway (a memtable never holds more than one segment's frames).
const bulkEntriesFactor = 2

// BulkLoad switches s to bulk loading for the rest of its life (see
// above): for a process that only loads records, such as tok import, never
// for one that serves requests. It is safe to call at any time.
func (s *Store) BulkLoad() { s.bulk.Store(true) }

// ConvergesOnInsert implements [vault.Converger]: true while bulk loading,
// so the vault inserts without a Find first (Insert answers a known
// fingerprint with its record).
func (s *Store) ConvergesOnInsert() bool { return s.bulk.Load() }

var _ vault.Converger = (*Store)(nil)

// chunkSize is the most entries one checkpoint transaction writes.
func (s *Store) chunkSize() int {
	if s.bulk.Load() {
		return bulkChunkFactor * s.opts.checkpointChunk
	}
	return s.opts.checkpointChunk
}

// entriesDue is the active memtable size that makes a checkpoint due.
func (s *Store) entriesDue() int {
	if s.bulk.Load() {
		return bulkEntriesFactor * s.opts.checkpointEntries
	}
	return s.opts.checkpointEntries
}
