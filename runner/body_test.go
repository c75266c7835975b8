package runner

import (
	"bytes"
	"strings"
	"testing"
)

func collectStream(writes ...[]byte) []message {
	var got []message
	s := newOutputStream("stdout", func(m message) { got = append(got, m) })
	for _, w := range writes {
		s.Write(w)
	}
	s.Close()
	return got
}

func chunkLog(m message) []byte { v, _ := m.Get("log"); return v.([]byte) }

func TestOutputStream_splitsAtNewlines(t *testing.T) {
	got := collectStream([]byte("a\nb"), []byte("c\nd"))
	if len(got) != 3 || string(chunkLog(got[0])) != "a\n" || string(chunkLog(got[1])) != "bc\n" || string(chunkLog(got[2])) != "d" {
		t.Fatalf("chunks: %v", got)
	}
	if _, ok := got[1].Get("encoding"); ok {
		t.Error("complete lines sent with an encoding")
	}
	if enc, _ := got[2].Get("encoding"); enc != "utf-8" {
		t.Error("final partial line sent without an encoding")
	}
}

func TestOutputStream_longLineAndBinaryTail(t *testing.T) {
	long := bytes.Repeat([]byte("y"), maxChunk+10)
	got := collectStream(long, []byte("\xff\xfe"))
	if len(got) != 2 || len(chunkLog(got[0])) != maxChunk {
		t.Fatalf("%d chunks", len(got))
	}
	if tail := chunkLog(got[1]); string(tail) != strings.Repeat("y", 10)+"\xff\xfe" {
		t.Errorf("tail = %q", tail)
	}
	if _, ok := got[1].Get("encoding"); ok {
		t.Error("invalid UTF-8 tail sent with an encoding (Avocado would fail to decode it)")
	}
}

func TestOutputStream_manyLinesStayUnderLimit(t *testing.T) {
	line := bytes.Repeat([]byte("z"), 999)
	line = append(line, '\n')
	got := collectStream(bytes.Repeat(line, 3000)) // 3 MB of 1000-byte lines
	total := 0
	for _, m := range got {
		b := chunkLog(m)
		if len(b) > maxChunk || b[len(b)-1] != '\n' {
			t.Fatalf("chunk of %d bytes ending %q", len(b), b[len(b)-1])
		}
		total += len(b)
	}
	if total != 3000*1000 {
		t.Errorf("total %d", total)
	}
}

func TestResolveCommand(t *testing.T) {
	dir := "../testdata/multihost"
	if p, err := resolveCommand("./bodies/report.sh", dir, nil); err != nil || p != dir+"/bodies/report.sh" {
		t.Errorf("relative: %q %v", p, err)
	}
	if p, err := resolveCommand("sh", dir, []string{"PATH=/usr/bin:/bin"}); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("PATH lookup: %q %v", p, err)
	}
	for _, name := range []string{"./bodies", "./local.json", "./nope", "no-such-program-anywhere"} {
		if _, err := resolveCommand(name, dir, []string{"PATH=/usr/bin:/bin"}); err == nil {
			t.Errorf("%s resolved", name)
		}
	}
}
