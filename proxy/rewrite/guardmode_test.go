package rewrite

import "testing"

// TestGuardModeSpellings: every mode reads back from its config spelling,
// and report, the proxy's rollout mode, is refused by New: a rewriter
// that took it would act as no mode the operator chose.
func TestGuardModeSpellings(t *testing.T) {
	for _, m := range []GuardMode{GuardReject, GuardTokenize, GuardOff, GuardReport} {
		var got GuardMode
		if err := got.UnmarshalText([]byte(m.String())); err != nil || got != m {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", m, got, err, m)
		}
	}
	var m GuardMode
	if err := m.UnmarshalText([]byte("loud")); err == nil {
		t.Error(`UnmarshalText("loud") = nil, want an error`)
	}
	if _, err := New(Config{Guard: GuardReport}); err == nil {
		t.Error("New(Config{Guard: GuardReport}) = nil error, want a refusal")
	}
	for _, m := range []GuardMode{GuardReject, GuardTokenize, GuardOff} {
		if _, err := New(Config{Guard: m}); err != nil {
			t.Errorf("New(Config{Guard: %v}) = %v", m, err)
		}
	}
}
