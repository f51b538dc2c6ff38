// Package zoo proves tok against the parsers of real frameworks.
//
// Recording apps in Flask, Express, PHP (php -S with a router script, and
// a file-routed docroot), Sinatra on Puma, and Go net/http (method patterns,
// and the method-less idiom) answer every request with everything their
// framework parsed from it. zoo_test.go starts each app whose runtime is
// installed, a tok in front of each (tok.yaml), and sends every case of the
// attack corpus (corpus/<class>/<name>.http, raw request bytes) through tok
// over raw TCP; it fails if an app's answer holds a card number of the
// corpus, except for the cases known_gaps.txt lists, which it reports.
//
// The generated part of the corpus comes from corpus_gen_test.go:
//
//	go generate ./examples/zoo
//
// .ci/run installs the runtimes (Debian packages, and Express from npm).
package zoo

//go:generate go test -run TestCorpusGenerated -update .
