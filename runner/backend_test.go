package runner

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The guard in front of the agent proxy, on a real loopback server: only
// the secret gets through, never with the secret still attached, and
// nothing a browser would send on a page's behalf.
func TestProxyGuard(t *testing.T) {
	var gotAuth []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		io.WriteString(w, "agent")
	})
	g := &proxyGuard{secret: sha256.Sum256([]byte("s3cret-s3cret-s3cret"))}
	srv := httptest.NewServer(g)
	defer srv.Close()
	g.host = strings.TrimPrefix(srv.URL, "http://")
	g.next = next
	_, port, _ := strings.Cut(g.host, ":")

	good := &url.URL{Scheme: "http", User: url.UserPassword("vtc", "s3cret-s3cret-s3cret"), Host: g.host, Path: "/"}
	for _, tc := range []struct {
		name   string
		user   *url.Userinfo
		header map[string]string
		host   string
		want   int
	}{
		{"the secret", good.User, nil, "", 200},
		{"the secret, by localhost", good.User, nil, "localhost:" + port, 200},
		{"no credentials", nil, nil, "", 401},
		{"a wrong secret", url.UserPassword("vtc", "s3cret-s3cret-s3creT"), nil, "", 401},
		{"the secret as the user name", url.User("s3cret-s3cret-s3cret"), nil, "", 401},
		{"cross-site", good.User, map[string]string{"Origin": "http://evil.example"}, "", 403},
		{"fetch metadata", good.User, map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403},
		{"DNS rebinding", good.User, nil, "evil.example:" + port, 403},
		{"another port", good.User, nil, "127.0.0.1:1", 403},
	} {
		u := *good
		u.User = tc.user
		req, _ := http.NewRequest(http.MethodPost, u.String(), strings.NewReader("<methodCall/>"))
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want != 200 && !resp.Close {
			t.Errorf("%s: refused without closing the connection", tc.name)
		}
	}
	if len(gotAuth) != 2 || gotAuth[0] != "" || gotAuth[1] != "" {
		t.Errorf("the agent side saw %d requests with Authorization %q; want 2, stripped", len(gotAuth), gotAuth)
	}
}

func TestWritePrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "partition.json")
	// A file someone left readable, then a symlink planted in its place:
	// neither carries over.
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePrivateFile(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	os.Remove(p)
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	if err := writePrivateFile(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Errorf("written through a planted symlink: %v", err)
	}
	st, err := os.Lstat(p)
	if b, _ := os.ReadFile(p); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 || string(b) != "two" {
		t.Errorf("partition file: %v %v %q", st.Mode(), err, b)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("its dir: %v, %v; want 0700", st.Mode(), err)
	}
}
