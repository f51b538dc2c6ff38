//go:build unix

package vault

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// LockKeyringFile takes an exclusive lock (flock) on path+".lock", a file
// beside the keyring created with mode 0600 and left in place, waiting up
// to wait for another holder. The keyring itself is replaced by a rename
// on every write, so a lock on it would guard a file no longer there.
// Every "tok keys" command that rewrites a keyring holds this lock from
// its read to its write. The returned func releases it.
func LockKeyringFile(path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock keyring: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock keyring: another tok keys command holds %s.lock (waited %v)", path, wait)
			}
			return nil, fmt.Errorf("lock keyring: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
