//go:build !vtcluster_noetcd

package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vtcluster/vtcluster/cluster"
)

// Linked says whether this build has the etcd client.
const Linked = true

func openEtcd(cfg Config) (Opened, error) { return Open(cfg) }

// MaxReadBytes bounds one answer of etcd (a read of the whole cluster
// state, a batch of watch events): a lab's state is a few hundred KiB.
const MaxReadBytes = 32 << 20

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
		// Whoever can write under the prefix decides how much one read
		// brings; the answer is refused from its length, before it is
		// read into memory.
		MaxCallRecvMsgSize: MaxReadBytes,
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
		tls:      cc.TLS != nil,
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
