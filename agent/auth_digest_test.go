package agent

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// basicPasswordDigest reads every Authorization header exactly as
// net/http's Request.BasicAuth does, odd ones included.
func TestBasicPasswordDigest_matchesBasicAuth(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	long := strings.Repeat("p", 400) // beyond the stack buffers
	for _, h := range []string{
		"", "Basic", "Basic ", "basic " + b64([]byte("u:tok")), "BASIC " + b64([]byte("u:tok")),
		"Basic " + b64([]byte("u:tok")), "Basic " + b64([]byte(":tok")), "Basic " + b64([]byte("u:")),
		"Basic " + b64([]byte("notoken")), "Basic " + b64([]byte("a:b:c")), "Basic !!!!", "Basic dTp0b2s",
		"Bearer " + b64([]byte("u:tok")), "Basic  " + b64([]byte("u:tok")), "Basic " + b64([]byte("u:"+long)),
		"Baſic " + b64([]byte("u:tok")), "Basic " + b64([]byte("u:tok")) + "\n",
	} {
		r := &http.Request{Header: http.Header{}}
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		_, pass, wantOK := r.BasicAuth()
		got, ok := basicPasswordDigest(h)
		if ok != wantOK || ok && got != sha256.Sum256([]byte(pass)) {
			t.Errorf("%.40q: ok %v, want %v (password %.20q)", h, ok, wantOK, pass)
		}
	}
}

func BenchmarkBasicPasswordDigest(b *testing.B) {
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte("vtcluster:0123456789abcdef0123456789abcdef"))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := basicPasswordDigest(h); !ok {
			b.Fatal("refused")
		}
	}
}
