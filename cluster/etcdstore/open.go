package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vtcluster/vtcluster/cluster"
)

// Environment variables with the etcd credentials. The CLI's flags fall
// back to them, and the runner, which Avocado starts, reads them from the
// environment it inherits: credentials never travel in argv or in the
// state.
const (
	EnvState        = "VTCLUSTER_STATE"
	EnvCA           = "VTCLUSTER_ETCD_CA"
	EnvCert         = "VTCLUSTER_ETCD_CERT"
	EnvKey          = "VTCLUSTER_ETCD_KEY"
	EnvUser         = "VTCLUSTER_ETCD_USER"
	EnvPassword     = "VTCLUSTER_ETCD_PASSWORD"
	EnvPasswordFile = "VTCLUSTER_ETCD_PASSWORD_FILE"
	EnvTimeout      = "VTCLUSTER_STATE_TIMEOUT"
)

// DefaultTimeout bounds each request to etcd: a lab's etcd answers in
// milliseconds, so a request this slow means etcd is unreachable.
const DefaultTimeout = 5 * time.Second

// DefaultPrefix is the key prefix when the URL has no path.
const DefaultPrefix = "/vtcluster"

// Credentials reach etcd; none of it is ever stored in the state.
type Credentials struct {
	// CAFile verifies the server (TLS); empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate (TLS).
	CertFile, KeyFile string
	// Username and Password for etcd's authentication.
	Username, Password string
	// PasswordFile holds Password when Password is empty.
	PasswordFile string
}

// CredentialsFromEnv reads the VTCLUSTER_ETCD_* variables.
func CredentialsFromEnv() Credentials {
	return Credentials{
		CAFile: os.Getenv(EnvCA), CertFile: os.Getenv(EnvCert), KeyFile: os.Getenv(EnvKey),
		Username: os.Getenv(EnvUser), Password: os.Getenv(EnvPassword), PasswordFile: os.Getenv(EnvPasswordFile),
	}
}

// Config says where a cluster's state lives in etcd.
type Config struct {
	Endpoints []string // host:port
	Prefix    string   // e.g. "/vtcluster"
	Cluster   string   // the cluster's name, a key below Prefix
	// TLS is set by the etcds:// scheme or by any TLS credential.
	TLS   bool
	Creds Credentials
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// IsURL reports whether a --state value names an etcd store.
func IsURL(spec string) bool {
	return strings.HasPrefix(spec, "etcd://") || strings.HasPrefix(spec, "etcds://")
}

// ParseURL reads etcd://host:port[,host:port...][/prefix], or etcds://
// for TLS. User names and passwords in the URL are refused: a URL ends up
// in settings files, process lists and logs.
func ParseURL(spec string) (Config, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return Config{}, errors.New("state URL: not a URL (expected etcd://host:port[,host:port]/prefix)")
	}
	// Messages show the URL without any password in it.
	spec = u.Redacted()
	if u.Scheme != "etcd" && u.Scheme != "etcds" {
		return Config{}, fmt.Errorf("state URL %q: scheme must be etcd:// or etcds://", spec)
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("state URL %q: credentials do not belong in the URL; use %s and %s or %s", spec, EnvUser, EnvPasswordFile, EnvPassword)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("state URL %q: no query or fragment expected", spec)
	}
	cfg := Config{TLS: u.Scheme == "etcds", Prefix: DefaultPrefix}
	for _, ep := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" {
			return Config{}, fmt.Errorf("state URL %q: endpoint %q is not host:port", spec, ep)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Config{}, fmt.Errorf("state URL %q: endpoint %q: port is not in 1-65535", spec, ep)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" {
		if path.Clean(p) != p || strings.Contains(p, "//") {
			return Config{}, fmt.Errorf("state URL %q: prefix %q is not a clean path", spec, u.Path)
		}
		cfg.Prefix = p
	}
	return cfg, nil
}

// Open connects to etcd. It does not wait for etcd to answer: the first
// request does, within the timeout, so an unreachable etcd is reported by
// the command that needed it.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if err := cluster.ValidClusterName(cfg.Cluster); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cc := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: timeout,
		Username:             cfg.Creds.Username,
		Password:             cfg.Creds.Password,
		// The client's own logging would interleave with command
		// output; errors reach the caller instead.
		Logger: zap.NewNop(),
	}
	if cc.Username != "" && cc.Password == "" && cfg.Creds.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Creds.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("etcd password file: %w", err)
		}
		cc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if cfg.TLS || cfg.Creds.CAFile != "" || cfg.Creds.CertFile != "" {
		t, err := tlsConfig(cfg.Creds)
		if err != nil {
			return nil, err
		}
		cc.TLS = t
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	scheme := "etcd"
	if cc.TLS != nil {
		scheme = "etcds"
	}
	return &Store{
		cli:      cli,
		root:     cfg.Prefix + "/" + cfg.Cluster + "/",
		location: fmt.Sprintf("%s://%s%s/%s", scheme, strings.Join(cfg.Endpoints, ","), cfg.Prefix, cfg.Cluster),
		timeout:  timeout,
	}, nil
}

func tlsConfig(c Credentials) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s: no PEM certificate in it", c.CAFile)
		}
		t.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd client certificate: give both the certificate and the key file, or neither")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// Opened is a store chosen by a --state value.
type Opened interface {
	cluster.Store
	// Path names the store in messages: a state file or an etcd URL.
	Path() string
}

// Selection is what chooses a cluster's store: the CLI's global flags or
// the runner's settings, each falling back to the same environment.
type Selection struct {
	// State is a --state value: etcd://..., etcds://..., file:///dir, or
	// empty for the state directory.
	State string
	// StateDir is the file store's directory (file:// overrides it).
	StateDir string
	Cluster  string
	Creds    Credentials
	Timeout  time.Duration
}

// OpenState opens the store sel names. Close it with CloseStore.
func OpenState(sel Selection) (Opened, error) {
	switch {
	case IsURL(sel.State):
		cfg, err := ParseURL(sel.State)
		if err != nil {
			return nil, err
		}
		cfg.Cluster, cfg.Creds, cfg.Timeout = sel.Cluster, sel.Creds, sel.Timeout
		return Open(cfg)
	case strings.HasPrefix(sel.State, "file://"):
		u, err := url.Parse(sel.State)
		if err != nil || u.Host != "" || u.Path == "" || u.RawQuery != "" {
			return nil, fmt.Errorf("state URL %q: expected file:///absolute/dir", sel.State)
		}
		return cluster.OpenFileStore(u.Path, sel.Cluster)
	case sel.State != "":
		return nil, fmt.Errorf("state %q: expected etcd://host:port[,host:port]/prefix, etcds://... or file:///dir", sel.State)
	}
	if sel.StateDir == "" {
		return nil, errors.New("no state directory (the home directory is unknown, so there is no default)")
	}
	return cluster.OpenFileStore(sel.StateDir, sel.Cluster)
}

// CloseStore closes st if it holds connections (etcd); file stores hold
// nothing between calls.
func CloseStore(st cluster.Store) {
	if c, ok := st.(interface{ Close() error }); ok {
		c.Close()
	}
}
