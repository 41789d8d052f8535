package asgsyncer_test

import (
	"code.cloudfoundry.org/lager/v3"

	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

const (
	clientID     = "network-policy"
	clientSecret = "secret"
)

// recorder is a stateful Metrics: the latest duration and the total of
// each counter.
type recorder struct {
	mu        sync.Mutex
	durations map[string]time.Duration
	counters  map[string]int
}

func newRecorder() *recorder {
	return &recorder{durations: map[string]time.Duration{}, counters: map[string]int{}}
}

func (r *recorder) SendDuration(name string, d time.Duration) {
	r.mu.Lock()
	r.durations[name] = d
	r.mu.Unlock()
}

func (r *recorder) IncrementCounter(name string) {
	r.mu.Lock()
	r.counters[name]++
	r.mu.Unlock()
}

func (r *recorder) counter(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counters[name]
}

func (r *recorder) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.durations[name]
	return ok
}

// ccEnv is a fake Cloud Controller on its two listeners (public TLS,
// internal mutual TLS) and the clients that reach it.
type ccEnv struct {
	cc     *cc.Server
	files  *mtlstest.Files
	public string // https://127.0.0.1:port
	intern string
}

func startCC(t testing.TB) *ccEnv {
	t.Helper()
	files := mtlstest.NewTestFiles(t)
	srv := cc.New(clientID, clientSecret)
	t.Cleanup(func() { _ = srv.Close() })
	pub, err := srv.Start("127.0.0.1:0", files.ServerConfig(t, mtls.WithoutClientAuth()))
	if err != nil {
		t.Fatal(err)
	}
	internal, err := srv.Start("127.0.0.1:0", files.ServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return &ccEnv{cc: srv, files: files, public: "https://" + pub, intern: "https://" + internal}
}

// clients builds the UAA and CC clients as Run does, with timeout per call.
func (e *ccEnv) clients(t testing.TB, timeout time.Duration) (*asgsyncer.CCClient, *auth.UAAClient) {
	t.Helper()
	publicTLS, err := auth.ClientTLSConfig(false, e.files.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	public := auth.NewHTTPClient(publicTLS, timeout)
	internal := auth.NewHTTPClient(e.files.ClientConfig(t), timeout)
	logger := logtest.New(t)
	return asgsyncer.NewCCClient(logger, public, e.public, internal, e.intern),
		auth.NewUAAClient(logger, public, e.public, clientID, clientSecret)
}

// newStore opens a migrated policy database of dbType.
func newStore(t testing.TB, c sqldb.Config) (*store.Store, *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, logtest.New(t), c, sqldb.Pool{MaxOpenConnections: 1, MaxIdleConnections: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return store.New(db, 2, nil), db
}

type syncEnv struct {
	*ccEnv
	syncer *asgsyncer.Syncer
	store  *store.Store
	db     *sqldb.DB
	rec    *recorder
}

func newSyncEnv(t testing.TB, timeout time.Duration) *syncEnv {
	t.Helper()
	env := startCC(t)
	st, db := newStore(t, dbtest.NewConfig(t, sqldb.TypeSQLite))
	client, tokens := env.clients(t, timeout)
	rec := newRecorder()
	return &syncEnv{
		ccEnv: env, store: st, db: db, rec: rec,
		syncer: asgsyncer.NewSyncer(logtest.New(t), tokens, client, st, rec, time.Hour),
	}
}

// table reads the whole security_groups table, by guid.
func table(t testing.TB, db *sqldb.DB) []policy.SecurityGroup {
	t.Helper()
	rows, err := db.QueryContext(context.Background(),
		`SELECT guid, name, rules, staging_default, running_default, staging_spaces, running_spaces FROM security_groups ORDER BY guid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []policy.SecurityGroup{}
	for rows.Next() {
		var g policy.SecurityGroup
		var rules sql.NullString
		var staging, running []byte
		if err := rows.Scan(&g.GUID, &g.Name, &rules, &g.StagingDefault, &g.RunningDefault, &staging, &running); err != nil {
			t.Fatal(err)
		}
		g.Rules = rules.String
		if err := json.Unmarshal(staging, &g.StagingSpaceGUIDs); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(running, &g.RunningSpaceGUIDs); err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func sqliteConfig(t testing.TB) sqldb.Config { return dbtest.NewConfig(t, sqldb.TypeSQLite) }

func logger(t testing.TB) lager.Logger { return logtest.New(t) }
