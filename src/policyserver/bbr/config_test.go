package bbr

import (
	"os"
	"path/filepath"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

func TestLoadConfig(t *testing.T) {
	cases := []struct {
		name, json string
		want       Config
		wantErr    string
	}{
		{
			name: "postgres as bbr-cfnetworkingdb renders it",
			json: `{"username":"u","password":"p","host":"db.example","port":5432,"database":"network_policy","adapter":"postgres"}`,
			want: Config{Username: "u", Password: "p", Host: "db.example", Port: 5432, Database: "network_policy", Adapter: "postgres"},
		},
		{
			name: "mysql with tls",
			json: `{"username":"u","password":"p","host":"db","port":3306,"database":"d","adapter":"mysql","tls":{"skip_host_verify":true,"cert":{"ca":"PEM"}}}`,
			want: Config{Username: "u", Password: "p", Host: "db", Port: 3306, Database: "d", Adapter: "mysql",
				TLS: &TLSConfig{SkipHostVerify: true, Cert: TLSCert{CA: "PEM"}}},
		},
		{
			name: "sqlite",
			json: `{"username":"","password":"","host":"","port":0,"database":"/var/vcap/store/policy-server/policy.db","adapter":"sqlite"}`,
			want: Config{Database: "/var/vcap/store/policy-server/policy.db", Adapter: "sqlite"},
		},
		{name: "unknown adapter", json: `{"adapter":"oracle","database":"d"}`, wantErr: `unsupported adapter "oracle"`},
		{name: "empty tables", json: `{"adapter":"postgres","host":"h","port":1,"database":"d","tables":[]}`, wantErr: "tables specified but empty"},
		{name: "tls without ca", json: `{"adapter":"postgres","host":"h","port":1,"database":"d","tls":{"cert":{}}}`, wantErr: "TLS block specified without tls.cert.ca"},
		{name: "certificate without key", json: `{"adapter":"mysql","host":"h","port":1,"database":"d","tls":{"cert":{"ca":"x","certificate":"c"}}}`, wantErr: "tls.cert.certificate specified but not tls.cert.private_key"},
		{name: "key without certificate", json: `{"adapter":"mysql","host":"h","port":1,"database":"d","tls":{"cert":{"ca":"x","private_key":"k"}}}`, wantErr: "tls.cert.private_key specified but not tls.cert.certificate"},
		{name: "no database", json: `{"adapter":"sqlite"}`, wantErr: "database: must be set"},
		{name: "no host", json: `{"adapter":"mysql","port":3306,"database":"d"}`, wantErr: "host: must be set"},
		{name: "bad port", json: `{"adapter":"postgres","host":"h","port":70000,"database":"d"}`, wantErr: "port: 70000 is not a TCP port"},
		{name: "sqlite with tls", json: `{"adapter":"sqlite","database":"/x.db","tls":{"cert":{"ca":"x"}}}`, wantErr: "sqlite: tables and tls do not apply to a database file"},
		{name: "not json", json: `{`, wantErr: "could not parse config json: unexpected end of JSON input"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(c.json), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadConfig(path)
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing file loads")
	}
	if _, err := LoadConfig(filepath.Join("..", "..", "..", "config", "bbr-cfnetworkingdb.json")); err != nil {
		t.Errorf("config/bbr-cfnetworkingdb.json: %v", err)
	}
}

func TestFilterRestoreList(t *testing.T) {
	list := `;
; Archive created at 2026-12-06 00:10:00 UTC
;     dbname: network_policy
;
; Selected TOC Entries:
;
3; 2615 2200 SCHEMA - public pg_database_owner
3390; 0 0 COMMENT - SCHEMA public pg_database_owner
1; 3079 12393 EXTENSION - plpgsql
2134; 0 0 COMMENT - EXTENSION plpgsql
215; 1259 16390 TABLE public destinations netman
216; 1259 16398 TABLE public schema_notes netman
3380; 0 16390 TABLE DATA public destinations netman
`
	want := `;
; Archive created at 2026-12-06 00:10:00 UTC
;     dbname: network_policy
;
; Selected TOC Entries:
;
215; 1259 16390 TABLE public destinations netman
216; 1259 16398 TABLE public schema_notes netman
3380; 0 16390 TABLE DATA public destinations netman
`
	if diff := gocmp.Diff(want, string(filterRestoreList([]byte(list)))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMySQLAndPostgresConnectionArguments(t *testing.T) {
	c := Config{Username: "u", Password: "pw", Host: "db", Port: 3306, Adapter: "mysql", Database: "d",
		TLS: &TLSConfig{Cert: TLSCert{CA: "ca", Certificate: "c", PrivateKey: "k"}}}
	files := tlsFiles{ca: "/t/ca.crt", cert: "/t/client.crt", key: "/t/client.key"}
	cases := []struct {
		name string
		got  []string
		want []string
	}{
		{"mysql verified", mysqlConn(c, files), []string{"--user=u", "--host=db", "--port=3306",
			"--ssl-ca=/t/ca.crt", "--ssl-cert=/t/client.crt", "--ssl-key=/t/client.key", "--ssl-verify-server-cert"}},
		{"mysql plain", mysqlConn(Config{Username: "u", Host: "db", Port: 3306}, tlsFiles{}), []string{"--user=u", "--host=db", "--port=3306"}},
		{"mysql env", mysqlEnv(c), []string{"MYSQL_PWD=pw"}},
		{"postgres", postgresConn(Config{Username: "u", Host: "db", Port: 5432}), []string{"--username=u", "--host=db", "--port=5432"}},
		{"postgres env verify-full", postgresEnv(c, files), []string{"PGPASSWORD=pw", "PGSSLROOTCERT=/t/ca.crt", "PGSSLMODE=verify-full",
			"PGSSLCERT=/t/client.crt", "PGSSLKEY=/t/client.key"}},
		{"postgres env skip host", postgresEnv(Config{Password: "pw", TLS: &TLSConfig{SkipHostVerify: true, Cert: TLSCert{CA: "ca"}}}, tlsFiles{ca: "/t/ca.crt"}),
			[]string{"PGPASSWORD=pw", "PGSSLROOTCERT=/t/ca.crt", "PGSSLMODE=verify-ca"}},
		{"postgres env plain", postgresEnv(Config{Password: "pw"}, tlsFiles{}), []string{"PGPASSWORD=pw"}},
	}
	for _, c := range cases {
		if diff := gocmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}
