package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are tok's schema changes, applied in order by [Open]. Entry i
// brings the schema to version i+1. Never edit an entry that has shipped:
// append a new one.
var migrations = []string{
	// 1: tokens, sessions and lockouts.
	//
	// tokens.fingerprint is unique so that replicas racing on one value
	// converge on one token; unique (non-convergent) tokens have a NULL
	// fingerprint, and NULLs are distinct in a unique index (PostgreSQL's
	// default, spelled out as NULLS DISTINCT only since 15, so it is left
	// implicit to keep older servers and compatible databases working).
	// Times are kept at millisecond precision, like every tok store.
	`CREATE TABLE {schema}.tokens (
		token       text        NOT NULL,
		key_id      bigint      NOT NULL,
		ciphertext  bytea       NOT NULL,
		fingerprint bytea,
		created     timestamptz(3) NOT NULL,
		expires     timestamptz(3),
		format      smallint    NOT NULL,
		CONSTRAINT tokens_pkey PRIMARY KEY (token),
		CONSTRAINT tokens_fingerprint_key UNIQUE (fingerprint)
	);
	CREATE TABLE {schema}.sessions (
		key       bytea          NOT NULL,
		id        text           NOT NULL,
		client    text           NOT NULL,
		created   timestamptz(3) NOT NULL,
		last_seen timestamptz(3) NOT NULL,
		CONSTRAINT sessions_pkey PRIMARY KEY (key)
	);
	CREATE TABLE {schema}.lockouts (
		client       text           NOT NULL,
		failures     integer        NOT NULL,
		locked_until timestamptz(3),
		CONSTRAINT lockouts_pkey PRIMARY KEY (client)
	);`,
	// 2: tokens.version is the record version (what the
	// ciphertext's associated data binds; existing rows are version 1), and
	// key_checks holds the key check values that pin a keyring to the vault.
	`ALTER TABLE {schema}.tokens ADD COLUMN version smallint NOT NULL DEFAULT 1;
	CREATE TABLE {schema}.key_checks (
		name  text  NOT NULL,
		value bytea NOT NULL,
		CONSTRAINT key_checks_pkey PRIMARY KEY (name)
	);`,
	// 3: vault_meta holds the vault's id ("vault_id", 16
	// random bytes, written by Open right after the migrations), which
	// tok logs at start so an operator can tell two vaults apart.
	`CREATE TABLE {schema}.vault_meta (
		name  text  NOT NULL,
		value bytea NOT NULL,
		CONSTRAINT vault_meta_pkey PRIMARY KEY (name)
	);`,
	// 4: tokens.policy is the record's reveal policy
	// (vault.MarshalPolicy; NULL for none, as every existing row), and
	// tokens.reveals counts the reveals of a token with a max_reveals
	// policy. The count lives on the row, so deleting the token deletes
	// it, and counting is one conditional UPDATE of that row.
	`ALTER TABLE {schema}.tokens ADD COLUMN policy bytea,
		ADD COLUMN reveals bigint NOT NULL DEFAULT 0;`,
}

// errSchemaNewer: the database was migrated by a newer tok than this one.
var errSchemaNewer = errors.New("schema is newer than this tok")

// migrate brings the schema up to date in one transaction, and gives the
// vault its id if it has none. If the schema holds no vault yet, it calls
// allowCreate first and creates nothing if that fails (a vault
// is created only where no older one left traces). It returns the vault's
// id and whether it created the vault. The transaction
// first takes an advisory lock named after the schema, so replicas starting
// at once queue up: the first applies the migrations, the others then find
// nothing left to do. A failed migration rolls back entirely.
//
// A schema already at the current version is only read, so a role without
// CREATE rights can run tok once the schema exists.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, allowCreate func() error) (id []byte, created bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(schema)); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		if schema != "" {
			var exists bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists)
			if err != nil {
				return fmt.Errorf("look up schema: %w", err)
			}
			if !exists {
				if _, err := tx.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
					return fmt.Errorf("create schema: %w", err)
				}
			}
		}
		table := qualify(schema, `{schema}.tok_migrations`)
		var found *string
		err := tx.QueryRow(ctx, `SELECT to_regclass($1)::text`, table).Scan(&found)
		if err != nil {
			return fmt.Errorf("look up migrations table: %w", err)
		}
		if found == nil {
			_, err := tx.Exec(ctx, `CREATE TABLE `+table+` (
				version integer     PRIMARY KEY,
				applied timestamptz NOT NULL DEFAULT now()
			)`)
			if err != nil {
				return fmt.Errorf("create migrations table: %w", err)
			}
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+table).Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("%w: version %d, this tok knows up to %d", errSchemaNewer, version, len(migrations))
		}
		if version == 0 {
			if err := allowCreate(); err != nil {
				return err
			}
			created = true
		}
		for v := version + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, qualify(schema, migrations[v-1])); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("record schema version %d: %w", v, err)
			}
		}
		fresh := make([]byte, 16)
		rand.Read(fresh)
		if _, err := tx.Exec(ctx, qualify(schema, `INSERT INTO {schema}.vault_meta (name, value) VALUES ('vault_id', $1) ON CONFLICT DO NOTHING`), fresh); err != nil {
			return fmt.Errorf("record the vault id: %w", err)
		}
		return tx.QueryRow(ctx, qualify(schema, `SELECT value FROM {schema}.vault_meta WHERE name = 'vault_id'`)).Scan(&id)
	})
	return id, created, err
}
