// Package tokbin builds the tok binary and runs it, or any helper program
// of the examples, as a child process: the one kit that the demo test, the
// end-to-end tests, the crash, damage and load harnesses and the framework
// zoo share.
//
// A [Proc] keeps every line its process writes (in a log file when
// [Cmd.Log] names one), learns tok's listener addresses from its
// "listening" log lines, waits for readiness, and stops with SIGTERM
// before SIGKILL. Children run in their own process group and die with the
// process that started them (Pdeathsig on Linux).
package tokbin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ModulePath is the module the kit builds from.
const ModulePath = "github.com/tokproxy/tok"

// ModuleRoot returns dir or its nearest parent whose go.mod declares
// [ModulePath].
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && modulePath(b) == ModulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no tok module (go.mod of %s) at or above %s", ModulePath, dir)
		}
	}
}

// modulePath returns the module path declared by a go.mod file.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// BuildPackages runs go build for pkgs (relative to the module root, as
// "." for tok itself or "./examples/psp") into dir, and returns the
// binaries' paths in the order of pkgs.
func BuildPackages(ctx context.Context, root, dir string, pkgs ...string) ([]string, error) {
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	bins := make([]string, len(pkgs))
	for i, p := range pkgs {
		name := filepath.Base(p)
		if p == "." {
			name = "tok"
		}
		bins[i] = filepath.Join(dir, name)
	}
	return bins, nil
}

// Build builds tok from the module holding the working directory into dir
// and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		return "", err
	}
	bins, err := BuildPackages(ctx, root, dir, ".")
	if err != nil {
		return "", err
	}
	return bins[0], nil
}

// cached is the binary Cached built for this process.
var cached struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Cached builds tok once per process (a test binary, say) into a
// temporary directory and returns its path; later calls return the same
// binary. [RemoveCached] deletes it.
func Cached(ctx context.Context) (string, error) {
	cached.once.Do(func() {
		if cached.dir, cached.err = os.MkdirTemp("", "tokbin"); cached.err != nil {
			return
		}
		cached.bin, cached.err = Build(ctx, cached.dir)
	})
	return cached.bin, cached.err
}

// RemoveCached deletes what [Cached] built; TestMain calls it after the
// tests ran.
func RemoveCached() {
	if cached.dir != "" {
		os.RemoveAll(cached.dir)
	}
}

// Env returns this process's environment without TOK_ variables (a
// TOK_POSTGRES_URL or TOK_KEYRING in the caller's shell would win over the
// config under test), followed by extra.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOK_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Run runs bin with args in dir, with [Env], and returns its combined
// output; the error carries that output too.
func Run(ctx context.Context, bin, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// NewKeyring writes a fresh keyring to dir/keyring.yaml with bin's
// "keys new" and returns its path.
func NewKeyring(ctx context.Context, bin, dir string) (string, error) {
	keyring := filepath.Join(dir, "keyring.yaml")
	if _, err := Run(ctx, bin, dir, "keys", "new", "-o", keyring); err != nil {
		return "", err
	}
	return keyring, nil
}
