// Package e2e holds end-to-end tests of the tok binary: it is built from
// the module root and run as a process, as an operator runs it (the CLI,
// serve with TLS, egress, reload on SIGHUP, backups, key retirement, two
// replicas on one PostgreSQL, the /handle oracle attack with the budgets
// that bound the convergent paths, and card numbers moved in and out with
// tok import and tok export).
package e2e
