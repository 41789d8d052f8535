package bbr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
)

// busyTimeoutMS is how long a backup or restore waits for the policy
// server's own transactions (SQLite's busy handler) before giving up.
const busyTimeoutMS = 60_000

// backupSQLite writes a consistent copy of the database with VACUUM INTO:
// one read transaction, so writers carry on (WAL) and the copy is of one
// moment. The copy is made next to the artifact and renamed into place, so
// a failed backup leaves no half-written artifact.
func backupSQLite(ctx context.Context, path, artifact string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", sqliteURI(path, false))
	if err != nil {
		return err
	}
	defer db.Close()
	tmp, err := os.CreateTemp(filepath.Dir(artifact), "."+filepath.Base(artifact)+".")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	_ = tmp.Close()
	// VACUUM INTO wants a file that does not exist (or is empty).
	if err := os.Remove(tmpPath); err != nil {
		return err
	}
	defer os.Remove(tmpPath)
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmpPath); err != nil {
		return err
	}
	if err := checkSQLiteFile(ctx, tmpPath); err != nil {
		return fmt.Errorf("checking the copy: %w", err)
	}
	return os.Rename(tmpPath, artifact)
}

// restoreSQLite checks the artifact, then copies it page by page over the
// live database with SQLite's online backup API, under the database's own
// locks: the policy servers may keep running and see the restored
// contents on their next read. A damaged artifact is refused before the
// database is touched.
func restoreSQLite(ctx context.Context, path, artifact string) error {
	if err := checkSQLiteFile(ctx, artifact); err != nil {
		return fmt.Errorf("artifact %s: %w", artifact, err)
	}
	db, err := sql.Open("sqlite", sqliteURI(path, false))
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		rc, ok := dc.(interface {
			NewRestore(srcURI string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the sqlite driver's connection (%T) has no online backup", dc)
		}
		b, err := rc.NewRestore(sqliteURI(artifact, true))
		if err != nil {
			return err
		}
		_, stepErr := b.Step(-1)
		return errors.Join(stepErr, b.Finish())
	})
}

// checkSQLiteFile opens a database file read-only and runs SQLite's
// integrity check on it.
func checkSQLiteFile(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", sqliteURI(path, true))
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check(1)`).Scan(&result); err != nil {
		return err
	}
	if result != "ok" {
		return fmt.Errorf("integrity check: %s", result)
	}
	return nil
}

func sqliteURI(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS))
	if readOnly {
		q.Set("mode", "ro")
	}
	return "file:" + path + "?" + q.Encode()
}
