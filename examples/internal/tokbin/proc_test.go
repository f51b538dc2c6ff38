package tokbin

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain turns the test binary into a tiny stand-in for tok when
// TOKBIN_FAKE is set: it logs "listening" lines as tok does, serves
// /readyz on its admin listener, and exits on SIGTERM with the code in
// TOKBIN_FAKE ("ignore" ignores SIGTERM).
func TestMain(m *testing.M) {
	if mode := os.Getenv("TOKBIN_FAKE"); mode != "" {
		os.Exit(fake(mode))
	}
	os.Exit(m.Run())
}

func fake(mode string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if mode == "die" {
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"tok stopped","err":"bad config"}`)
		return 1
	}
	for _, name := range []string{"public", "admin"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 3
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/readyz", func(http.ResponseWriter, *http.Request) {})
		go http.Serve(l, mux)
		fmt.Fprintf(os.Stderr, `{"level":"INFO","msg":"listening","listener":%q,"addr":%q}`+"\n", name, l.Addr())
	}
	fmt.Println("stdout line")
	for range term {
		if mode != "ignore" {
			fmt.Fprintln(os.Stderr, `{"level":"INFO","msg":"tok stopped"}`)
			return 0
		}
	}
	return 0
}

func startFake(t *testing.T, mode string) (*Proc, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "fake.log")
	var onLine []string
	p, err := Start(Cmd{Name: "fake", Bin: os.Args[0], Env: Env("TOKBIN_FAKE=" + mode), Log: log,
		OnLine: func(b []byte) { onLine = append(onLine, string(b)) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if got := strings.Join(onLine, "\n"); got != p.Log() {
			t.Errorf("OnLine saw %q, Log() = %q", got, p.Log())
		}
	})
	return p, log
}

func TestStartReadyStop(t *testing.T) {
	p, log := startFake(t, "0")
	ctx := context.Background()
	if _, err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitListening(ctx, "public", "admin"); err != nil {
		t.Fatal(err)
	}
	if p.Addr("public") == "" || p.Addr("public") == p.Addr("admin") {
		t.Errorf("Addr(public) = %q, Addr(admin) = %q, want two addresses", p.Addr("public"), p.Addr("admin"))
	}
	if err := p.Running(); err != nil {
		t.Errorf("Running() = %v while it runs", err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop = %v, want a clean exit", err)
	}
	if p.ExitCode() != 0 || p.Running() == nil {
		t.Errorf("after Stop: ExitCode() = %d, Running() = %v", p.ExitCode(), p.Running())
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"listener":"admin"`, "stdout line", `"msg":"tok stopped"`} {
		if !strings.Contains(string(b), want) || !strings.Contains(p.Log(), want) {
			t.Errorf("log file and Log() lack %q:\n%s", want, b)
		}
	}
}

func TestWaitReadyReportsExit(t *testing.T) {
	p, _ := startFake(t, "die")
	_, err := p.WaitReady(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad config") {
		t.Fatalf("WaitReady = %v, want an error quoting the log", err)
	}
	if p.ExitCode() != 1 {
		t.Errorf("ExitCode() = %d, want 1", p.ExitCode())
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p, _ := startFake(t, "ignore")
	if _, err := p.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(200 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "SIGTERM") {
		t.Fatalf("Stop = %v, want it to say SIGTERM was not enough", err)
	}
	if p.ExitCode() != -1 {
		t.Errorf("ExitCode() = %d, want -1 (killed)", p.ExitCode())
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "main.go")); err != nil {
		t.Errorf("ModuleRoot(.) = %s, which has no main.go", root)
	}
	if _, err := ModuleRoot(t.TempDir()); err == nil {
		t.Error("ModuleRoot(a temp dir) found a module")
	}
}

func TestEnvDropsTOK(t *testing.T) {
	t.Setenv("TOK_KEYRING", "/nowhere")
	env := Env("TOK_EGRESS_KEY=k")
	for _, kv := range env[:len(env)-1] {
		if strings.HasPrefix(kv, "TOK_") {
			t.Errorf("Env() kept %s", kv)
		}
	}
	if env[len(env)-1] != "TOK_EGRESS_KEY=k" {
		t.Errorf("Env(extra) ends with %q", env[len(env)-1])
	}
}
