package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
)

// Insert stores recs in one transaction and reports what happened to each,
// in order, as [vault.Store] describes. The transaction is shared with the
// Insert calls of other goroutines made at the same time (group commit; see
// committer.go), and Insert returns once it has committed.
func (s *Store) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	if s.closed.Load() {
		return nil, vault.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []vault.Outcome{}, nil
	}
	rows := make([]vault.Record, len(recs))
	for i, r := range recs {
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("postgres insert: record %d: %w", i, err)
		}
		rows[i] = normalize(r)
	}
	return s.submit(ctx, &request{rows: rows})
}

// insertRows runs one attempt at storing rows, as one pipelined batch: one
// round trip, run by the server as one implicit transaction that commits at
// its end, or rolls back entirely if any statement fails. It holds two
// statements, whatever the number of rows:
//
//	INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING token
//	SELECT ... WHERE fingerprint = ANY(...) AND not written by this transaction
//
// A row whose token comes back was Stored. Else, if the SELECT finds its
// fingerprint under another token, it is Existing with that record; else it
// lost on its token: Collision. The SELECT is a statement of its own on
// purpose. Under READ COMMITTED each statement takes a fresh snapshot, so
// when the INSERT had to wait for another transaction inserting the same
// fingerprint (the unique index makes it wait) and then did nothing, the
// SELECT sees the row that transaction committed.
//
// A row whose fingerprint an earlier row of rows has is not sent: it is
// Existing with whatever the earlier one ended as (or a Collision if that
// one collided, and the caller retries it with a fresh token).
func (s *Store) insertRows(ctx context.Context, rows []vault.Record) ([]vault.Outcome, error) {
	order := lockOrder(rows)
	sent, follows := dedupe(rows, order)
	c := newColumns(len(sent))
	var fps [][]byte
	for _, i := range sent {
		c.add(rows[i])
		if rows[i].Fingerprint != nil {
			fps = append(fps, rows[i].Fingerprint)
		}
	}
	b := &pgx.Batch{}
	b.Queue(s.q.insertTokens, c.tokens, c.keyIDs, c.ciphertexts, c.fingerprints, c.created, c.expires, c.formats, c.versions, c.policies)
	if len(fps) > 0 {
		b.Queue(s.q.findWinners, fps)
	}
	br := s.pool.SendBatch(ctx, b)
	stored, err := readTokens(br)
	if err != nil {
		br.Close()
		return nil, err
	}
	winners := map[string]vault.Record{}
	if len(fps) > 0 {
		if winners, err = readWinners(br); err != nil {
			br.Close()
			return nil, err
		}
	}
	// Closing reads up to the end of the pipeline, where the implicit
	// transaction commits: only a nil error here means the rows are durable.
	if err := br.Close(); err != nil {
		return nil, err
	}
	outs := make([]vault.Outcome, len(rows))
	for _, i := range sent {
		r := rows[i]
		switch w, found := winners[string(r.Fingerprint)]; {
		case stored[r.Token]:
			outs[i] = vault.Outcome{Status: vault.Stored, Record: r}
			delete(stored, r.Token) // a later row with the same token lost it
		case r.Fingerprint != nil && found:
			outs[i] = vault.Outcome{Status: vault.Existing, Record: w}
		default:
			outs[i] = vault.Outcome{Status: vault.Collision}
		}
	}
	for i, lead := range follows {
		if o := outs[lead]; o.Status != vault.Collision {
			outs[i] = vault.Outcome{Status: vault.Existing, Record: o.Record}
		} else {
			outs[i] = vault.Outcome{Status: vault.Collision}
		}
	}
	return outs, nil
}

// dedupe splits order into the rows to send and the rows that repeat the
// fingerprint of an earlier row in the call (mapped to that row). Rows with
// one fingerprint are adjacent in order (lockOrder sorts by it) unless the
// call repeats a token, and then the map catches them.
func dedupe(rows []vault.Record, order []int) (sent []int, follows map[int]int) {
	sent = make([]int, 0, len(order))
	var first map[string]int
	for _, i := range order {
		fp := rows[i].Fingerprint
		if fp == nil {
			sent = append(sent, i)
			continue
		}
		if first == nil {
			first = make(map[string]int, len(order))
		}
		if lead, ok := first[string(fp)]; ok {
			if follows == nil {
				follows = map[int]int{}
			}
			follows[i] = lead
			continue
		}
		first[string(fp)] = i
		sent = append(sent, i)
	}
	return sent, follows
}

// columns are rows as the arrays insertTokens unnests.
type columns struct {
	tokens                    []string
	keyIDs                    []int64
	ciphertexts, fingerprints [][]byte
	policies                  [][]byte // vault.MarshalPolicy; nil (NULL) for none
	created                   []time.Time
	expires                   []*time.Time
	formats, versions         []int16
}

func newColumns(n int) *columns {
	return &columns{
		tokens: make([]string, 0, n), keyIDs: make([]int64, 0, n),
		ciphertexts: make([][]byte, 0, n), fingerprints: make([][]byte, 0, n),
		policies: make([][]byte, 0, n),
		created:  make([]time.Time, 0, n), expires: make([]*time.Time, 0, n),
		formats: make([]int16, 0, n), versions: make([]int16, 0, n),
	}
}

func (c *columns) add(r vault.Record) {
	c.tokens = append(c.tokens, r.Token)
	c.keyIDs = append(c.keyIDs, int64(r.KeyID))
	c.ciphertexts = append(c.ciphertexts, r.Ciphertext)
	c.fingerprints = append(c.fingerprints, r.Fingerprint)
	c.created = append(c.created, r.Created)
	c.expires = append(c.expires, nullTime(r.Expires))
	c.formats = append(c.formats, int16(r.Format))
	c.versions = append(c.versions, int16(r.Version))
	c.policies = append(c.policies, recordPolicy(r))
}

// recordPolicy is the policy column of r: only a RecordV3 record binds
// one, so only it stores one.
func recordPolicy(r vault.Record) []byte {
	if r.Version < vault.RecordV3 {
		return nil
	}
	return vault.MarshalPolicy(r.Policy)
}

// readTokens reads the tokens insertTokens stored.
func readTokens(br pgx.BatchResults) (map[string]bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := map[string]bool{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		stored[t] = true
	}
	return stored, rows.Err()
}

// readWinners reads the records findWinners found, by fingerprint.
func readWinners(br pgx.BatchResults) (map[string]vault.Record, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	winners := map[string]vault.Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		winners[string(r.Fingerprint)] = r
	}
	return winners, rows.Err()
}

// validate rejects records the table cannot hold.
func validate(r vault.Record) error {
	switch {
	case r.Token == "":
		return errors.New("empty token")
	case len(r.Ciphertext) == 0:
		return errors.New("empty ciphertext")
	case r.Created.IsZero():
		return errors.New("zero created time")
	}
	return nil
}

// normalize returns r as the table keeps it: times at millisecond precision
// in UTC, nil for an empty fingerprint, and slices of its own so that the
// outcome never aliases the caller's record.
func normalize(r vault.Record) vault.Record {
	r.Ciphertext = bytes.Clone(r.Ciphertext)
	if len(r.Fingerprint) == 0 {
		r.Fingerprint = nil
	} else {
		r.Fingerprint = bytes.Clone(r.Fingerprint)
	}
	r.Created, r.Expires = ms(r.Created), ms(r.Expires)
	r.Version = max(r.Version, vault.RecordV1)
	r.Policy.Routes = slices.Clone(r.Policy.Routes)
	r.Policy.Until = ms(r.Policy.Until)
	return r
}

// lockOrder returns the order in which Insert sends rows. Two concurrent
// calls inserting the same new fingerprints in opposite orders would each
// wait on the other's row and deadlock (PostgreSQL breaks that after
// deadlock_timeout, a second by default, and retry repeats the call).
// Sending rows sorted by fingerprint makes every caller take the index
// entries in the same order, so they queue instead.
//
// Sorting keeps the outcomes of the call's own order when its tokens are all
// distinct: rows with one fingerprint keep their relative order (the sort is
// stable) and rows with different fingerprints and tokens cannot affect one
// another. When tokens repeat within the call (a rare random clash), the
// call's order is kept, so the earlier record wins the token.
func lockOrder(rows []vault.Record) []int {
	order := make([]int, len(rows))
	seen := make(map[string]bool, len(rows))
	distinct := true
	for i, r := range rows {
		order[i] = i
		if seen[r.Token] {
			distinct = false
		}
		seen[r.Token] = true
	}
	if distinct {
		slices.SortStableFunc(order, func(a, b int) int {
			return bytes.Compare(rows[a].Fingerprint, rows[b].Fingerprint)
		})
	}
	return order
}

// Get returns the record for token or [vault.ErrNotFound].
func (s *Store) Get(ctx context.Context, token string) (vault.Record, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return vault.Record{}, err
	}
	defer cancel()
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.q.getToken, token))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return vault.Record{}, vault.ErrNotFound
	case err != nil:
		return vault.Record{}, s.fail(ctx, "get", err)
	}
	return rec, nil
}

// Find returns the record with fingerprint or [vault.ErrNotFound].
func (s *Store) Find(ctx context.Context, fingerprint []byte) (vault.Record, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return vault.Record{}, err
	}
	defer cancel()
	if len(fingerprint) == 0 {
		return vault.Record{}, vault.ErrNotFound // unique records are not indexed
	}
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.q.findFingerprint, fingerprint))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return vault.Record{}, vault.ErrNotFound
	case err != nil:
		return vault.Record{}, s.fail(ctx, "find", err)
	}
	return rec, nil
}

// Delete removes the record for token, and with it its fingerprint, or
// returns [vault.ErrNotFound].
func (s *Store) Delete(ctx context.Context, token string) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	tag, err := s.pool.Exec(ctx, s.q.deleteToken, token)
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrNotFound
	}
	return nil
}

// scanRecord reads one row of policyColumns.
func scanRecord(row pgx.Row) (vault.Record, error) {
	var (
		r       vault.Record
		keyID   int64
		created time.Time
		expires *time.Time
		format  int16
		version int16
		policy  []byte
	)
	if err := row.Scan(&r.Token, &keyID, &r.Ciphertext, &r.Fingerprint, &created, &expires, &format, &version, &policy); err != nil {
		return vault.Record{}, err
	}
	if keyID < 0 || keyID > math.MaxUint32 || format < 0 || format > math.MaxUint8 ||
		version < vault.RecordV1 || version > vault.RecordV3 {
		return vault.Record{}, fmt.Errorf("%w: key id %d, format %d, version %d", errCorrupt, keyID, format, version)
	}
	if version >= vault.RecordV3 {
		p, err := vault.UnmarshalPolicy(policy)
		if err != nil {
			return vault.Record{}, fmt.Errorf("%w: token %s: %w", errCorrupt, r.Token, err)
		}
		r.Policy = p
	}
	r.KeyID, r.Format, r.Version = uint32(keyID), vault.Format(format), uint8(version)
	r.Created, r.Expires = ms(created), fromNull(expires)
	if len(r.Fingerprint) == 0 {
		r.Fingerprint = nil
	}
	return r, nil
}

// Scan implements [vault.Store]: one indexed range query per page, in the
// token column's collation (which also decides what "after" means, so
// paging is consistent whatever the collation).
func (s *Store) Scan(ctx context.Context, after string, limit int) ([]vault.Record, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	recs := []vault.Record{}
	if limit <= 0 {
		return recs, nil
	}
	rows, err := s.pool.Query(ctx, s.q.scanTokens, after, limit)
	if err != nil {
		return nil, s.fail(ctx, "scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, s.fail(ctx, "scan", err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "scan", err)
	}
	return recs, nil
}

// Reseal implements [vault.Store] as one conditional UPDATE.
func (s *Store) Reseal(ctx context.Context, rec vault.Record, fromKeyID uint32) (bool, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	if len(rec.Ciphertext) == 0 {
		return false, errors.New("postgres reseal: empty ciphertext")
	}
	tag, err := s.pool.Exec(ctx, s.q.resealToken, rec.Token, int64(rec.KeyID), rec.Ciphertext, int64(fromKeyID),
		int16(max(rec.Version, vault.RecordV1)))
	if err != nil {
		return false, s.fail(ctx, "reseal", err)
	}
	return tag.RowsAffected() == 1, nil
}
