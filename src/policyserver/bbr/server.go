package bbr

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The command lines below are the SDK's database-backup-restorer's (v1.19):
// connection flags first, the password in the environment, then the
// action's flags.

func (r Runner) backupPostgres(ctx context.Context, c Config, artifact string) error {
	return withTLSFiles(c.TLS, func(tls tlsFiles) error {
		args := []string{"--verbose", "--format=custom", "--file=" + artifact, c.Database}
		for _, t := range c.Tables {
			args = append(args, "-t", t)
		}
		return r.run(ctx, r.Tools.PGDump, postgresConn(c), postgresEnv(c, tls), args, nil)
	})
}

func (r Runner) restorePostgres(ctx context.Context, c Config, artifact string) error {
	// pg_restore --list, without the schema and extension entries: the
	// database (and its public schema) already exist and may belong to
	// someone else.
	var list bytes.Buffer
	if err := r.runTo(ctx, &list, r.Tools.PGRestore, nil, nil, []string{"--list", artifact}, nil); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netman-bbr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	listFile := filepath.Join(dir, "restore.list")
	if err := os.WriteFile(listFile, filterRestoreList(list.Bytes()), 0o600); err != nil {
		return err
	}
	return withTLSFiles(c.TLS, func(tls tlsFiles) error {
		args := []string{
			"--verbose", "--format=custom", "--dbname=" + c.Database, "--clean", "--if-exists",
			"--single-transaction", "--exit-on-error", "--use-list=" + listFile, artifact,
		}
		return r.run(ctx, r.Tools.PGRestore, postgresConn(c), postgresEnv(c, tls), args, nil)
	})
}

// schemaEntry matches the TOC lines of `pg_restore --list` for schemas and
// extensions and their comments, e.g. "3; 2615 2200 SCHEMA - public vcap"
// and "2134; 0 0 COMMENT - EXTENSION plpgsql".
var schemaEntry = regexp.MustCompile(`^\d+; \d+ \d+ (COMMENT - )?(SCHEMA|EXTENSION) `)

func filterRestoreList(list []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(list))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if schemaEntry.Match(sc.Bytes()) {
			continue
		}
		out.Write(sc.Bytes())
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func postgresConn(c Config) []string {
	return []string{"--username=" + c.Username, "--host=" + c.Host, "--port=" + strconv.Itoa(c.Port)}
}

func postgresEnv(c Config, tls tlsFiles) []string {
	env := []string{"PGPASSWORD=" + c.Password}
	if c.TLS == nil {
		return env
	}
	mode := "verify-full"
	if c.TLS.SkipHostVerify {
		mode = "verify-ca"
	}
	env = append(env, "PGSSLROOTCERT="+tls.ca, "PGSSLMODE="+mode)
	if tls.cert != "" {
		env = append(env, "PGSSLCERT="+tls.cert, "PGSSLKEY="+tls.key)
	}
	return env
}

func (r Runner) backupMySQL(ctx context.Context, c Config, artifact string) error {
	return withTLSFiles(c.TLS, func(tls tlsFiles) error {
		args := append([]string{"-v", "--skip-add-locks", "--single-transaction", "--result-file=" + artifact, c.Database}, c.Tables...)
		return r.run(ctx, r.Tools.MySQLDump, mysqlConn(c, tls), mysqlEnv(c), args, nil)
	})
}

func (r Runner) restoreMySQL(ctx context.Context, c Config, artifact string) error {
	f, err := os.Open(artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	return withTLSFiles(c.TLS, func(tls tlsFiles) error {
		return r.run(ctx, r.Tools.MySQL, mysqlConn(c, tls), mysqlEnv(c), []string{"-v", c.Database}, bufio.NewReader(f))
	})
}

// mysqlConn adds the TLS flags MariaDB's clients take (the SDK's "legacy"
// set, which it uses for every server but MySQL 5.7).
func mysqlConn(c Config, tls tlsFiles) []string {
	args := []string{"--user=" + c.Username, "--host=" + c.Host, "--port=" + strconv.Itoa(c.Port)}
	if c.TLS == nil {
		return args
	}
	args = append(args, "--ssl-ca="+tls.ca)
	if tls.cert != "" {
		args = append(args, "--ssl-cert="+tls.cert, "--ssl-key="+tls.key)
	}
	if !c.TLS.SkipHostVerify {
		args = append(args, "--ssl-verify-server-cert")
	}
	return args
}

func mysqlEnv(c Config) []string { return []string{"MYSQL_PWD=" + c.Password} }

// tlsFiles are the PEM blocks of the config written to files, as the
// client programs want them.
type tlsFiles struct{ ca, cert, key string }

func withTLSFiles(t *TLSConfig, fn func(tlsFiles) error) error {
	if t == nil {
		return fn(tlsFiles{})
	}
	dir, err := os.MkdirTemp("", "netman-bbr-tls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	write := func(name, pem string) (string, error) {
		if pem == "" {
			return "", nil
		}
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte(pem), 0o600)
	}
	var f tlsFiles
	if f.ca, err = write("ca.crt", t.Cert.CA); err != nil {
		return err
	}
	if f.cert, err = write("client.crt", t.Cert.Certificate); err != nil {
		return err
	}
	if f.key, err = write("client.key", t.Cert.PrivateKey); err != nil {
		return err
	}
	return fn(f)
}

func (r Runner) run(ctx context.Context, prog string, conn, env, args []string, stdin io.Reader) error {
	return r.runTo(ctx, nil, prog, conn, env, args, stdin)
}

// runTo runs prog with stdout to out (nil: the log) and stderr to the log;
// a failure carries the last lines of stderr.
func (r Runner) runTo(ctx context.Context, out io.Writer, prog string, conn, env, args []string, stdin io.Reader) error {
	cmd := exec.CommandContext(ctx, prog, append(conn, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	// exec copies stdout and stderr in two goroutines.
	log := &lockedWriter{w: r.log()}
	if out == nil {
		out = log
	}
	cmd.Stdout = out
	tail := &tailBuffer{max: 4096}
	cmd.Stderr = io.MultiWriter(log, tail)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(prog), err, strings.TrimSpace(tail.String()))
	}
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
