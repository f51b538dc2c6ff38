package vault

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Sizer is a store that can say how many bytes it takes on disk (bolt: its
// file and write-ahead log; postgres: its tables and indexes).
type Sizer interface {
	Size(ctx context.Context) (int64, error)
}

// quotaRefresh is how long a measured size is trusted: a measurement is a
// few stat calls (bolt) or one query (postgres), made at most this often,
// by the first writer that finds it stale.
const quotaRefresh = time.Second

// Quota refuses new durable records once the store takes max bytes
// (one client must not fill the disk the vault and the audit log
// live on). Values already tokenized keep their tokens, and reveals go on.
// It is safe for concurrent use.
type Quota struct {
	max   int64
	size  func(context.Context) (int64, error)
	now   func() time.Time
	mu    sync.Mutex // serializes measurements
	last  atomic.Int64
	taken atomic.Int64 // Unix nanoseconds of the last measurement; 0: none
}

// NewQuota returns a quota of max bytes on what size measures.
func NewQuota(max int64, size func(context.Context) (int64, error)) *Quota {
	return &Quota{max: max, size: size, now: time.Now}
}

// Max returns the quota in bytes.
func (q *Quota) Max() int64 { return q.max }

// Last returns the size measured last (0 before the first measurement).
func (q *Quota) Last() int64 { return q.last.Load() }

// check returns ErrVaultFull once the store takes max bytes or more. A
// failed measurement does not refuse: the store's own errors say more.
func (q *Quota) check(ctx context.Context) error {
	now := q.now()
	if t := q.taken.Load(); t == 0 || now.Sub(time.Unix(0, t)) >= quotaRefresh {
		q.mu.Lock()
		if t := q.taken.Load(); t == 0 || now.Sub(time.Unix(0, t)) >= quotaRefresh {
			if n, err := q.size(ctx); err == nil {
				q.last.Store(n)
			}
			q.taken.Store(now.UnixNano())
		}
		q.mu.Unlock()
	}
	if n := q.last.Load(); n >= q.max {
		return fmt.Errorf("%w: %d bytes of %d", ErrVaultFull, n, q.max)
	}
	return nil
}

// WithQuota refuses new durable records past q (nil: no quota).
func WithQuota(q *Quota) Option { return func(v *Vault) { v.quota = q } }
