package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/vault"
)

// keys runs "keys new" and "keys rotate".
func keys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "tok keys: want new, rotate or retire")
	}
	switch args[0] {
	case "new":
		fs := newFlags("keys new", stderr)
		out := fs.String("o", "", "keyring `FILE` to create")
		if code, ok := parseFlags(fs, args[1:], stderr); !ok {
			return code
		}
		if *out == "" {
			return usageError(stderr, "tok keys new: -o FILE is required")
		}
		// Like the vault's own directory, the keyring's is private (0700).
		if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
			fmt.Fprintln(stderr, "tok keys new:", err)
			return exitFail
		}
		if err := vault.WriteKeyringFile(*out, vault.NewKeyringFile(), false); err != nil {
			fmt.Fprintln(stderr, "tok keys new:", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "wrote keyring %s (mode 0600); keep it out of the vault's backups\n", *out)
		return exitOK
	case "rotate":
		fs := newFlags("keys rotate", stderr)
		path := fs.String("keyring", "", "keyring `FILE` to rotate")
		if code, ok := parseFlags(fs, args[1:], stderr); !ok {
			return code
		}
		if *path == "" {
			return usageError(stderr, "tok keys rotate: -keyring FILE is required")
		}
		v, err := rotate(*path)
		if err != nil {
			fmt.Fprintln(stderr, "tok keys rotate:", err)
			return exitFail
		}
		fmt.Fprintln(stdout, v)
		fmt.Fprintf(stderr, "data key version %d is now primary in %s; send tok SIGHUP (or restart it) to use it\n", v, *path)
		return exitOK
	case "retire":
		return retireCmd(args[1:], stdout, stderr)
	}
	return usageError(stderr, "tok keys: unknown command %q", args[0])
}

// rotate adds a data key version to the keyring file at path and returns it.
// It holds the keyring's lock throughout, so two rotations (or a rotation
// and a retire) cannot both read the same file and each write its own
// version N+1.
func rotate(path string) (uint32, error) {
	unlock, err := vault.LockKeyringFile(path, keyringLockWait)
	if err != nil {
		return 0, err
	}
	defer unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read keyring: %w", err)
	}
	f, err := vault.ParseKeyringFile(b)
	if err != nil {
		return 0, err
	}
	if _, err := vault.NewKeyring(f); err != nil {
		return 0, err // refuse to build on a broken keyring
	}
	v := f.Rotate()
	if err := vault.WriteKeyringFile(path, f, true); err != nil {
		return 0, err
	}
	return v, nil
}

// retireCmd runs "keys retire".
func retireCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keys retire", stderr)
	path := fs.String("keyring", "", "keyring `FILE` to remove the version from")
	ver := fs.Uint("version", 0, "data key `N` to retire")
	admin := fs.String("admin", "http://127.0.0.1:9090", "`URL` of the running tok's admin listener")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *path == "" || *ver == 0 || *ver > math.MaxUint32 {
		return usageError(stderr, "tok keys retire: -keyring FILE and -version N are required")
	}
	if err := retire(*path, uint32(*ver), *admin); err != nil {
		fmt.Fprintln(stderr, "tok keys retire:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "data key version %d removed from %s\n", *ver, *path)
	fmt.Fprintln(stderr, "send tok SIGHUP (or restart it) to load the keyring without it")
	return exitOK
}

// retire removes version v from the keyring file at path after the running
// tok (at admin) confirms that v is not its primary and no record uses it.
func retire(path string, v uint32, admin string) error {
	unlock, err := vault.LockKeyringFile(path, keyringLockWait)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read keyring: %w", err)
	}
	f, err := vault.ParseKeyringFile(b)
	if err != nil {
		return err
	}
	if _, err := vault.NewKeyring(f); err != nil {
		return err
	}
	if _, ok := f.DataKeys[v]; !ok {
		return fmt.Errorf("version %d is not in %s", v, path)
	}
	if f.Primary == v {
		return fmt.Errorf("version %d is the keyring's primary: rotate first (tok keys rotate), SIGHUP tok, then rekey", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // GET /keys scans the vault
	defer cancel()
	body, err := adminCall(ctx, http.MethodGet, admin, "/keys")
	if err != nil {
		return fmt.Errorf("ask the running tok which versions records use (is -admin right?): %w", err)
	}
	var rep proxy.KeysReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("GET /keys: %w", err)
	}
	if rep.Primary == v {
		return fmt.Errorf("version %d is the running tok's primary: rotate first (tok keys rotate), SIGHUP tok, then rekey", v)
	}
	for _, x := range rep.Versions {
		if x.Version == v && x.Records > 0 {
			return fmt.Errorf("%d records still use version %d: rekey them first (POST /rekey on the admin listener, then wait for GET /rekey to say done)", x.Records, v)
		}
	}
	// The vault forgets v's key check value (after counting again), or a
	// keyring without v would be refused as lacking a version records use.
	if _, err := adminCall(ctx, http.MethodPost, admin, "/keys/retire?version="+strconv.FormatUint(uint64(v), 10)); err != nil {
		return err
	}
	delete(f.DataKeys, v)
	return vault.WriteKeyringFile(path, f, true)
}

// adminCall sends method path to the admin listener at admin, with the
// header state-changing admin calls need, and returns the body of a 200.
func adminCall(ctx context.Context, method, admin, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(admin, "/")+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin URL: %w", err)
	}
	req.Header.Set(proxy.AdminHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// keyringLockWait bounds the wait for another "tok keys" on one keyring.
const keyringLockWait = 30 * time.Second
