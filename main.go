// Command tok is a sidecar reverse proxy that tokenizes payment card
// numbers before they reach the merchant app. See README.md.
//
// Usage:
//
//	tok [serve] [-config FILE] [-init-vault]  run (default config: ./tok.yaml if present, else demo defaults)
//	tok check -config FILE         validate a config file, listing every problem
//	tok keys new -o FILE           write a fresh keyring (mode 0600)
//	tok keys rotate -keyring FILE  add a data key version and make it primary
//	tok keys retire -keyring FILE -version N [-admin URL]  remove a version no record uses
//	tok secret hash                read a client secret on stdin, print its bcrypt hash
//	tok audit verify [-keyring FILE] FILE  check the audit log's keyed chain
//	tok vault check|recover|restore [-config FILE]  the embedded vault's files: see README, Operations
//	tok version                    print the version
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/memory"
	"github.com/tokproxy/tok/vault/postgres"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version or VCS revision from the build info is used.
var version = ""

// defaultConfigFile is read by serve and check when -config is not given.
const defaultConfigFile = "tok.yaml"

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // a runtime error, or problems found by check
	exitUsage = 2 // unknown subcommand or flag
)

const usage = `usage:
  tok [serve] [-config FILE] [-init-vault]
                                 run tok (default config: ./tok.yaml if present,
                                 else the embedded defaults with demo keys in ./data);
                                 -init-vault creates a new empty vault even where an
                                 older one left files (they are moved aside)
  tok check [-config FILE]       validate a config file and list every problem
  tok keys new -o FILE           write a fresh keyring (mode 0600; never overwrites)
  tok keys rotate -keyring FILE  add a data key version and make it primary
  tok keys retire -keyring FILE -version N [-admin URL]
                                 remove data key version N once no record uses it
                                 (asks the running tok's admin listener, default
                                 http://127.0.0.1:9090; rekey first: POST /rekey)
  tok secret hash                read a client secret on stdin, print its bcrypt hash
  tok ca new -o DIR              write tok's egress CA (egress-ca.crt, egress-ca.key mode
                                 0600; never overwrites) for the forward-proxy mode:
                                 install egress-ca.crt in the app's trust store
  tok audit verify [-keyring FILE] [-allow-unkeyed] FILE
                                 check the audit log's keyed chain (needs the keyring:
                                 -keyring, TOK_KEYRING or the config's); names the
                                 first broken line, and lists disk outages tok sealed
  tok vault check [-config FILE]  full check of the embedded vault (tok stopped):
                                 bbolt's own check, every record decrypted, the log
  tok vault recover [-config FILE] [-salvage]
                                 say what a damaged write-ahead log still holds;
                                 -salvage writes it into the vault, old log moved aside
  tok vault restore [-config FILE] [-discard-log] BACKUP
                                 put a GET /backup snapshot in place (tok stopped); the
                                 write-ahead log is replayed onto it unless -discard-log
  tok version                    print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line to its subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "keys":
		return keys(args, stdout, stderr)
	case "secret":
		return secret(args, stdin, stdout, stderr)
	case "ca":
		return caCommand(args, stdout, stderr)
	case "audit":
		return audit(args, stdout, stderr)
	case "vault":
		return vaultCmd(args, stdout, stderr)
	case "version":
		if code, ok := parseFlags(newFlags("version", stderr), args, stderr); !ok {
			return code
		}
		fmt.Fprintln(stdout, "tok", buildVersion())
		return exitOK
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "tok: unknown command %q\n%s", cmd, usage)
	return exitUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tok "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

// parseFlags parses args into fs and refuses positional arguments. If it
// returns ok false, the caller exits with code.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false // flag has printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n%s", fs.Name(), fs.Arg(0), usage)
		return exitUsage, false
	}
	return exitOK, true
}

func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}

// check validates a config file and prints every problem with its line.
func check(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	path := fs.String("config", defaultConfigFile, "config `FILE` to validate")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		for _, p := range cerr.Problems {
			fmt.Fprintln(stdout, p)
		}
		fmt.Fprintf(stdout, "%s: %d problem(s)\n", *path, len(cerr.Problems))
		return exitFail
	case err != nil:
		fmt.Fprintln(stderr, "tok check:", err)
		return exitFail
	}
	// The file is valid; secrets it names come from the environment, which
	// may be another one where tok will run: warn, do not fail.
	warnings := append(cfg.Warnings(), unsetSecrets(cfg, os.Getenv)...)
	if os.Getenv(config.EnvKeyring) == "" {
		// tok serve warns of the same when it loads the keyring.
		if p := config.KeyringModeProblem(cfg.Vault.Keyring); p != "" {
			warnings = append(warnings, p)
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *path, w)
	}
	fmt.Fprintln(stdout, *path+": ok")
	return exitOK
}

// unsetSecrets names the env:NAME references of cfg that getenv leaves
// empty: tok serve refuses to start without them.
func unsetSecrets(cfg *config.Config, getenv func(string) string) []string {
	var out []string
	for i, r := range cfg.Egress {
		refs := []string{r.EgressKey}
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			refs = append(refs, r.Headers[k])
		}
		for _, ref := range refs {
			names, _ := config.EnvRefs(ref) // Parse has validated them
			for _, name := range names {
				if getenv(name) == "" {
					out = append(out, fmt.Sprintf("egress[%d] (%s) reads %s from the environment, and it is not set here: tok serve will refuse to start without it", i, r.Name, name))
				}
			}
		}
	}
	return out
}

// caCommand runs "ca new": tok's own CA for the egress forward-proxy mode.
func caCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprintf(stderr, "tok ca: want new\n%s", usage)
		return exitUsage
	}
	fs := newFlags("ca new", stderr)
	dir := fs.String("o", "", "`DIR` to write egress-ca.crt and egress-ca.key to")
	if code, ok := parseFlags(fs, args[1:], stderr); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintf(stderr, "tok ca new: -o DIR is required\n%s", usage)
		return exitUsage
	}
	certPEM, keyPEM, err := proxy.NewForwardCA()
	if err == nil {
		err = os.MkdirAll(*dir, 0o700)
	}
	crt, key := filepath.Join(*dir, "egress-ca.crt"), filepath.Join(*dir, "egress-ca.key")
	if err == nil {
		err = writeNew(key, keyPEM, 0o600)
	}
	if err == nil {
		if err = writeNew(crt, certPEM, 0o644); err != nil {
			os.Remove(key)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "tok ca new:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s (install it in the app's trust store) and %s (keep it private); set tls.egress_ca to them\n", crt, key)
	return exitOK
}

// writeNew writes data to a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// keys runs "keys new" and "keys rotate".
func keys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "tok keys: want new, rotate or retire\n%s", usage)
		return exitUsage
	}
	switch args[0] {
	case "new":
		fs := newFlags("keys new", stderr)
		out := fs.String("o", "", "keyring `FILE` to create")
		if code, ok := parseFlags(fs, args[1:], stderr); !ok {
			return code
		}
		if *out == "" {
			fmt.Fprintf(stderr, "tok keys new: -o FILE is required\n%s", usage)
			return exitUsage
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
			fmt.Fprintf(stderr, "tok keys rotate: -keyring FILE is required\n%s", usage)
			return exitUsage
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
	fmt.Fprintf(stderr, "tok keys: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// rotate adds a data key version to the keyring file at path and returns it.
// It holds the keyring's lock throughout, so two rotations (or a rotation
// and a retire) cannot both read the same file and each write its own
// version N+1 (issue 19).
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
		fmt.Fprintf(stderr, "tok keys retire: -keyring FILE and -version N are required\n%s", usage)
		return exitUsage
	}
	if err := retire(*path, uint32(*ver), *admin); err != nil {
		fmt.Fprintln(stderr, "tok keys retire:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "data key version %d removed from %s\n", *ver, *path)
	fmt.Fprintln(stderr, "send tok SIGHUP (or restart it) to load the keyring without it")
	return exitOK
}

// keysReport is the JSON of the admin listener's GET /keys.
type keysReport struct {
	Primary  uint32 `json:"primary"`
	Versions []struct {
		Version uint32 `json:"version"`
		Records int    `json:"records"`
	} `json:"versions"`
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
	var rep keysReport
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

// maxSecret is bcrypt's input limit: longer secrets would be refused.
const maxSecret = 72

// secret runs "secret hash": one line on stdin, its bcrypt hash on stdout.
func secret(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "hash" {
		fmt.Fprintf(stderr, "tok secret: want hash\n%s", usage)
		return exitUsage
	}
	if code, ok := parseFlags(newFlags("secret hash", stderr), args[1:], stderr); !ok {
		return code
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "client secret (one line): ")
		}
	}
	r := bufio.NewReader(io.LimitReader(stdin, 4096))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "tok secret hash: read stdin:", err)
		return exitFail
	}
	s := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case s == "":
		fmt.Fprintln(stderr, "tok secret hash: empty secret on stdin; refusing")
		return exitFail
	case len(s) > maxSecret:
		fmt.Fprintf(stderr, "tok secret hash: secret longer than %d bytes (bcrypt's limit)\n", maxSecret)
		return exitFail
	}
	if rest, _ := r.Peek(1); len(rest) > 0 {
		fmt.Fprintln(stderr, "tok secret hash: more than one line on stdin; give the secret alone")
		return exitFail
	}
	h, err := bcrypt.GenerateFromPassword([]byte(s), config.BcryptCost)
	if err != nil {
		fmt.Fprintln(stderr, "tok secret hash:", err)
		return exitFail
	}
	fmt.Fprintln(stdout, string(h))
	return exitOK
}

// audit is "tok audit verify [-keyring FILE] [-allow-unkeyed] FILE": check
// the audit log's keyed chain. The audit key is derived from the keyring:
// -keyring, else TOK_KEYRING, else the keyring -config names.
func audit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintf(stderr, "tok audit: want verify FILE\n%s", usage)
		return exitUsage
	}
	fs := newFlags("audit verify", stderr)
	keyringPath := fs.String("keyring", "", "keyring `FILE` the audit key is derived from (default: TOK_KEYRING, else the config's)")
	cfgPath := fs.String("config", "", "config `FILE` naming the keyring (default ./tok.yaml if present)")
	allowUnkeyed := fs.Bool("allow-unkeyed", false, "accept unkeyed lines (written before the chain was keyed) at the start of the log")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "tok audit verify: want one FILE\n%s", usage)
		return exitUsage
	}
	file := fs.Arg(0)
	key, err := auditKey(*keyringPath, *cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "tok audit verify: the audit chain is keyed; give the keyring with -keyring FILE (or TOK_KEYRING, or -config):", err)
		return exitFail
	}
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(stderr, "tok audit verify:", err)
		return exitFail
	}
	defer f.Close()
	rep, err := proxy.VerifyAudit(f, key, *allowUnkeyed)
	if err != nil {
		fmt.Fprintf(stdout, "%s: %v (%d lines before it verify)\n", file, err, rep.Lines)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: ok, %d lines, keyed chain intact; last seq %d, head %s\n", file, rep.Lines, rep.LastSeq, rep.Head)
	for _, g := range rep.Gaps {
		// An outage of the log's disk, sealed by tok: not tampering, but
		// events may be missing (issue 13).
		fmt.Fprintf(stdout, "%s: outage sealed at line %d: since %s, %d events not written, %d torn line(s) (%d bytes) sealed; cause: %s\n",
			file, g.Line, g.Since.Format(time.RFC3339), g.Lost, g.TornLines, g.TornBytes, cmp.Or(g.Cause, "unknown (found at start)"))
	}
	if rep.TornTail > 0 {
		fmt.Fprintf(stdout, "%s: warning: the log ends in a write cut short (%d bytes; a full disk or a crash): tok seals it at its next start or write\n", file, rep.TornTail)
	}
	if rep.Unkeyed > 0 {
		fmt.Fprintf(stdout, "%s: warning: the first %d lines are unkeyed (written before tok keyed its audit chain): whoever could write the file could have rewritten them\n", file, rep.Unkeyed)
	}
	fmt.Fprintln(stdout, "lines cut from the end are not detected here: compare the last seq with the tok_audit_seq metric's history")
	return exitOK
}

// auditKey loads the keyring for "audit verify" and derives the audit key.
func auditKey(keyringPath, cfgPath string) ([]byte, error) {
	var kf vault.KeyringFile
	switch {
	case keyringPath != "":
		b, err := os.ReadFile(keyringPath)
		if err != nil {
			return nil, fmt.Errorf("read keyring: %w", err)
		}
		if kf, err = vault.ParseKeyringFile(b); err != nil {
			return nil, err
		}
	default:
		if cfgPath == "" {
			cfgPath = defaultConfigFile
		}
		cfg := &config.Config{}
		if _, err := os.Stat(cfgPath); err == nil || os.Getenv(config.EnvKeyring) == "" {
			var lerr error
			if cfg, lerr = config.Load(cfgPath); lerr != nil {
				return nil, lerr
			}
		}
		var err error
		if kf, _, err = cfg.LoadKeyring(os.Getenv); err != nil {
			return nil, err
		}
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		return nil, err
	}
	return proxy.AuditKey(keys), nil
}

// serve runs tok until the first SIGTERM or SIGINT, then drains; a second
// signal exits at once.
func serve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config `FILE` (default ./tok.yaml if present, else demo defaults)")
	initVault := fs.Bool("init-vault", false, "create a new, empty vault even though an older vault left files beside it (they are moved aside, never deleted)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	slog.SetDefault(log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Info("signal received: draining; a second signal exits at once", "signal", s.String())
		cancel()
		s = <-sigs
		log.Error("second signal: exiting without draining", "signal", s.String())
		os.Exit(exitFail)
	}()

	if err := runServer(ctx, *path, *initVault, log, stdout); err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				log.Error("config problem", "problem", p.Error())
			}
			err = fmt.Errorf("%d config problem(s); run \"tok check\"", len(cerr.Problems))
		}
		log.Error("tok stopped", "err", err)
		return exitFail
	}
	log.Info("tok stopped")
	return exitOK
}

// runServer wires config, keys, stores, audit log and proxy, and serves
// until ctx is done. It closes what it opened.
func runServer(ctx context.Context, path string, initVault bool, log *slog.Logger, stdout io.Writer) (err error) {
	cfg, err := loadConfig(path, log)
	if err != nil {
		return err
	}
	for _, o := range cfg.ApplyEnv(os.Getenv) {
		log.Info("environment override", "override", o)
	}
	setMemoryLimit(ctx, cfg.Limits.Memory, log)
	kf, source, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}
	keyring, err := vault.NewKeyring(kf)
	if err != nil {
		return err
	}
	log.Info("keyring loaded", "source", source, "primary", keyring.Primary(), "versions", keyring.Versions())
	if source == cfg.Vault.Keyring {
		if problem := config.KeyringModeProblem(source); problem != "" {
			log.Warn(problem)
		}
	}

	// The store is opened before the server that owns the metrics, so its
	// commit hook finds the server through a pointer set once it exists.
	var srvRef atomic.Pointer[proxy.Server]
	onCommit := func(d time.Duration, ops int) {
		if s := srvRef.Load(); s != nil {
			s.ObserveCommit(d, ops)
		}
	}
	store, err := openStore(ctx, cfg, initVault, onCommit, log)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close store", store)
	mem := memory.New(memory.WithMaxRecords(cfg.Limits.VolatileRecords))
	defer closeWith(&err, "close memory store", mem)
	vopts := []vault.Option{vault.WithVolatile(mem)}
	var quota *vault.Quota
	if sizer, ok := store.(vault.Sizer); ok && cfg.Limits.VaultBytes > 0 {
		quota = vault.NewQuota(int64(cfg.Limits.VaultBytes), sizer.Size)
		vopts = append(vopts, vault.WithQuota(quota))
	}
	v, err := vault.New(store, keyring, vopts...)
	if err != nil {
		return err
	}
	// Never start on a keyring that does not open this vault (issue 19,
	// issue 13; invariant 6): a key check value per key is recorded in the
	// vault, and a mismatch or a missing version refuses to start.
	if err := v.VerifyKeyring(ctx); err != nil {
		return fmt.Errorf("keyring %s does not match the vault; tok refuses to start (see README, Operations: key check values): %w", source, err)
	}
	log.Info("keyring matches the vault's key check values", "versions", keyring.Versions())

	audit, closeAudit, auditTail, err := openAudit(cfg.Audit.Path, stdout)
	if err != nil {
		return err
	}
	defer closeWith(&err, "close audit log", closeAudit)

	opts, err := proxyOptions(cfg, v, store, audit, log)
	if err != nil {
		return err
	}
	opts.AuditTail = auditTail
	opts.Volatile = mem
	opts.Quota = quota
	srv, err := proxy.New(opts)
	if err != nil {
		return err
	}
	srvRef.Store(srv)

	// SIGHUP reloads routes, clients and the keyring; the stores, the audit
	// log and the listeners stay. A config that does not validate is logged
	// and the running one kept.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reload(path, cfg, store, mem, audit, srv, log); err != nil {
					log.Error("reload refused; the running configuration stays", "err", err)
				}
			}
		}
	}()
	return srv.Run(ctx)
}

// reload re-reads the config file and keyring and hands the result to the
// running server. The store is fixed for the life of the process.
func reload(path string, running *config.Config, store, mem vault.Store, audit io.Writer, srv *proxy.Server, log *slog.Logger) error {
	cfg, err := loadConfig(path, log)
	if err != nil {
		return err
	}
	cfg.ApplyEnv(os.Getenv)
	if cfg.Vault.Bolt != running.Vault.Bolt || cfg.Vault.Postgres != running.Vault.Postgres || cfg.Audit.Path != running.Audit.Path {
		return errors.New("the vault store or audit path changed: restart tok to apply that")
	}
	kf, _, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}
	keyring, err := vault.NewKeyring(kf)
	if err != nil {
		return err
	}
	keyring.CarrySealed(srv.Keyring()) // per-version encryption counts survive reloads
	v, err := vault.New(store, keyring, vault.WithVolatile(mem))
	if err != nil {
		return err
	}
	// A keyring whose key for a recorded version differs (a rotation of a
	// stale copy), or that lacks a recorded version, would make records
	// fail to open: refuse it, keep the running one (issue 19).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.VerifyKeyring(ctx); err != nil {
		return err
	}
	opts, err := proxyOptions(cfg, v, store, audit, log)
	if err != nil {
		return err
	}
	if err := srv.Reload(opts); err != nil {
		return err
	}
	setMemoryLimit(context.Background(), cfg.Limits.Memory, log) // the limiter runs already
	log.Info("keyring reloaded", "primary", keyring.Primary(), "versions", keyring.Versions())
	return nil
}

// memoryLimit is limits.memory of the config in force, for
// proxy.MemoryLimiter.
var memoryLimit atomic.Int64

// setMemoryLimit makes limits.memory the Go runtime's soft memory limit
// (see proxy.MemoryLimiter), unless GOMEMLIMIT in the environment has set
// one: the runtime read it, and it stays as given.
func setMemoryLimit(ctx context.Context, limit config.Size, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory soft limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if memoryLimit.Swap(int64(limit)) == 0 {
		debug.SetMemoryLimit(int64(limit))
		go proxy.MemoryLimiter(ctx, memoryLimit.Load, log)
	}
	log.Info("memory soft limit", "limit", limit.String())
}

// loadConfig reads the config file at path; with no path, ./tok.yaml if it
// exists, else the embedded defaults with demo keys (config.Bootstrap).
func loadConfig(path string, log *slog.Logger) (*config.Config, error) {
	if path == "" {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			path = defaultConfigFile
		}
	}
	if path != "" {
		cfg, err := config.Load(path)
		if err == nil {
			log.Info("config loaded", "file", path)
			for _, w := range cfg.Warnings() {
				log.Warn("config: " + w)
			}
		}
		return cfg, err
	}
	cfg, demo, err := config.Bootstrap(config.DefaultDataDir, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("demo setup: %w", err)
	}
	// One line says where the demo secret is; the secret itself is only in
	// that file (security invariant 1).
	log.Warn("NO CONFIG FILE: running on DEMO KEYS with a demo client; not for production (write tok.yaml, see \"tok check\")",
		"demo_client", config.DemoClient, "secret_file", demo.SecretFile, "keyring", demo.Keyring,
		"keyring_created", demo.KeyringCreated, "secret_created", demo.SecretCreated)
	return cfg, nil
}

// openAudit opens the audit log for appending (mode 0600), locked against
// a second tok (issue 13); "-" is stdout. It also returns the file's tail,
// so the keyed chain continues and a write cut short is sealed.
func openAudit(path string, stdout io.Writer) (io.Writer, io.Closer, proxy.AuditTail, error) {
	if path == "-" {
		return stdout, nopCloser{}, proxy.AuditTail{}, nil
	}
	f, err := proxy.OpenAuditFile(path)
	if err != nil {
		return nil, nil, proxy.AuditTail{}, err
	}
	return f, f, f.Tail, nil
}

// proxyOptions maps the config onto proxy.Options.
func proxyOptions(cfg *config.Config, v *vault.Vault, store vault.Store, audit io.Writer, log *slog.Logger) (proxy.Options, error) {
	clients := make([]proxy.Client, len(cfg.Clients))
	for i, c := range cfg.Clients {
		clients[i] = proxy.Client{Name: c.Name, SecretHash: c.SecretHash, Reveal: c.Reveal, Delete: c.Delete,
			HandleBudget: c.HandleBudget, RevealBudget: c.RevealBudget}
	}
	routes := make([]proxy.Route, len(cfg.Inbound))
	for i, r := range cfg.Inbound {
		routes[i] = proxy.Route{Name: r.Name, Method: r.Match.Method, Path: r.Match.Path, Uninspected: !r.Inspected()}
		for _, f := range r.Fields {
			spec, err := f.Spec()
			if err != nil {
				return proxy.Options{}, fmt.Errorf("inbound route %s, field %s: %w", r.Name, f.Selector(), err)
			}
			routes[i].Fields = append(routes[i].Fields, proxy.RouteField{JSON: f.JSON, Form: f.Form, Spec: spec, Bind: f.Bind})
		}
	}
	var upstream *url.URL
	if cfg.Upstream != "" {
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("upstream: %w", err)
		}
		upstream = u
	}
	mode, ok := rewrite.ParseGuardMode(cfg.Guard.Mode)
	if !ok {
		return proxy.Options{}, fmt.Errorf("guard mode %q", cfg.Guard.Mode)
	}
	egress, err := egressRoutes(cfg.Egress, os.Getenv)
	if err != nil {
		return proxy.Options{}, err
	}
	var forwardCA *proxy.ForwardCA
	if c := cfg.TLS.EgressCA; c != nil {
		crt, err := os.ReadFile(c.CertFile)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
		key, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
		if forwardCA, err = proxy.LoadForwardCA(crt, key); err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
	}
	return proxy.Options{
		Vault:                  v,
		Store:                  store,
		Listen:                 proxy.Listen{Public: cfg.Listen.Public, Auth: cfg.Listen.Auth, Admin: cfg.Listen.Admin, Egress: cfg.Listen.Egress},
		Clients:                clients,
		MaxBody:                int64(cfg.Limits.MaxBody),
		Audit:                  audit,
		Logger:                 log,
		SessionIdle:            cfg.Session.Idle,
		SessionMax:             cfg.Session.Max,
		LockoutThreshold:       cfg.Lockout.Threshold,
		LockoutDuration:        cfg.Lockout.Duration,
		CommitTimeout:          cfg.Vault.CommitTimeout,
		LockoutClientThreshold: cfg.Lockout.ClientThreshold,
		LoginSourceRate:        cfg.Lockout.SourceRate,
		Upstream:               upstream,
		Routes:                 routes,
		Guard:                  proxy.GuardOptions{Mode: mode, Ignore: cfg.Guard.Ignore, IgnoreHeaders: cfg.Guard.IgnoreHeaders},
		MaxDepth:               cfg.Limits.MaxDepth,
		MaxInFlight:            cfg.Limits.MaxInFlight,
		Egress:                 egress,
		TLS:                    listenerTLS(cfg.TLS),
		ForwardCA:              forwardCA,
		Backup:                 backupOf(store),
		Budgets: proxy.Budgets{Window: cfg.Budgets.Window, HandleAnonymous: cfg.Budgets.HandleAnonymous,
			HandleClient: cfg.Budgets.HandleClient, Inbound: cfg.Budgets.Inbound, Reveal: cfg.Budgets.Reveal,
			TrustedProxies: cfg.Budgets.Sources()},
	}, nil
}

// backupOf is the store's online snapshot for GET /backup, when it has one
// (bbolt does; PostgreSQL has its own backup tools).
func backupOf(store vault.Store) func(context.Context, io.Writer) (int64, error) {
	if b, ok := store.(interface {
		Backup(context.Context, io.Writer) (int64, error)
	}); ok {
		return b.Backup
	}
	return nil
}

// listenerTLS maps the config's tls section onto proxy listener names.
func listenerTLS(t config.TLS) map[string]proxy.ListenerTLS {
	out := map[string]proxy.ListenerTLS{}
	for name, lt := range map[string]*config.ListenerTLS{
		proxy.ListenerPublic: t.Public, proxy.ListenerAuth: t.Auth, proxy.ListenerAdmin: t.Admin, proxy.ListenerEgress: t.Egress,
	} {
		if lt != nil {
			out[name] = proxy.ListenerTLS{CertFile: lt.CertFile, KeyFile: lt.KeyFile, ClientCAFile: lt.ClientCAFile, ClientAuth: lt.ClientAuth}
		}
	}
	return out
}

// egressRoutes maps the config's egress routes onto proxy.EgressRoute,
// reading "env:NAME" secrets from the environment and CA bundles from disk.
// Secrets never appear in an error.
func egressRoutes(routes []config.EgressRoute, getenv func(string) string) ([]proxy.EgressRoute, error) {
	out := make([]proxy.EgressRoute, len(routes))
	for i, r := range routes {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("egress route %s: upstream: %w", r.Name, err)
		}
		er := proxy.EgressRoute{Name: r.Name, Method: r.Match.Method, Path: r.Match.Path, Host: r.Match.Host, Upstream: u,
			StripPrefix: r.StripPrefix, Headers: map[string]string{},
			ErrorFormat: r.ErrorFormat, Timeout: r.Timeout, ResponseIgnore: r.ResponseIgnore,
			RefuseUnrevealed: r.UnrevealedTokens == config.UnrevealedRefuse, EgressKeyHeader: r.EgressKeyHeader}
		if rc := r.ResponseCards; rc != nil {
			if er.ResponseCards, err = rewrite.NewCardSet(rc.Networks, rc.Prefixes, rc.Lengths); err != nil {
				return nil, fmt.Errorf("egress route %s: %w", r.Name, err)
			}
		}
		for _, f := range r.Fields {
			er.Fields = append(er.Fields, proxy.RouteField{JSON: f.JSON, Form: f.Form, XML: f.XML, Bind: f.Bind})
		}
		for k, v := range r.Headers {
			if er.Headers[k], err = config.Resolve(v, getenv); err != nil {
				return nil, fmt.Errorf("egress route %s: header %s: %w", r.Name, k, err)
			}
		}
		if r.EgressKey != "" {
			if er.EgressKey, err = config.Resolve(r.EgressKey, getenv); err != nil {
				return nil, fmt.Errorf("egress route %s: egress_key: %w", r.Name, err)
			}
		}
		if r.CAFile != "" {
			pem, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("egress route %s: ca_file: %w", r.Name, err)
			}
			er.RootCAs = x509.NewCertPool()
			if !er.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("egress route %s: ca_file %s holds no PEM certificate", r.Name, r.CAFile)
			}
		}
		out[i] = er
	}
	return out, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// vaultCmd runs "vault check", "vault recover" and "vault restore" on the
// embedded (bolt) vault the config names. tok must be stopped: they need
// the vault file to themselves.
func vaultCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "tok vault: want check, recover or restore\n%s", usage)
		return exitUsage
	}
	fs := newFlags("vault "+args[0], stderr)
	cfgPath := fs.String("config", "", "config `FILE` naming the vault (default ./tok.yaml if present, else demo defaults)")
	salvage := fs.Bool("salvage", false, "recover: write what the log still holds into the vault and move the damaged log aside")
	discardLog := fs.Bool("discard-log", false, "restore: move the write-ahead log aside instead of replaying it onto the backup")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	wantArgs := 0
	if args[0] == "restore" {
		wantArgs = 1
	}
	if fs.NArg() != wantArgs {
		fmt.Fprintf(stderr, "tok vault %s: wrong arguments\n%s", args[0], usage)
		return exitUsage
	}
	cfg, err := loadConfig(*cfgPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "tok vault:", err)
		return exitFail
	}
	cfg.ApplyEnv(os.Getenv)
	if cfg.Vault.Postgres != "" {
		fmt.Fprintln(stderr, "tok vault: the vault is on PostgreSQL: use PostgreSQL's own tools (pg_dump, pg_amcheck)")
		return exitFail
	}
	path := cfg.Vault.Bolt
	switch args[0] {
	case "check":
		return vaultCheck(cfg, path, stdout, stderr)
	case "recover":
		return vaultRecover(path, *salvage, stdout, stderr)
	case "restore":
		rep, err := bolt.Restore(fs.Arg(0), path, *discardLog)
		if err != nil {
			fmt.Fprintln(stderr, "tok vault restore:", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "%s: restored vault %s (%d records) from %s\n", path, rep.VaultID, rep.Records, fs.Arg(0))
		for _, p := range rep.MovedAside {
			fmt.Fprintf(stdout, "moved aside: %s\n", p)
		}
		if rep.OtherVault != "" {
			fmt.Fprintf(stdout, "warning: the vault in place was another one (%s): its files are moved aside\n", rep.OtherVault)
		}
		if rep.KeptLog {
			fmt.Fprintln(stdout, "the write-ahead log stays: tok replays the writes it holds onto the backup at its next start (and refuses, naming the gap, if the log does not reach back to the backup: then run tok vault recover)")
		} else {
			fmt.Fprintln(stdout, "tokens issued after the backup was taken are not in it (the log was moved aside)")
		}
		fmt.Fprintln(stdout, "start tok again")
		return exitOK
	}
	fmt.Fprintf(stderr, "tok vault: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// vaultCheck runs the full check: the log's state, bbolt's own consistency
// check and every record decrypted with the keyring.
func vaultCheck(cfg *config.Config, path string, stdout, stderr io.Writer) int {
	kf, _, err := cfg.LoadKeyring(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "tok vault check:", err)
		return exitFail
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		fmt.Fprintln(stderr, "tok vault check:", err)
		return exitFail
	}
	code := vaultRecover(path, false, stdout, stderr)
	start := time.Now()
	var unreadable []string
	n, err := bolt.CheckRecords(path, func(rec vault.Record, err error) error {
		if err == nil {
			_, err = keys.OpenRecord(rec)
		}
		if err != nil {
			// Masked like every token in tok's logs (invariant 1).
			unreadable = append(unreadable, vault.Mask(rec.Token)+" ("+err.Error()+")")
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(stdout, "%s: FAILED: %v\n", path, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: bbolt consistency check ok; %d records, %d unreadable (%v)\n", path, n, len(unreadable), time.Since(start).Round(time.Millisecond))
	for _, u := range unreadable[:min(len(unreadable), 20)] {
		fmt.Fprintf(stdout, "unreadable record: %s\n", u)
	}
	if len(unreadable) > 0 {
		return exitFail
	}
	return code
}

// vaultRecover prints what the vault and its log hold and, with salvage,
// writes what the log still holds into the vault.
func vaultRecover(path string, salvage bool, stdout, stderr io.Writer) int {
	d, err := bolt.Diagnose(path, bolt.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "tok vault recover:", err)
		return exitFail
	}
	if d.FileProblem != "" {
		fmt.Fprintf(stdout, "vault %s: CANNOT BE USED: %s\n", path, d.FileProblem)
		return exitFail
	}
	fmt.Fprintf(stdout, "vault %s: id %s, holds the log up to epoch %d, stopped cleanly: %v\n", path, d.VaultID, d.Epoch, !d.WALOpen)
	for _, sg := range d.Segments {
		state := "ok"
		if sg.Problem != "" {
			state = sg.Problem
		}
		fmt.Fprintf(stdout, "log segment %s: %s; %d valid frames (%d records) not yet in the vault file\n", sg.Path, state, sg.Frames, sg.Records)
	}
	fmt.Fprintf(stdout, "recoverable from the log: %d frames, %d records\n", d.Frames, d.Records)
	for _, l := range d.Damaged {
		fmt.Fprintf(stdout, "LOST: %s\n", l)
	}
	if d.OK() {
		fmt.Fprintln(stdout, "nothing to recover: tok starts on this vault and replays its log")
		return exitOK
	}
	if !salvage {
		fmt.Fprintln(stdout, "run again with -salvage to write the recoverable records into the vault file and move the damaged log aside")
		return exitFail
	}
	sd, err := bolt.Salvage(path, bolt.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "tok vault recover:", err)
		return exitFail
	}
	if sd.Relinked > 0 {
		fmt.Fprintf(stdout, "re-linked %d cards to their tokens (records whose fingerprint entry was lost), so they keep their tokens\n", sd.Relinked)
	}
	fmt.Fprintf(stdout, "salvaged %d records into %s; the damaged log is moved aside (*.damaged-*); start tok again\n", d.Records, path)
	return exitOK
}

// closeWith closes c and, if *err is nil, sets it to the close error.
func closeWith(err *error, what string, c io.Closer) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("%s: %w", what, cerr)
	}
}

// openStore opens the durable store named by the config: bolt or postgres.
// A bolt vault is created only in a directory no older vault left files in
// (its log, its id marker, a non-empty audit log), or with initVault; what
// Open found and replayed is logged (issue 13).
func openStore(ctx context.Context, cfg *config.Config, initVault bool, onCommit func(time.Duration, int), log *slog.Logger) (vault.Store, error) {
	c := cfg.Vault
	var traces []string
	if cfg.Audit.Path != "" && cfg.Audit.Path != "-" {
		traces = append(traces, cfg.Audit.Path)
	}
	if c.Postgres != "" {
		return openPostgres(ctx, c.Postgres, postgres.Options{OnCommit: onCommit, Init: initVault, Traces: traces, Timeout: c.CommitTimeout}, log)
	}
	s, err := bolt.Open(c.Bolt, bolt.Options{OnCommit: onCommit, Init: initVault, Traces: traces, CommitTimeout: c.CommitTimeout})
	if err != nil {
		return nil, err
	}
	rep := s.OpenReport()
	for _, p := range rep.MovedAside {
		log.Warn("file of an older vault moved aside (-init-vault)", "file", p)
	}
	for _, w := range rep.Warnings {
		log.Warn("vault: " + w)
	}
	if rep.Replay.TornFile != "" {
		log.Warn("write-ahead log: torn last frame dropped (a crash in the middle of its write; it was never acknowledged)",
			"file", rep.Replay.TornFile, "offset", rep.Replay.TornOffset, "bytes", rep.Replay.TornBytes, "frames", 1)
	}
	log.Info("vault opened", "store", "bolt", "path", c.Bolt, "vault_id", rep.VaultID, "created", rep.Created, "upgraded", rep.Upgraded,
		"pages", rep.Check.Pages, "check_ms", rep.CheckTime.Milliseconds(),
		"wal_frames_replayed", rep.Replay.Frames, "wal_records_replayed", rep.Replay.Records, "wal_entries_replayed", rep.Replay.Entries)
	return s, nil
}

// openPostgres opens the PostgreSQL store. The URL is never logged: it may
// carry a password.
func openPostgres(ctx context.Context, url string, opts postgres.Options, log *slog.Logger) (vault.Store, error) {
	s, err := postgres.Open(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	log.Info("vault opened", "store", "postgres", "vault_id", s.VaultID(), "created", s.Created())
	return s, nil
}
